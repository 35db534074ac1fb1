//! The one parameter builder, for checkpoints and for training (the shape of
//! candle's `VarBuilder`): every module — a pretrained family or a block
//! built from a config — asks a [`ParamStore`] for its tensors by name, with
//! names that mirror the checkpoint (`encoder.layer.0.attention.self.query.weight`).
//! Where the name falls under an attached checkpoint ([`Weights`], read
//! memory-mapped), the tensor comes from that file, shape-checked, either as
//! a trainable `Var` ([`CheckpointMode::Trainable`]) or as a plain tensor
//! ([`CheckpointMode::Frozen`]: inference, no autograd bookkeeping); a name
//! under a checkpoint that the file lacks is an error naming it. Anywhere
//! else the store creates a seeded `Var` on first request. Either way the
//! module sees a plain tensor that shares the storage, so autograd reaches
//! the `Var` and an optimiser's in-place update is seen by the next forward.
//!
//! Own code rather than candle-nn's `VarMap`/`VarBuilder`: it needs seeded,
//! order-independent initialisation (a parameter's initial value depends on
//! the seed and its name only, so adding a module does not reshuffle the
//! others), checkpoints attached under a prefix next to fresh parameters
//! (a pretrained tower inside a model built from a config), unused-tensor
//! reports, LoRA adapters chosen by name at build time, and freezing by name.
//!
//! ```
//! use std::collections::HashMap;
//! use candle_core::{DType, Device, Tensor};
//! use mosaic_models::nn::{CheckpointMode, Init, ParamStore};
//! use mosaic_models::weights::Weights;
//!
//! # fn main() -> mosaic_models::Result<()> {
//! let dev = Device::Cpu;
//! let mut file = HashMap::new();
//! file.insert("dense.weight".to_string(), Tensor::ones((2, 3), DType::F32, &dev)?);
//! file.insert("dense.bias".to_string(), Tensor::zeros(2, DType::F32, &dev)?);
//! let store = ParamStore::new(0, DType::F32, &dev);
//! // A pretrained tower under `encoders.text`, trainable; a fresh head beside it.
//! store.attach_checkpoint("encoders.text", Weights::from_map(file, "tiny"), CheckpointMode::Trainable)?;
//! let dense = store.sub("encoders.text").linear("dense", 3, 2, true)?;
//! let head = store.sub("heads").get("scale", &[1], Init::Ones)?;
//! assert_eq!(dense.weight.to_vec2::<f32>()?[0], vec![1.0, 1.0, 1.0]);
//! assert_eq!(head.to_vec1::<f32>()?, vec![1.0]);
//! assert_eq!(store.vars().len(), 3); // both checkpoint tensors are Vars now
//! store.check_unused(&[])?;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::error::{Error, Result};
use crate::nn::ops::{Linear, Lora};
use crate::weights::Weights;

/// How a new parameter is filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Every value `c`.
    Constant(f64),
    /// Normal(0, std).
    Normal(f64),
    /// Uniform(-b, b).
    Uniform(f64),
}

/// LoRA adapters to attach to matching linear layers when they are built.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSpec {
    /// Rank r.
    pub rank: usize,
    /// Scale numerator: the update is `alpha / r · B A x`.
    pub alpha: f64,
    /// Name patterns (`*` wildcard) of the linear layers to adapt, e.g.
    /// `*.attn.q`, `*.attn.v`.
    pub targets: Vec<String>,
}

/// How tensors read from an attached checkpoint are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    /// As `Var`s: gradients reach them and optimisers update them (fine-
    /// tuning; freeze some by name with the training strategies).
    Trainable,
    /// As plain tensors: no gradient, no autograd bookkeeping in the forward
    /// pass (inference, or a locked tower as in LiT).
    Frozen,
}

/// A checkpoint attached under a name prefix.
#[derive(Debug)]
struct Attached {
    prefix: String,
    weights: Weights,
    mode: CheckpointMode,
}

#[derive(Debug)]
struct Inner {
    vars: BTreeMap<String, Var>,
    /// Checkpoint tensors handed out in [`CheckpointMode::Frozen`]: saved
    /// with the model, never updated.
    frozen: BTreeMap<String, Tensor>,
    checkpoints: Vec<Attached>,
    seed: u64,
    dtype: DType,
    device: Device,
    lora: Option<LoraSpec>,
}

/// A shared, prefix-scoped view of the parameters of a model.
#[derive(Debug, Clone)]
pub struct ParamStore {
    inner: Arc<Mutex<Inner>>,
    prefix: String,
}

/// FNV-1a of a name, to derive a per-parameter RNG stream from the seed.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

impl ParamStore {
    /// An empty store; parameters are created in `dtype` on `device`.
    pub fn new(seed: u64, dtype: DType, device: &Device) -> Self {
        ParamStore {
            inner: Arc::new(Mutex::new(Inner {
                vars: BTreeMap::new(),
                frozen: BTreeMap::new(),
                checkpoints: Vec::new(),
                seed,
                dtype,
                device: device.clone(),
                lora: None,
            })),
            prefix: String::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The same store under `prefix.name`.
    pub fn sub(&self, name: &str) -> Self {
        ParamStore {
            inner: self.inner.clone(),
            prefix: self.full(name),
        }
    }

    /// `prefix.name`.
    pub fn full(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The dtype parameters are created in.
    pub fn dtype(&self) -> DType {
        self.lock().dtype
    }

    /// The device parameters live on.
    pub fn device(&self) -> Device {
        self.lock().device.clone()
    }

    /// Sets the LoRA adapters that later [`ParamStore::linear`] calls attach.
    pub fn set_lora(&self, spec: Option<LoraSpec>) {
        self.lock().lora = spec;
    }

    /// The LoRA spec in force.
    pub fn lora(&self) -> Option<LoraSpec> {
        self.lock().lora.clone()
    }

    /// Attaches a checkpoint under `prefix` (relative to this store's own
    /// prefix; `""` for the whole store): later requests for names under it
    /// read the file's tensor `name-without-prefix`, and a name the file
    /// lacks is an error. A longer prefix wins over a shorter one. Fails
    /// when a checkpoint is already attached at exactly that prefix.
    pub fn attach_checkpoint(
        &self,
        prefix: &str,
        weights: Weights,
        mode: CheckpointMode,
    ) -> Result<()> {
        let full = if prefix.is_empty() {
            self.prefix.clone()
        } else {
            self.full(prefix)
        };
        let mut inner = self.lock();
        if let Some(a) = inner.checkpoints.iter().find(|a| a.prefix == full) {
            return Err(Error::InvalidInput {
                what: format!("checkpoint {}", weights.source()),
                message: format!(
                    "prefix `{full}` already reads checkpoint {}",
                    a.weights.source()
                ),
            });
        }
        inner.checkpoints.push(Attached {
            prefix: full,
            weights,
            mode,
        });
        Ok(())
    }

    /// A store whose whole namespace reads `weights` (a pretrained model
    /// loaded on its own), in `dtype` on `device`.
    pub fn from_checkpoint(
        weights: Weights,
        mode: CheckpointMode,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let s = ParamStore::new(0, dtype, device);
        s.attach_checkpoint("", weights, mode)?;
        Ok(s)
    }

    /// Whether a checkpoint covers `name` (under this prefix).
    pub fn has_checkpoint(&self, name: &str) -> bool {
        covering(&self.lock().checkpoints, &self.full(name)).is_some()
    }

    /// Whether `name` (under this prefix) exists: as a parameter already
    /// made, or in the checkpoint covering it. Loaders use it for optional
    /// parts (a pooler, a post-norm).
    pub fn contains(&self, name: &str) -> bool {
        let full = self.full(name);
        let inner = self.lock();
        inner.vars.contains_key(&full)
            || inner.frozen.contains_key(&full)
            || covering(&inner.checkpoints, &full)
                .is_some_and(|(i, rel)| inner.checkpoints[i].weights.contains(&rel))
    }

    /// The parameter `name` (under this prefix) if a module already made it,
    /// trainable or frozen: for sharing one tensor by name (a contrastive
    /// head using a checkpoint's temperature).
    pub fn existing(&self, name: &str) -> Option<Tensor> {
        let full = self.full(name);
        let inner = self.lock();
        inner
            .vars
            .get(&full)
            .map(|v| v.as_tensor().clone())
            .or_else(|| inner.frozen.get(&full).cloned())
    }

    /// What the names under this prefix are read from, for error messages:
    /// the checkpoint's file, else `parameter store`.
    pub fn source(&self) -> String {
        let inner = self.lock();
        let probe = self.full("*");
        match covering(&inner.checkpoints, &probe) {
            Some((i, _)) => inner.checkpoints[i].weights.source().to_string(),
            None => "parameter store".into(),
        }
    }

    /// The checkpoint tensor `name` whatever its shape, marked as used and
    /// not kept: for tensors a loader knowingly discards or converts.
    pub fn get_unchecked(&self, name: &str) -> Result<Tensor> {
        let full = self.full(name);
        let inner = self.lock();
        match covering(&inner.checkpoints, &full) {
            Some((i, rel)) => inner.checkpoints[i].weights.get_unchecked(&rel),
            None => Err(Error::Weight {
                checkpoint: "parameter store".into(),
                name: full,
                message: "no checkpoint is attached for this name".into(),
            }),
        }
    }

    /// Fails, naming them, when a checkpoint attached at or under this
    /// prefix holds tensors no module asked for (other than those matching
    /// the `*`-patterns in `ignore`): a checkpoint of another architecture,
    /// or a head the model would silently drop, is refused.
    pub fn check_unused(&self, ignore: &[&str]) -> Result<()> {
        let inner = self.lock();
        for a in &inner.checkpoints {
            if covers(&self.prefix, &a.prefix) {
                a.weights.check_unused(ignore)?;
            }
        }
        Ok(())
    }

    /// The parameter `name` (under this prefix), created with `init` if it
    /// does not exist; an existing one must have `shape`. Under an attached
    /// checkpoint it is read from the file instead (see the module docs).
    pub fn get(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let full = self.full(name);
        let mut inner = self.lock();
        if let Some(v) = inner.vars.get(&full) {
            if v.dims() != shape {
                return Err(Error::Weight {
                    checkpoint: "parameter store".into(),
                    name: full,
                    message: format!("shape {:?}, expected {shape:?}", v.dims()),
                });
            }
            return Ok(v.as_tensor().clone());
        }
        if let Some(t) = inner.frozen.get(&full) {
            if t.dims() != shape {
                return Err(Error::Weight {
                    checkpoint: "parameter store".into(),
                    name: full,
                    message: format!("shape {:?}, expected {shape:?}", t.dims()),
                });
            }
            return Ok(t.clone());
        }
        if let Some((i, rel)) = covering(&inner.checkpoints, &full) {
            let (dtype, device) = (inner.dtype, inner.device.clone());
            let mode = inner.checkpoints[i].mode;
            let weights = &mut inner.checkpoints[i].weights;
            // The Var owns a copy; the file's tensor is dropped so a
            // fine-tuned model does not hold the weights twice.
            let t = match mode {
                CheckpointMode::Frozen => weights.get(&rel, shape)?,
                CheckpointMode::Trainable => weights.take(&rel, shape)?,
            };
            let t = if t.dtype().is_float() && t.dtype() != dtype {
                t.to_dtype(dtype)?
            } else {
                t
            };
            let t = t.to_device(&device)?;
            return Ok(match mode {
                CheckpointMode::Frozen => {
                    inner.frozen.insert(full, t.clone());
                    t
                }
                CheckpointMode::Trainable => {
                    let v = Var::from_tensor(&t)?;
                    let out = v.as_tensor().clone();
                    inner.vars.insert(full, v);
                    out
                }
            });
        }
        let values = init_values(inner.seed, &full, shape, init)?;
        let t = Tensor::from_vec(values, shape, &inner.device)?.to_dtype(inner.dtype)?;
        let v = Var::from_tensor(&t)?;
        let out = v.as_tensor().clone();
        inner.vars.insert(full, v);
        Ok(out)
    }

    /// A trainable parameter added on top of a checkpoint (a LoRA factor, a
    /// prompt, a new head): read from the covering checkpoint when it holds
    /// `name` (a saved fine-tune), else created with `init`; a `Var` in
    /// either case, whatever the checkpoint mode.
    pub fn get_added(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let full = self.full(name);
        let mut inner = self.lock();
        if !inner.vars.contains_key(&full) && !inner.frozen.contains_key(&full) {
            if let Some((i, rel)) = covering(&inner.checkpoints, &full)
                && inner.checkpoints[i].weights.contains(&rel)
            {
                let t = inner.checkpoints[i].weights.take(&rel, shape)?;
                let t = t.to_dtype(inner.dtype)?.to_device(&inner.device)?;
                let v = Var::from_tensor(&t)?;
                let out = v.as_tensor().clone();
                inner.vars.insert(full, v);
                return Ok(out);
            }
            if covering(&inner.checkpoints, &full).is_some() {
                let values = init_values(inner.seed, &full, shape, init)?;
                let t = Tensor::from_vec(values, shape, &inner.device)?.to_dtype(inner.dtype)?;
                let v = Var::from_tensor(&t)?;
                let out = v.as_tensor().clone();
                inner.vars.insert(full, v);
                return Ok(out);
            }
        }
        drop(inner);
        self.get(name, shape, init)
    }

    /// A buffer `name` (under this prefix): state that is saved with the
    /// model but never trained (BatchNorm running statistics). Read from
    /// the covering checkpoint when there is one, else filled with `init`;
    /// always a plain tensor, whatever the checkpoint mode.
    pub fn buffer(&self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let full = self.full(name);
        let mut inner = self.lock();
        if let Some(t) = inner.frozen.get(&full) {
            return Ok(t.clone());
        }
        let t = match covering(&inner.checkpoints, &full) {
            Some((i, rel)) => {
                let t = inner.checkpoints[i].weights.get(&rel, shape)?;
                let t = if t.dtype() != inner.dtype {
                    t.to_dtype(inner.dtype)?
                } else {
                    t
                };
                t.to_device(&inner.device)?
            }
            None => {
                let v = init_values(inner.seed, &full, shape, init)?;
                Tensor::from_vec(v, shape, &inner.device)?.to_dtype(inner.dtype)?
            }
        };
        inner.frozen.insert(full, t.clone());
        Ok(t)
    }

    /// Every parameter, by full name.
    pub fn vars(&self) -> BTreeMap<String, Var> {
        self.lock().vars.clone()
    }

    /// Parameters whose names start with this store's prefix.
    pub fn scoped_vars(&self) -> BTreeMap<String, Var> {
        let p = &self.prefix;
        self.lock()
            .vars
            .iter()
            .filter(|(k, _)| p.is_empty() || k.starts_with(&format!("{p}.")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Total number of parameter values.
    pub fn num_params(&self) -> usize {
        let inner = self.lock();
        inner.vars.values().map(|v| v.elem_count()).sum::<usize>()
            + inner.frozen.values().map(|t| t.elem_count()).sum::<usize>()
    }

    /// Current values by name (detached), trainable and frozen.
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        let inner = self.lock();
        inner
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .chain(inner.frozen.iter().map(|(k, t)| (k.clone(), t.clone())))
            .collect()
    }

    /// Frozen checkpoint tensors by name (no gradient, never updated).
    pub fn frozen(&self) -> BTreeMap<String, Tensor> {
        self.lock().frozen.clone()
    }

    /// Writes every parameter to a safetensors file (temporary file, then
    /// rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let map: std::collections::HashMap<String, Tensor> = self.tensors().into_iter().collect();
        mosaic_core::checkpoint::save_safetensors(path, &map)?;
        Ok(())
    }

    /// Overwrites every parameter from a safetensors file. The names and
    /// shapes must match exactly: a missing, extra or mis-shaped tensor is
    /// an error naming it, and nothing is changed.
    pub fn load(&self, path: &Path) -> Result<()> {
        let loaded: BTreeMap<String, Tensor> =
            mosaic_core::formats::load_tensors(path, &self.device())?
                .into_iter()
                .collect();
        self.load_map(&loaded, &path.display().to_string())
    }

    /// [`ParamStore::load`] from tensors in memory (e.g. a converted
    /// checkpoint); `source` names them in errors.
    pub fn load_map(&self, loaded: &BTreeMap<String, Tensor>, source: &str) -> Result<()> {
        let inner = self.lock();
        let src = source.to_string();
        for (name, v) in &inner.vars {
            let t = loaded.get(name).ok_or_else(|| Error::Weight {
                checkpoint: src.clone(),
                name: name.clone(),
                message: format!("missing (expected shape {:?})", v.dims()),
            })?;
            if t.dims() != v.dims() {
                return Err(Error::Weight {
                    checkpoint: src.clone(),
                    name: name.clone(),
                    message: format!("shape {:?}, expected {:?}", t.dims(), v.dims()),
                });
            }
        }
        // Frozen tensors cannot change; a file that disagrees with them is
        // another model, not a resumable state of this one.
        for (name, t) in &inner.frozen {
            let l = loaded.get(name).ok_or_else(|| Error::Weight {
                checkpoint: src.clone(),
                name: name.clone(),
                message: format!("missing (expected shape {:?})", t.dims()),
            })?;
            // Compared in the store's dtype: a model saved in f32 reloads
            // in bf16 with its checkpoint read in bf16 too.
            let same = l.dims() == t.dims()
                && (l.to_dtype(t.dtype())?.to_dtype(DType::F64)?
                    - t.to_dtype(DType::F64)?.to_device(l.device())?)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f64>()?
                    == 0.0;
            if !same {
                return Err(Error::Weight {
                    checkpoint: src.clone(),
                    name: name.clone(),
                    message: "differs from the frozen checkpoint tensor: build the model from this file instead".into(),
                });
            }
        }
        let known: BTreeSet<&String> = inner.vars.keys().chain(inner.frozen.keys()).collect();
        if let Some(extra) = loaded.keys().find(|k| !known.contains(k)) {
            return Err(Error::Weight {
                checkpoint: src,
                name: extra.clone(),
                message: "unexpected tensor: the model has no such parameter".into(),
            });
        }
        for (name, v) in &inner.vars {
            v.set(
                &loaded[name]
                    .to_dtype(inner.dtype)?
                    .to_device(&inner.device)?,
            )?;
        }
        Ok(())
    }

    /// A linear layer `name` (`[out, in]` weight, optional bias), with
    /// PyTorch's default init (uniform ±1/√in), plus LoRA adapters when the
    /// store's [`LoraSpec`] targets its full name.
    pub fn linear(&self, name: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
        let s = self.sub(name);
        let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
        let weight = s.get("weight", &[out_dim, in_dim], Init::Uniform(bound))?;
        let bias = if bias {
            Some(s.get("bias", &[out_dim], Init::Uniform(bound))?)
        } else {
            None
        };
        let full = self.full(name);
        let lora = match self.lora() {
            Some(spec)
                if spec
                    .targets
                    .iter()
                    .any(|p| crate::weights::glob_match(p, &full)) =>
            {
                if spec.rank == 0 {
                    return Err(Error::Config {
                        source_name: "lora".into(),
                        message: "key `rank` must be at least 1".into(),
                    });
                }
                // A as Kaiming-uniform, B zero: training starts from the base model.
                let a = s.get_added(
                    "lora_a",
                    &[spec.rank, in_dim],
                    Init::Uniform(1.0 / (in_dim.max(1) as f64).sqrt()),
                )?;
                let b = s.get_added("lora_b", &[out_dim, spec.rank], Init::Zeros)?;
                Some(Lora {
                    a,
                    b,
                    scale: spec.alpha / spec.rank as f64,
                })
            }
            _ => None,
        };
        Ok(Linear { weight, bias, lora })
    }
}

/// The initial values of parameter `full`: a ChaCha8 stream seeded by the
/// store's seed and the name, so they do not depend on build order.
fn init_values(seed: u64, full: &str, shape: &[usize], init: Init) -> Result<Vec<f64>> {
    let n: usize = shape.iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ name_hash(full));
    Ok(match init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Constant(c) => vec![c; n],
        Init::Normal(std) => {
            let d = Normal::new(0.0, std).map_err(|e| Error::InvalidInput {
                what: full.to_string(),
                message: e.to_string(),
            })?;
            (0..n).map(|_| d.sample(&mut rng)).collect()
        }
        Init::Uniform(b) => {
            let d = Uniform::new_inclusive(-b, b).map_err(|e| Error::InvalidInput {
                what: full.to_string(),
                message: e.to_string(),
            })?;
            (0..n).map(|_| d.sample(&mut rng)).collect()
        }
    })
}

/// Whether the parameter namespace `prefix` holds `name` (`""` holds all).
fn covers(prefix: &str, name: &str) -> bool {
    prefix.is_empty()
        || name == prefix
        || (name.len() > prefix.len()
            && name.starts_with(prefix)
            && name.as_bytes()[prefix.len()] == b'.')
}

/// The attached checkpoint with the longest prefix covering `full`, and the
/// name relative to it.
fn covering(checkpoints: &[Attached], full: &str) -> Option<(usize, String)> {
    checkpoints
        .iter()
        .enumerate()
        .filter(|(_, a)| covers(&a.prefix, full) && full != a.prefix)
        .max_by_key(|(_, a)| a.prefix.len())
        .map(|(i, a)| {
            let rel = if a.prefix.is_empty() {
                full.to_string()
            } else {
                full[a.prefix.len() + 1..].to_string()
            };
            (i, rel)
        })
}
