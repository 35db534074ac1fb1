//! Running named metrics into a [`Report`]: the text metrics on
//! predictions/references and retrieval on embeddings — what `mosaic eval`
//! calls.

use serde_json::json;

use crate::error::{Error, Result};
use crate::report::{Curve, Report};
use crate::retrieval::Retrieval;
use crate::text::{bleu, cider, rouge, wer};

/// The text metrics [`evaluate_text`] knows.
pub const TEXT_METRICS: [&str; 5] = ["bleu", "rouge", "cider", "wer", "cer"];

/// Options of the text metrics.
#[derive(Debug, Clone, Default)]
pub struct TextOptions {
    /// BLEU options (sacreBLEU defaults).
    pub bleu: bleu::BleuConfig,
    /// Porter stemming for ROUGE (rouge-score's default is off).
    pub rouge_stemmer: bool,
}

/// Evaluates `metrics` (names from [`TEXT_METRICS`]) of `predictions`
/// against `references` (one or more per prediction) into `report`.
///
/// Headline numbers: `bleu` (0–100, corpus), `rouge1`/`rouge2`/`rougeL`/
/// `rougeLsum` (mean F over samples, best reference per sample, as
/// rouge-score's `score_multi`), `cider` (CIDEr-D), `wer` / `cer` (corpus,
/// jiwer; against the first reference of each entry).
pub fn evaluate_text(
    metrics: &[String],
    predictions: &[String],
    references: &[Vec<String>],
    opts: &TextOptions,
    report: &mut Report,
) -> Result<()> {
    Error::check_len(
        "predictions vs references",
        predictions.len(),
        references.len(),
    )?;
    if predictions.is_empty() {
        return Err(Error::invalid("predictions", "none given"));
    }
    for m in metrics {
        match m.as_str() {
            "bleu" => {
                let s = bleu::corpus_bleu(predictions, references, &opts.bleu)?;
                report.metric("bleu", s.score);
                report.detail("bleu", &s)?;
            }
            "rouge" => {
                let types = [
                    rouge::RougeType::N(1),
                    rouge::RougeType::N(2),
                    rouge::RougeType::L,
                    rouge::RougeType::Lsum,
                ];
                let sc = rouge::RougeScorer::new(&types, opts.rouge_stemmer);
                let r = rouge::corpus_rouge(&sc, predictions, references)?;
                let mut d = serde_json::Map::new();
                for (t, s) in &r {
                    report.metric(&t.name(), s.fmeasure);
                    d.insert(t.name(), json!({"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure}));
                }
                d.insert("use_stemmer".into(), json!(opts.rouge_stemmer));
                report.detail("rouge", &d)?;
            }
            "cider" => {
                let s = cider::cider_d(predictions, references)?;
                report.metric("cider", s.score);
                report.detail("cider", &s.per_image)?;
            }
            "wer" | "cer" => {
                let refs: Vec<&str> = references.iter().map(|r| r[0].as_str()).collect();
                let e = if m == "wer" {
                    wer::wer(&refs, predictions)?
                } else {
                    wer::cer(&refs, predictions)?
                };
                report.metric(m, e.error_rate);
                report.detail(m, &e)?;
                if references.iter().any(|r| r.len() > 1) {
                    report.notes.push(format!(
                        "{m}: computed against the first reference of each entry"
                    ));
                }
            }
            other => {
                return Err(Error::invalid(
                    "metric",
                    format!(
                        "unknown text metric `{other}` (known: {})",
                        TEXT_METRICS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Adds retrieval results to `report`: `{a}2{b}_r@1/5/10`, `_medr`, `_map`
/// for both directions, and an R@K curve (K = 1…10).
pub fn retrieval_into_report(r: &Retrieval, a: &str, b: &str, report: &mut Report) -> Result<()> {
    let mut series = Vec::new();
    for (dir, m) in [
        (format!("{a}2{b}"), &r.a_to_b),
        (format!("{b}2{a}"), &r.b_to_a),
    ] {
        report.metric(&format!("{dir}_r@1"), m.r1);
        report.metric(&format!("{dir}_r@5"), m.r5);
        report.metric(&format!("{dir}_r@10"), m.r10);
        report.metric(&format!("{dir}_medr"), m.median_rank);
        report.metric(&format!("{dir}_map"), m.map);
        report.detail(&format!("{dir}_ranks"), &m.ranks)?;
        series.push((dir, (1..=10).map(|k| (k as f64, m.recall_at(k))).collect()));
    }
    report.curves.push(Curve {
        name: format!("Recall at K ({a} / {b})"),
        x_label: "K".into(),
        y_label: "recall".into(),
        series,
    });
    Ok(())
}
