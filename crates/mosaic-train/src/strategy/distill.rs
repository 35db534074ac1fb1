//! Knowledge distillation (Hinton et al. 2015): a student matches a
//! teacher's embeddings (MSE or cosine) or its softened logits (KL at
//! temperature T, scaled by T²). The teacher's side is always detached.

use candle_core::{D, Tensor};

use crate::error::{Error, Result};
use crate::loss::log_softmax;

fn same_shape(s: &Tensor, t: &Tensor) -> Result<()> {
    if s.dims() != t.dims() {
        return Err(Error::InvalidInput {
            what: "distillation".into(),
            message: format!("student {:?} vs teacher {:?}", s.dims(), t.dims()),
        });
    }
    Ok(())
}

/// Mean squared error between student and teacher embeddings (mean over
/// every element, PyTorch's `mse_loss`).
pub fn distill_mse(student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    same_shape(student, teacher)?;
    Ok((student - teacher.detach())?.sqr()?.mean_all()?)
}

/// `mean(1 - cos(sᵢ, tᵢ))` over the rows of `[N, D]` embeddings (ε = 1e-8
/// on the norms, like `F.cosine_similarity`).
pub fn distill_cosine(student: &Tensor, teacher: &Tensor) -> Result<Tensor> {
    same_shape(student, teacher)?;
    let t = teacher.detach();
    let dot = (student * &t)?.sum(D::Minus1)?;
    let ns = student
        .sqr()?
        .sum(D::Minus1)?
        .sqrt()?
        .clamp(1e-8, f64::INFINITY)?;
    let nt = t
        .sqr()?
        .sum(D::Minus1)?
        .sqrt()?
        .clamp(1e-8, f64::INFINITY)?;
    let cos = (dot / (ns * nt)?)?;
    Ok(cos.neg()?.affine(1.0, 1.0)?.mean_all()?)
}

/// Hinton's soft-target loss on `[N, C]` logits:
/// `T² · KL(softmax(t/T) ‖ softmax(s/T))` summed over classes and averaged
/// over rows (PyTorch `kl_div(log_softmax(s/T), softmax(t/T),
/// reduction="batchmean") * T²`).
pub fn distill_kl(
    student_logits: &Tensor,
    teacher_logits: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    same_shape(student_logits, teacher_logits)?;
    if !temperature.is_finite() || temperature <= 0.0 {
        return Err(Error::Config {
            source_name: "distillation".into(),
            message: format!("key `temperature` must be > 0, got {temperature}"),
        });
    }
    let rows = student_logits.elem_count() / student_logits.dim(D::Minus1)?.max(1);
    let ls = log_softmax(&(student_logits / temperature)?)?;
    let lt = log_softmax(&(teacher_logits.detach() / temperature)?)?;
    let pt = lt.exp()?;
    let kl = (pt * (lt - ls)?)?.sum_all()?;
    Ok((kl * (temperature * temperature / rows.max(1) as f64))?)
}
