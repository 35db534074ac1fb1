//! ROUGE-N, ROUGE-L and ROUGE-Lsum with the semantics of Google's
//! `rouge-score` package (`rouge_scorer.RougeScorer`).
//!
//! Reproduced exactly: its tokenizer (lower-case, every character outside
//! `[a-z0-9]` becomes a space, split on whitespace, optional NLTK Porter
//! stemming of tokens longer than 3 characters), n-gram overlap with
//! `max(count, 1)` denominators, LCS for ROUGE-L, the summary-level union LCS
//! of ROUGE-Lsum with sentences split on `\n` (empty lines dropped) and its
//! hit counting, `fmeasure = 2PR / (P + R)` (0 when P + R = 0), and
//! `score_multi` (per type, the target with the highest F, first on ties).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::text::porter;

/// One ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RougeType {
    /// ROUGE-N (n-gram overlap), `N ≥ 1`.
    N(usize),
    /// ROUGE-L (longest common subsequence over the whole text).
    L,
    /// ROUGE-Lsum (summary-level LCS, one sentence per line).
    Lsum,
}

impl RougeType {
    /// Parses `rouge1`…`rouge9`, `rougeL`, `rougeLsum` (rouge-score's names).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "rougeL" => Ok(RougeType::L),
            "rougeLsum" => Ok(RougeType::Lsum),
            _ => {
                let n = s
                    .strip_prefix("rouge")
                    .filter(|d| d.len() == 1)
                    .and_then(|d| d.parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| Error::invalid("ROUGE type", format!("`{s}`")))?;
                Ok(RougeType::N(n))
            }
        }
    }

    /// rouge-score's name (`rouge1`, `rougeL`, `rougeLsum`).
    pub fn name(&self) -> String {
        match self {
            RougeType::N(n) => format!("rouge{n}"),
            RougeType::L => "rougeL".into(),
            RougeType::Lsum => "rougeLsum".into(),
        }
    }
}

/// Precision, recall and F-measure of one ROUGE type.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RougeScore {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F-measure (harmonic mean).
    pub fmeasure: f64,
}

impl RougeScore {
    fn new(precision: f64, recall: f64) -> Self {
        RougeScore {
            precision,
            recall,
            fmeasure: fmeasure(precision, recall),
        }
    }
}

fn fmeasure(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// rouge-score's default tokenizer.
pub fn tokenize(text: &str, use_stemmer: bool) -> Vec<String> {
    let lower = text.to_lowercase();
    let cleaned: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(|t| {
            if use_stemmer && t.len() > 3 {
                porter::stem(t)
            } else {
                t.to_string()
            }
        })
        .filter(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        .collect()
}

/// A scorer for a fixed set of ROUGE types (`rouge_scorer.RougeScorer`).
#[derive(Debug, Clone)]
pub struct RougeScorer {
    types: Vec<RougeType>,
    use_stemmer: bool,
}

impl RougeScorer {
    /// A scorer for `types`, with or without Porter stemming.
    pub fn new(types: &[RougeType], use_stemmer: bool) -> Self {
        RougeScorer {
            types: types.to_vec(),
            use_stemmer,
        }
    }

    /// The types scored, in order.
    pub fn types(&self) -> &[RougeType] {
        &self.types
    }

    /// Scores `prediction` against one `target`.
    pub fn score(&self, target: &str, prediction: &str) -> Vec<(RougeType, RougeScore)> {
        let t = tokenize(target, self.use_stemmer);
        let p = tokenize(prediction, self.use_stemmer);
        self.types
            .iter()
            .map(|&ty| {
                let s = match ty {
                    RougeType::N(n) => score_ngrams(&ngrams(&t, n), &ngrams(&p, n)),
                    RougeType::L => score_lcs(&t, &p),
                    RougeType::Lsum => {
                        let sents = |x: &str| -> Vec<Vec<String>> {
                            x.split('\n')
                                .filter(|s| !s.is_empty())
                                .map(|s| tokenize(s, self.use_stemmer))
                                .collect()
                        };
                        summary_level_lcs(&sents(target), &sents(prediction))
                    }
                };
                (ty, s)
            })
            .collect()
    }

    /// Scores `prediction` against several targets: per type, the target
    /// with the highest F-measure (the first one on ties).
    pub fn score_multi<S: AsRef<str>>(
        &self,
        targets: &[S],
        prediction: &str,
    ) -> Result<Vec<(RougeType, RougeScore)>> {
        if targets.is_empty() {
            return Err(Error::invalid("ROUGE targets", "no target"));
        }
        let all: Vec<Vec<(RougeType, RougeScore)>> = targets
            .iter()
            .map(|t| self.score(t.as_ref(), prediction))
            .collect();
        Ok((0..self.types.len())
            .map(|k| {
                let mut best = 0;
                for (i, s) in all.iter().enumerate() {
                    if s[k].1.fmeasure > all[best][k].1.fmeasure {
                        best = i;
                    }
                }
                all[best][k]
            })
            .collect())
    }
}

fn ngrams(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m = HashMap::new();
    if tokens.len() >= n {
        for w in tokens.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

fn score_ngrams(
    target: &HashMap<&[String], usize>,
    pred: &HashMap<&[String], usize>,
) -> RougeScore {
    let inter: usize = target
        .iter()
        .map(|(g, &c)| c.min(pred.get(g).copied().unwrap_or(0)))
        .sum();
    let tc: usize = target.values().sum();
    let pc: usize = pred.values().sum();
    RougeScore::new(
        inter as f64 / pc.max(1) as f64,
        inter as f64 / tc.max(1) as f64,
    )
}

fn lcs_table(r: &[String], c: &[String]) -> Vec<Vec<usize>> {
    let mut t = vec![vec![0usize; c.len() + 1]; r.len() + 1];
    for i in 1..=r.len() {
        for j in 1..=c.len() {
            t[i][j] = if r[i - 1] == c[j - 1] {
                t[i - 1][j - 1] + 1
            } else {
                t[i - 1][j].max(t[i][j - 1])
            };
        }
    }
    t
}

fn score_lcs(target: &[String], pred: &[String]) -> RougeScore {
    if target.is_empty() || pred.is_empty() {
        return RougeScore::default();
    }
    let l = lcs_table(target, pred)[target.len()][pred.len()] as f64;
    RougeScore::new(l / pred.len() as f64, l / target.len() as f64)
}

/// rouge-score's `_backtrack_norec`: indices into `r` of one LCS.
fn lcs_indices(r: &[String], c: &[String]) -> Vec<usize> {
    let t = lcs_table(r, c);
    let (mut i, mut j) = (r.len(), c.len());
    let mut out = Vec::new();
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            out.push(i - 1);
            i -= 1;
            j -= 1;
        } else if t[i][j - 1] > t[i - 1][j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
    out.reverse();
    out
}

fn summary_level_lcs(refs: &[Vec<String>], cands: &[Vec<String>]) -> RougeScore {
    if refs.is_empty() || cands.is_empty() {
        return RougeScore::default();
    }
    let m: usize = refs.iter().map(Vec::len).sum();
    let n: usize = cands.iter().map(Vec::len).sum();
    if m == 0 || n == 0 {
        return RougeScore::default();
    }
    let mut cnt_r: HashMap<&str, i64> = HashMap::new();
    let mut cnt_c: HashMap<&str, i64> = HashMap::new();
    for s in refs {
        for t in s {
            *cnt_r.entry(t).or_insert(0) += 1;
        }
    }
    for s in cands {
        for t in s {
            *cnt_c.entry(t).or_insert(0) += 1;
        }
    }
    let mut hits = 0usize;
    for r in refs {
        let union: BTreeSet<usize> = cands.iter().flat_map(|c| lcs_indices(r, c)).collect();
        for i in union {
            let t = r[i].as_str();
            let cc = cnt_c.get(t).copied().unwrap_or(0);
            let rc = cnt_r.get(t).copied().unwrap_or(0);
            if cc > 0 && rc > 0 {
                hits += 1;
                *cnt_c.get_mut(t).expect("counted") -= 1;
                *cnt_r.get_mut(t).expect("counted") -= 1;
            }
        }
    }
    RougeScore::new(hits as f64 / n as f64, hits as f64 / m as f64)
}

/// Mean of each type's precision, recall and F over prediction/target pairs
/// (every pair scored with `score_multi` against its targets).
pub fn corpus_rouge(
    scorer: &RougeScorer,
    predictions: &[String],
    targets: &[Vec<String>],
) -> Result<Vec<(RougeType, RougeScore)>> {
    Error::check_len(
        "ROUGE predictions vs targets",
        predictions.len(),
        targets.len(),
    )?;
    if predictions.is_empty() {
        return Err(Error::invalid("ROUGE predictions", "none given"));
    }
    let mut acc = vec![RougeScore::default(); scorer.types.len()];
    for (p, ts) in predictions.iter().zip(targets) {
        for (a, (_, s)) in acc.iter_mut().zip(scorer.score_multi(ts, p)?) {
            a.precision += s.precision;
            a.recall += s.recall;
            a.fmeasure += s.fmeasure;
        }
    }
    let n = predictions.len() as f64;
    Ok(scorer
        .types
        .iter()
        .zip(acc)
        .map(|(&t, a)| {
            (
                t,
                RougeScore {
                    precision: a.precision / n,
                    recall: a.recall / n,
                    fmeasure: a.fmeasure / n,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_example() {
        // rouge-score's README: rouge1 P=0.75 R=0.6667, rougeL P=0.5 R=0.4444.
        let sc = RougeScorer::new(&[RougeType::N(1), RougeType::L], true);
        let s = sc.score(
            "The quick brown fox jumps over the lazy dog",
            "The quick brown dog jumps on the log.",
        );
        assert!((s[0].1.precision - 0.75).abs() < 1e-12);
        assert!((s[0].1.recall - 6.0 / 9.0).abs() < 1e-12);
        assert!((s[1].1.precision - 0.625).abs() < 1e-12);
    }

    #[test]
    fn types_parse() {
        assert_eq!(RougeType::parse("rouge2").unwrap(), RougeType::N(2));
        assert_eq!(RougeType::parse("rougeLsum").unwrap(), RougeType::Lsum);
        assert!(RougeType::parse("rouge0").is_err());
    }
}
