//! What is in a checkpoint: tensors, dtypes, shapes, parameter totals and the
//! config, for any supported file or a Hugging Face model directory.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::formats::{self, TensorInfo, WeightFormat};

/// One weight file's tensor table.
#[derive(Debug, Clone, Serialize)]
pub struct InspectedFile {
    /// The file.
    pub path: PathBuf,
    /// Its container format.
    pub format: WeightFormat,
    /// Extra facts of the format (CTranslate2 spec name and revision, ...).
    pub notes: Vec<String>,
    /// Its tensors.
    pub tensors: Vec<TensorInfo>,
}

/// The result of [`inspect`].
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// What was inspected (a file or a directory).
    pub path: PathBuf,
    /// The weight files read.
    pub files: Vec<InspectedFile>,
    /// `config.json` beside the weights, if there is one.
    pub config: Option<serde_json::Value>,
    /// Sum of the element counts of every tensor in every file.
    pub total_params: u64,
    /// Number of tensors over all files.
    pub total_tensors: usize,
}

/// Reads one weight file's table.
pub fn inspect_file(path: &Path) -> Result<InspectedFile> {
    let format = formats::detect_format(path)?;
    let (tensors, notes) = match format {
        WeightFormat::Ctranslate2 => {
            let f = formats::ct2::Ct2File::open(path)?;
            let mut notes = vec![
                format!("spec {} revision {}", f.spec_name, f.spec_revision),
                format!("binary version {}", f.binary_version),
            ];
            for (alias, target) in &f.aliases {
                notes.push(format!("alias {alias} -> {target}"));
            }
            (f.infos(), notes)
        }
        _ => (formats::read_tensor_infos(path)?.1, Vec::new()),
    };
    Ok(InspectedFile {
        path: path.to_path_buf(),
        format,
        notes,
        tensors,
    })
}

/// The weight files of a model directory, in the order Hugging Face
/// `transformers` prefers them: a sharded safetensors index, safetensors
/// files, then PyTorch / CTranslate2 files.
pub fn weight_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return formats::safetensors::shard_files(&index);
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let with_ext = |exts: &[&str]| -> Vec<PathBuf> {
        entries
            .iter()
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| exts.contains(&e))
            })
            .cloned()
            .collect()
    };
    let st = with_ext(&["safetensors"]);
    if !st.is_empty() {
        return Ok(st);
    }
    let other = with_ext(&["bin", "pth", "pt", "ckpt"]);
    if !other.is_empty() {
        return Ok(other);
    }
    Err(Error::format(
        dir,
        "model directory",
        "no weight files (expected *.safetensors, model.safetensors.index.json, *.bin, *.pth or *.pt)",
    ))
}

/// Inspects a weight file or a model directory.
pub fn inspect(path: &Path) -> Result<Inspection> {
    let meta = std::fs::metadata(path).at(path)?;
    let (files, config_path) = if meta.is_dir() {
        (weight_files_in(path)?, path.join("config.json"))
    } else {
        let dir = path.parent().unwrap_or(Path::new("."));
        (vec![path.to_path_buf()], dir.join("config.json"))
    };
    let files = files
        .iter()
        .map(|f| inspect_file(f))
        .collect::<Result<Vec<_>>>()?;
    let config = if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path).at(&config_path)?;
        Some(serde_json::from_str(&text).map_err(|e| Error::Config {
            path: config_path.clone(),
            message: format!("not valid JSON: {e}"),
        })?)
    } else {
        None
    };
    let total_params = files
        .iter()
        .flat_map(|f| &f.tensors)
        .map(TensorInfo::numel)
        .sum();
    let total_tensors = files.iter().map(|f| f.tensors.len()).sum();
    Ok(Inspection {
        path: path.to_path_buf(),
        files,
        config,
        total_params,
        total_tensors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};
    use std::collections::HashMap;

    #[test]
    fn model_dir_with_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = HashMap::new();
        t.insert(
            "w".to_string(),
            Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap(),
        );
        t.insert(
            "b".to_string(),
            Tensor::zeros(4, DType::F16, &Device::Cpu).unwrap(),
        );
        crate::checkpoint::save_checkpoint(dir.path(), &serde_json::json!({"hidden_size": 4}), &t)
            .unwrap();
        let ins = inspect(dir.path()).unwrap();
        assert_eq!(ins.total_params, 16);
        assert_eq!(ins.total_tensors, 2);
        assert_eq!(ins.config.unwrap()["hidden_size"], 4);
        let empty = tempfile::tempdir().unwrap();
        let err = inspect(empty.path()).unwrap_err().to_string();
        assert!(err.contains("no weight files"), "{err}");
    }
}
