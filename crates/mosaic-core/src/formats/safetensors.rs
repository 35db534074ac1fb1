//! safetensors files, single and sharded (`*.safetensors.index.json`),
//! memory-mapped.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ::safetensors::{Dtype, SafeTensors};
use candle_core::{Device, Tensor};

use super::{StorageDType, TensorInfo};
use crate::error::{Error, IoContext, Result};

const FORMAT: &str = "safetensors";

fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    if len < 8 {
        return Err(Error::format(
            path,
            FORMAT,
            format!("file is {len} bytes, shorter than the 8-byte header length"),
        ));
    }
    // SAFETY: the map is read-only; like every mmap reader (candle, the
    // safetensors Python package) we rely on the file not being modified
    // while it is open.
    unsafe { memmap2::Mmap::map(&file) }.at(path)
}

fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| {
        let detail = match e {
            ::safetensors::SafeTensorError::MetadataIncompleteBuffer => {
                "the file is truncated: the header points past its end".to_string()
            }
            ::safetensors::SafeTensorError::InvalidHeaderLength => {
                "the header length exceeds the file (truncated or not safetensors)".to_string()
            }
            other => other.to_string(),
        };
        Error::format(path, FORMAT, detail)
    })
}

fn dtype(path: &Path, name: &str, d: Dtype) -> Result<StorageDType> {
    Ok(match d {
        Dtype::BOOL => StorageDType::Bool,
        Dtype::U8 => StorageDType::U8,
        Dtype::I8 => StorageDType::I8,
        Dtype::I16 => StorageDType::I16,
        Dtype::I32 => StorageDType::I32,
        Dtype::U32 => StorageDType::U32,
        Dtype::I64 => StorageDType::I64,
        Dtype::F16 => StorageDType::F16,
        Dtype::BF16 => StorageDType::BF16,
        Dtype::F32 => StorageDType::F32,
        Dtype::F64 => StorageDType::F64,
        Dtype::F8_E4M3 => StorageDType::F8E4M3,
        other => {
            return Err(Error::format(
                path,
                FORMAT,
                format!("tensor `{name}` has unsupported dtype {other:?}"),
            ));
        }
    })
}

/// Lists the tensors of one safetensors file, sorted by name.
pub fn read_infos(path: &Path) -> Result<Vec<TensorInfo>> {
    let map = map_file(path)?;
    let st = parse(path, &map)?;
    let mut infos = Vec::new();
    for (name, view) in st.tensors() {
        infos.push(TensorInfo {
            dtype: dtype(path, &name, view.dtype())?,
            shape: view.shape().to_vec(),
            name,
        });
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(infos)
}

/// Loads every tensor of one safetensors file.
pub fn load_all(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let map = map_file(path)?;
    let st = parse(path, &map)?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let dt = dtype(path, &name, view.dtype())?;
        let t = super::tensor_from_le_bytes(view.data(), dt, view.shape(), device)
            .map_err(|e| Error::tensor(format!("{}: loading `{name}`", path.display()), e))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// The shard files of a sharded checkpoint, from its index JSON
/// (`{"weight_map": {"tensor": "model-00001-of-00002.safetensors", ...}}`),
/// in a stable order.
pub fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).at(index)?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(index, "safetensors index", e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::format(index, "safetensors index", "missing object `weight_map`"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files = BTreeMap::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            Error::format(
                index,
                "safetensors index",
                format!("`weight_map.{tensor}` is not a file name"),
            )
        })?;
        if file.contains("..") || Path::new(file).is_absolute() {
            return Err(Error::format(
                index,
                "safetensors index",
                format!("shard `{file}` leaves the model directory"),
            ));
        }
        files.insert(file.to_string(), dir.join(file));
    }
    Ok(files.into_values().collect())
}

/// Lists the tensors of a sharded checkpoint. Every shard must exist and
/// every tensor named in the index must be in its shard.
pub fn read_sharded_infos(index: &Path) -> Result<Vec<TensorInfo>> {
    let mut infos = Vec::new();
    for shard in shard_files(index)? {
        infos.extend(read_infos(&shard)?);
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(infos)
}

/// Loads every tensor of a sharded checkpoint.
pub fn load_sharded(index: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for shard in shard_files(index)? {
        out.extend(load_all(&shard, device)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::save_safetensors;

    fn sample_file(dir: &Path) -> PathBuf {
        let dev = Device::Cpu;
        let mut t = HashMap::new();
        t.insert(
            "a.weight".to_string(),
            Tensor::ones((2, 3), candle_core::DType::F32, &dev).unwrap(),
        );
        t.insert("b".to_string(), Tensor::arange(0u8, 4, &dev).unwrap());
        let p = dir.join("m.safetensors");
        save_safetensors(&p, &t).unwrap();
        p
    }

    #[test]
    fn lists_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample_file(dir.path());
        let infos = read_infos(&p).unwrap();
        assert_eq!(infos[0].name, "a.weight");
        assert_eq!(infos[0].shape, vec![2, 3]);
        assert_eq!(infos[1].dtype, StorageDType::U8);
        let all = load_all(&p, &Device::Cpu).unwrap();
        assert_eq!(all["b"].to_vec1::<u8>().unwrap(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn truncated_file_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample_file(dir.path());
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let err = read_infos(&p).unwrap_err().to_string();
        assert!(
            err.contains("m.safetensors") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(&p, &bytes[..4]).unwrap();
        let err = read_infos(&p).unwrap_err().to_string();
        assert!(err.contains("4 bytes"), "{err}");
        std::fs::write(&p, &bytes[..20]).unwrap();
        assert!(read_infos(&p).is_err());
    }

    #[test]
    fn sharded_index_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        for (i, name) in ["x", "y"].iter().enumerate() {
            let mut t = HashMap::new();
            t.insert(
                name.to_string(),
                Tensor::zeros(3, candle_core::DType::F32, &dev).unwrap(),
            );
            save_safetensors(
                &dir.path()
                    .join(format!("model-0000{}-of-00002.safetensors", i + 1)),
                &t,
            )
            .unwrap();
        }
        let idx = dir.path().join("model.safetensors.index.json");
        std::fs::write(
            &idx,
            r#"{"metadata":{},"weight_map":{"x":"model-00001-of-00002.safetensors","y":"model-00002-of-00002.safetensors"}}"#,
        )
        .unwrap();
        let infos = read_sharded_infos(&idx).unwrap();
        assert_eq!(
            infos.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            vec!["x", "y"]
        );
        assert_eq!(load_sharded(&idx, &dev).unwrap().len(), 2);
        std::fs::write(&idx, r#"{"weight_map":{"x":"../evil.safetensors"}}"#).unwrap();
        assert!(
            read_sharded_infos(&idx)
                .unwrap_err()
                .to_string()
                .contains("leaves")
        );
    }
}
