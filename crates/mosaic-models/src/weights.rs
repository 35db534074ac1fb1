//! Named weights of a checkpoint file, with shape checks that name the
//! weight: the checkpoint backend of [`crate::nn::ParamStore`], which is
//! how every model reads them.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// All tensors of a checkpoint by name, on one device and dtype.
#[derive(Debug, Clone)]
pub struct Weights {
    tensors: HashMap<String, Tensor>,
    source: String,
    /// Names handed out by [`Weights::get`], so that [`Weights::check_unused`]
    /// can report tensors a loader never asked for (a sign of a wrong
    /// architecture or a mislabelled checkpoint).
    used: Arc<Mutex<BTreeSet<String>>>,
}

/// The weight file of a Hugging Face model folder: `model.safetensors`,
/// else a sharded `model.safetensors.index.json`, else `pytorch_model.bin`.
pub fn checkpoint_file(dir: &Path) -> Result<PathBuf> {
    for name in [
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
    ] {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(Error::Weight {
        checkpoint: dir.display().to_string(),
        name: "*".into(),
        message:
            "no model.safetensors, model.safetensors.index.json or pytorch_model.bin in the folder"
                .into(),
    })
}

impl Weights {
    /// Loads every tensor of a weight file (safetensors, sharded safetensors
    /// index, PyTorch, CT2) or of a Hugging Face folder (see
    /// [`checkpoint_file`]), converting floats to `dtype`. Safetensors files
    /// are memory-mapped while read.
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let file = if path.is_dir() {
            checkpoint_file(path)?
        } else {
            path.to_path_buf()
        };
        let loaded: Vec<(String, Tensor)> = if file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(".index.json"))
        {
            mosaic_core::formats::safetensors::load_sharded(&file, device)?
                .into_iter()
                .collect()
        } else {
            mosaic_core::formats::load_tensors(&file, device)?
        };
        let mut tensors = HashMap::new();
        for (name, t) in loaded {
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
            used: Default::default(),
        })
    }

    /// Weights from a map (tests, converted checkpoints).
    pub fn from_map(tensors: HashMap<String, Tensor>, source: &str) -> Self {
        Weights {
            tensors,
            source: source.to_string(),
            used: Default::default(),
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

    /// Every weight name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }

    /// Fails, naming them, when the checkpoint holds tensors no [`get`]
    /// asked for, other than those matching `ignore` (patterns where `*`
    /// matches any run of characters, e.g. `*.position_ids`). Loaders call
    /// this last, so a checkpoint of another architecture (or with a head
    /// the loader would silently drop) is refused rather than half-used.
    ///
    /// [`get`]: Weights::get
    pub fn check_unused(&self, ignore: &[&str]) -> Result<()> {
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let mut extra: Vec<&String> = self
            .tensors
            .keys()
            .filter(|k| !used.contains(*k) && !ignore.iter().any(|p| glob_match(p, k)))
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        extra.sort();
        let shown: Vec<String> = extra.iter().take(8).map(|s| format!("`{s}`")).collect();
        Err(Error::Weight {
            checkpoint: self.source.clone(),
            name: extra[0].clone(),
            message: format!(
                "{} unexpected tensor(s) the architecture does not use: {}{}",
                extra.len(),
                shown.join(", "),
                if extra.len() > 8 { ", …" } else { "" }
            ),
        })
    }

    fn mark_used(&self, name: &str) {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
    }

    /// The weight `name` whatever its shape, marked as used: for tensors a
    /// converter knowingly discards (and says so), so that
    /// [`Weights::check_unused`] still catches every other stray tensor.
    pub fn get_unchecked(&self, name: &str) -> Result<Tensor> {
        let t = self.tensors.get(name).ok_or_else(|| Error::Weight {
            checkpoint: self.source.clone(),
            name: name.to_string(),
            message: "missing".into(),
        })?;
        self.mark_used(name);
        Ok(t.clone())
    }

    /// [`Weights::get`], removing the tensor from this map (it stays
    /// counted as used): the caller keeps the only copy.
    pub fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (key, t) = self.lookup(name, shape)?;
        self.tensors.remove(&key);
        Ok(t)
    }

    /// The weight `name`, which must have `shape`. Old BERT checkpoints
    /// name LayerNorm parameters `gamma`/`beta`; those are accepted too.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        Ok(self.lookup(name, shape)?.1)
    }

    fn lookup(&self, name: &str, shape: &[usize]) -> Result<(String, Tensor)> {
        let alias = name
            .strip_suffix(".weight")
            .map(|b| format!("{b}.gamma"))
            .into_iter()
            .chain(name.strip_suffix(".bias").map(|b| format!("{b}.beta")));
        let (key, t) = self
            .tensors
            .get_key_value(name)
            .or_else(|| {
                alias
                    .filter(|a| a.contains("LayerNorm"))
                    .find_map(|a| self.tensors.get_key_value(&a))
            })
            .ok_or_else(|| Error::Weight {
                checkpoint: self.source.clone(),
                name: name.to_string(),
                message: format!("missing (expected shape {shape:?})"),
            })?;
        self.mark_used(key);
        if t.dims() != shape {
            return Err(Error::Weight {
                checkpoint: self.source.clone(),
                name: name.to_string(),
                message: format!("shape {:?}, expected {shape:?}", t.dims()),
            });
        }
        Ok((key.clone(), t.clone()))
    }
}

/// `*`-wildcard match (no other metacharacters): `*.position_ids`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Weights {
        let d = Device::Cpu;
        let mut m = HashMap::new();
        m.insert(
            "a.weight".into(),
            Tensor::zeros((2, 3), DType::F32, &d).unwrap(),
        );
        m.insert("a.bias".into(), Tensor::zeros(2, DType::F32, &d).unwrap());
        m.insert(
            "emb.position_ids".into(),
            Tensor::zeros(4, DType::F32, &d).unwrap(),
        );
        Weights::from_map(m, "tiny.safetensors")
    }

    #[test]
    fn errors_name_the_tensor_and_shape() {
        let w = tiny();
        let e = w.get("a.weight", &[3, 2]).unwrap_err().to_string();
        assert!(
            e.contains("`a.weight`") && e.contains("[2, 3]") && e.contains("[3, 2]"),
            "{e}"
        );
        let e = w.get("b.weight", &[4]).unwrap_err().to_string();
        assert!(
            e.contains("`b.weight`") && e.contains("missing") && e.contains("[4]"),
            "{e}"
        );
    }

    #[test]
    fn unused_tensors_are_reported_unless_ignored() {
        let w = tiny();
        w.get("a.weight", &[2, 3]).unwrap();
        let e = w.check_unused(&["*.position_ids"]).unwrap_err().to_string();
        assert!(e.contains("`a.bias`") && e.contains("1 unexpected"), "{e}");
        w.get("a.bias", &[2]).unwrap();
        w.check_unused(&["*.position_ids"]).unwrap();
        assert!(w.check_unused(&[]).is_err());
    }

    #[test]
    fn glob() {
        assert!(glob_match("*.position_ids", "text.emb.position_ids"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxcyyb"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("*", "anything"));
    }
}
