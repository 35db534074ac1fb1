//! Optimisers over named `Var`s.
//!
//! The update runs as one loop over each parameter's values in plain
//! buffers rather than as a chain of candle tensor ops: on CPU that is
//! several times faster (DESIGN §4: candle-nn's AdamW ≈ 2.5 s vs ≈ 0.6 s per
//! step on 151M parameters).

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::error::Result;

/// One optimisation step from gradients.
pub trait Optimizer {
    /// Applies one update to every parameter with a gradient.
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    /// The learning rate in force.
    fn learning_rate(&self) -> f64;
    /// Sets the learning rate (schedules).
    fn set_learning_rate(&mut self, lr: f64);
    /// The optimiser's state (moments, step count) as named tensors, so a
    /// checkpoint can resume bit-exactly. Stateless optimisers return none.
    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        Ok(BTreeMap::new())
    }
    /// Restores what [`Optimizer::state`] returned.
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// `name` in a state map, or an error naming it.
pub(crate) fn state_entry<'a>(
    state: &'a BTreeMap<String, Tensor>,
    name: &str,
) -> Result<&'a Tensor> {
    state.get(name).ok_or_else(|| crate::Error::InvalidInput {
        what: "optimizer state".into(),
        message: format!("`{name}` is missing from the checkpoint"),
    })
}

struct Slot {
    var: Var,
    m: Vec<f64>,
    v: Vec<f64>,
}

/// AdamW (Loshchilov & Hutter; PyTorch's `torch.optim.AdamW` update).
pub struct AdamW {
    slots: Vec<(String, Slot)>,
    /// Learning rate.
    pub lr: f64,
    /// β₁, β₂.
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    t: u64,
}

fn values(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?)
}

impl AdamW {
    /// Over `vars` with `lr` and `weight_decay`, β = (0.9, 0.999), ε = 1e-8.
    pub fn new(vars: BTreeMap<String, Var>, lr: f64, weight_decay: f64) -> Self {
        let slots = vars
            .into_iter()
            .map(|(k, var)| {
                let n = var.elem_count();
                (
                    k,
                    Slot {
                        var,
                        m: vec![0.0; n],
                        v: vec![0.0; n],
                    },
                )
            })
            .collect();
        AdamW {
            slots,
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            t: 0,
        }
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let (b1, b2) = self.betas;
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for (_, s) in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let g = values(g)?;
            let mut w = values(s.var.as_tensor())?;
            for i in 0..w.len() {
                w[i] *= 1.0 - self.lr * self.weight_decay;
                s.m[i] = b1 * s.m[i] + (1.0 - b1) * g[i];
                s.v[i] = b2 * s.v[i] + (1.0 - b2) * g[i] * g[i];
                let mh = s.m[i] / c1;
                let vh = s.v[i] / c2;
                w[i] -= self.lr * mh / (vh.sqrt() + self.eps);
            }
            let t = s.var.as_tensor();
            s.var
                .set(&Tensor::from_vec(w, t.dims(), t.device())?.to_dtype(t.dtype())?)?;
        }
        Ok(())
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let dev = candle_core::Device::Cpu;
        let mut out = BTreeMap::new();
        out.insert("step".into(), Tensor::new(&[self.t as f64], &dev)?);
        for (name, s) in &self.slots {
            out.insert(format!("m.{name}"), Tensor::new(s.m.as_slice(), &dev)?);
            out.insert(format!("v.{name}"), Tensor::new(s.v.as_slice(), &dev)?);
        }
        Ok(out)
    }
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let t = state_entry(state, "step")?.to_vec1::<f64>()?;
        let mut slots = Vec::with_capacity(self.slots.len());
        for (name, s) in &self.slots {
            let m: Vec<f64> = state_entry(state, &format!("m.{name}"))?.to_vec1()?;
            let v: Vec<f64> = state_entry(state, &format!("v.{name}"))?.to_vec1()?;
            if m.len() != s.m.len() || v.len() != s.v.len() {
                return Err(crate::Error::InvalidInput {
                    what: "optimizer state".into(),
                    message: format!(
                        "`{name}` has {} values, the parameter {}",
                        m.len(),
                        s.m.len()
                    ),
                });
            }
            slots.push((m, v));
        }
        for ((_, s), (m, v)) in self.slots.iter_mut().zip(slots) {
            s.m = m;
            s.v = v;
        }
        self.t = t.first().copied().unwrap_or(0.0) as u64;
        Ok(())
    }
}
