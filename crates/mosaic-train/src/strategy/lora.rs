//! LoRA (Hu et al. 2021): low-rank adapters `scale · B A` (scale =
//! alpha / rank) on chosen linear layers; only the adapters train, and
//! [`merge_lora`] folds them into the base weights for export.
//!
//! Life cycle: [`set_lora`] on the store *before* building the model (the
//! layers attach adapters when they are built), [`load_base_weights`] for
//! pretrained weights, train [`trainable_lora_vars`], export
//! [`merge_lora`] — a plain checkpoint the model without LoRA loads.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Tensor, Var};
use mosaic_models::arch::MultimodalModel;
use mosaic_models::nn::{LoraSpec, ParamStore};

use crate::error::{Error, Result};

const A: &str = ".lora_a";
const B: &str = ".lora_b";

fn cfg(message: String) -> Error {
    Error::Config {
        source_name: "lora".into(),
        message,
    }
}

/// Validates `spec` (rank ≥ 1, alpha finite and > 0, at least one target)
/// and sets it on `store`: linear layers built afterwards whose full
/// names match a target get adapters.
pub fn set_lora(store: &ParamStore, spec: LoraSpec) -> Result<()> {
    if spec.rank == 0 {
        return Err(cfg("key `rank` must be at least 1".into()));
    }
    if !spec.alpha.is_finite() || spec.alpha <= 0.0 {
        return Err(cfg(format!("key `alpha` must be > 0, got {}", spec.alpha)));
    }
    if spec.targets.is_empty() {
        return Err(cfg("key `targets` names no module".into()));
    }
    store.set_lora(Some(spec));
    Ok(())
}

/// The adapter parameters (`*.lora_a`, `*.lora_b`) of `store`, the only
/// ones to train. Errors: no LoRA spec set, or a target pattern that
/// matched no linear layer of the built model (named).
pub fn trainable_lora_vars(store: &ParamStore) -> Result<BTreeMap<String, Var>> {
    let spec = store
        .lora()
        .ok_or_else(|| cfg("no LoRA spec is set on the parameter store".into()))?;
    let vars = store.vars();
    let adapted: Vec<&str> = vars.keys().filter_map(|k| k.strip_suffix(A)).collect();
    for t in &spec.targets {
        if !adapted
            .iter()
            .any(|l| mosaic_models::weights::glob_match(t, l))
        {
            return Err(cfg(format!(
                "target `{t}` matches no linear layer of the model"
            )));
        }
    }
    Ok(vars
        .into_iter()
        .filter(|(k, _)| k.ends_with(A) || k.ends_with(B))
        .collect())
}

/// Every parameter of `store` with the adapters folded in: each adapted
/// layer's `weight` becomes `W + scale · B A`, and no `lora_a` / `lora_b`
/// tensor is left. The result loads into the same model built without
/// LoRA (e.g. with [`ParamStore::load`] after saving it) when the adapted
/// layers were trainable; where they were frozen checkpoint tensors (LoRA
/// on a locked tower), the merged weights are a new checkpoint of that
/// tower: attach it as one (`ParamStore::attach_checkpoint`).
pub fn merge_lora_params(store: &ParamStore) -> Result<BTreeMap<String, Tensor>> {
    let tensors = store.tensors();
    let scale = match store.lora() {
        Some(s) => s.alpha / s.rank as f64,
        None => {
            if tensors.keys().any(|k| k.ends_with(A)) {
                return Err(cfg("adapters present but no LoRA spec to scale them".into()));
            }
            return Ok(tensors);
        }
    };
    let mut out = BTreeMap::new();
    for (k, t) in &tensors {
        if k.ends_with(A) || k.ends_with(B) {
            continue;
        }
        let merged = match k.strip_suffix(".weight") {
            Some(layer) => match (
                tensors.get(&format!("{layer}{A}")),
                tensors.get(&format!("{layer}{B}")),
            ) {
                (Some(a), Some(b)) => (t + (b.matmul(a)? * scale)?)?,
                (None, None) => t.clone(),
                _ => {
                    return Err(cfg(format!(
                        "layer `{layer}` has only one of its two adapters"
                    )));
                }
            },
            None => t.clone(),
        };
        out.insert(k.clone(), merged);
    }
    Ok(out)
}

/// [`merge_lora_params`] of a model's parameters.
pub fn merge_lora(model: &MultimodalModel) -> Result<BTreeMap<String, Tensor>> {
    merge_lora_params(model.params())
}

/// Loads base (non-adapter) weights into a store that has adapters, from a
/// safetensors file of the model without LoRA: every non-adapter parameter
/// must be present with its shape, the file must have no other tensor,
/// and the adapters keep their values. Errors name the tensor; nothing is
/// changed on error.
pub fn load_base_weights(store: &ParamStore, path: &Path) -> Result<()> {
    let device = store.device();
    let loaded: HashMap<String, Tensor> = mosaic_core::formats::load_tensors(path, &device)?
        .into_iter()
        .collect();
    let src = path.display().to_string();
    let vars = store.vars();
    let base: Vec<(&String, &Var)> = vars
        .iter()
        .filter(|(k, _)| !(k.ends_with(A) || k.ends_with(B)))
        .collect();
    for (k, v) in &base {
        let t = loaded.get(*k).ok_or_else(|| Error::InvalidInput {
            what: format!("{src}: `{k}`"),
            message: format!("missing (expected shape {:?})", v.dims()),
        })?;
        if t.dims() != v.dims() {
            return Err(Error::InvalidInput {
                what: format!("{src}: `{k}`"),
                message: format!("shape {:?}, expected {:?}", t.dims(), v.dims()),
            });
        }
    }
    // Frozen checkpoint tensors (a LoRA-adapted frozen tower) cannot be
    // set: the file must hold them unchanged.
    let frozen = store.frozen();
    for (k, f) in &frozen {
        let t = loaded.get(k).ok_or_else(|| Error::InvalidInput {
            what: format!("{src}: `{k}`"),
            message: format!("missing (expected shape {:?})", f.dims()),
        })?;
        let same = t.dims() == f.dims()
            && (t.to_dtype(f.dtype())?.to_dtype(candle_core::DType::F64)?
                - f.to_dtype(candle_core::DType::F64)?)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f64>()?
                == 0.0;
        if !same {
            return Err(Error::InvalidInput {
                what: format!("{src}: `{k}`"),
                message: "differs from the frozen checkpoint tensor (a merged export of a frozen, adapted tower is a new checkpoint: build the model from it)".into(),
            });
        }
    }
    if let Some(extra) = loaded
        .keys()
        .find(|k| !vars.contains_key(*k) && !frozen.contains_key(*k))
    {
        return Err(Error::InvalidInput {
            what: format!("{src}: `{extra}`"),
            message: "unexpected tensor: the model has no such parameter".into(),
        });
    }
    if let Some(ad) = loaded.keys().find(|k| k.ends_with(A) || k.ends_with(B)) {
        return Err(Error::InvalidInput {
            what: format!("{src}: `{ad}`"),
            message: "base weights must not contain adapters".into(),
        });
    }
    for (k, v) in base {
        v.set(&loaded[k].to_dtype(v.dtype())?)?;
    }
    Ok(())
}
