//! `mosaic ocr`: lines of text in images with PP-OCRv4, as
//! rapidocr-onnxruntime reads them.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mosaic_core::assets::{AssetStore, resolve_model};
use mosaic_ocr::{OcrEngine, OcrOptions};

#[derive(Args, Debug)]
pub struct OcrArgs {
    /// Model: an asset name (pp-ocrv4) or a folder holding its three ONNX
    /// files (detection, angle classifier, recognition).
    #[arg(long, default_value = "pp-ocrv4")]
    model: String,
    /// Images to read.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Print one JSON object per image instead of text.
    #[arg(long)]
    json: bool,
    /// Drop lines whose score is below this (default 0.5, as rapidocr).
    #[arg(long)]
    text_score: Option<f32>,
    /// Skip the 180-degree angle classifier.
    #[arg(long)]
    no_cls: bool,
    /// OCR options file (TOML or JSON; keys of mosaic_ocr::OcrOptions,
    /// unknown keys refused); the flags above override it.
    #[arg(long)]
    options: Option<PathBuf>,
}

pub fn run(args: OcrArgs, store: &AssetStore) -> Result<()> {
    let mut options: OcrOptions = match &args.options {
        Some(p) => mosaic_core::config::load_config(p)?,
        None => OcrOptions::default(),
    };
    if let Some(t) = args.text_score {
        options.text_score = t;
    }
    if args.no_cls {
        options.use_cls = false;
    }
    let dir = resolve_model(&args.model, store)?;
    let engine = OcrEngine::from_asset_dir_with(&dir, options)
        .with_context(|| format!("loading OCR models from {}", dir.display()))?;
    for path in &args.images {
        let lines = engine.recognize_file(path)?;
        if args.json {
            println!(
                "{}",
                serde_json::json!({"image": path.display().to_string(), "lines": lines})
            );
        } else {
            println!("{}", path.display());
            for l in &lines {
                let corners: Vec<String> = l
                    .r#box
                    .iter()
                    .map(|p| format!("{:.0},{:.0}", p[0], p[1]))
                    .collect();
                println!("  {:.3}  [{}]  {}", l.score, corners.join(" "), l.text);
            }
        }
    }
    Ok(())
}
