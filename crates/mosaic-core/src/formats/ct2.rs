//! CTranslate2 `model.bin` reader.
//!
//! No crate reads this format, so Mosaic parses it itself. Layout (all
//! little-endian): `u32` binary version, spec name (`u16` length incl. the
//! trailing NUL, bytes), `u32` spec revision, `u32` variable count; per
//! variable: name (same string encoding), `u8` rank, `u32` × rank dims,
//! `u8` dtype, `u32` byte count, raw data; then `u32` alias count and per
//! alias two strings (alias, target).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::{StorageDType, TensorInfo};
use crate::error::{Error, IoContext, Result};

const FORMAT: &str = "CTranslate2";
/// The newest binary version this reader understands (CTranslate2 ≥ 3 writes 6).
pub const MAX_BINARY_VERSION: u32 = 6;
const MIN_BINARY_VERSION: u32 = 5;

/// One variable's place in the file.
#[derive(Debug, Clone)]
struct Variable {
    info: TensorInfo,
    offset: usize,
    len: usize,
}

/// An opened CTranslate2 model file.
pub struct Ct2File {
    path: PathBuf,
    map: memmap2::Mmap,
    /// The model specification, e.g. `WhisperSpec`.
    pub spec_name: String,
    /// The specification's revision.
    pub spec_revision: u32,
    /// The binary format version.
    pub binary_version: u32,
    variables: Vec<Variable>,
    /// Alias → target variable name (e.g. a tied output projection).
    pub aliases: BTreeMap<String, String>,
}

struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.bytes.len() - self.pos < n {
            return Err(Error::format(
                self.path,
                FORMAT,
                format!(
                    "truncated: {what} at byte {} needs {n} bytes, {} left",
                    self.pos,
                    self.bytes.len() - self.pos
                ),
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u16(what)? as usize;
        let at = self.pos;
        let raw = self.take(n, what)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(raw.to_vec()).map_err(|_| {
            Error::format(
                self.path,
                FORMAT,
                format!("{what} at byte {at} is not UTF-8"),
            )
        })
    }
}

fn dtype(code: u8) -> Option<StorageDType> {
    // ctranslate2/types.h: enum class DataType { FLOAT32, INT8, INT16, INT32, FLOAT16, BFLOAT16 }
    Some(match code {
        0 => StorageDType::F32,
        1 => StorageDType::I8,
        2 => StorageDType::I16,
        3 => StorageDType::I32,
        4 => StorageDType::F16,
        5 => StorageDType::BF16,
        _ => return None,
    })
}

impl Ct2File {
    /// Opens and indexes `path`; no tensor data is copied.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).at(path)?;
        // SAFETY: read-only map; the file must not change while open.
        let map = unsafe { memmap2::Mmap::map(&file) }.at(path)?;
        let mut c = Cursor {
            path,
            bytes: &map,
            pos: 0,
        };
        let binary_version = c.u32("binary version")?;
        if !(MIN_BINARY_VERSION..=MAX_BINARY_VERSION).contains(&binary_version) {
            return Err(Error::format(
                path,
                FORMAT,
                format!(
                    "unsupported binary version {binary_version} (this reader handles {MIN_BINARY_VERSION}..={MAX_BINARY_VERSION}); is this a CTranslate2 model.bin?"
                ),
            ));
        }
        let spec_name = c.string("spec name (magic)")?;
        if spec_name.is_empty()
            || !spec_name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            return Err(Error::format(
                path,
                FORMAT,
                format!("bad spec name {spec_name:?} (bad magic)"),
            ));
        }
        let spec_revision = c.u32("spec revision")?;
        let count = c.u32("variable count")? as usize;
        let mut variables = Vec::with_capacity(count.min(100_000));
        for i in 0..count {
            let name = c.string(&format!("name of variable {i}"))?;
            let rank = c.u8(&format!("rank of `{name}`"))? as usize;
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(c.u32(&format!("dims of `{name}`"))? as usize);
            }
            let code = c.u8(&format!("dtype of `{name}`"))?;
            let dt = dtype(code).ok_or_else(|| {
                Error::format(
                    path,
                    FORMAT,
                    format!("variable `{name}` has unknown dtype code {code}"),
                )
            })?;
            let len = c.u32(&format!("byte count of `{name}`"))? as usize;
            let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            if numel.and_then(|n| n.checked_mul(dt.size())) != Some(len) {
                return Err(Error::format(
                    path,
                    FORMAT,
                    format!("variable `{name}`: {len} bytes do not hold shape {shape:?} of {dt}"),
                ));
            }
            let offset = c.pos;
            c.take(len, &format!("data of `{name}`"))?;
            variables.push(Variable {
                info: TensorInfo {
                    name,
                    dtype: dt,
                    shape,
                },
                offset,
                len,
            });
        }
        let mut aliases = BTreeMap::new();
        if c.pos < c.bytes.len() {
            let n = c.u32("alias count")?;
            for _ in 0..n {
                let alias = c.string("alias name")?;
                let target = c.string("alias target")?;
                aliases.insert(alias, target);
            }
        }
        if c.pos != c.bytes.len() {
            return Err(Error::format(
                path,
                FORMAT,
                format!("{} unexpected trailing bytes", c.bytes.len() - c.pos),
            ));
        }
        Ok(Ct2File {
            path: path.to_path_buf(),
            map,
            spec_name,
            spec_revision,
            binary_version,
            variables,
            aliases,
        })
    }

    /// The stored variables (aliases excluded: they share data).
    pub fn infos(&self) -> Vec<TensorInfo> {
        self.variables.iter().map(|v| v.info.clone()).collect()
    }

    /// Loads one variable (or alias) by name.
    pub fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        let target = self.aliases.get(name).map(String::as_str).unwrap_or(name);
        let v = self
            .variables
            .iter()
            .find(|v| v.info.name == target)
            .ok_or_else(|| Error::format(&self.path, FORMAT, format!("no variable `{name}`")))?;
        let bytes = &self.map[v.offset..v.offset + v.len];
        super::tensor_from_le_bytes(bytes, v.info.dtype, &v.info.shape, device)
            .map_err(|e| Error::tensor(format!("{}: loading `{name}`", self.path.display()), e))
    }

    /// Loads every stored variable, in file order.
    pub fn load_all(&self, device: &Device) -> Result<Vec<(String, Tensor)>> {
        self.variables
            .iter()
            .map(|v| Ok((v.info.name.clone(), self.load(&v.info.name, device)?)))
            .collect()
    }
}

/// Writes a CTranslate2 file (used by tests and converters).
pub fn write(
    path: &Path,
    spec_name: &str,
    revision: u32,
    vars: &[(&str, StorageDType, &[usize], &[u8])],
    aliases: &[(&str, &str)],
) -> Result<()> {
    fn s(out: &mut Vec<u8>, v: &str) {
        out.extend_from_slice(&((v.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    let code = |d: StorageDType| match d {
        StorageDType::F32 => Ok(0u8),
        StorageDType::I8 => Ok(1),
        StorageDType::I16 => Ok(2),
        StorageDType::I32 => Ok(3),
        StorageDType::F16 => Ok(4),
        StorageDType::BF16 => Ok(5),
        other => Err(Error::format(
            path,
            FORMAT,
            format!("cannot store dtype {other}"),
        )),
    };
    let mut out = Vec::new();
    out.extend_from_slice(&MAX_BINARY_VERSION.to_le_bytes());
    s(&mut out, spec_name);
    out.extend_from_slice(&revision.to_le_bytes());
    out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
    for (name, dt, shape, data) in vars {
        s(&mut out, name);
        out.push(shape.len() as u8);
        for d in *shape {
            out.extend_from_slice(&(*d as u32).to_le_bytes());
        }
        out.push(code(*dt)?);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out.extend_from_slice(&(aliases.len() as u32).to_le_bytes());
    for (a, t) in aliases {
        s(&mut out, a);
        s(&mut out, t);
    }
    crate::atomic::write_bytes_atomic(path, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> PathBuf {
        let p = dir.join("model.bin");
        let w: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let h: Vec<u8> = [half::f16::from_f32(0.5), half::f16::from_f32(-1.0)]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        write(
            &p,
            "WhisperSpec",
            3,
            &[
                ("enc/w", StorageDType::F32, &[2, 3], &w),
                ("flag", StorageDType::I8, &[], &[0xff]),
                ("dec/h", StorageDType::F16, &[2], &h),
            ],
            &[("dec/proj", "enc/w")],
        )
        .unwrap();
        p
    }

    #[test]
    fn reads_variables_and_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let f = Ct2File::open(&sample(dir.path())).unwrap();
        assert_eq!(f.spec_name, "WhisperSpec");
        assert_eq!(f.spec_revision, 3);
        let infos = f.infos();
        assert_eq!(infos.len(), 3);
        assert_eq!(infos[0].shape, vec![2, 3]);
        let dev = Device::Cpu;
        let w = f.load("dec/proj", &dev).unwrap();
        assert_eq!(
            w.to_vec2::<f32>().unwrap(),
            vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]
        );
        assert_eq!(
            f.load("flag", &dev).unwrap().to_scalar::<i16>().unwrap(),
            -1
        );
        let h = f
            .load("dec/h", &dev)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap();
        assert_eq!(h.to_vec1::<f32>().unwrap(), vec![0.5, -1.0]);
    }

    #[test]
    fn wrong_version_and_truncation_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        let mut bytes = std::fs::read(&p).unwrap();
        let good = bytes.clone();
        bytes[0] = 9;
        std::fs::write(&p, &bytes).unwrap();
        let err = Ct2File::open(&p).err().unwrap().to_string();
        assert!(
            err.contains("model.bin") && err.contains("binary version 9"),
            "{err}"
        );
        std::fs::write(&p, &good[..good.len() - 30]).unwrap();
        let err = Ct2File::open(&p).err().unwrap().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
