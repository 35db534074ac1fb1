//! `mosaic zero-shot`: label probabilities for images from an image–text
//! model (CLIP, SigLIP) with prompt templates and ensembling.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use mosaic_core::assets::{AssetStore, resolve_model};
use mosaic_models::zeroshot::{DEFAULT_TEMPLATE, ZeroShotClassifier};

#[derive(Args, Debug)]
pub struct ZeroShotArgs {
    /// Model: a Hugging Face CLIP/SigLIP folder (config.json, weights,
    /// tokenizer.json, preprocessor_config.json) or a cached hub id.
    #[arg(long)]
    model: String,
    /// Images to classify.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Comma-separated candidate labels ("a cat,a dog").
    #[arg(long, required = true)]
    labels: String,
    /// A prompt template, `{}` marking the label; repeat to ensemble
    /// (class embedding = mean of the normalised template embeddings).
    /// Default: "This is a photo of {}." (transformers' pipeline).
    #[arg(long = "template")]
    templates: Vec<String>,
    /// A file with one template per line (blank lines and `#` comments
    /// skipped), added to --template.
    #[arg(long)]
    templates_file: Option<PathBuf>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

fn read_templates(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--templates-file {}", path.display()))?;
    let t: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if t.is_empty() {
        bail!(
            "--templates-file {}: no templates in the file",
            path.display()
        );
    }
    Ok(t)
}

pub fn run(args: ZeroShotArgs, store: &AssetStore) -> Result<()> {
    let labels: Vec<String> = args
        .labels
        .split(',')
        .map(|l| l.trim().to_string())
        .collect();
    if labels.iter().any(|l| l.is_empty()) {
        bail!(
            "--labels: an empty label in `{}` (labels are comma-separated)",
            args.labels
        );
    }
    let mut templates = args.templates.clone();
    if let Some(f) = &args.templates_file {
        templates.extend(read_templates(f)?);
    }
    if templates.is_empty() {
        templates.push(DEFAULT_TEMPLATE.to_string());
    }
    let dir = resolve_model(&args.model, store)?;
    let zs = ZeroShotClassifier::from_pretrained(&dir)
        .with_context(|| format!("loading --model {}", args.model))?;
    let classes = zs.class_embeddings(&labels, &templates)?;
    for path in &args.images {
        let probs = zs.classify_files(&[path.as_path()], &classes)?;
        let mut ranked: Vec<(usize, f32)> = probs[0].iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        if args.json {
            let rows: Vec<_> = ranked
                .iter()
                .map(|(i, p)| serde_json::json!({"label": labels[*i], "probability": p}))
                .collect();
            println!(
                "{}",
                serde_json::json!({"image": path.display().to_string(), "labels": rows})
            );
        } else {
            println!("{}", path.display());
            for (i, p) in ranked {
                println!("  {:>6.2}%  {}", p * 100.0, labels[i]);
            }
        }
    }
    Ok(())
}
