//! Freezing parameters by name, and LiT (locked-image / locked-text
//! tuning, Zhai et al. 2022): the optimiser only receives the parameters
//! that train, so frozen ones never change.

use std::collections::BTreeMap;

use candle_core::Var;
use mosaic_core::Modality;
use mosaic_models::arch::MultimodalModel;

use super::matches;
use crate::error::{Error, Result};

fn check_patterns<S: AsRef<str>>(
    vars: &BTreeMap<String, Var>,
    patterns: &[S],
    what: &str,
) -> Result<()> {
    for p in patterns {
        let p = p.as_ref();
        if !vars.keys().any(|n| matches(p, n)) {
            return Err(Error::Config {
                source_name: what.into(),
                message: format!("`{p}` matches no parameter of the model"),
            });
        }
    }
    Ok(())
}

/// The parameters that still train once those matching any of `patterns`
/// ([`matches`]: a module prefix such as `encoders.text`, or a `*` glob)
/// are frozen. A pattern that matches nothing is an error naming it (a
/// typo must not silently train everything).
pub fn freeze<S: AsRef<str>>(
    vars: &BTreeMap<String, Var>,
    patterns: &[S],
) -> Result<BTreeMap<String, Var>> {
    check_patterns(vars, patterns, "freeze")?;
    Ok(vars
        .iter()
        .filter(|(n, _)| !patterns.iter().any(|p| matches(p.as_ref(), n)))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect())
}

/// Only the parameters matching any of `patterns` (everything else
/// frozen); a pattern that matches nothing is an error naming it.
pub fn select<S: AsRef<str>>(
    vars: &BTreeMap<String, Var>,
    patterns: &[S],
) -> Result<BTreeMap<String, Var>> {
    check_patterns(vars, patterns, "train_only")?;
    Ok(vars
        .iter()
        .filter(|(n, _)| patterns.iter().any(|p| matches(p.as_ref(), n)))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect())
}

/// LiT: every parameter of `model` except those of the `locked` tower's
/// encoder (`encoders.<modality>`), which stays as loaded. The projection
/// heads on top of both towers keep training; add their names to
/// [`freeze`] to lock them too. An error when the model has no encoder
/// for `locked`.
pub fn lit(model: &MultimodalModel, locked: Modality) -> Result<BTreeMap<String, Var>> {
    let prefix = format!("encoders.{locked}");
    freeze(&model.params().vars(), &[prefix.as_str()]).map_err(|_| Error::Config {
        source_name: "lit".into(),
        message: format!(
            "cannot lock the `{locked}` tower: model `{}` has no `{locked}` encoder",
            model.config().name
        ),
    })
}
