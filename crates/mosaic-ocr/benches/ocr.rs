//! Latency of `OcrEngine::recognize` per image (batch 1) on the rendered
//! parity images, and model load time. `scripts/bench/ocr.sh` runs
//! rapidocr-onnxruntime on the same images in the same script. tract runs
//! on one thread.

use std::time::Instant;

use mosaic_ocr::OcrEngine;

fn time<F: FnMut()>(mut f: F, min_secs: f64) -> f64 {
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs_f64() < min_secs || n < 3 {
        f();
        n += 1;
    }
    t.elapsed().as_secs_f64() / n as f64
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benchmark: run with `cargo bench` (skipped under `cargo test`)");
        return;
    }
    let store = mosaic_core::assets::AssetStore::from_env().expect("asset store");
    let dir = store.path("pp-ocrv4").expect("fetch pp-ocrv4 first");
    let t = Instant::now();
    let engine = OcrEngine::from_asset_dir(&dir).unwrap();
    println!("mosaic-ocr load: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{fixtures}/ocr_reference.json")).unwrap())
            .unwrap();
    let mut total = 0.0;
    let images = reference["images"].as_array().unwrap();
    for entry in images {
        let file = entry["file"].as_str().unwrap();
        let img = mosaic_data::image::load_image(
            format!("{fixtures}/{file}").as_ref(),
            &mosaic_data::image::DecodeOptions::default(),
        )
        .unwrap();
        // the first call also builds tract plans for this image's shapes
        let t = Instant::now();
        let lines = engine.recognize(&img).unwrap();
        let first = t.elapsed().as_secs_f64();
        let dt = time(|| drop(engine.recognize(&img).unwrap()), 2.0);
        total += dt;
        println!(
            "mosaic-ocr {file} ({}x{}, {} lines): {:.1} ms/image (first call {:.1} ms)",
            img.width(),
            img.height(),
            lines.len(),
            dt * 1e3,
            first * 1e3
        );
    }
    println!(
        "mosaic-ocr mean: {:.1} ms/image",
        total / images.len() as f64 * 1e3
    );
}
