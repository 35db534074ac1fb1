//! Classification, zero-shot and calibration metrics with scikit-learn /
//! NumPy semantics.
//!
//! * [`accuracy`], [`confusion_matrix`], [`macro_f1`]: `sklearn.metrics`
//!   (labels = the sorted union of true and predicted labels; per-class
//!   `F1 = 2·TP / (2·TP + FP + FN)`, 0 where the denominator is 0, i.e.
//!   `zero_division=0`; macro = unweighted mean).
//! * [`top_k_accuracy`]: `sklearn.metrics.top_k_accuracy_score` — classes
//!   ordered by `np.argsort(score, kind="mergesort")[::-1]`, so among tied
//!   scores the **higher** class index comes first.
//! * [`alignment_entropy`]: mean over rows of the entropy (natural log) of
//!   `softmax(row / temperature)`.
//! * [`expected_calibration_error`]: 15 equal-width bins `(lo, hi]` over the
//!   confidence (the max softmax probability), `Σ |mean conf − accuracy| ·
//!   share of samples` (Guo et al. 2017; the binning common references use).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::numeric::{np_mean, np_sum};

/// Share of equal pairs.
pub fn accuracy<T: PartialEq>(y_true: &[T], y_pred: &[T]) -> Result<f64> {
    Error::check_len("accuracy labels vs predictions", y_true.len(), y_pred.len())?;
    if y_true.is_empty() {
        return Err(Error::invalid("accuracy", "no samples"));
    }
    let hits = y_true.iter().zip(y_pred).filter(|(a, b)| a == b).count();
    Ok(hits as f64 / y_true.len() as f64)
}

/// A confusion matrix with its label order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion<T> {
    /// Labels, sorted (row and column order).
    pub labels: Vec<T>,
    /// `matrix[i][j]`: samples of true label `labels[i]` predicted `labels[j]`.
    pub matrix: Vec<Vec<u64>>,
}

/// `sklearn.metrics.confusion_matrix` over the sorted union of labels.
pub fn confusion_matrix<T: Ord + Clone>(y_true: &[T], y_pred: &[T]) -> Result<Confusion<T>> {
    Error::check_len(
        "confusion labels vs predictions",
        y_true.len(),
        y_pred.len(),
    )?;
    let mut idx: BTreeMap<T, usize> = BTreeMap::new();
    for l in y_true.iter().chain(y_pred) {
        idx.entry(l.clone()).or_insert(0);
    }
    let labels: Vec<T> = idx.keys().cloned().collect();
    for (k, v) in idx.values_mut().enumerate() {
        *v = k;
    }
    let n = labels.len();
    let mut m = vec![vec![0u64; n]; n];
    for (t, p) in y_true.iter().zip(y_pred) {
        m[idx[t]][idx[p]] += 1;
    }
    Ok(Confusion { labels, matrix: m })
}

/// Per-class F1 and their unweighted mean (`f1_score(average="macro",
/// zero_division=0)`).
pub fn macro_f1<T: Ord + Clone>(y_true: &[T], y_pred: &[T]) -> Result<f64> {
    if y_true.is_empty() {
        return Err(Error::invalid("macro-F1", "no samples"));
    }
    let c = confusion_matrix(y_true, y_pred)?;
    let n = c.labels.len();
    let f1: Vec<f64> = (0..n)
        .map(|k| {
            let tp = c.matrix[k][k] as f64;
            let true_sum: f64 = c.matrix[k].iter().sum::<u64>() as f64;
            let pred_sum: f64 = (0..n).map(|i| c.matrix[i][k]).sum::<u64>() as f64;
            let denom = true_sum + pred_sum;
            if denom == 0.0 { 0.0 } else { 2.0 * tp / denom }
        })
        .collect();
    Ok(np_mean(&f1))
}

fn check_scores(scores: &[f32], classes: usize, n: usize, what: &str) -> Result<()> {
    if classes == 0 {
        return Err(Error::invalid(what, "0 classes"));
    }
    Error::check_len(
        format!("{what} scores vs samples × classes"),
        scores.len(),
        n * classes,
    )?;
    if scores.iter().any(|v| v.is_nan()) {
        return Err(Error::invalid(what, "NaN score"));
    }
    Ok(())
}

/// `top_k_accuracy_score(y_true, scores, k)`: `scores` is `[n, classes]`
/// row-major, `y_true[i] < classes`.
pub fn top_k_accuracy(y_true: &[usize], scores: &[f32], classes: usize, k: usize) -> Result<f64> {
    check_scores(scores, classes, y_true.len(), "top-k accuracy")?;
    if y_true.is_empty() {
        return Err(Error::invalid("top-k accuracy", "no samples"));
    }
    let mut hits = 0usize;
    for (i, &y) in y_true.iter().enumerate() {
        if y >= classes {
            return Err(Error::invalid(
                "top-k accuracy",
                format!("label {y} of sample {i} is not below {classes}"),
            ));
        }
        let row = &scores[i * classes..(i + 1) * classes];
        let t = row[y];
        // Position in descending order with ties broken towards the higher index.
        let pos = row
            .iter()
            .enumerate()
            .filter(|&(c, &v)| v > t || (v == t && c > y))
            .count();
        hits += usize::from(pos < k);
    }
    Ok(hits as f64 / y_true.len() as f64)
}

/// Row-wise softmax in f64 of `x / temperature`.
pub fn softmax_rows(x: &[f32], cols: usize, temperature: f64) -> Result<Vec<f64>> {
    if cols == 0 || x.len() % cols != 0 {
        return Err(Error::invalid(
            "softmax",
            format!("{} values, {cols} columns", x.len()),
        ));
    }
    if temperature <= 0.0 || temperature.is_nan() {
        return Err(Error::invalid(
            "softmax",
            format!("temperature {temperature} must be > 0"),
        ));
    }
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(cols) {
        let z: Vec<f64> = row.iter().map(|&v| v as f64 / temperature).collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s = np_sum(&e);
        out.extend(e.iter().map(|v| v / s));
    }
    Ok(out)
}

/// Mean entropy (nats) of the softmax of each row of `sim / temperature`
/// (`[rows, cols]`): low when each query aligns with one item.
pub fn alignment_entropy(sim: &[f32], cols: usize, temperature: f64) -> Result<f64> {
    let p = softmax_rows(sim, cols, temperature)?;
    let ent: Vec<f64> = p
        .chunks_exact(cols)
        .map(|r| {
            let terms: Vec<f64> = r
                .iter()
                .map(|&q| if q > 0.0 { -(q * q.ln()) } else { 0.0 })
                .collect();
            np_sum(&terms)
        })
        .collect();
    if ent.is_empty() {
        return Err(Error::invalid("alignment entropy", "no rows"));
    }
    Ok(np_mean(&ent))
}

/// Number of bins of [`expected_calibration_error`].
pub const ECE_BINS: usize = 15;

/// Expected calibration error of probabilities `[n, classes]` (rows sum to
/// 1) against `y_true`, 15 equal-width bins `(lo, hi]` over the confidence.
pub fn expected_calibration_error(probs: &[f64], classes: usize, y_true: &[usize]) -> Result<f64> {
    if classes == 0 {
        return Err(Error::invalid("ECE", "0 classes"));
    }
    Error::check_len(
        "ECE probabilities vs samples × classes",
        probs.len(),
        y_true.len() * classes,
    )?;
    if y_true.is_empty() {
        return Err(Error::invalid("ECE", "no samples"));
    }
    let mut conf = Vec::with_capacity(y_true.len());
    let mut hit = Vec::with_capacity(y_true.len());
    for (row, &y) in probs.chunks_exact(classes).zip(y_true) {
        // np.argmax: the first maximum.
        let mut best = 0;
        for (c, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = c;
            }
        }
        conf.push(row[best]);
        hit.push(if best == y { 1.0 } else { 0.0 });
    }
    let edges: Vec<f64> = (0..=ECE_BINS)
        .map(|k| {
            // np.linspace(0, 1, 16): start + k * step, last value exactly 1.
            if k == ECE_BINS {
                1.0
            } else {
                k as f64 * (1.0 / ECE_BINS as f64)
            }
        })
        .collect();
    let n = conf.len() as f64;
    let mut ece = 0.0;
    for b in 0..ECE_BINS {
        let (lo, hi) = (edges[b], edges[b + 1]);
        let idx: Vec<usize> = (0..conf.len())
            .filter(|&i| conf[i] > lo && conf[i] <= hi)
            .collect();
        if idx.is_empty() {
            continue;
        }
        let c: Vec<f64> = idx.iter().map(|&i| conf[i]).collect();
        let a: Vec<f64> = idx.iter().map(|&i| hit[i]).collect();
        ece += (np_mean(&c) - np_mean(&a)).abs() * (idx.len() as f64 / n);
    }
    Ok(ece)
}

/// Zero-shot / classification summary from logits `[n, classes]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Top-1 accuracy (sklearn `top_k_accuracy_score`, k = 1).
    pub top1: f64,
    /// Top-5 accuracy (k = 5; 1.0 when there are ≤ 5 classes).
    pub top5: f64,
    /// Accuracy of the arg-max prediction (first maximum).
    pub accuracy: f64,
    /// Macro-F1 of the arg-max prediction.
    pub macro_f1: f64,
    /// Confusion matrix of the arg-max prediction.
    pub confusion: Confusion<usize>,
    /// ECE of the softmax probabilities (15 bins).
    pub ece: f64,
    /// Mean softmax entropy of the rows.
    pub entropy: f64,
}

/// Everything of this module from logits and true labels.
pub fn classification_report(
    logits: &[f32],
    classes: usize,
    y_true: &[usize],
) -> Result<ClassificationReport> {
    check_scores(logits, classes, y_true.len(), "classification")?;
    let pred: Vec<usize> = logits
        .chunks_exact(classes)
        .map(|r| {
            let mut b = 0;
            for (c, &v) in r.iter().enumerate() {
                if v > r[b] {
                    b = c;
                }
            }
            b
        })
        .collect();
    let probs = softmax_rows(logits, classes, 1.0)?;
    Ok(ClassificationReport {
        top1: top_k_accuracy(y_true, logits, classes, 1)?,
        top5: top_k_accuracy(y_true, logits, classes, 5)?,
        accuracy: accuracy(y_true, &pred)?,
        macro_f1: macro_f1(y_true, &pred)?,
        confusion: confusion_matrix(y_true, &pred)?,
        ece: expected_calibration_error(&probs, classes, y_true)?,
        entropy: alignment_entropy(logits, classes, 1.0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sklearn_examples() {
        // sklearn docs: confusion_matrix([2,0,2,2,0,1],[0,0,2,2,0,2]).
        let c = confusion_matrix(&[2, 0, 2, 2, 0, 1], &[0, 0, 2, 2, 0, 2]).unwrap();
        assert_eq!(c.matrix, vec![vec![2, 0, 0], vec![0, 0, 1], vec![1, 0, 2]]);
        // f1_score([0,1,2,0,1,2],[0,2,1,0,0,1], average='macro') = 0.2666...
        let f = macro_f1(&[0, 1, 2, 0, 1, 2], &[0, 2, 1, 0, 0, 1]).unwrap();
        assert!((f - 0.26666666666666666).abs() < 1e-15);
    }

    #[test]
    fn top_k_ties_prefer_higher_index() {
        // Scores tie for classes 0 and 1; label 0 loses the tie at k = 1.
        assert_eq!(top_k_accuracy(&[0], &[1.0, 1.0, 0.0], 3, 1).unwrap(), 0.0);
        assert_eq!(top_k_accuracy(&[1], &[1.0, 1.0, 0.0], 3, 1).unwrap(), 1.0);
    }
}
