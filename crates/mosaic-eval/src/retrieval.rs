//! Cross-modal retrieval: R@1/5/10, median and mean rank, mAP, both ways.
//!
//! Works for any modality pair: side A (say images) and side B (say
//! captions) are rows of a similarity matrix `sim[i][j]` (or embeddings the
//! matrix is computed from). Item `j` of B is relevant to query `i` of A
//! when `labels_a[i] == labels_b[j]`; without labels, pair `i` ↔ `i`
//! (COCO-style "5 captions per image" is `labels_b = [0,0,0,0,0,1,...]`).
//!
//! Ranking is the NumPy reference's (`scripts/reference/make_eval_fixtures.py`):
//! items are ordered by `np.argsort(-sim[i], kind="stable")`, so **ties go to
//! the lower index**. The rank of a query is the 1-based position of its
//! first relevant item; AP is the mean over relevant items of
//! `(hits so far) / position`; R@K = share of queries with rank ≤ K; median
//! rank is `np.median` (may end in .5); means use NumPy's pairwise summation,
//! so every number equals the reference exactly.
//!
//! Speed: ranks need no sort — an item's position is the number of items
//! scoring higher plus the number of equal items with a lower index. B→A
//! streams the same matrix row by row (no transpose). Queries are split over
//! threads. 10,000 × 10,000 both ways: see `benches/retrieval.rs`.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::numeric::{np_mean, np_median};

/// Retrieval metrics for queries of one side against the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    /// Number of queries.
    pub queries: usize,
    /// Share of queries whose first relevant item is at position 1.
    pub r1: f64,
    /// … within the first 5.
    pub r5: f64,
    /// … within the first 10.
    pub r10: f64,
    /// `np.median` of the 1-based ranks.
    pub median_rank: f64,
    /// Mean 1-based rank.
    pub mean_rank: f64,
    /// Mean average precision over queries.
    pub map: f64,
    /// 1-based rank of the first relevant item, per query.
    pub ranks: Vec<usize>,
}

impl RetrievalMetrics {
    /// Recall at any `k` from the stored ranks.
    pub fn recall_at(&self, k: usize) -> f64 {
        self.ranks.iter().filter(|&&r| r <= k).count() as f64 / self.ranks.len() as f64
    }
}

/// Both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    /// Queries from A (rows), items from B (columns): e.g. image → text.
    pub a_to_b: RetrievalMetrics,
    /// Queries from B, items from A: e.g. text → image.
    pub b_to_a: RetrievalMetrics,
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 16)
}

/// For each query, the sorted 1-based positions of its relevant items.
fn metrics(positions: Vec<Vec<usize>>) -> RetrievalMetrics {
    let ranks: Vec<usize> = positions.iter().map(|p| p[0]).collect();
    let aps: Vec<f64> = positions
        .iter()
        .map(|p| {
            let v: Vec<f64> = p
                .iter()
                .enumerate()
                .map(|(k, &pos)| (k + 1) as f64 / pos as f64)
                .collect();
            np_mean(&v)
        })
        .collect();
    let n = ranks.len() as f64;
    let at = |k: usize| ranks.iter().filter(|&&r| r <= k).count() as f64 / n;
    let rf: Vec<f64> = ranks.iter().map(|&r| r as f64).collect();
    RetrievalMetrics {
        queries: ranks.len(),
        r1: at(1),
        r5: at(5),
        r10: at(10),
        median_rank: np_median(&rf),
        mean_rank: ranks.iter().map(|&r| r as u64).sum::<u64>() as f64 / n,
        map: np_mean(&aps),
        ranks,
    }
}

/// For each query, the indices of its relevant items.
type Relevant = Vec<Vec<usize>>;

/// Relevant B indices for every A label, and the reverse.
fn relevance(
    n_a: usize,
    n_b: usize,
    labels_a: Option<&[usize]>,
    labels_b: Option<&[usize]>,
) -> Result<(Relevant, Relevant)> {
    let la: Vec<usize> = match labels_a {
        Some(l) => {
            Error::check_len("retrieval labels_a vs rows", l.len(), n_a)?;
            l.to_vec()
        }
        None => (0..n_a).collect(),
    };
    let lb: Vec<usize> = match labels_b {
        Some(l) => {
            Error::check_len("retrieval labels_b vs columns", l.len(), n_b)?;
            l.to_vec()
        }
        None => (0..n_b).collect(),
    };
    let mut by_b: HashMap<usize, Vec<usize>> = HashMap::new();
    for (j, &l) in lb.iter().enumerate() {
        by_b.entry(l).or_default().push(j);
    }
    let mut by_a: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, &l) in la.iter().enumerate() {
        by_a.entry(l).or_default().push(i);
    }
    let rel_a: Vec<Vec<usize>> = la
        .iter()
        .enumerate()
        .map(|(i, l)| {
            by_b.get(l).cloned().ok_or_else(|| {
                Error::invalid(
                    "retrieval labels",
                    format!("query {i} of A (label {l}) has no relevant item in B"),
                )
            })
        })
        .collect::<Result<_>>()?;
    let rel_b: Vec<Vec<usize>> = lb
        .iter()
        .enumerate()
        .map(|(j, l)| {
            by_a.get(l).cloned().ok_or_else(|| {
                Error::invalid(
                    "retrieval labels",
                    format!("query {j} of B (label {l}) has no relevant item in A"),
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok((rel_a, rel_b))
}

/// Positions of `rel` items in the stable descending order of `row`.
fn row_positions(row: &[f32], rel: &[usize]) -> Vec<usize> {
    let mut pos: Vec<usize> = rel
        .iter()
        .map(|&j| {
            let t = row[j];
            let mut p = 1usize;
            for (k, &v) in row.iter().enumerate() {
                p += usize::from(v > t || (v == t && k < j));
            }
            p
        })
        .collect();
    pos.sort_unstable();
    pos
}

/// Queries along rows: positions for every row of `sim` (`rows × cols`).
fn by_rows(sim: &[f32], cols: usize, rel: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let rows = rel.len();
    let t = threads().min(rows.max(1));
    let chunk = rows.div_ceil(t).max(1);
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); rows];
    std::thread::scope(|s| {
        for (ci, slot) in out.chunks_mut(chunk).enumerate() {
            s.spawn(move || {
                for (k, o) in slot.iter_mut().enumerate() {
                    let i = ci * chunk + k;
                    *o = row_positions(&sim[i * cols..(i + 1) * cols], &rel[i]);
                }
            });
        }
    });
    out
}

/// Queries along columns, streaming the matrix row by row: for column `j`
/// with relevant rows `rel[j]`, counts rows scoring above each relevant
/// row's score (ties: lower row index first).
fn by_cols(sim: &[f32], rows: usize, cols: usize, rel: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let t = threads().min(cols.max(1));
    let chunk = cols.div_ceil(t).max(1);
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); cols];
    std::thread::scope(|s| {
        for (ci, slot) in out.chunks_mut(chunk).enumerate() {
            s.spawn(move || {
                let j0 = ci * chunk;
                let j1 = j0 + slot.len();
                let single = (j0..j1).all(|j| rel[j].len() == 1);
                if single {
                    // Fast path: one relevant row per column.
                    let thr: Vec<f32> = (j0..j1).map(|j| sim[rel[j][0] * cols + j]).collect();
                    let who: Vec<usize> = (j0..j1).map(|j| rel[j][0]).collect();
                    let mut cnt = vec![1usize; j1 - j0];
                    for k in 0..rows {
                        let row = &sim[k * cols + j0..k * cols + j1];
                        for (q, &v) in row.iter().enumerate() {
                            cnt[q] += usize::from(v > thr[q] || (v == thr[q] && k < who[q]));
                        }
                    }
                    for (o, c) in slot.iter_mut().zip(cnt) {
                        *o = vec![c];
                    }
                } else {
                    let mut acc: Vec<Vec<(usize, f32, usize)>> = (j0..j1)
                        .map(|j| {
                            rel[j]
                                .iter()
                                .map(|&i| (i, sim[i * cols + j], 1usize))
                                .collect()
                        })
                        .collect();
                    for k in 0..rows {
                        let row = &sim[k * cols + j0..k * cols + j1];
                        for (q, &v) in row.iter().enumerate() {
                            for e in acc[q].iter_mut() {
                                e.2 += usize::from(v > e.1 || (v == e.1 && k < e.0));
                            }
                        }
                    }
                    for (o, a) in slot.iter_mut().zip(acc) {
                        let mut p: Vec<usize> = a.into_iter().map(|e| e.2).collect();
                        p.sort_unstable();
                        *o = p;
                    }
                }
            });
        }
    });
    out
}

/// Retrieval both ways from a row-major similarity matrix `[n_a, n_b]`.
/// `labels_*` define relevance (see the module doc); `None` pairs by index.
pub fn retrieval_from_similarity(
    sim: &[f32],
    n_a: usize,
    n_b: usize,
    labels_a: Option<&[usize]>,
    labels_b: Option<&[usize]>,
) -> Result<Retrieval> {
    Error::check_len(
        "similarity matrix values vs n_a × n_b",
        sim.len(),
        n_a * n_b,
    )?;
    if n_a == 0 || n_b == 0 {
        return Err(Error::invalid("similarity matrix", "no rows or no columns"));
    }
    if let Some(k) = sim.iter().position(|v| v.is_nan()) {
        return Err(Error::invalid(
            "similarity matrix",
            format!("NaN at row {}, column {}", k / n_b, k % n_b),
        ));
    }
    let (rel_a, rel_b) = relevance(n_a, n_b, labels_a, labels_b)?;
    Ok(Retrieval {
        a_to_b: metrics(by_rows(sim, n_b, &rel_a)),
        b_to_a: metrics(by_cols(sim, n_a, n_b, &rel_b)),
    })
}

/// L2-normalises rows (zero rows stay zero).
fn normalise(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(1)?.sqrt()?;
    let safe = norm.maximum(1e-12f64)?;
    Ok(x.broadcast_div(&safe)?)
}

/// The cosine (or, with `normalize = false`, dot-product) similarity matrix
/// `[n_a, n_b]` of two embedding sets `[n_a, d]`, `[n_b, d]` as one f32 CPU
/// tensor (one matmul).
pub fn similarity_tensor(a: &Tensor, b: &Tensor, normalize: bool) -> Result<Tensor> {
    let (_, d_a) = a.dims2()?;
    let (_, d_b) = b.dims2()?;
    if d_a != d_b {
        return Err(Error::invalid(
            "embeddings",
            format!("dimensions differ: A has {d_a}, B has {d_b}"),
        ));
    }
    let dev = Device::Cpu;
    let mut a = a.to_device(&dev)?.to_dtype(candle_core::DType::F32)?;
    let mut b = b.to_device(&dev)?.to_dtype(candle_core::DType::F32)?;
    if normalize {
        a = normalise(&a)?;
        b = normalise(&b)?;
    }
    Ok(a.contiguous()?
        .matmul(&b.t()?.contiguous()?)?
        .contiguous()?)
}

/// Runs `f` on the values of a contiguous f32 CPU tensor without copying them.
fn with_cpu_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => {
            let s = cpu.as_slice::<f32>()?;
            let (o1, o2) = layout
                .contiguous_offsets()
                .ok_or_else(|| Error::invalid("similarity matrix", "not contiguous"))?;
            f(&s[o1..o2])
        }
        _ => Err(Error::invalid("similarity matrix", "not on the CPU")),
    }
}

/// The similarity matrix of [`similarity_tensor`] as row-major values.
pub fn similarity_matrix(a: &Tensor, b: &Tensor, normalize: bool) -> Result<Vec<f32>> {
    let t = similarity_tensor(a, b, normalize)?;
    with_cpu_slice(&t, |s| Ok(s.to_vec()))
}

/// Retrieval both ways from embeddings (`[n_a, d]`, `[n_b, d]`), cosine
/// similarity by default. The similarity matrix is ranked in place (no copy).
pub fn retrieval_from_embeddings(
    a: &Tensor,
    b: &Tensor,
    labels_a: Option<&[usize]>,
    labels_b: Option<&[usize]>,
    normalize: bool,
) -> Result<Retrieval> {
    let t = similarity_tensor(a, b, normalize)?;
    let (n_a, n_b) = t.dims2()?;
    with_cpu_slice(&t, |s| {
        retrieval_from_similarity(s, n_a, n_b, labels_a, labels_b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_lower_index() {
        // Row 0: item 1 ties with item 0 and comes after it.
        let sim = [1.0f32, 1.0, 0.0, 0.0, 0.5, 1.0, 0.2, 0.9, 0.1];
        let r = retrieval_from_similarity(&sim, 3, 3, None, None).unwrap();
        assert_eq!(r.a_to_b.ranks, vec![1, 2, 3]);
        assert_eq!(r.b_to_a.ranks, vec![1, 3, 2]);
    }

    #[test]
    fn bad_inputs() {
        assert!(retrieval_from_similarity(&[1.0, 2.0], 2, 2, None, None).is_err());
        assert!(retrieval_from_similarity(&[f32::NAN], 1, 1, None, None).is_err());
        assert!(retrieval_from_similarity(&[1.0, 0.0], 1, 2, Some(&[5]), None).is_err());
    }
}
