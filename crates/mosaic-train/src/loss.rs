//! Objectives, from differentiable primitives.

use candle_core::{D, DType, Tensor};

use crate::error::{Error, Result};

/// `x - logsumexp(x)` over the last dimension (max-subtracted).
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&m)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// `[N, C]` targets: `1 - s` on the class, `s / C` spread over all classes.
fn smoothed_targets(
    targets: &Tensor,
    classes: usize,
    smoothing: f64,
    dtype: DType,
) -> Result<Tensor> {
    let t: Vec<u32> = targets.to_dtype(DType::U32)?.flatten_all()?.to_vec1()?;
    if let Some(bad) = t.iter().find(|&&c| c as usize >= classes) {
        return Err(Error::InvalidInput {
            what: "targets".into(),
            message: format!("class {bad} is outside the {classes} classes"),
        });
    }
    if !(0.0..1.0).contains(&smoothing) {
        return Err(Error::InvalidInput {
            what: "label_smoothing".into(),
            message: format!("{smoothing} must be in [0, 1)"),
        });
    }
    let off = smoothing / classes as f64;
    let mut v = vec![off; t.len() * classes];
    for (i, &c) in t.iter().enumerate() {
        v[i * classes + c as usize] += 1.0 - smoothing;
    }
    Ok(Tensor::from_vec(v, (t.len(), classes), targets.device())?.to_dtype(dtype)?)
}

/// Mean cross-entropy of `[N, C]` logits against `[N]` class ids, with
/// label smoothing `s` (PyTorch's definition).
pub fn cross_entropy(logits: &Tensor, targets: &Tensor, smoothing: f64) -> Result<Tensor> {
    let (n, c) = logits.dims2()?;
    if targets.elem_count() != n {
        return Err(Error::InvalidInput {
            what: "targets".into(),
            message: format!("{} targets for {n} rows of logits", targets.elem_count()),
        });
    }
    let y = smoothed_targets(targets, c, smoothing, logits.dtype())?;
    Ok((log_softmax(logits)? * y)?
        .sum_all()?
        .neg()?
        .affine(1.0 / n as f64, 0.0)?)
}

/// Token cross-entropy of `[B, T, V]` logits against `[B, T]` targets,
/// averaged over positions where `mask` (`[B, T]`, 1 = counted) is set.
pub fn sequence_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    mask: Option<&Tensor>,
    smoothing: f64,
) -> Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let flat = logits.reshape((b * t, v))?;
    let y = smoothed_targets(&targets.reshape(b * t)?, v, smoothing, logits.dtype())?;
    let per = (log_softmax(&flat)? * y)?.sum(1)?.neg()?;
    match mask {
        None => Ok(per.mean_all()?),
        Some(m) => {
            let m = m.reshape(b * t)?.to_dtype(logits.dtype())?;
            let n = m.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if n == 0.0 {
                return Err(Error::InvalidInput {
                    what: "mask".into(),
                    message: "no position is counted".into(),
                });
            }
            Ok((per * m)?.sum_all()?.affine(1.0 / n, 0.0)?)
        }
    }
}

/// CLIP's symmetric InfoNCE on `[B, B]` logits (row i's positive is
/// column i): mean of the row-wise and column-wise cross-entropies.
pub fn clip_loss(logits: &Tensor) -> Result<Tensor> {
    let (b, b2) = logits.dims2()?;
    if b != b2 {
        return Err(Error::InvalidInput {
            what: "logits".into(),
            message: format!("contrastive logits must be square, got [{b}, {b2}]"),
        });
    }
    let idx = Tensor::arange(0u32, b as u32, logits.device())?;
    let a = cross_entropy(logits, &idx, 0.0)?;
    let c = cross_entropy(&logits.t()?, &idx, 0.0)?;
    Ok(((a + c)? * 0.5)?)
}
