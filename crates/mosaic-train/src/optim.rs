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
}
