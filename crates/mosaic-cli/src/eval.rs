//! `mosaic eval`: metrics into a report folder (report.json, report.md,
//! PNG plots), and `mosaic eval compare` of two runs.
//!
//! ```text
//! mosaic eval --metrics bleu,rouge,cider,wer,cer --predictions P --references R --out DIR
//!             [--manifest M.jsonl --group-by FIELD] [--typo-sweep 0,0.05,0.1]
//! mosaic eval retrieval --a A.npy|A.safetensors --b B.npy|B.safetensors --out DIR
//! mosaic eval sentences --model minilm-l6-v2 --pairs PAIRS.jsonl --out DIR [--group-by FIELD] [--typo-sweep ...]
//! mosaic eval model --model runs/quickstart/image-text/model --manifest test.jsonl --out DIR
//!             [--template T]... [--noise 0,0.1] [--blur ..] [--jpeg ..] [--occlusion ..] [--group-by FIELD]
//! mosaic eval compare RUN_A RUN_B
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use mosaic_core::assets::{AssetStore, resolve_model};
use mosaic_core::candle::{Device, Tensor};
use mosaic_eval::fairness::{breakdown, groups_from_manifest};
use mosaic_eval::report::{Report, compare};
use mosaic_eval::retrieval::{retrieval_from_embeddings, retrieval_from_similarity};
use mosaic_eval::robustness::{sweep, typos};
use mosaic_eval::suite::{TEXT_METRICS, TextOptions, evaluate_text, retrieval_into_report};
use mosaic_eval::text::bleu::Smoothing;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: Option<EvalCommand>,
    #[command(flatten)]
    text: TextArgs,
}

/// Text metrics of predictions against references.
#[derive(Args, Debug)]
struct TextArgs {
    /// Comma-separated metrics: bleu, rouge, cider, wer, cer.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bleu,rouge,cider,wer,cer"
    )]
    metrics: Vec<String>,
    /// Predictions: .txt (one per line) or .jsonl (string or {"prediction"|"text": ...}).
    #[arg(long, required = true)]
    predictions: Option<PathBuf>,
    /// References: .txt (one per line) or .jsonl (string, list, or {"references"|"reference"|"captions"|"text": ...}).
    #[arg(long, required = true)]
    references: Option<PathBuf>,
    /// The run folder to write (report.json, report.md, *.png).
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// The run's name (default: the folder's name).
    #[arg(long)]
    name: Option<String>,
    /// BLEU smoothing: exp, floor[:V], add-k[:V], none.
    #[arg(long, default_value = "exp")]
    smooth: String,
    /// Lower-case before BLEU.
    #[arg(long)]
    lowercase: bool,
    /// Porter stemming for ROUGE.
    #[arg(long)]
    rouge_stemmer: bool,
    /// A JSONL manifest with one line per prediction, for --group-by.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Break every metric down by this `meta` field of --manifest.
    #[arg(long, requires = "manifest")]
    group_by: Option<String>,
    /// Robustness: typo rates applied to the predictions (first metric per level).
    #[arg(long, value_delimiter = ',')]
    typo_sweep: Vec<f64>,
}

#[derive(Subcommand, Debug)]
enum EvalCommand {
    /// Retrieval both ways (R@1/5/10, median rank, mAP) between two
    /// embedding files (.npy or .safetensors), row i of A paired with row i of B.
    Retrieval {
        /// Embeddings of side A (e.g. images).
        #[arg(long)]
        a: PathBuf,
        /// Embeddings of side B (e.g. captions).
        #[arg(long)]
        b: PathBuf,
        /// Tensor name inside safetensors files (default: the only 2-D tensor).
        #[arg(long)]
        tensor: Option<String>,
        /// Names of the two sides in metric names.
        #[arg(long, default_value = "a")]
        a_name: String,
        /// Name of side B.
        #[arg(long, default_value = "b")]
        b_name: String,
        /// Dot product instead of cosine similarity.
        #[arg(long)]
        dot: bool,
        /// The run folder to write.
        #[arg(long)]
        out: PathBuf,
        /// The run's name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Sentence-to-sentence retrieval with a sentence encoder (e.g.
    /// minilm-l6-v2) on a pairs manifest: each line's `text` is a query and its
    /// first `captions` entry the paired sentence.
    Sentences {
        /// Model: an asset name, a folder, or a hub id.
        #[arg(long)]
        model: String,
        /// JSONL manifest of pairs (`text` + `captions`, optional `meta`).
        #[arg(long)]
        pairs: PathBuf,
        /// The run folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Break R@1 (query → pair) down by this `meta` field.
        #[arg(long)]
        group_by: Option<String>,
        /// Robustness: typo rates applied to the queries (R@1 per level).
        #[arg(long, value_delimiter = ',')]
        typo_sweep: Vec<f64>,
        /// Texts per forward pass.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// The run's name.
        #[arg(long)]
        name: Option<String>,
    },
    /// A trained Mosaic model (e.g. the quickstart's) on an image manifest:
    /// zero-shot classification, retrieval, robustness and group breakdowns.
    Model(Box<crate::eval_model::ModelEvalArgs>),
    /// Print the differences between two run folders' metrics.
    Compare {
        /// Run folder (or report.json) A.
        run_a: PathBuf,
        /// Run folder (or report.json) B.
        run_b: PathBuf,
    },
}

fn run_name(name: &Option<String>, out: &Path) -> String {
    name.clone().unwrap_or_else(|| {
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    })
}

fn finish(mut report: Report, out: &Path) -> Result<()> {
    report.write(out)?;
    println!("{}", out.join("report.md").display());
    for (k, v) in &report.metrics {
        println!("{k:<16} {v:.6}");
    }
    Ok(())
}

/// `mosaic eval ...`.
pub fn run(args: EvalArgs, open_store: &dyn Fn() -> Result<AssetStore>) -> Result<()> {
    match args.command {
        None => text(args.text),
        Some(EvalCommand::Model(m)) => crate::eval_model::run(*m, open_store),
        Some(EvalCommand::Compare { run_a, run_b }) => {
            let a = Report::load(&run_a)?;
            let b = Report::load(&run_b)?;
            print!("{}", compare(&a, &b));
            Ok(())
        }
        Some(EvalCommand::Retrieval {
            a,
            b,
            tensor,
            a_name,
            b_name,
            dot,
            out,
            name,
        }) => {
            let (va, ra, da) = mosaic_eval::io::read_embeddings(&a, tensor.as_deref())?;
            let (vb, rb, db) = mosaic_eval::io::read_embeddings(&b, tensor.as_deref())?;
            if da != db {
                bail!(
                    "{} has dimension {da}, {} has {db}",
                    a.display(),
                    b.display()
                );
            }
            if ra != rb {
                bail!(
                    "{} has {ra} rows, {} has {rb}: row i of A is paired with row i of B",
                    a.display(),
                    b.display()
                );
            }
            let ta = Tensor::from_vec(va, (ra, da), &Device::Cpu)?;
            let tb = Tensor::from_vec(vb, (rb, db), &Device::Cpu)?;
            let t0 = std::time::Instant::now();
            let r = retrieval_from_embeddings(&ta, &tb, None, None, !dot)?;
            let mut report = Report::new(&run_name(&name, &out));
            report
                .input("a", a.display())
                .input("b", b.display())
                .input("similarity", if dot { "dot product" } else { "cosine" })
                .input("pairs", ra);
            retrieval_into_report(&r, &a_name, &b_name, &mut report)?;
            report.notes.push(format!(
                "retrieval both ways over {ra} pairs took {:.3} s",
                t0.elapsed().as_secs_f64()
            ));
            finish(report, &out)
        }
        Some(EvalCommand::Sentences {
            model,
            pairs,
            out,
            group_by,
            typo_sweep,
            batch_size,
            name,
        }) => sentences(
            &model,
            &pairs,
            &out,
            group_by.as_deref(),
            &typo_sweep,
            batch_size,
            name,
            &open_store()?,
        ),
    }
}

fn text(a: TextArgs) -> Result<()> {
    let (Some(pred_path), Some(ref_path), Some(out)) = (&a.predictions, &a.references, &a.out)
    else {
        bail!("--predictions, --references and --out are required");
    };
    for m in &a.metrics {
        if !TEXT_METRICS.contains(&m.as_str()) {
            bail!("unknown metric `{m}` (known: {})", TEXT_METRICS.join(", "));
        }
    }
    let preds = mosaic_eval::io::read_predictions(pred_path)?;
    let refs = mosaic_eval::io::read_references(ref_path)?;
    mosaic_eval::io::check_lengths(pred_path, preds.len(), ref_path, refs.len())?;
    let opts = TextOptions {
        bleu: mosaic_eval::text::bleu::BleuConfig {
            smoothing: Smoothing::parse(&a.smooth)?,
            lowercase: a.lowercase,
            effective_order: false,
        },
        rouge_stemmer: a.rouge_stemmer,
    };
    let mut report = Report::new(&run_name(&a.name, out));
    report
        .input("predictions", pred_path.display())
        .input("references", ref_path.display())
        .input("entries", preds.len())
        .input("metrics", a.metrics.join(","));
    evaluate_text(&a.metrics, &preds, &refs, &opts, &mut report)?;
    if let (Some(manifest), Some(field)) = (&a.manifest, &a.group_by) {
        let records: Vec<_> = mosaic_data::manifest::ManifestReader::read_all(manifest)?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        if records.len() != preds.len() {
            bail!(
                "{} has {} lines, {} has {} predictions",
                manifest.display(),
                records.len(),
                pred_path.display(),
                preds.len()
            );
        }
        let groups = groups_from_manifest(&records, field);
        report.input("group_by", format!("{field} of {}", manifest.display()));
        for m in &a.metrics {
            let key = if m == "rouge" { "rougeL" } else { m.as_str() };
            let f = breakdown(field, key, &groups, |idx| {
                let p: Vec<String> = idx.iter().map(|&i| preds[i].clone()).collect();
                let r: Vec<Vec<String>> = idx.iter().map(|&i| refs[i].clone()).collect();
                let mut tmp = Report::new("group");
                evaluate_text(std::slice::from_ref(m), &p, &r, &opts, &mut tmp)?;
                Ok(tmp.metrics[key])
            })?;
            report.metric(&format!("{key}_gap_by_{field}"), f.gap);
            report.fairness.push(f);
        }
    }
    if !a.typo_sweep.is_empty() {
        let m = a.metrics[0].clone();
        let key = if m == "rouge" {
            "rougeL".to_string()
        } else {
            m.clone()
        };
        let s = sweep("typo rate (predictions)", &key, &a.typo_sweep, |rate| {
            let noisy: Vec<String> = preds
                .iter()
                .enumerate()
                .map(|(i, p)| typos(p, rate, i as u64))
                .collect::<mosaic_eval::Result<_>>()?;
            let mut tmp = Report::new("sweep");
            evaluate_text(std::slice::from_ref(&m), &noisy, &refs, &opts, &mut tmp)?;
            Ok(tmp.metrics[&key])
        })?;
        report.sweeps.push(s);
    }
    finish(report, out)
}

#[allow(clippy::too_many_arguments)]
fn sentences(
    model: &str,
    pairs: &Path,
    out: &Path,
    group_by: Option<&str>,
    typo_sweep: &[f64],
    batch_size: usize,
    name: Option<String>,
    store: &AssetStore,
) -> Result<()> {
    let records: Vec<_> = mosaic_data::manifest::ManifestReader::read_all(pairs)?;
    if records.is_empty() {
        bail!("{}: no pairs", pairs.display());
    }
    let mut queries = Vec::new();
    let mut targets = Vec::new();
    for (line, r) in &records {
        let q = match &r.text {
            Some(mosaic_data::manifest::TextField::Inline(t)) => t.clone(),
            _ => bail!("{}:{line}: no inline `text`", pairs.display()),
        };
        let t = r.captions.first().with_context(|| {
            format!(
                "{}:{line}: no `captions` entry to pair with",
                pairs.display()
            )
        })?;
        queries.push(q);
        targets.push(t.clone());
    }
    let dir = resolve_model(model, store)?;
    let enc = mosaic_models::pretrained::SentenceEncoder::from_pretrained(&dir)?;
    let t0 = std::time::Instant::now();
    let eq = enc.encode(&queries, batch_size)?;
    let et = enc.encode(&targets, batch_size)?;
    let encode_s = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let r = retrieval_from_embeddings(&eq, &et, None, None, true)?;
    let eval_s = t1.elapsed().as_secs_f64();
    let mut report = Report::new(&run_name(&name, out));
    report
        .input("model", model)
        .input("pairs", pairs.display())
        .input("count", queries.len())
        .input("similarity", "cosine");
    retrieval_into_report(&r, "query", "pair", &mut report)?;
    report.notes.push(format!(
        "encoding {} sentences took {encode_s:.2} s; retrieval both ways {eval_s:.3} s",
        2 * queries.len()
    ));
    if let Some(field) = group_by {
        let recs: Vec<_> = records.iter().map(|(_, r)| r.clone()).collect();
        let groups = groups_from_manifest(&recs, field);
        let f = breakdown(field, "query2pair_r@1", &groups, |idx| {
            Ok(idx.iter().filter(|&&i| r.a_to_b.ranks[i] == 1).count() as f64 / idx.len() as f64)
        })?;
        report.metric(&format!("query2pair_r@1_gap_by_{field}"), f.gap);
        report.fairness.push(f);
    }
    if !typo_sweep.is_empty() {
        let s = sweep(
            "typo rate (queries)",
            "query2pair_r@1",
            typo_sweep,
            |rate| {
                if rate == 0.0 {
                    return Ok(r.a_to_b.r1);
                }
                let noisy: Vec<String> = queries
                    .iter()
                    .enumerate()
                    .map(|(i, q)| typos(q, rate, i as u64))
                    .collect::<mosaic_eval::Result<_>>()?;
                let e = enc.encode(&noisy, batch_size)?;
                let sim = mosaic_eval::retrieval::similarity_matrix(&e, &et, true)?;
                let n = noisy.len();
                Ok(retrieval_from_similarity(&sim, n, n, None, None)?.a_to_b.r1)
            },
        )?;
        report.sweeps.push(s);
    }
    finish(report, out)
}
