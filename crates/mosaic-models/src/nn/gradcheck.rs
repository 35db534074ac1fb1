//! Finite-difference gradient checks (f64) for trainable code: the tests of
//! every op, block, encoder and fusion use this to prove that autograd
//! reaches every parameter with the right value.

use candle_core::{Tensor, Var};

use crate::error::{Error, Result};

/// Outcome of a check.
#[derive(Debug, Clone)]
pub struct GradReport {
    /// Elements compared.
    pub checked: usize,
    /// Largest relative error seen.
    pub max_rel: f64,
    /// Where it was (`name[index]`).
    pub worst: String,
}

/// Compares autograd's gradient of the scalar `loss()` with central finite
/// differences (step `eps`) for up to `per_var` elements (evenly spread) of
/// each var. Vars must be f64. A pair passes when the relative error is
/// below `tol` or the absolute error below `tol · 1e-2` (for gradients that
/// are exactly zero, e.g. attention key biases); otherwise an error
/// names the parameter and element.
pub fn check_gradients(
    vars: &[(String, Var)],
    loss: impl Fn() -> Result<Tensor>,
    per_var: usize,
    eps: f64,
    tol: f64,
) -> Result<GradReport> {
    let l = loss()?;
    let grads = l.backward()?;
    let mut report = GradReport {
        checked: 0,
        max_rel: 0.0,
        worst: String::new(),
    };
    let value = |t: Tensor| -> Result<f64> { Ok(t.to_scalar::<f64>()?) };
    for (name, var) in vars {
        let g: Vec<f64> = match grads.get(var.as_tensor()) {
            Some(g) => g.flatten_all()?.to_vec1()?,
            None => {
                return Err(Error::InvalidInput {
                    what: format!("gradient of `{name}`"),
                    message: "autograd produced none: the parameter is disconnected from the loss"
                        .into(),
                });
            }
        };
        // A copy: a Var cannot be set from a tensor sharing its storage.
        let base = var.as_tensor().copy()?.detach();
        let shape = base.dims().to_vec();
        let flat: Vec<f64> = base.flatten_all()?.to_vec1()?;
        let n = flat.len();
        let step = (n / per_var.max(1)).max(1);
        for i in (0..n).step_by(step).take(per_var) {
            let mut p = flat.clone();
            p[i] += eps;
            var.set(&Tensor::from_vec(p, shape.as_slice(), base.device())?)?;
            let lp = value(loss()?)?;
            let mut m = flat.clone();
            m[i] -= eps;
            var.set(&Tensor::from_vec(m, shape.as_slice(), base.device())?)?;
            let lm = value(loss()?)?;
            var.set(&base)?;
            let fd = (lp - lm) / (2.0 * eps);
            let abs = (fd - g[i]).abs();
            let rel = abs / fd.abs().max(g[i].abs()).max(1e-12);
            report.checked += 1;
            if rel > report.max_rel && abs > 1e-10 {
                report.max_rel = rel;
                report.worst = format!("{name}[{i}]");
            }
            if rel > tol && abs > tol * 1e-2 {
                return Err(Error::InvalidInput {
                    what: format!("gradient of `{name}` element {i}"),
                    message: format!(
                        "finite difference {fd:e} vs autograd {:e} (relative error {rel:e})",
                        g[i]
                    ),
                });
            }
        }
    }
    Ok(report)
}
