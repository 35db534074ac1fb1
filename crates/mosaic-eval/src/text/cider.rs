//! CIDEr-D with pycocoevalcap's semantics (`pycocoevalcap.cider.Cider`).
//!
//! Exactly as `CiderScorer`: n-grams 1–4 of whitespace-split captions;
//! document frequency = the number of images whose reference set contains
//! the n-gram; idf `log(images) − log(max(1, df))`; per order the tf-idf
//! cosine with clipping (`min(hyp, ref) · ref`); the Gaussian length penalty
//! `exp(−δ² / 2σ²)` with σ = 6, where δ counts *bigrams* (pycocoevalcap's
//! `length` is incremented for n-gram index 1); the mean over orders, the
//! mean over references, × 10; the corpus score is the mean over images.
//! Captions are tokenized first by [`coco_tokenize`](crate::text::ptb::coco_tokenize)
//! (pycocoevalcap's PTBTokenizer step) unless given already tokenized.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::text::{ptb, py};

/// CIDEr-D of a corpus: the mean and one score per image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiderScore {
    /// Mean over images.
    pub score: f64,
    /// Per image, in input order.
    pub per_image: Vec<f64>,
}

type Counts = HashMap<Vec<String>, f64>;
/// N-grams in first-seen order with their counts, and as a map.
type Cooked = (Vec<(Vec<String>, f64)>, Counts);

fn precook(s: &str, n: usize) -> Cooked {
    let words: Vec<&str> = py::split_whitespace(s).collect();
    let mut order: Vec<(Vec<String>, f64)> = Vec::new();
    let mut idx: HashMap<Vec<String>, usize> = HashMap::new();
    for k in 1..=n {
        if words.len() < k {
            break;
        }
        for w in words.windows(k) {
            let g: Vec<String> = w.iter().map(|x| x.to_string()).collect();
            match idx.get(&g) {
                Some(&i) => order[i].1 += 1.0,
                None => {
                    idx.insert(g.clone(), order.len());
                    order.push((g, 1.0));
                }
            }
        }
    }
    let map = order.iter().cloned().collect();
    (order, map)
}

struct Vecs {
    vec: Vec<HashMap<Vec<String>, f64>>,
    order: Vec<Vec<(Vec<String>, f64)>>,
    norm: Vec<f64>,
    length: f64,
}

/// CIDEr-D of already tokenized captions (`hyps[i]` against `refs[i]`).
pub fn cider_d_tokenized(hyps: &[String], refs: &[Vec<String>]) -> Result<CiderScore> {
    cider_d_with(hyps, refs, 4, 6.0)
}

/// CIDEr-D of raw captions: each caption is tokenized like pycocoevalcap's
/// PTBTokenizer step first.
pub fn cider_d<S: AsRef<str>>(hyps: &[S], refs: &[Vec<String>]) -> Result<CiderScore> {
    let h: Vec<String> = hyps
        .iter()
        .map(|s| ptb::coco_tokenize(s.as_ref()))
        .collect();
    let r: Vec<Vec<String>> = refs
        .iter()
        .map(|rs| rs.iter().map(|s| ptb::coco_tokenize(s)).collect())
        .collect();
    cider_d_tokenized(&h, &r)
}

/// CIDEr-D with explicit `n` (max n-gram order) and `sigma`.
pub fn cider_d_with(
    hyps: &[String],
    refs: &[Vec<String>],
    n: usize,
    sigma: f64,
) -> Result<CiderScore> {
    Error::check_len("CIDEr hypotheses vs reference sets", hyps.len(), refs.len())?;
    if hyps.is_empty() {
        return Err(Error::invalid("CIDEr hypotheses", "none given"));
    }
    if let Some(i) = refs.iter().position(|r| r.is_empty()) {
        return Err(Error::invalid(
            "CIDEr references",
            format!("image {} has no reference", i + 1),
        ));
    }
    let crefs: Vec<Vec<Cooked>> = refs
        .iter()
        .map(|rs| rs.iter().map(|r| precook(r, n)).collect())
        .collect();
    let ctest: Vec<Cooked> = hyps.iter().map(|h| precook(h, n)).collect();
    let mut df: HashMap<Vec<String>, f64> = HashMap::new();
    for rs in &crefs {
        let mut seen: std::collections::HashSet<&Vec<String>> = std::collections::HashSet::new();
        for (_, m) in rs {
            for g in m.keys() {
                seen.insert(g);
            }
        }
        for g in seen {
            *df.entry(g.clone()).or_insert(0.0) += 1.0;
        }
    }
    let ref_len = (crefs.len() as f64).ln();
    let to_vec = |order: &[(Vec<String>, f64)]| -> Vecs {
        let mut vec = vec![HashMap::new(); n];
        let mut ord = vec![Vec::new(); n];
        let mut norm = vec![0.0f64; n];
        let mut length = 0.0;
        for (g, tf) in order {
            let d = df.get(g).copied().unwrap_or(0.0).max(1.0).ln();
            let k = g.len() - 1;
            let v = tf * (ref_len - d);
            vec[k].insert(g.clone(), v);
            ord[k].push((g.clone(), v));
            norm[k] += v * v;
            if k == 1 {
                length += tf;
            }
        }
        Vecs {
            vec,
            order: ord,
            norm: norm.into_iter().map(f64::sqrt).collect(),
            length,
        }
    };
    let mut per_image = Vec::with_capacity(hyps.len());
    for ((order, _), rs) in ctest.iter().zip(&crefs) {
        let h = to_vec(order);
        let mut score = vec![0.0f64; n];
        for (rorder, _) in rs {
            let r = to_vec(rorder);
            let delta = h.length - r.length;
            for (k, sk) in score.iter_mut().enumerate() {
                let mut val = 0.0;
                for (g, vh) in &h.order[k] {
                    let vr = r.vec[k].get(g).copied().unwrap_or(0.0);
                    val += vh.min(vr) * vr;
                }
                if h.norm[k] != 0.0 && r.norm[k] != 0.0 {
                    val /= h.norm[k] * r.norm[k];
                }
                val *= std::f64::consts::E.powf(-(delta * delta) / (2.0 * sigma * sigma));
                *sk += val;
            }
        }
        let _ = &h.vec;
        let mut avg = score.iter().sum::<f64>() / n as f64;
        avg /= rs.len() as f64;
        avg *= 10.0;
        per_image.push(avg);
    }
    let score = per_image.iter().sum::<f64>() / per_image.len() as f64;
    Ok(CiderScore { score, per_image })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_single_image_scores_zero_idf() {
        // One image: log(1) = 0, every idf is 0, so the score is 0
        // (pycocoevalcap gives 0 too).
        let s = cider_d_tokenized(&["a cat".into()], &[vec!["a cat".into()]]).unwrap();
        assert_eq!(s.score, 0.0);
    }
}
