//! Checkpoints: a directory with `config.json` and `model.safetensors`,
//! both written atomically (temporary file + rename), so a crash never
//! leaves a half-written checkpoint behind.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::atomic::write_atomic;
use crate::error::{Error, IoContext, Result};

/// File name of the weights inside a checkpoint directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// File name of the config inside a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";

/// Writes `config` and `tensors` into `dir` (created if needed). The weights
/// are written first and the config last, so a directory whose config exists
/// always has matching weights.
pub fn save_checkpoint<C: Serialize>(
    dir: &Path,
    config: &C,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    std::fs::create_dir_all(dir).at(dir)?;
    let weights = dir.join(WEIGHTS_FILE);
    save_safetensors(&weights, tensors)?;
    let cfg = dir.join(CONFIG_FILE);
    let json = serde_json::to_vec_pretty(config).map_err(|e| Error::Config {
        path: cfg.clone(),
        message: format!("cannot serialize config: {e}"),
    })?;
    write_atomic(&cfg, |w| std::io::Write::write_all(w, &json).at(&cfg))
}

/// Writes tensors to a safetensors file atomically.
pub fn save_safetensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    // Sorted for a reproducible file (same tensors -> same bytes).
    let mut named: Vec<(&String, &Tensor)> = tensors.iter().collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    let bytes = safetensors::serialize(named, None)
        .map_err(|e| Error::format(path, "safetensors", format!("cannot serialize: {e}")))?;
    write_atomic(path, |w| std::io::Write::write_all(w, &bytes).at(path))
}

/// Reads a checkpoint directory written by [`save_checkpoint`] (or any
/// directory with `config.json` + `model.safetensors`).
pub fn load_checkpoint<C: DeserializeOwned>(
    dir: &Path,
    device: &Device,
) -> Result<(C, HashMap<String, Tensor>)> {
    let cfg_path = dir.join(CONFIG_FILE);
    let config = crate::config::load_config(&cfg_path)?;
    let tensors = crate::formats::safetensors::load_all(&dir.join(WEIGHTS_FILE), device)?;
    Ok((config, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        hidden: usize,
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let mut t = HashMap::new();
        t.insert(
            "w".to_string(),
            Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap(),
        );
        t.insert("b".to_string(), Tensor::arange(0i64, 5, &dev).unwrap());
        t.insert(
            "h".to_string(),
            Tensor::randn(0f32, 1.0, 7, &dev)
                .unwrap()
                .to_dtype(DType::BF16)
                .unwrap(),
        );
        save_checkpoint(dir.path(), &Cfg { hidden: 4 }, &t).unwrap();
        let (cfg, back): (Cfg, _) = load_checkpoint(dir.path(), &dev).unwrap();
        assert_eq!(cfg, Cfg { hidden: 4 });
        assert_eq!(back.len(), 3);
        for (k, v) in &t {
            let b = &back[k];
            assert_eq!(b.dtype(), v.dtype());
            assert_eq!(b.dims(), v.dims());
            let diff = b
                .to_dtype(DType::F64)
                .unwrap()
                .sub(&v.to_dtype(DType::F64).unwrap())
                .unwrap();
            assert_eq!(
                diff.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap(),
                0.0
            );
        }
        let first = std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap();
        save_checkpoint(dir.path(), &Cfg { hidden: 4 }, &t).unwrap();
        assert_eq!(first, std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap());
    }

    #[test]
    fn missing_weights_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), r#"{"hidden": 2}"#).unwrap();
        let err = load_checkpoint::<Cfg>(dir.path(), &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains(WEIGHTS_FILE), "{err}");
    }
}
