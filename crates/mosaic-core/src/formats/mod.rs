//! Readers for the weight formats published checkpoints come in, all in
//! Rust: safetensors (single and sharded), PyTorch `.pth`/`.bin` (zip and
//! legacy pickle) and CTranslate2 `model.bin`; and NumPy `.npy` arrays
//! ([`npy`]), which sensor streams and embedding files use.
//!
//! Each reader gives the tensor table ([`TensorInfo`]: name, dtype, shape)
//! without loading data, and loads tensors into candle on request.

pub mod ct2;
pub mod npy;
pub mod pickle;
pub mod pth;
pub mod safetensors;

use std::fmt;
use std::io::Read;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::error::{Error, IoContext, Result};

/// Element type of a stored tensor, as the file records it. Wider than
/// candle's `DType`: files hold `bool` and `i8`, which candle lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageDType {
    /// 64-bit float.
    F64,
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 8-bit float (e4m3).
    F8E4M3,
    /// 64-bit signed integer.
    I64,
    /// 32-bit signed integer.
    I32,
    /// 16-bit signed integer.
    I16,
    /// 8-bit signed integer.
    I8,
    /// 8-bit unsigned integer.
    U8,
    /// 32-bit unsigned integer.
    U32,
    /// Boolean, one byte each.
    Bool,
}

impl StorageDType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StorageDType::F64 | StorageDType::I64 => 8,
            StorageDType::F32 | StorageDType::I32 | StorageDType::U32 => 4,
            StorageDType::F16 | StorageDType::BF16 | StorageDType::I16 => 2,
            StorageDType::I8 | StorageDType::U8 | StorageDType::Bool | StorageDType::F8E4M3 => 1,
        }
    }

    /// The candle dtype the tensor is loaded as. `bool` loads as `u8`
    /// (0/1) and `i8` as `i16`, since candle has neither; both are lossless.
    pub fn candle(self) -> DType {
        match self {
            StorageDType::F64 => DType::F64,
            StorageDType::F32 => DType::F32,
            StorageDType::F16 => DType::F16,
            StorageDType::BF16 => DType::BF16,
            StorageDType::F8E4M3 => DType::F8E4M3,
            StorageDType::I64 => DType::I64,
            StorageDType::I32 => DType::I32,
            StorageDType::I16 | StorageDType::I8 => DType::I16,
            StorageDType::U8 | StorageDType::Bool => DType::U8,
            StorageDType::U32 => DType::U32,
        }
    }
}

impl fmt::Display for StorageDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            StorageDType::F64 => "f64",
            StorageDType::F32 => "f32",
            StorageDType::F16 => "f16",
            StorageDType::BF16 => "bf16",
            StorageDType::F8E4M3 => "f8e4m3",
            StorageDType::I64 => "i64",
            StorageDType::I32 => "i32",
            StorageDType::I16 => "i16",
            StorageDType::I8 => "i8",
            StorageDType::U8 => "u8",
            StorageDType::U32 => "u32",
            StorageDType::Bool => "bool",
        };
        f.write_str(s)
    }
}

/// Name, dtype and shape of one stored tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    /// The tensor's name in the file (dotted path for nested pickles).
    pub name: String,
    /// Element type as stored.
    pub dtype: StorageDType,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }
}

/// The container format of a weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightFormat {
    /// Hugging Face safetensors.
    Safetensors,
    /// PyTorch `torch.save` zip archive (PyTorch ≥ 1.6 default).
    PytorchZip,
    /// PyTorch legacy (non-zip) pickle stream.
    PytorchLegacy,
    /// CTranslate2 `model.bin`.
    Ctranslate2,
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightFormat::Safetensors => "safetensors",
            WeightFormat::PytorchZip => "PyTorch zip",
            WeightFormat::PytorchLegacy => "PyTorch legacy pickle",
            WeightFormat::Ctranslate2 => "CTranslate2",
        })
    }
}

/// Tells a weight file's format from its first bytes (not its name: `.bin`
/// is used by both PyTorch and CTranslate2).
pub fn detect_format(path: &Path) -> Result<WeightFormat> {
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path).at(path)?;
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..]).at(path)?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") {
        return Ok(WeightFormat::PytorchZip);
    }
    // Safetensors before pickle: its u64 header length may well begin with
    // byte 0x80 (a 896-byte header does), which looks like PROTO.
    if head.len() >= 9
        && head[8] == b'{'
        && u64::from_le_bytes(head[..8].try_into().unwrap_or_default()) < 1 << 32
    {
        return Ok(WeightFormat::Safetensors);
    }
    // Pickle protocol 2 opens with PROTO 2; torch's legacy stream then pushes
    // its magic number as LONG1 with 10 bytes.
    if head.len() >= 2 && head[0] == 0x80 && head[1] <= 5 {
        return Ok(WeightFormat::PytorchLegacy);
    }
    if head.len() >= 6 {
        // CTranslate2: u32 version, then a u16-length spec name such as
        // "WhisperSpec". Recognised by the name so that a wrong version is
        // reported by the CTranslate2 reader rather than as "unknown format".
        let version = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let name_len = u16::from_le_bytes([head[4], head[5]]) as usize;
        let name = &head[6..head.len().min(6 + name_len)];
        let name_like = (2..=256).contains(&name_len)
            && !name.is_empty()
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == 0);
        if name_like
            || ((1..=ct2::MAX_BINARY_VERSION).contains(&version) && (2..=256).contains(&name_len))
        {
            return Ok(WeightFormat::Ctranslate2);
        }
    }
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        if ext == "safetensors" {
            return Ok(WeightFormat::Safetensors);
        }
    }
    Err(Error::format(
        path,
        "weight",
        format!(
            "unrecognised format (first bytes {:02x?}); expected safetensors, a PyTorch .pth/.bin or a CTranslate2 model.bin",
            head
        ),
    ))
}

/// Lists the tensors of any supported weight file.
pub fn read_tensor_infos(path: &Path) -> Result<(WeightFormat, Vec<TensorInfo>)> {
    let format = detect_format(path)?;
    let infos = match format {
        WeightFormat::Safetensors => safetensors::read_infos(path)?,
        WeightFormat::PytorchZip | WeightFormat::PytorchLegacy => pth::PthFile::open(path)?.infos(),
        WeightFormat::Ctranslate2 => ct2::Ct2File::open(path)?.infos(),
    };
    Ok((format, infos))
}

/// Loads every tensor of any supported weight file onto `device`.
pub fn load_tensors(path: &Path, device: &Device) -> Result<Vec<(String, Tensor)>> {
    match detect_format(path)? {
        WeightFormat::Safetensors => {
            let mut v: Vec<_> = safetensors::load_all(path, device)?.into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(v)
        }
        WeightFormat::PytorchZip | WeightFormat::PytorchLegacy => {
            pth::PthFile::open(path)?.load_all(device)
        }
        WeightFormat::Ctranslate2 => ct2::Ct2File::open(path)?.load_all(device),
    }
}

/// Builds a candle tensor from little-endian bytes of `dtype`, converting
/// the types candle lacks (bool → u8, i8 → i16).
pub(crate) fn tensor_from_le_bytes(
    bytes: &[u8],
    dtype: StorageDType,
    shape: &[usize],
    device: &Device,
) -> candle_core::Result<Tensor> {
    match dtype {
        StorageDType::Bool => {
            let v: Vec<u8> = bytes.iter().map(|&b| u8::from(b != 0)).collect();
            Tensor::from_vec(v, shape, device)
        }
        StorageDType::I8 => {
            let v: Vec<i16> = bytes.iter().map(|&b| b as i8 as i16).collect();
            Tensor::from_vec(v, shape, device)
        }
        StorageDType::F64 => Tensor::from_vec(le_vec::<f64>(bytes), shape, device),
        StorageDType::F32 => Tensor::from_vec(le_vec::<f32>(bytes), shape, device),
        StorageDType::F16 => Tensor::from_vec(le_vec::<half::f16>(bytes), shape, device),
        StorageDType::BF16 => Tensor::from_vec(le_vec::<half::bf16>(bytes), shape, device),
        StorageDType::I64 => Tensor::from_vec(le_vec::<i64>(bytes), shape, device),
        StorageDType::I32 => Tensor::from_vec(le_vec::<i32>(bytes), shape, device),
        StorageDType::I16 => Tensor::from_vec(le_vec::<i16>(bytes), shape, device),
        StorageDType::U32 => Tensor::from_vec(le_vec::<u32>(bytes), shape, device),
        StorageDType::U8 => Tensor::from_vec(bytes.to_vec(), shape, device),
        // Rare; candle's own conversion is fine here.
        StorageDType::F8E4M3 => Tensor::from_raw_buffer(bytes, DType::F8E4M3, shape, device),
    }
}

/// Copies little-endian bytes into a typed vector with one memcpy, whatever
/// the alignment of `bytes` (legacy `.pth` storages start at any offset).
/// candle's `from_raw_buffer` copies unaligned buffers twice.
fn le_vec<T: Copy>(bytes: &[u8]) -> Vec<T> {
    let n = bytes.len() / std::mem::size_of::<T>();
    let mut v: Vec<T> = Vec::with_capacity(n);
    // SAFETY: `v` has room for `n` elements = `n * size_of::<T>()` bytes, does
    // not overlap `bytes`, and every bit pattern is a valid value of the
    // plain numeric `T`s this is used with. This crate only targets
    // little-endian machines (as does candle's own loader).
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            v.as_mut_ptr().cast::<u8>(),
            n * std::mem::size_of::<T>(),
        );
        v.set_len(n);
    }
    v
}

#[cfg(test)]
mod detect_tests {
    use super::*;

    #[test]
    fn safetensors_whose_header_length_starts_like_a_pickle() {
        // A header of 0x380 bytes: the file opens with 0x80 0x03, which is
        // also pickle protocol 3's PROTO opcode.
        let mut header = br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.to_vec();
        header.resize(0x380, b' ');
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&1f32.to_le_bytes());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(detect_format(&p).unwrap(), WeightFormat::Safetensors);
        let t = load_tensors(&p, &Device::Cpu).unwrap();
        assert_eq!(t[0].1.to_vec1::<f32>().unwrap(), vec![1.0]);
    }
}
