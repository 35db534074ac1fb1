//! Named weights of a checkpoint, with shape checks that name the weight.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// All tensors of a checkpoint by name, on one device and dtype.
#[derive(Debug, Clone)]
pub struct Weights {
    tensors: HashMap<String, Tensor>,
    source: String,
}

impl Weights {
    /// Loads every tensor of a weight file (safetensors, PyTorch, CT2) or of
    /// the `model.safetensors` in a folder, converting floats to `dtype`.
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("model.safetensors")
        } else {
            path.to_path_buf()
        };
        let mut tensors = HashMap::new();
        for (name, t) in mosaic_core::formats::load_tensors(&file, device)? {
            let t = if t.dtype().is_float() && t.dtype() != dtype {
                t.to_dtype(dtype)?
            } else {
                t
            };
            tensors.insert(name, t);
        }
        Ok(Weights {
            tensors,
            source: file.display().to_string(),
        })
    }

    /// Weights from a map (tests, converted checkpoints).
    pub fn from_map(tensors: HashMap<String, Tensor>, source: &str) -> Self {
        Weights {
            tensors,
            source: source.to_string(),
        }
    }

    /// Removes `prefix` from every name that has it (e.g. `bert.`), when
    /// any name has it.
    pub fn strip_prefix(mut self, prefix: &str) -> Self {
        if self.tensors.keys().any(|k| k.starts_with(prefix)) {
            self.tensors = self
                .tensors
                .into_iter()
                .map(|(k, v)| (k.strip_prefix(prefix).map(str::to_string).unwrap_or(k), v))
                .collect();
        }
        self
    }

    /// The checkpoint these came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether a weight exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The weight `name`, which must have `shape`. Old BERT checkpoints
    /// name LayerNorm parameters `gamma`/`beta`; those are accepted too.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let alias = name
            .strip_suffix(".weight")
            .map(|b| format!("{b}.gamma"))
            .into_iter()
            .chain(name.strip_suffix(".bias").map(|b| format!("{b}.beta")));
        let t = self
            .tensors
            .get(name)
            .or_else(|| {
                alias
                    .filter(|a| a.contains("LayerNorm"))
                    .find_map(|a| self.tensors.get(&a))
            })
            .ok_or_else(|| Error::Weight {
                checkpoint: self.source.clone(),
                name: name.to_string(),
                message: "missing".into(),
            })?;
        if t.dims() != shape {
            return Err(Error::Weight {
                checkpoint: self.source.clone(),
                name: name.to_string(),
                message: format!("shape {:?}, expected {shape:?}", t.dims()),
            });
        }
        Ok(t.clone())
    }
}
