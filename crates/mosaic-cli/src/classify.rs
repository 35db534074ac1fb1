//! `mosaic classify`: ImageNet top-k with EfficientNet-Lite.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use mosaic_core::assets::{AssetStore, resolve_model};
use mosaic_models::pretrained::{EfficientNetLite, imagenet_classes, lite_preprocessor, top_k};

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    /// Model: an asset name (efficientnet-lite0) or a .pth file / folder.
    #[arg(long)]
    model: String,
    /// Images to classify.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ClassifyArgs, store: &AssetStore) -> Result<()> {
    if args.top_k == 0 || args.top_k > 1000 {
        bail!("--top-k must be between 1 and 1000, got {}", args.top_k);
    }
    let model = EfficientNetLite::from_pretrained(&resolve_model(&args.model, store)?)?;
    let names = imagenet_classes();
    let (proc_, decode) = lite_preprocessor();
    for path in &args.images {
        let img = mosaic_data::image::load_image(path, &decode)?;
        let x = proc_.preprocess(&img)?.unsqueeze(0)?;
        let logits: Vec<f32> = model.forward(&x)?.squeeze(0)?.to_vec1()?;
        let best = top_k(&logits, args.top_k);
        if args.json {
            let classes: Vec<_> = best
                .iter()
                .map(|(i, p)| serde_json::json!({"index": i, "label": names[*i], "probability": p}))
                .collect();
            println!(
                "{}",
                serde_json::json!({"image": path.display().to_string(), "top": classes})
            );
        } else {
            println!("{}", path.display());
            for (i, p) in best {
                println!("  {:>6.2}%  {} ({i})", p * 100.0, names[i]);
            }
        }
    }
    Ok(())
}
