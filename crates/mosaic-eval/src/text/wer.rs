//! Word and character error rates with jiwer 4's semantics
//! (`jiwer.process_words` / `jiwer.process_characters`, default transforms).
//!
//! Default transforms, as jiwer: words — runs of two or more whitespace
//! characters become one space (`re.sub(r"\s\s+", " ")`), `strip()`, split on
//! `" "` dropping empty pieces (a single tab stays inside a word);
//! characters — `strip()` then every code point (spaces included). The edit
//! operations are Levenshtein's with rapidfuzz's alignment (common prefix and
//! suffix removed, then its bit-parallel back-trace: deletion first, then
//! insertion, then substitution/match), so hits, substitutions, deletions
//! and insertions equal jiwer's, not just their sum. Corpus rates pool the
//! counts over all pairs: `WER = (S + D + I) / (H + S + D)`; with no
//! reference words at all, WER = the number of insertions (as jiwer).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::text::py;

/// Pooled alignment counts and the rates jiwer reports.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ErrorRates {
    /// Matching units.
    pub hits: usize,
    /// Substituted units.
    pub substitutions: usize,
    /// Reference units missing from the hypothesis.
    pub deletions: usize,
    /// Hypothesis units not in the reference.
    pub insertions: usize,
    /// Units in the references.
    pub reference_len: usize,
    /// Units in the hypotheses.
    pub hypothesis_len: usize,
    /// Error rate `(S + D + I) / (H + S + D)` (WER for words, CER for characters).
    pub error_rate: f64,
    /// Match error rate `(S + D + I) / (H + S + D + I)`.
    pub mer: f64,
    /// Word information preserved `H/N_ref · H/N_hyp`.
    pub wip: f64,
    /// Word information lost `1 − WIP`.
    pub wil: f64,
}

/// jiwer's `wer_default` transform of one sentence.
pub fn words(s: &str) -> Vec<String> {
    let collapsed = py::collapse_multiple_spaces(s);
    py::strip(&collapsed)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// jiwer's `cer_default` transform of one sentence.
pub fn chars(s: &str) -> Vec<char> {
    py::strip(s).chars().collect()
}

/// (hits, substitutions, deletions, insertions) of aligning `hyp` to `reference`
/// the way rapidfuzz's `Levenshtein.opcodes(reference, hyp)` does.
pub fn align_counts<T: PartialEq>(reference: &[T], hyp: &[T]) -> (usize, usize, usize, usize) {
    // Common prefix and suffix are matches and take no part in the back-trace.
    let mut pre = 0;
    while pre < reference.len() && pre < hyp.len() && reference[pre] == hyp[pre] {
        pre += 1;
    }
    let mut suf = 0;
    while suf < reference.len() - pre
        && suf < hyp.len() - pre
        && reference[reference.len() - 1 - suf] == hyp[hyp.len() - 1 - suf]
    {
        suf += 1;
    }
    let s1 = &reference[pre..reference.len() - suf];
    let s2 = &hyp[pre..hyp.len() - suf];
    let (n1, n2) = (s1.len(), s2.len());
    // d[c][r]: distance between s1[..c] and s2[..r], stored row-major by c.
    let w = n2 + 1;
    let mut d = vec![0u32; (n1 + 1) * w];
    for (r, v) in d.iter_mut().take(n2 + 1).enumerate() {
        *v = r as u32;
    }
    for c in 1..=n1 {
        d[c * w] = c as u32;
        for r in 1..=n2 {
            let sub = d[(c - 1) * w + r - 1] + u32::from(s1[c - 1] != s2[r - 1]);
            let del = d[(c - 1) * w + r] + 1;
            let ins = d[c * w + r - 1] + 1;
            d[c * w + r] = sub.min(del).min(ins);
        }
    }
    let vdelta = |c: usize, r: usize| d[c * w + r] as i64 - d[(c - 1) * w + r] as i64;
    let (mut subs, mut dels, mut ins) = (0, 0, 0);
    let (mut col, mut row) = (n1, n2);
    while row > 0 && col > 0 {
        if vdelta(col, row) == 1 {
            dels += 1;
            col -= 1;
        } else {
            row -= 1;
            if row > 0 && vdelta(col, row) == -1 {
                ins += 1;
            } else {
                col -= 1;
                if s1[col] != s2[row] {
                    subs += 1;
                }
            }
        }
    }
    dels += col;
    ins += row;
    let hits = reference.len() - subs - dels;
    (hits, subs, dels, ins)
}

fn pooled<T: PartialEq>(pairs: impl Iterator<Item = (Vec<T>, Vec<T>)>) -> ErrorRates {
    let mut e = ErrorRates::default();
    for (r, h) in pairs {
        let (hh, s, d, i) = align_counts(&r, &h);
        e.hits += hh;
        e.substitutions += s;
        e.deletions += d;
        e.insertions += i;
        e.reference_len += r.len();
        e.hypothesis_len += h.len();
    }
    let (h, s, d, i) = (
        e.hits as f64,
        e.substitutions as f64,
        e.deletions as f64,
        e.insertions as f64,
    );
    if e.reference_len == 0 {
        e.error_rate = i;
        if e.hypothesis_len == 0 {
            e.mer = 0.0;
            e.wip = 1.0;
        } else {
            e.mer = 1.0;
            e.wip = 0.0;
        }
    } else {
        e.error_rate = (s + d + i) / (h + s + d);
        e.mer = (s + d + i) / (h + s + d + i);
        e.wip = if e.hypothesis_len >= 1 {
            (h / e.reference_len as f64) * (h / e.hypothesis_len as f64)
        } else {
            0.0
        };
    }
    e.wil = 1.0 - e.wip;
    e
}

/// Corpus WER of `hyps` against `refs` (jiwer `process_words`).
pub fn wer<S: AsRef<str>, T: AsRef<str>>(refs: &[S], hyps: &[T]) -> Result<ErrorRates> {
    Error::check_len("WER references vs hypotheses", refs.len(), hyps.len())?;
    Ok(pooled(
        refs.iter()
            .zip(hyps)
            .map(|(r, h)| (words(r.as_ref()), words(h.as_ref()))),
    ))
}

/// Corpus CER of `hyps` against `refs` (jiwer `process_characters`).
pub fn cer<S: AsRef<str>, T: AsRef<str>>(refs: &[S], hyps: &[T]) -> Result<ErrorRates> {
    Error::check_len("CER references vs hypotheses", refs.len(), hyps.len())?;
    Ok(pooled(
        refs.iter()
            .zip(hyps)
            .map(|(r, h)| (chars(r.as_ref()), chars(h.as_ref()))),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_counts() {
        let e = wer(&["the cat sat"], &["the cat sat down"]).unwrap();
        assert_eq!((e.hits, e.insertions), (3, 1));
        assert!((e.error_rate - 1.0 / 3.0).abs() < 1e-15);
        let c = cer(&["abc"], &["abd"]).unwrap();
        assert_eq!(c.substitutions, 1);
        assert!(wer(&["a"], &["a", "b"]).is_err());
    }
}
