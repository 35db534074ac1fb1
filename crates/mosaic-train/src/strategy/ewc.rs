//! Elastic weight consolidation (Kirkpatrick et al. 2017): after task A,
//! estimate how much each parameter mattered (the diagonal of the Fisher
//! information) and, while training task B, penalise moving it:
//! `λ/2 · Σᵢ Fᵢ (θᵢ - θ*ᵢ)²`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};

use crate::error::{Error, Result};

/// The Fisher diagonal and anchor values of a finished task, with the
/// penalty weight.
#[derive(Debug, Clone)]
pub struct Ewc {
    /// Penalty weight λ.
    pub lambda: f64,
    fisher: BTreeMap<String, Tensor>,
    anchor: BTreeMap<String, Tensor>,
}

fn bad(what: String, message: String) -> Error {
    Error::InvalidInput { what, message }
}

impl Ewc {
    /// The empirical Fisher diagonal: for `batches` batches, `loss(i)`
    /// (the task's loss on batch i, built from `vars`) is differentiated
    /// and the squared gradients are averaged, `Fᵢ = mean_b (∂L_b/∂θᵢ)²`.
    /// A parameter the loss does not reach gets a zero Fisher. Parameter
    /// values are not changed.
    ///
    /// Use small batches (a few samples, or one): the gradient of a large
    /// batch's mean loss vanishes at the optimum of the old task, and so
    /// would the estimate. With a classifier, the loss of labels sampled
    /// from the model's own softmax gives the true (not empirical) Fisher.
    pub fn estimate_fisher(
        vars: &BTreeMap<String, Var>,
        batches: usize,
        mut loss: impl FnMut(usize) -> Result<Tensor>,
    ) -> Result<BTreeMap<String, Tensor>> {
        if batches == 0 {
            return Err(Error::Config {
                source_name: "ewc".into(),
                message: "key `fisher_batches` must be at least 1".into(),
            });
        }
        let mut sums: BTreeMap<String, Tensor> = BTreeMap::new();
        for i in 0..batches {
            let l = loss(i)?;
            let grads = l.backward()?;
            for (name, v) in vars {
                let sq = match grads.get(v.as_tensor()) {
                    Some(g) => g.detach().sqr()?,
                    None => v.as_tensor().zeros_like()?.detach(),
                };
                let acc = match sums.remove(name) {
                    Some(s) => (s + sq)?,
                    None => sq,
                };
                sums.insert(name.clone(), acc);
            }
        }
        let k = 1.0 / batches as f64;
        sums.into_iter().map(|(n, s)| Ok((n, (s * k)?))).collect()
    }

    /// Anchors at the current values of `vars` with a given Fisher
    /// diagonal (one tensor per penalised parameter, each of its
    /// parameter's shape; a name missing from `vars` is an error).
    pub fn new(
        vars: &BTreeMap<String, Var>,
        fisher: BTreeMap<String, Tensor>,
        lambda: f64,
    ) -> Result<Self> {
        if !lambda.is_finite() || lambda < 0.0 {
            return Err(Error::Config {
                source_name: "ewc".into(),
                message: format!("key `lambda` must be a finite number ≥ 0, got {lambda}"),
            });
        }
        let mut anchor = BTreeMap::new();
        for (n, f) in &fisher {
            let v = vars.get(n).ok_or_else(|| {
                bad(
                    format!("Fisher entry `{n}`"),
                    "the model has no such parameter".into(),
                )
            })?;
            if f.dims() != v.dims() {
                return Err(bad(
                    format!("Fisher entry `{n}`"),
                    format!("shape {:?}, parameter is {:?}", f.dims(), v.dims()),
                ));
            }
            anchor.insert(n.clone(), v.as_tensor().copy()?.detach());
        }
        let fisher = fisher
            .into_iter()
            .map(|(n, f)| {
                let dt = vars[&n].dtype();
                Ok((n, f.detach().to_dtype(dt)?))
            })
            .collect::<Result<_>>()?;
        Ok(Ewc {
            lambda,
            fisher,
            anchor,
        })
    }

    /// [`Ewc::estimate_fisher`] then [`Ewc::new`]: call at the end of a
    /// task, with the task's data.
    pub fn from_task(
        vars: &BTreeMap<String, Var>,
        batches: usize,
        loss: impl FnMut(usize) -> Result<Tensor>,
        lambda: f64,
    ) -> Result<Self> {
        let f = Self::estimate_fisher(vars, batches, loss)?;
        Self::new(vars, f, lambda)
    }

    /// The differentiable penalty `λ/2 · Σ F (θ - θ*)²` over the anchored
    /// parameters (others in `vars` are ignored; an anchored one missing
    /// from `vars` is an error naming it). Add it to the new task's loss.
    pub fn penalty(&self, vars: &BTreeMap<String, Var>) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (n, f) in &self.fisher {
            let v = vars.get(n).ok_or_else(|| {
                bad(
                    format!("EWC parameter `{n}`"),
                    "not among the given parameters".into(),
                )
            })?;
            let d = (v.as_tensor() - &self.anchor[n])?;
            let term = (d.sqr()? * f)?.sum_all()?;
            total = Some(match total {
                Some(t) => (t + term)?,
                None => term,
            });
        }
        let total = total.ok_or_else(|| bad("EWC".into(), "no parameter is anchored".into()))?;
        Ok((total * (0.5 * self.lambda))?)
    }

    /// Replaces the anchors θ* of the penalised parameters with `anchors`
    /// (e.g. an earlier run's final weights read by [`Ewc::load`]); each
    /// penalised name needs one of its shape.
    pub fn set_anchors(&mut self, anchors: &BTreeMap<String, Tensor>) -> Result<()> {
        for (n, f) in &self.fisher {
            let a = anchors
                .get(n)
                .ok_or_else(|| bad(format!("anchor `{n}`"), "missing".into()))?;
            if a.dims() != f.dims() {
                return Err(bad(
                    format!("anchor `{n}`"),
                    format!("shape {:?}, Fisher is {:?}", a.dims(), f.dims()),
                ));
            }
            self.anchor
                .insert(n.clone(), a.detach().to_dtype(f.dtype())?);
        }
        Ok(())
    }

    /// The Fisher diagonal, by parameter name.
    pub fn fisher(&self) -> &BTreeMap<String, Tensor> {
        &self.fisher
    }

    /// The anchor values θ*, by parameter name.
    pub fn anchor(&self) -> &BTreeMap<String, Tensor> {
        &self.anchor
    }

    /// Writes `fisher.<name>` and `anchor.<name>` tensors to a safetensors
    /// file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (n, f) in &self.fisher {
            map.insert(format!("fisher.{n}"), f.clone());
            map.insert(format!("anchor.{n}"), self.anchor[n].clone());
        }
        mosaic_core::checkpoint::save_safetensors(path, &map)?;
        Ok(())
    }

    /// Reads what [`Ewc::save`] wrote, with penalty weight `lambda`. Every
    /// Fisher entry needs its anchor of the same shape; errors name the
    /// tensor.
    pub fn load(path: &Path, lambda: f64, device: &Device) -> Result<Self> {
        let src = path.display().to_string();
        let mut fisher = BTreeMap::new();
        let mut anchor = BTreeMap::new();
        for (k, t) in mosaic_core::formats::load_tensors(path, device)? {
            if let Some(n) = k.strip_prefix("fisher.") {
                fisher.insert(n.to_string(), t);
            } else if let Some(n) = k.strip_prefix("anchor.") {
                anchor.insert(n.to_string(), t);
            } else {
                return Err(bad(format!("{src}: `{k}`"), "not an EWC tensor".into()));
            }
        }
        for (n, f) in &fisher {
            let a = anchor
                .get(n)
                .ok_or_else(|| bad(format!("{src}: `anchor.{n}`"), "missing".into()))?;
            if a.dims() != f.dims() || a.dtype() != f.dtype() {
                return Err(bad(
                    format!("{src}: `anchor.{n}`"),
                    format!(
                        "{:?} {:?} vs Fisher {:?} {:?}",
                        a.dims(),
                        a.dtype(),
                        f.dims(),
                        f.dtype()
                    ),
                ));
            }
        }
        if let Some(n) = anchor.keys().find(|n| !fisher.contains_key(*n)) {
            return Err(bad(format!("{src}: `fisher.{n}`"), "missing".into()));
        }
        if !lambda.is_finite() || lambda < 0.0 {
            return Err(Error::Config {
                source_name: "ewc".into(),
                message: format!("key `lambda` must be a finite number ≥ 0, got {lambda}"),
            });
        }
        Ok(Ewc {
            lambda,
            fisher,
            anchor,
        })
    }

    /// Total Fisher mass (for logs): `Σ Fᵢ`.
    pub fn fisher_total(&self) -> Result<f64> {
        let mut s = 0.0;
        for f in self.fisher.values() {
            s += f.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        }
        Ok(s)
    }
}
