//! Objectives, from differentiable primitives.

use std::collections::BTreeMap;

use candle_core::{D, DType, Tensor};
use mosaic_models::nn::{Init, ParamStore};

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

// ---------------------------------------------------------------------------
// Contrastive objectives
// ---------------------------------------------------------------------------

/// The largest value a contrastive `logit_scale` (log inverse temperature)
/// may take: `ln 100`, as in CLIP and open_clip (temperature ≥ 0.01).
pub const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_092;

/// Clamps a learnable log inverse temperature into `[0, ln 100]` in place,
/// like open_clip's `logit_scale.clamp_(0, math.log(100))`. Call it after
/// every optimiser step. Returns whether any value changed.
pub fn clamp_logit_scale(var: &candle_core::Var) -> Result<bool> {
    let t = var.as_tensor();
    let v: Vec<f64> = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    let c: Vec<f64> = v.iter().map(|x| x.clamp(0.0, MAX_LOGIT_SCALE)).collect();
    if c == v {
        return Ok(false);
    }
    let new = Tensor::from_vec(c, t.dims(), t.device())?.to_dtype(t.dtype())?;
    var.set(&new)?;
    Ok(true)
}

fn check_pair(a: &Tensor, b: &Tensor) -> Result<(usize, usize)> {
    let (n, d) = a.dims2()?;
    let (m, e) = b.dims2()?;
    if d != e {
        return Err(Error::InvalidInput {
            what: "embeddings".into(),
            message: format!("widths differ: [{n}, {d}] vs [{m}, {e}]"),
        });
    }
    Ok((n, m))
}

/// `[N, M]` logits `exp(logit_scale) · a bᵀ` (plus `logit_bias` when given)
/// from `[N, D]` and `[M, D]` embeddings (normalise them first for cosine
/// similarities). `logit_scale` and `logit_bias` are scalars or `[1]`.
pub fn contrastive_logits(
    a: &Tensor,
    b: &Tensor,
    logit_scale: &Tensor,
    logit_bias: Option<&Tensor>,
) -> Result<Tensor> {
    check_pair(a, b)?;
    let scale = logit_scale.flatten_all()?.exp()?;
    let mut logits = a.matmul(&b.t()?)?.broadcast_mul(&scale)?;
    if let Some(bias) = logit_bias {
        logits = logits.broadcast_add(&bias.flatten_all()?)?;
    }
    Ok(logits)
}

/// CLIP's symmetric InfoNCE from `[B, D]` embeddings of matching pairs
/// (row i of `a` matches row i of `b`) and a log inverse temperature
/// (open_clip `ClipLoss`; keep the scale clamped with
/// [`clamp_logit_scale`]).
pub fn clip_loss_embeddings(a: &Tensor, b: &Tensor, logit_scale: &Tensor) -> Result<Tensor> {
    clip_loss(&contrastive_logits(a, b, logit_scale, None)?)
}

/// `log σ(x)`, elementwise, stable for any `x` and with the exact gradient
/// `σ(-x)` everywhere (including 0): `min(x, 0) - ln(1 + e^{-|x|})`.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let neg = x.lt(0.0)?.to_dtype(x.dtype())?.detach();
    let soft = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok(((x * neg)? - soft)?)
}

/// SigLIP's pairwise sigmoid loss on `[B, B]` logits `t·cos + b` (row i's
/// positive is column i): `-Σᵢⱼ log σ(zᵢⱼ · logitsᵢⱼ) / B` with `z = +1` on
/// the diagonal and `-1` elsewhere (Zhai et al. 2023; big_vision and
/// open_clip `SigLipLoss`).
pub fn siglip_loss(logits: &Tensor) -> Result<Tensor> {
    let (b, b2) = logits.dims2()?;
    if b != b2 {
        return Err(Error::InvalidInput {
            what: "logits".into(),
            message: format!("sigmoid contrastive logits must be square, got [{b}, {b2}]"),
        });
    }
    let mut z = vec![-1.0f64; b * b];
    for i in 0..b {
        z[i * b + i] = 1.0;
    }
    let z = Tensor::from_vec(z, (b, b), logits.device())?.to_dtype(logits.dtype())?;
    Ok(log_sigmoid(&(logits * z)?)?
        .sum_all()?
        .neg()?
        .affine(1.0 / b as f64, 0.0)?)
}

/// SigLIP loss from `[B, D]` embeddings, a log scale `t'` (the logits use
/// `exp(t')`; SigLIP initialises `t' = ln 10`) and a bias `b` (init -10).
pub fn siglip_loss_embeddings(
    a: &Tensor,
    b: &Tensor,
    logit_scale: &Tensor,
    logit_bias: &Tensor,
) -> Result<Tensor> {
    siglip_loss(&contrastive_logits(a, b, logit_scale, Some(logit_bias))?)
}

// ---------------------------------------------------------------------------
// Image–text matching with in-batch hard negatives
// ---------------------------------------------------------------------------

/// How [`mine_itm_negatives`] picks a negative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NegativeMining {
    /// Sampled with probability ∝ `softmax(sim)` over the row, the positive
    /// (and anything of the same group) excluded, as ALBEF / BLIP do; the
    /// draw is a deterministic function of `seed` (pass e.g. the step).
    Sample {
        /// Seed of the draw.
        seed: u64,
    },
    /// The most similar non-positive (argmax).
    Hardest,
}

/// Negatives mined from a `[B, B]` image–text similarity matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct ItmNegatives {
    /// For image `i`, the text to pair it with as a negative (`None` when
    /// every text of the batch is of its group).
    pub text_for_image: Vec<Option<usize>>,
    /// For text `j`, the image to pair it with as a negative.
    pub image_for_text: Vec<Option<usize>>,
}

/// Index pairs to score with an ITM head, with their match labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ItmPairs {
    /// Image index of each pair.
    pub image: Vec<usize>,
    /// Text index of each pair.
    pub text: Vec<usize>,
    /// 1 = match, 0 = no match (the class ids for [`cross_entropy`] with a
    /// 2-way ITM head).
    pub labels: Vec<u32>,
}

impl ItmNegatives {
    /// The ALBEF batch: every positive `(i, i)` first, then `(i, neg text)`
    /// for each image, then `(neg image, j)` for each text (rows without a
    /// negative are skipped).
    pub fn pairs(&self) -> ItmPairs {
        let b = self.text_for_image.len();
        let mut p = ItmPairs {
            image: (0..b).collect(),
            text: (0..b).collect(),
            labels: vec![1; b],
        };
        for (i, t) in self.text_for_image.iter().enumerate() {
            if let Some(t) = t {
                p.image.push(i);
                p.text.push(*t);
                p.labels.push(0);
            }
        }
        for (j, i) in self.image_for_text.iter().enumerate() {
            if let Some(i) = i {
                p.image.push(*i);
                p.text.push(j);
                p.labels.push(0);
            }
        }
        p
    }
}

/// SplitMix64: a small seeded generator for reproducible draws.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 53 bits.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn pick(
    row: &[f64],
    allowed: impl Fn(usize) -> bool,
    mining: NegativeMining,
    rng: &mut SplitMix64,
) -> Option<usize> {
    let cand: Vec<usize> = (0..row.len()).filter(|&j| allowed(j)).collect();
    if cand.is_empty() {
        return None;
    }
    match mining {
        NegativeMining::Hardest => {
            cand.iter()
                .copied()
                .fold(None, |best: Option<usize>, j| match best {
                    Some(b) if row[b] >= row[j] => Some(b),
                    _ => Some(j),
                })
        }
        NegativeMining::Sample { .. } => {
            let m = cand
                .iter()
                .map(|&j| row[j])
                .fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = cand.iter().map(|&j| (row[j] - m).exp()).collect();
            let total: f64 = w.iter().sum();
            let mut u = rng.next_f64() * total;
            for (k, &wk) in w.iter().enumerate() {
                if u < wk {
                    return Some(cand[k]);
                }
                u -= wk;
            }
            cand.last().copied()
        }
    }
}

/// Mines one in-batch hard negative per image and per text from `sim`
/// (`[B, B]`, row = image, column = text, e.g. the contrastive logits; it is
/// read, never differentiated). `groups` (one id per sample, e.g. the class)
/// marks samples that must not serve as each other's negatives (BLIP masks
/// equal ids); without it only the diagonal is excluded.
pub fn mine_itm_negatives(
    sim: &Tensor,
    groups: Option<&[u64]>,
    mining: NegativeMining,
) -> Result<ItmNegatives> {
    let (b, b2) = sim.dims2()?;
    if b != b2 || b < 2 {
        return Err(Error::InvalidInput {
            what: "similarities".into(),
            message: format!("need a square [B, B] matrix with B ≥ 2, got [{b}, {b2}]"),
        });
    }
    if let Some(g) = groups {
        if g.len() != b {
            return Err(Error::InvalidInput {
                what: "groups".into(),
                message: format!("{} group ids for a batch of {b}", g.len()),
            });
        }
    }
    let s: Vec<Vec<f64>> = sim.detach().to_dtype(DType::F64)?.to_vec2()?;
    if s.iter().flatten().any(|v| !v.is_finite()) {
        return Err(Error::InvalidInput {
            what: "similarities".into(),
            message: "not finite".into(),
        });
    }
    let same = |i: usize, j: usize| i == j || groups.is_some_and(|g| g[i] == g[j]);
    let seed = match mining {
        NegativeMining::Sample { seed } => seed,
        NegativeMining::Hardest => 0,
    };
    let mut rng = SplitMix64(seed);
    let text_for_image = (0..b)
        .map(|i| pick(&s[i], |j| !same(i, j), mining, &mut rng))
        .collect();
    let image_for_text = (0..b)
        .map(|j| {
            let col: Vec<f64> = (0..b).map(|i| s[i][j]).collect();
            pick(&col, |i| !same(i, j), mining, &mut rng)
        })
        .collect();
    Ok(ItmNegatives {
        text_for_image,
        image_for_text,
    })
}

/// ITM loss: cross-entropy of `[P, 2]` match logits (one row per pair of
/// [`ItmNegatives::pairs`]) against the pairs' labels.
pub fn itm_loss(logits: &Tensor, pairs: &ItmPairs) -> Result<Tensor> {
    let y = Tensor::new(pairs.labels.as_slice(), logits.device())?;
    cross_entropy(logits, &y, 0.0)
}

// ---------------------------------------------------------------------------
// Adversarial modality alignment
// ---------------------------------------------------------------------------

/// Gradient reversal (Ganin & Lempitsky 2015): the identity going forward
/// (bit-exact), `-λ · grad` going back. Put it between the features and a
/// modality discriminator so the encoders learn to fool it. Written as
/// `x̄ + (x - x̄)·(-λ)` with `x̄ = x.detach()`, so it runs on any device.
pub fn gradient_reversal(x: &Tensor, lambda: f64) -> Result<Tensor> {
    let d = x.detach();
    Ok((&d + ((x - &d)? * (-lambda))?)?)
}

/// Mean binary cross-entropy of logits (any shape) against 0/1 targets of
/// the same element count (PyTorch's `binary_cross_entropy_with_logits`):
/// `-[y log σ(x) + (1 - y) log σ(-x)]`.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.elem_count() != targets.elem_count() {
        return Err(Error::InvalidInput {
            what: "targets".into(),
            message: format!(
                "{} targets for {} logits",
                targets.elem_count(),
                logits.elem_count()
            ),
        });
    }
    let x = logits.flatten_all()?;
    let y = targets.flatten_all()?.to_dtype(x.dtype())?;
    let pos = (log_sigmoid(&x)? * &y)?;
    let neg = (log_sigmoid(&x.neg()?)? * (y.neg()? + 1.0)?)?;
    Ok((pos + neg)?.mean_all()?.neg()?)
}

/// The discriminator's objective for adversarial alignment: `[N]` (or
/// `[N, 1]`) logits of "this feature comes from modality A" for features of
/// A (label 1) and of B (label 0), BCE-averaged over both. Pass the
/// features through [`gradient_reversal`] first and minimise this one loss:
/// the discriminator learns to tell the modalities apart while the encoders
/// (through the reversed gradient) learn to make them indistinguishable.
pub fn modality_discriminator_loss(logits_a: &Tensor, logits_b: &Tensor) -> Result<Tensor> {
    let x = Tensor::cat(&[logits_a.flatten_all()?, logits_b.flatten_all()?], 0)?;
    let (na, nb) = (logits_a.elem_count(), logits_b.elem_count());
    let mut y = vec![1.0f64; na];
    y.extend(std::iter::repeat_n(0.0, nb));
    let y = Tensor::from_vec(y, na + nb, x.device())?.to_dtype(x.dtype())?;
    bce_with_logits(&x, &y)
}

/// The modality gap (Liang et al. 2022): the Euclidean distance between
/// the centroids of two sets of `[N, D]` embeddings (normalise them first
/// to measure it on the unit sphere).
pub fn modality_gap(a: &Tensor, b: &Tensor) -> Result<f64> {
    check_pair(a, b)?;
    let ca = a.detach().to_dtype(DType::F64)?.mean(0)?;
    let cb = b.detach().to_dtype(DType::F64)?.mean(0)?;
    Ok((ca - cb)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?)
}

// ---------------------------------------------------------------------------
// Multi-task weighting
// ---------------------------------------------------------------------------

/// `Σ wᵢ · Lᵢ` over named task losses (scalars). Every loss needs a weight:
/// a task without one is an error naming it.
pub fn weighted_sum(
    losses: &BTreeMap<String, Tensor>,
    weights: &BTreeMap<String, f64>,
) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (name, l) in losses {
        let w = weights.get(name).ok_or_else(|| Error::InvalidInput {
            what: format!("task `{name}`"),
            message: "has a loss but no weight".into(),
        })?;
        let term = (l.flatten_all()?.sum_all()? * *w)?;
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    total.ok_or_else(|| Error::InvalidInput {
        what: "losses".into(),
        message: "no task loss to combine".into(),
    })
}

/// Learned uncertainty weighting (Kendall, Gal & Cipolla 2018, in the
/// common form `Σ exp(-sᵢ) · Lᵢ + sᵢ`): one learnable log-variance `sᵢ` per
/// task, stored as `loss_weights.<task>` (init 0) in a [`ParamStore`] so
/// the optimiser trains it with the model.
#[derive(Debug, Clone)]
pub struct UncertaintyWeighting {
    log_vars: BTreeMap<String, Tensor>,
}

impl UncertaintyWeighting {
    /// Creates (or reuses) `loss_weights.<task>` in `store` for each task.
    pub fn new(store: &ParamStore, tasks: &[&str]) -> Result<Self> {
        if tasks.is_empty() {
            return Err(Error::InvalidInput {
                what: "tasks".into(),
                message: "uncertainty weighting needs at least one task".into(),
            });
        }
        let p = store.sub("loss_weights");
        let mut log_vars = BTreeMap::new();
        for t in tasks {
            log_vars.insert(t.to_string(), p.get(t, &[1], Init::Zeros)?);
        }
        Ok(UncertaintyWeighting { log_vars })
    }

    /// `Σ exp(-sᵢ) · Lᵢ + sᵢ` over the given task losses (a subset of the
    /// tasks is fine; an unknown task is an error naming it).
    pub fn combine(&self, losses: &BTreeMap<String, Tensor>) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (name, l) in losses {
            let s = self.log_vars.get(name).ok_or_else(|| Error::InvalidInput {
                what: format!("task `{name}`"),
                message: format!(
                    "not one of the weighted tasks ({})",
                    self.log_vars.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })?;
            let s = s.sum_all()?;
            let term = ((s.neg()?.exp()? * l.flatten_all()?.sum_all()?)? + &s)?;
            total = Some(match total {
                Some(t) => (t + term)?,
                None => term,
            });
        }
        total.ok_or_else(|| Error::InvalidInput {
            what: "losses".into(),
            message: "no task loss to combine".into(),
        })
    }

    /// The current weights `exp(-sᵢ)` per task (for logging).
    pub fn weights(&self) -> Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        for (k, s) in &self.log_vars {
            let v = s.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
            out.insert(k.clone(), (-v).exp());
        }
        Ok(out)
    }
}
