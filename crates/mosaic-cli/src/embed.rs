//! `mosaic embed`: sentence embeddings from a sentence-transformers model.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use mosaic_core::assets::{AssetStore, resolve_model};
use mosaic_core::candle::Tensor;
use mosaic_models::pretrained::SentenceEncoder;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Model: an asset name (minilm-l6-v2), a folder, or a hub id org/name.
    #[arg(long)]
    model: String,
    /// Text to embed (repeat for several).
    #[arg(long)]
    text: Vec<String>,
    /// A file of texts: .txt (one per line) or a JSONL manifest (its `text` fields).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Output: .jsonl (default: JSONL on stdout), .safetensors or .npy.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
}

fn read_texts(args: &EmbedArgs) -> Result<(Vec<String>, Vec<String>)> {
    let mut ids = Vec::new();
    let mut texts = args.text.clone();
    ids.extend((0..texts.len()).map(|i| format!("arg-{i}")));
    if let Some(p) = &args.input {
        if p.extension().is_some_and(|e| e == "jsonl" || e == "json") {
            let reader = mosaic_data::manifest::ManifestReader::open(p)?;
            for (line, rec) in reader {
                let rec = rec?;
                let text = match rec.text {
                    Some(mosaic_data::manifest::TextField::Inline(t)) => t,
                    Some(mosaic_data::manifest::TextField::File { path }) => {
                        let f = mosaic_data::manifest::jsonl::resolve(
                            p.parent().unwrap_or(std::path::Path::new(".")),
                            &path,
                        );
                        std::fs::read_to_string(&f).with_context(|| {
                            format!("{}:{line}: reading {}", p.display(), f.display())
                        })?
                    }
                    None => bail!("{}:{line}: no `text` field to embed", p.display()),
                };
                ids.push(rec.id.unwrap_or_else(|| format!("line-{line}")));
                texts.push(text);
            }
        } else {
            let bytes = std::fs::read(p).with_context(|| p.display().to_string())?;
            let content = String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{}: invalid UTF-8 at byte {}",
                    p.display(),
                    e.utf8_error().valid_up_to()
                )
            })?;
            for (i, line) in content.lines().enumerate() {
                if !line.trim().is_empty() {
                    ids.push(format!("line-{}", i + 1));
                    texts.push(line.to_string());
                }
            }
        }
    }
    if texts.is_empty() {
        bail!("nothing to embed: give --text or --input (an empty --input file has no texts)");
    }
    Ok((ids, texts))
}

pub fn run(args: EmbedArgs, store: &AssetStore) -> Result<()> {
    let dir = resolve_model(&args.model, store)?;
    let encoder = SentenceEncoder::from_pretrained(&dir)?;
    let (ids, texts) = read_texts(&args)?;
    let emb: Tensor = encoder.encode(&texts, args.batch_size)?;
    let rows: Vec<Vec<f32>> = emb.to_vec2()?;
    match args
        .output
        .as_ref()
        .and_then(|o| o.extension())
        .and_then(|e| e.to_str())
    {
        Some("safetensors") => {
            let out = args.output.as_ref().unwrap();
            let mut map = std::collections::HashMap::new();
            map.insert("embeddings".to_string(), emb);
            mosaic_core::checkpoint::save_safetensors(out, &map)?;
            eprintln!(
                "wrote {} embeddings of size {} to {}",
                rows.len(),
                encoder.dim(),
                out.display()
            );
        }
        Some("npy") => {
            let out = args.output.as_ref().unwrap();
            let flat: Vec<f32> = rows.iter().flatten().copied().collect();
            mosaic_core::atomic::write_bytes_atomic(
                out,
                &mosaic_core::formats::npy::npy_bytes_f32(&[rows.len(), encoder.dim()], &flat),
            )?;
            eprintln!(
                "wrote {} embeddings of size {} to {}",
                rows.len(),
                encoder.dim(),
                out.display()
            );
        }
        Some("jsonl") | None => {
            let mut buf = Vec::new();
            for ((id, text), row) in ids.iter().zip(&texts).zip(&rows) {
                serde_json::to_writer(
                    &mut buf,
                    &serde_json::json!({"id": id, "text": text, "embedding": row}),
                )?;
                buf.push(b'\n');
            }
            match &args.output {
                Some(out) => {
                    mosaic_core::atomic::write_bytes_atomic(out, &buf)?;
                    eprintln!(
                        "wrote {} embeddings of size {} to {}",
                        rows.len(),
                        encoder.dim(),
                        out.display()
                    );
                }
                None => std::io::stdout().write_all(&buf)?,
            }
        }
        Some(other) => {
            bail!("unsupported output extension `.{other}` (use .jsonl, .safetensors or .npy)")
        }
    }
    Ok(())
}
