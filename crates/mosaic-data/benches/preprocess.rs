//! Preprocessing throughput on real assets: CLIP image preprocessing
//! (decode + Pillow-exact bicubic resize + crop + normalise) of the
//! scikit-image photos, Whisper log-mel of 30 s windows, and batch
//! tokenisation of the real sentences. `scripts/bench/preprocess.sh` runs
//! this and the Python reference (transformers / tokenizers) side by side.

use std::time::Instant;

use mosaic_data::audio::{WhisperFeatureConfig, WhisperFeatureExtractor, load_audio};
use mosaic_data::image::{DecodeOptions, ImageProcessor, decode_image};
use mosaic_data::text::{Padding, TextConfig, TextTokenizer};

fn time<F: FnMut()>(mut f: F, min_secs: f64) -> (usize, f64) {
    f();
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed().as_secs_f64() < min_secs {
        f();
        n += 1;
    }
    (n, t.elapsed().as_secs_f64())
}

fn main() {
    // `cargo test --all-targets` runs benches too, without `--bench`:
    // timing belongs to `cargo bench` only.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benchmark: run with `cargo bench` (skipped under `cargo test`)");
        return;
    }
    let store = mosaic_core::assets::AssetStore::from_env().expect("asset store");
    let photos = store.path("skimage-photos").expect("fetch skimage-photos");
    let mut files: Vec<_> = std::fs::read_dir(&photos)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .collect();
    files.sort();
    let bytes: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let clip = ImageProcessor::clip(224);
    let opts = DecodeOptions::default();
    let (n, dt) = time(
        || {
            for b in &bytes {
                let img = decode_image(b, "x", &opts).unwrap();
                std::hint::black_box(clip.preprocess_to_vec(&img).unwrap());
            }
        },
        3.0,
    );
    println!(
        "clip_preprocess: {:.2} ms/image ({} photos)",
        dt * 1000.0 / (n * bytes.len()) as f64,
        bytes.len()
    );

    let wav = store
        .path("pocketsphinx-testdata")
        .unwrap()
        .join("librivox/sense_and_sensibility_01_austen_64kb-0880.wav");
    let audio = load_audio(&wav, &Default::default()).unwrap().samples;
    let fe = WhisperFeatureExtractor::new(WhisperFeatureConfig::default()).unwrap();
    let (n, dt) = time(
        || {
            std::hint::black_box(fe.extract(&audio).unwrap());
        },
        3.0,
    );
    println!(
        "whisper_log_mel: {:.2} ms per 30 s window",
        dt * 1000.0 / n as f64
    );

    let tok_path = store.path("minilm-l6-v2").unwrap().join("tokenizer.json");
    let tok = TextTokenizer::from_file(
        &tok_path,
        TextConfig {
            max_length: Some(128),
            padding: Padding::Longest,
            add_special_tokens: true,
        },
    )
    .unwrap();
    let sentences: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/text/sentences.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let real: Vec<String> = sentences["real"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let (n, dt) = time(
        || {
            std::hint::black_box(tok.encode_batch(&real).unwrap());
        },
        3.0,
    );
    println!(
        "tokenize_batch: {:.3} ms per {} sentences",
        dt * 1000.0 / n as f64,
        real.len()
    );
}
