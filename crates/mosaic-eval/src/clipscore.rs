//! CLIPScore and RefCLIPScore on given embeddings.
//!
//! * [`clip_score`]: torchmetrics' definition — per pair
//!   `100 · cos(image, caption)` after L2 normalisation
//!   (`_clip_score_update`), aggregated as `max(mean, 0)` (`clip_score`
//!   clamps the mean, not each pair). [`ClipScores::per_sample`] keeps the
//!   unclamped per-pair values, as torchmetrics returns them.
//! * [`ref_clip_score`]: Hessel et al. (2021): `CLIP-S = w · max(cos(c, v), 0)`
//!   with `w = 2.5`, and `RefCLIP-S = H-mean(CLIP-S, max(max_r cos(c, r), 0))`
//!   (the harmonic mean is 0 when both are 0).
//!
//! Embeddings are rows of `[n, d]` slices (f32, any scale); cosines are
//! computed in f64.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// torchmetrics' CLIPScore of `n` pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipScores {
    /// `max(mean(100 · cos), 0)`, torchmetrics' value.
    pub score: f64,
    /// `100 · cos` per pair (not clamped).
    pub per_sample: Vec<f64>,
}

/// RefCLIPScore (and CLIP-S with the paper's weight) per candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefClipScores {
    /// Mean CLIP-S (`w · max(cos, 0)`).
    pub clip_s: f64,
    /// Mean RefCLIP-S.
    pub ref_clip_s: f64,
    /// CLIP-S per candidate.
    pub clip_s_per_sample: Vec<f64>,
    /// RefCLIP-S per candidate.
    pub ref_clip_s_per_sample: Vec<f64>,
}

/// The weight `w` of CLIP-S in Hessel et al. (2021).
pub const CLIP_S_WEIGHT: f64 = 2.5;

fn rows<'a>(x: &'a [f32], dim: usize, what: &str) -> Result<std::slice::ChunksExact<'a, f32>> {
    if dim == 0 || x.len() % dim != 0 {
        return Err(Error::invalid(
            what,
            format!("{} values are not rows of dimension {dim}", x.len()),
        ));
    }
    Ok(x.chunks_exact(dim))
}

/// Cosine similarity of two vectors, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// torchmetrics CLIPScore of paired `images` and `captions` embeddings
/// (`[n, dim]` each, row-major).
pub fn clip_score(images: &[f32], captions: &[f32], dim: usize) -> Result<ClipScores> {
    let a: Vec<&[f32]> = rows(images, dim, "CLIPScore image embeddings")?.collect();
    let b: Vec<&[f32]> = rows(captions, dim, "CLIPScore caption embeddings")?.collect();
    Error::check_len("CLIPScore images vs captions", a.len(), b.len())?;
    if a.is_empty() {
        return Err(Error::invalid("CLIPScore", "no pairs"));
    }
    let per: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| 100.0 * cosine(x, y))
        .collect();
    let mean = per.iter().sum::<f64>() / per.len() as f64;
    Ok(ClipScores {
        score: mean.max(0.0),
        per_sample: per,
    })
}

/// CLIP-S and RefCLIP-S (Hessel et al. 2021, `w = 2.5`): `candidates` and
/// `images` are `[n, dim]`; `references` is `[n, k, dim]` (k references per
/// candidate).
pub fn ref_clip_score(
    candidates: &[f32],
    images: &[f32],
    references: &[f32],
    refs_per_candidate: usize,
    dim: usize,
) -> Result<RefClipScores> {
    let c: Vec<&[f32]> = rows(candidates, dim, "RefCLIPScore candidates")?.collect();
    let v: Vec<&[f32]> = rows(images, dim, "RefCLIPScore images")?.collect();
    let r: Vec<&[f32]> = rows(references, dim, "RefCLIPScore references")?.collect();
    Error::check_len("RefCLIPScore candidates vs images", c.len(), v.len())?;
    if refs_per_candidate == 0 {
        return Err(Error::invalid("RefCLIPScore references", "0 per candidate"));
    }
    Error::check_len(
        "RefCLIPScore references vs candidates × refs_per_candidate",
        r.len(),
        c.len() * refs_per_candidate,
    )?;
    if c.is_empty() {
        return Err(Error::invalid("RefCLIPScore", "no candidates"));
    }
    let mut clip = Vec::with_capacity(c.len());
    let mut refclip = Vec::with_capacity(c.len());
    for (i, (ci, vi)) in c.iter().zip(&v).enumerate() {
        let s = CLIP_S_WEIGHT * cosine(ci, vi).max(0.0);
        let best = r[i * refs_per_candidate..(i + 1) * refs_per_candidate]
            .iter()
            .map(|rj| cosine(ci, rj))
            .fold(f64::NEG_INFINITY, f64::max)
            .max(0.0);
        let h = if s + best > 0.0 {
            2.0 * s * best / (s + best)
        } else {
            0.0
        };
        clip.push(s);
        refclip.push(h);
    }
    let n = c.len() as f64;
    Ok(RefClipScores {
        clip_s: clip.iter().sum::<f64>() / n,
        ref_clip_s: refclip.iter().sum::<f64>() / n,
        clip_s_per_sample: clip,
        ref_clip_s_per_sample: refclip,
    })
}
