//! Trainable parameters by name: a seeded store that creates each `Var` on
//! first request, hands modules plain tensors that share its storage (so
//! autograd reaches the `Var`), and saves / loads them as safetensors.
//!
//! Own code rather than candle-nn's `VarMap`: it needs seeded,
//! order-independent initialisation (a parameter's initial value depends on
//! the seed and its name only, so adding a module does not reshuffle the
//! others), LoRA adapters chosen by name at build time, and freezing by name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::error::{Error, Result};
use crate::nn::ops::matmul_last_dim;

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
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    /// Rank r.
    pub rank: usize,
    /// Scale numerator: the update is `alpha / r · B A x`.
    pub alpha: f64,
    /// Name patterns (`*` wildcard) of the linear layers to adapt, e.g.
    /// `*.attn.q`, `*.attn.v`.
    pub targets: Vec<String>,
}

#[derive(Debug)]
struct Inner {
    vars: BTreeMap<String, Var>,
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

    /// The parameter `name` (under this prefix), created with `init` if it
    /// does not exist; an existing one must have `shape`.
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
        let n: usize = shape.iter().product();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(inner.seed ^ name_hash(&full));
        let values: Vec<f64> = match init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Constant(c) => vec![c; n],
            Init::Normal(std) => {
                let d = Normal::new(0.0, std).map_err(|e| Error::InvalidInput {
                    what: full.clone(),
                    message: e.to_string(),
                })?;
                (0..n).map(|_| d.sample(&mut rng)).collect()
            }
            Init::Uniform(b) => {
                let d = Uniform::new_inclusive(-b, b).map_err(|e| Error::InvalidInput {
                    what: full.clone(),
                    message: e.to_string(),
                })?;
                (0..n).map(|_| d.sample(&mut rng)).collect()
            }
        };
        let t = Tensor::from_vec(values, shape, &inner.device)?.to_dtype(inner.dtype)?;
        let v = Var::from_tensor(&t)?;
        let out = v.as_tensor().clone();
        inner.vars.insert(full, v);
        Ok(out)
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
        self.lock().vars.values().map(|v| v.elem_count()).sum()
    }

    /// Current values by name (detached copies).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.lock()
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
            .collect()
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
        let known: BTreeSet<&String> = inner.vars.keys().collect();
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
    pub fn linear(&self, name: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Dense> {
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
                let a = s.get(
                    "lora_a",
                    &[spec.rank, in_dim],
                    Init::Uniform(1.0 / (in_dim.max(1) as f64).sqrt()),
                )?;
                let b = s.get("lora_b", &[out_dim, spec.rank], Init::Zeros)?;
                Some(Lora {
                    a,
                    b,
                    scale: spec.alpha / spec.rank as f64,
                })
            }
            _ => None,
        };
        Ok(Dense {
            linear: crate::nn::Linear { weight, bias },
            lora,
        })
    }
}

/// A low-rank update `scale · B A`.
#[derive(Debug, Clone)]
pub struct Lora {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
    /// `alpha / r`.
    pub scale: f64,
}

/// A linear layer with an optional LoRA adapter.
#[derive(Debug, Clone)]
pub struct Dense {
    /// The base layer.
    pub linear: crate::nn::Linear,
    /// The adapter.
    pub lora: Option<Lora>,
}

impl Dense {
    /// `x Wᵀ + b (+ scale · x Aᵀ Bᵀ)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.linear.forward(x)?;
        match &self.lora {
            Some(l) => {
                let u = matmul_last_dim(&matmul_last_dim(x, &l.a.t()?)?, &l.b.t()?)?;
                Ok((y + (u * l.scale)?)?)
            }
            None => Ok(y),
        }
    }

    /// The weight with the adapter folded in (`W + scale · B A`), for export.
    pub fn merged_weight(&self) -> Result<Tensor> {
        match &self.lora {
            Some(l) => Ok((self.linear.weight.detach() + (l.b.matmul(&l.a)? * l.scale)?)?),
            None => Ok(self.linear.weight.detach()),
        }
    }
}
