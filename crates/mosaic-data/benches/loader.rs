//! Loader throughput on the Fashion-MNIST manifest (70,000 PNGs): decode,
//! preprocess to `[3, 28, 28]`, shuffle, batch. Run through
//! `scripts/bench/loader.sh`, which also runs the PyTorch DataLoader
//! reference on the same files and thread count.
//!
//! Environment: `MOSAIC_HOME` (the imported data set lives in
//! `$MOSAIC_HOME/datasets/fashion-mnist`), `BENCH_WORKERS` (default 2),
//! `BENCH_BATCH` (default 256).

use std::time::Instant;

use mosaic_data::image::{Filter, ImageProcessor};
use mosaic_data::loader::{Loader, LoaderConfig, Source};
use mosaic_data::pipeline::Pipeline;

fn main() {
    // `cargo test --all-targets` runs benches too, without `--bench`:
    // timing belongs to `cargo bench` only.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benchmark: run with `cargo bench` (skipped under `cargo test`)");
        return;
    }
    let home = mosaic_core::assets::AssetStore::default_home().expect("MOSAIC_HOME");
    let manifest = home.join("datasets/fashion-mnist/manifest.jsonl");
    if !manifest.is_file() {
        eprintln!(
            "{} is missing: run `mosaic data import fashion-mnist` first",
            manifest.display()
        );
        std::process::exit(1);
    }
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let batch: usize = std::env::var("BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let pipeline = Pipeline {
        image: Some(ImageProcessor {
            resize: None,
            filter: Filter::Bilinear,
            center_crop: None,
            rescale_factor: Some(1.0 / 255.0),
            normalize: Some(([0.286; 3], [0.353; 3])),
        }),
        ..Default::default()
    };
    let cfg = LoaderConfig {
        batch_size: batch,
        shuffle_buffer: 10_000,
        seed: 0,
        num_workers: workers,
        ..Default::default()
    };
    let loader = Loader::new(Source::manifest(&manifest), pipeline, cfg).expect("loader");
    for epoch in 0..2 {
        let t = Instant::now();
        let mut n = 0;
        let mut it = loader.epoch(epoch);
        for b in it.by_ref() {
            n += b.expect("batch").batch.len();
        }
        let dt = t.elapsed().as_secs_f64();
        println!(
            "mosaic loader epoch {epoch}: {n} samples in {dt:.2} s = {:.0} samples/s ({workers} workers, batch {batch}, skipped {})",
            n as f64 / dt,
            it.stats().skipped
        );
    }
}
