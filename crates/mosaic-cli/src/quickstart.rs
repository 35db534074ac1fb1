//! `mosaic quickstart`: fetch, train, evaluate and report on real data.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use mosaic_core::assets::AssetStore;
use mosaic_train::quickstart::{QuickstartOptions, run};

#[derive(Args, Debug)]
pub struct QuickstartArgs {
    /// Run folder (report, models, curves).
    #[arg(long, default_value = "runs/quickstart")]
    out: PathBuf,
    /// Training steps of the image–text model.
    #[arg(long, default_value_t = 1500)]
    steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip the LiT phase (frozen MiniLM text tower).
    #[arg(long)]
    no_lit: bool,
    /// Skip the spoken-caption (tri-modal) phase.
    #[arg(long)]
    no_speech: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

pub fn run_cli(args: QuickstartArgs, store: &AssetStore) -> Result<()> {
    if args.steps == 0 || args.batch_size < 2 {
        anyhow::bail!("--steps must be ≥ 1 and --batch-size ≥ 2");
    }
    let mut o = QuickstartOptions::new(args.out);
    o.steps = args.steps;
    o.batch_size = args.batch_size;
    o.seed = args.seed;
    o.progress = !args.quiet;
    o.lit = !args.no_lit;
    o.speech = !args.no_speech;
    let report = run(&o, store)?;
    println!(
        "quickstart done; everything is in {}",
        report.out_dir.display()
    );
    println!("  report: {}", report.out_dir.join("report.md").display());
    for (phase, v) in &report.phases {
        println!("  {phase}: {v}");
    }
    // The image–text model is an ordinary Mosaic model folder: the full
    // evaluation suite runs on it from the test PNGs.
    let model = report.out_dir.join("image-text").join("model");
    println!(
        "  evaluate it: mosaic data import fashion-mnist --out data/fashion-mnist && \\\n    \
         mosaic eval model --model {} --manifest data/fashion-mnist/test.jsonl \\\n    \
         --prompt-names \"{}\" --noise 0,0.1,0.2 --blur 0,1,2 --group-by class_index --out {}",
        model.display(),
        mosaic_train::quickstart::CLASSES.join(","),
        report.out_dir.join("eval").display()
    );
    Ok(())
}
