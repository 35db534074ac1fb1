//! PyTorch checkpoint files (`torch.save`): the zip archive format (default
//! since PyTorch 1.6) and the legacy non-zip stream, read without Python.
//!
//! A checkpoint is a pickle whose tensors point at storages by persistent id.
//! Zip: `<root>/data.pkl` plus one entry `<root>/data/<key>` per storage.
//! Legacy: four consecutive pickles (magic number, protocol version, system
//! info, the object), a pickle listing storage keys, then per storage an
//! `i64` element count followed by the raw little-endian data.
//!
//! Nested objects are flattened to dotted names (`state_dict.fc.weight`);
//! non-contiguous tensors (views with strides and offsets) are materialised
//! in row-major order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::pickle::{Unpickler, Value};
use super::{StorageDType, TensorInfo, WeightFormat};
use crate::error::{Error, IoContext, Result};

const FORMAT: &str = "PyTorch";
/// `torch.serialization.MAGIC_NUMBER`, the first pickle of a legacy file.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// One tensor: where its elements are in which storage.
#[derive(Debug, Clone)]
struct PthTensor {
    info: TensorInfo,
    storage: String,
    /// Offset into the storage, in elements.
    offset: usize,
    /// Strides, in elements.
    stride: Vec<usize>,
}

/// Where one storage's bytes are.
enum StorageData {
    /// A byte range of the mapped file (legacy data, uncompressed zip entries).
    Span { start: usize, len: usize },
    /// A compressed zip entry, inflated when the file was opened.
    Owned(Vec<u8>),
}

/// An opened PyTorch checkpoint.
pub struct PthFile {
    path: PathBuf,
    bytes: memmap2::Mmap,
    /// Zip or legacy.
    pub format: WeightFormat,
    tensors: Vec<PthTensor>,
    /// Storage key → its bytes.
    storages: HashMap<String, StorageData>,
}

fn ferr(path: &Path, message: impl Into<String>) -> Error {
    Error::format(path, FORMAT, message)
}

fn storage_dtype(name: &str) -> Option<StorageDType> {
    Some(match name {
        "FloatStorage" => StorageDType::F32,
        "DoubleStorage" => StorageDType::F64,
        "HalfStorage" => StorageDType::F16,
        "BFloat16Storage" => StorageDType::BF16,
        "LongStorage" => StorageDType::I64,
        "IntStorage" => StorageDType::I32,
        "ShortStorage" => StorageDType::I16,
        "CharStorage" => StorageDType::I8,
        "ByteStorage" => StorageDType::U8,
        "BoolStorage" => StorageDType::Bool,
        _ => return None,
    })
}

/// What a persistent id says about a storage.
struct StorageRef {
    key: String,
    dtype: StorageDType,
    /// Legacy views: (root key, offset in elements into the root).
    view_of: Option<(String, usize)>,
}

/// Walks the unpickled object and collects its tensors.
struct Collector<'a> {
    path: &'a Path,
    tensors: Vec<PthTensor>,
    /// Storage key → dtype, for the legacy data section.
    storage_dtypes: HashMap<String, StorageDType>,
}

fn key_string(k: &Value) -> Option<String> {
    match k {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn join(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

fn usizes(v: &Value) -> Option<Vec<usize>> {
    v.as_seq()?
        .iter()
        .map(|x| x.as_int().and_then(|i| usize::try_from(i).ok()))
        .collect()
}

impl Collector<'_> {
    fn walk(&mut self, v: &Value, prefix: &str) -> Result<()> {
        match v {
            Value::Dict(items) => {
                for (k, val) in items {
                    if let Some(k) = key_string(k) {
                        self.walk(val, &join(prefix, &k))?;
                    }
                }
            }
            Value::List(items) | Value::Tuple(items) => {
                for (i, val) in items.iter().enumerate() {
                    self.walk(val, &join(prefix, &i.to_string()))?;
                }
            }
            Value::Reduce { callable, args } => self.reduce(callable, args, prefix)?,
            Value::Build { obj, state } => {
                // A whole pickled `nn.Module`: its state holds `_parameters`,
                // `_buffers` and `_modules`; name them like `state_dict()` does.
                if let Value::Dict(items) = state.as_ref() {
                    let module_like = items.iter().any(|(k, _)| {
                        k.as_str() == Some("_modules") || k.as_str() == Some("_parameters")
                    });
                    if module_like {
                        for (k, val) in items {
                            match k.as_str() {
                                Some("_parameters") | Some("_buffers") | Some("_modules") => {
                                    self.walk(val, prefix)?
                                }
                                _ => {}
                            }
                        }
                        return Ok(());
                    }
                }
                self.walk(obj, prefix)?;
                self.walk(state, prefix)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn reduce(&mut self, callable: &Value, args: &Value, prefix: &str) -> Result<()> {
        let Value::Global { module, name } = callable else {
            return Ok(());
        };
        let args = args.as_seq().unwrap_or(&[]);
        match (module.as_str(), name.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                self.tensor(args, prefix)
            }
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => match args.first() {
                Some(data) => self.walk(data, prefix),
                None => Err(ferr(
                    self.path,
                    format!("`{prefix}`: parameter without data"),
                )),
            },
            ("torch._tensor", "_rebuild_from_type_v2") => match (args.first(), args.get(2)) {
                (Some(func), Some(inner)) => self.reduce(func, inner, prefix),
                _ => Err(ferr(
                    self.path,
                    format!("`{prefix}`: malformed _rebuild_from_type_v2"),
                )),
            },
            _ => Ok(()),
        }
    }

    fn storage_ref(&self, v: &Value, prefix: &str) -> Result<StorageRef> {
        let bad = |m: &str| ferr(self.path, format!("tensor `{prefix}`: {m}"));
        let Value::Persistent(pid) = v else {
            return Err(bad("storage is not a persistent reference"));
        };
        let items = pid
            .as_seq()
            .ok_or_else(|| bad("storage id is not a tuple"))?;
        if items.first().and_then(Value::as_str) != Some("storage") || items.len() < 5 {
            return Err(bad(
                "storage id is not ('storage', type, key, location, size)",
            ));
        }
        let dtype = match &items[1] {
            Value::Global { name, .. } => storage_dtype(name)
                .ok_or_else(|| bad(&format!("unsupported storage type `{name}`")))?,
            _ => return Err(bad("storage type is not a class")),
        };
        let key = key_string(&items[2]).ok_or_else(|| bad("storage key is not a string"))?;
        // Legacy views carry (view_key, offset, size): the data is the root
        // storage's, starting `offset` elements in.
        if let Some(Value::Tuple(view)) = items.get(5) {
            if view.len() == 3 {
                let view_key = key_string(&view[0]).ok_or_else(|| bad("bad view key"))?;
                let off = view[1]
                    .as_int()
                    .and_then(|i| usize::try_from(i).ok())
                    .ok_or_else(|| bad("bad view offset"))?;
                return Ok(StorageRef {
                    key: view_key,
                    dtype,
                    view_of: Some((key, off)),
                });
            }
        }
        Ok(StorageRef {
            key,
            dtype,
            view_of: None,
        })
    }

    fn tensor(&mut self, args: &[Value], prefix: &str) -> Result<()> {
        if args.len() < 4 {
            return Err(ferr(
                self.path,
                format!(
                    "tensor `{prefix}`: rebuild call has {} arguments, expected at least 4",
                    args.len()
                ),
            ));
        }
        let sref = self.storage_ref(&args[0], prefix)?;
        let bad = |m: &str| ferr(self.path, format!("tensor `{prefix}`: {m}"));
        let offset = args[1]
            .as_int()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| bad("bad storage offset"))?;
        let shape = usizes(&args[2]).ok_or_else(|| bad("bad shape"))?;
        let stride = usizes(&args[3]).ok_or_else(|| bad("bad stride"))?;
        if stride.len() != shape.len() {
            return Err(bad(&format!(
                "shape {shape:?} and stride {stride:?} differ in rank"
            )));
        }
        let (storage, offset) = match &sref.view_of {
            Some((root, view_off)) => (root.clone(), offset + view_off),
            None => (sref.key.clone(), offset),
        };
        if let Some(prev) = self.storage_dtypes.insert(storage.clone(), sref.dtype) {
            if prev != sref.dtype {
                return Err(bad(&format!(
                    "storage `{storage}` used as both {prev} and {}",
                    sref.dtype
                )));
            }
        }
        self.tensors.push(PthTensor {
            info: TensorInfo {
                name: prefix.to_string(),
                dtype: sref.dtype,
                shape,
            },
            storage,
            offset,
            stride,
        });
        Ok(())
    }
}

/// Copies a strided view into row-major order: an odometer over the outer
/// dimensions and a tight loop over the innermost one, moving `N`-byte
/// elements. Bounds were checked by the caller (`last` element < storage).
fn gather<const N: usize>(
    storage: &[u8],
    out: &mut [u8],
    shape: &[usize],
    stride: &[usize],
    offset: usize,
) {
    let rank = shape.len();
    let (inner_len, inner_stride) = (shape[rank - 1], stride[rank - 1]);
    let outer = &shape[..rank - 1];
    let mut idx = vec![0usize; outer.len()];
    let mut base = offset;
    for row in out.chunks_exact_mut(inner_len * N) {
        for (k, dst) in row.chunks_exact_mut(N).enumerate() {
            let at = (base + k * inner_stride) * N;
            dst.copy_from_slice(&storage[at..at + N]);
        }
        for d in (0..outer.len()).rev() {
            idx[d] += 1;
            base += stride[d];
            if idx[d] < outer[d] {
                break;
            }
            base -= stride[d] * idx[d];
            idx[d] = 0;
        }
    }
}

impl PthFile {
    /// Opens `path` (zip or legacy), reading the object pickle and indexing
    /// storages; tensor data is read only on load.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).at(path)?;
        // SAFETY: read-only map; the file must not change while open.
        let bytes = unsafe { memmap2::Mmap::map(&file) }.at(path)?;
        if bytes.starts_with(b"PK\x03\x04") {
            Self::open_zip(path, bytes)
        } else {
            Self::open_legacy(path, bytes)
        }
    }

    fn collect<'p>(path: &'p Path, obj: &Value) -> Result<Collector<'p>> {
        let mut c = Collector {
            path,
            tensors: Vec::new(),
            storage_dtypes: HashMap::new(),
        };
        c.walk(obj, "")?;
        Ok(c)
    }

    fn open_zip(path: &Path, bytes: memmap2::Mmap) -> Result<Self> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&bytes[..]))
            .map_err(|e| ferr(path, format!("bad zip archive: {e}")))?;
        let names: Vec<String> = zip
            .file_names()
            .map(|n| n.map(|n| n.into_owned()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| ferr(path, format!("bad zip archive: {e}")))?;
        let pkl = names
            .iter()
            .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .cloned()
            .ok_or_else(|| {
                ferr(
                    path,
                    "zip archive has no `<root>/data.pkl`; not a torch.save file",
                )
            })?;
        let root = pkl.trim_end_matches("data.pkl").to_string();
        let mut pickle = Vec::new();
        zip.by_name(&pkl)
            .map_err(|e| ferr(path, format!("{pkl}: {e}")))?
            .read_to_end(&mut pickle)
            .map_err(|e| ferr(path, format!("{pkl}: {e}")))?;
        let obj = Unpickler::new(&pickle, 0)
            .load()
            .map_err(|e| ferr(path, format!("{pkl}: {e}")))?;
        let c = Self::collect(path, &obj)?;
        // torch.save stores entries uncompressed: point into the map rather
        // than copying; inflate only what another zip writer compressed.
        let mut storages = HashMap::new();
        for key in c.storage_dtypes.keys() {
            let entry = format!("{root}data/{key}");
            let mut f = zip.by_name(&entry).map_err(|e| {
                ferr(
                    path,
                    format!("storage `{key}` is missing (no entry `{entry}`): {e}"),
                )
            })?;
            let len = f.size() as usize;
            let span = f.data_start().map(|s| s as usize).filter(|&start| {
                f.compression() == zip::CompressionMethod::Stored
                    && !f.encrypted()
                    && start.checked_add(len).is_some_and(|end| end <= bytes.len())
            });
            let data = match span {
                Some(start) => StorageData::Span { start, len },
                None => {
                    let mut out = Vec::with_capacity(len.min(bytes.len()));
                    f.read_to_end(&mut out)
                        .map_err(|e| ferr(path, format!("{entry}: {e}")))?;
                    StorageData::Owned(out)
                }
            };
            storages.insert(key.clone(), data);
        }
        let tensors = c.tensors;
        drop(zip);
        Ok(PthFile {
            path: path.to_path_buf(),
            bytes,
            format: WeightFormat::PytorchZip,
            tensors,
            storages,
        })
    }

    fn open_legacy(path: &Path, bytes: memmap2::Mmap) -> Result<Self> {
        let mut pos = 0usize;
        let mut next = |what: &str| -> Result<Value> {
            let mut u = Unpickler::new(&bytes[pos..], pos);
            let v = u.load().map_err(|e| ferr(path, format!("{what}: {e}")))?;
            pos += u.position();
            Ok(v)
        };
        match next("magic number")? {
            Value::BigInt(b) if b == LEGACY_MAGIC => {}
            other => {
                return Err(ferr(
                    path,
                    format!("not a torch.save file: bad magic number {other:?}"),
                ));
            }
        }
        let protocol = next("protocol version")?;
        if protocol.as_int() != Some(1001) {
            return Err(ferr(
                path,
                format!("unsupported legacy protocol version {protocol:?} (expected 1001)"),
            ));
        }
        let sys_info = next("system info")?;
        if let Value::Dict(items) = &sys_info {
            let little = items
                .iter()
                .find(|(k, _)| k.as_str() == Some("little_endian"))
                .map(|(_, v)| v);
            if little == Some(&Value::Bool(false)) {
                return Err(ferr(path, "big-endian checkpoints are not supported"));
            }
        }
        let obj = next("object")?;
        let keys = next("storage keys")?;
        let c = Self::collect(path, &obj)?;
        let keys: Vec<String> = keys
            .as_seq()
            .ok_or_else(|| ferr(path, "storage key list is not a list"))?
            .iter()
            .map(|k| key_string(k).ok_or_else(|| ferr(path, "storage key is not a string")))
            .collect::<Result<_>>()?;
        let mut spans = HashMap::new();
        for key in keys {
            let dtype = *c.storage_dtypes.get(&key).ok_or_else(|| {
                ferr(
                    path,
                    format!("storage `{key}` has data but no tensor names its type"),
                )
            })?;
            if bytes.len() - pos < 8 {
                return Err(ferr(
                    path,
                    format!("truncated: storage `{key}` header at byte {pos}"),
                ));
            }
            let numel = u64::from_le_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
            let start = pos + 8;
            let len = numel.checked_mul(dtype.size() as u64).filter(|&l| l <= (bytes.len() - start) as u64).ok_or_else(|| {
                ferr(path, format!("truncated: storage `{key}` declares {numel} elements of {dtype} at byte {start}, past the end of the file"))
            })? as usize;
            spans.insert(key, StorageData::Span { start, len });
            pos = start + len;
        }
        for key in c.storage_dtypes.keys() {
            if !spans.contains_key(key) {
                return Err(ferr(
                    path,
                    format!("storage `{key}` is referenced but has no data"),
                ));
            }
        }
        Ok(PthFile {
            path: path.to_path_buf(),
            bytes,
            format: WeightFormat::PytorchLegacy,
            tensors: c.tensors,
            storages: spans,
        })
    }

    /// The tensors, in the order the file lists them.
    pub fn infos(&self) -> Vec<TensorInfo> {
        self.tensors.iter().map(|t| t.info.clone()).collect()
    }

    fn storage_bytes(&self, key: &str) -> &[u8] {
        match &self.storages[key] {
            StorageData::Span { start, len } => &self.bytes[*start..*start + *len],
            StorageData::Owned(v) => v,
        }
    }

    /// The tensor's elements in row-major order as little-endian bytes.
    fn contiguous_bytes<'s>(&self, t: &PthTensor, storage: &'s [u8]) -> Result<Cow<'s, [u8]>> {
        let size = t.info.dtype.size();
        // Checked arithmetic throughout: shapes and strides come from the file.
        let too_big = || {
            ferr(
                &self.path,
                format!(
                    "tensor `{}` has an implausible shape {:?} / stride {:?}",
                    t.info.name, t.info.shape, t.stride
                ),
            )
        };
        let numel = t
            .info
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(too_big)?;
        let avail = storage.len() / size;
        if numel == 0 {
            return Ok(Cow::Borrowed(&[]));
        }
        // Above 64 GiB a file is corrupt rather than large (and would abort the allocation).
        if numel.checked_mul(size).is_none_or(|b| b > 1 << 36) {
            return Err(too_big());
        }
        let last = t
            .info
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (d, s)| {
                (d - 1).checked_mul(*s).and_then(|x| acc.checked_add(x))
            })
            .ok_or_else(too_big)?;
        if last >= avail {
            return Err(ferr(
                &self.path,
                format!(
                    "tensor `{}` reaches element {last} of storage `{}`, which has {avail} (truncated file?)",
                    t.info.name, t.storage
                ),
            ));
        }
        // Row-major contiguous (the usual case): the bytes are one slice.
        let mut expected = 1usize;
        let contiguous = t.info.shape.iter().zip(&t.stride).rev().all(|(&d, &s)| {
            let ok = d == 1 || s == expected;
            expected = expected.saturating_mul(d);
            ok
        });
        if contiguous {
            return Ok(Cow::Borrowed(
                &storage[t.offset * size..(t.offset + numel) * size],
            ));
        }
        let mut out = vec![0u8; numel * size];
        match size {
            1 => gather::<1>(storage, &mut out, &t.info.shape, &t.stride, t.offset),
            2 => gather::<2>(storage, &mut out, &t.info.shape, &t.stride, t.offset),
            4 => gather::<4>(storage, &mut out, &t.info.shape, &t.stride, t.offset),
            _ => gather::<8>(storage, &mut out, &t.info.shape, &t.stride, t.offset),
        }
        Ok(Cow::Owned(out))
    }

    /// Loads one tensor by name.
    pub fn load(&self, name: &str, device: &Device) -> Result<Tensor> {
        let t = self
            .tensors
            .iter()
            .find(|t| t.info.name == name)
            .ok_or_else(|| ferr(&self.path, format!("no tensor `{name}`")))?;
        self.materialize(t, self.storage_bytes(&t.storage), device)
    }

    fn materialize(&self, t: &PthTensor, storage: &[u8], device: &Device) -> Result<Tensor> {
        let data = self.contiguous_bytes(t, storage)?;
        super::tensor_from_le_bytes(&data, t.info.dtype, &t.info.shape, device).map_err(|e| {
            Error::tensor(
                format!("{}: loading `{}`", self.path.display(), t.info.name),
                e,
            )
        })
    }

    /// Loads every tensor, in file order.
    pub fn load_all(&self, device: &Device) -> Result<Vec<(String, Tensor)>> {
        self.tensors
            .iter()
            .map(|t| {
                let tensor = self.materialize(t, self.storage_bytes(&t.storage), device)?;
                Ok((t.info.name.clone(), tensor))
            })
            .collect()
    }
}
