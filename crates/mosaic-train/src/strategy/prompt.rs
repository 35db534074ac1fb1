//! Prompt tuning (Lester et al. 2021; CoOp for CLIP, Zhou et al. 2022):
//! a few learnable context vectors prepended to a frozen encoder's token
//! embeddings are the only parameters that train.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};
use mosaic_models::nn::{ParamStore, PromptTokens};

use crate::error::{Error, Result};

/// Learnable prompt tokens and the parameters to train.
#[derive(Debug, Clone)]
pub struct PromptTuning {
    /// The context tokens (`[n, D]`), with
    /// [`PromptTokens::prepend`] to put them before a sequence.
    pub prompts: PromptTokens,
    /// Only the prompt parameters: hand these to the optimiser and
    /// nothing else stays trainable.
    pub vars: BTreeMap<String, Var>,
}

impl PromptTuning {
    /// `[B, T, D]` embeddings (and `[B, T]` mask) with the prompts in front.
    pub fn prepend(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        Ok(self.prompts.prepend(x, mask)?)
    }
}

/// Creates `n_tokens` learnable context tokens of width `dim` as
/// `<name>.tokens` in `store` (Normal(0, 0.02), seeded by name) and
/// returns them with only their parameters. `name` must be new to the
/// store, so the prompts cannot alias a model parameter.
pub fn prompt_tuning(
    store: &ParamStore,
    name: &str,
    n_tokens: usize,
    dim: usize,
) -> Result<PromptTuning> {
    if n_tokens == 0 || dim == 0 {
        return Err(Error::Config {
            source_name: "prompt_tuning".into(),
            message: format!("key `tokens` and the width must be ≥ 1, got {n_tokens} × {dim}"),
        });
    }
    let full = store.full(name);
    let prefix = format!("{full}.");
    if store.vars().keys().any(|k| k.starts_with(&prefix)) {
        return Err(Error::Config {
            source_name: "prompt_tuning".into(),
            message: format!("`{full}` already names parameters of the model"),
        });
    }
    let prompts = PromptTokens::new(store, name, n_tokens, dim)?;
    let vars = store
        .vars()
        .into_iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .collect();
    Ok(PromptTuning { prompts, vars })
}
