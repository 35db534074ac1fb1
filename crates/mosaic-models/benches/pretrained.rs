//! Latency/throughput of the real pretrained models on this CPU:
//! MiniLM sentence embeddings and EfficientNet-Lite0 classification at
//! batch 1 and 8, Whisper tiny.en as a real-time factor.
//! `scripts/bench/pretrained.sh` runs the Python references alongside.

use std::time::Instant;

use candle_core::{Device, Tensor};
use mosaic_models::pretrained::whisper::WhisperTranscriber;
use mosaic_models::pretrained::{EfficientNetLite, SentenceEncoder, lite_preprocessor};

fn time<F: FnMut()>(mut f: F, min_secs: f64) -> f64 {
    f();
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
    let sentences: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../mosaic-data/tests/fixtures/text/sentences.json"
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
    let enc = SentenceEncoder::from_pretrained(&store.path("minilm-l6-v2").unwrap()).unwrap();
    for b in [1usize, 8] {
        let batch: Vec<&str> = real.iter().take(b).map(|s| s.as_str()).collect();
        let dt = time(|| drop(enc.encode(&batch, b).unwrap()), 2.0);
        println!(
            "minilm batch {b}: {:.2} ms/batch, {:.1} sentences/s",
            dt * 1e3,
            b as f64 / dt
        );
    }
    let net =
        EfficientNetLite::from_pretrained(&store.path("efficientnet-lite0").unwrap()).unwrap();
    let (proc_, dec) = lite_preprocessor();
    let img = mosaic_data::image::load_image(
        &store.path("skimage-photos").unwrap().join("chelsea.png"),
        &dec,
    )
    .unwrap();
    let x = proc_.preprocess(&img).unwrap().unsqueeze(0).unwrap();
    for b in [1usize, 8] {
        let xb = Tensor::cat(&vec![x.clone(); b], 0).unwrap();
        let dt = time(|| drop(net.forward(&xb).unwrap()), 2.0);
        println!(
            "efficientnet-lite0 batch {b}: {:.2} ms/batch, {:.1} images/s",
            dt * 1e3,
            b as f64 / dt
        );
    }
    let mut tr =
        WhisperTranscriber::from_pretrained(&store.path("whisper-tiny-en").unwrap()).unwrap();
    tr.options = tr.options.clone().with_greedy();
    let ps = store
        .path("pocketsphinx-testdata")
        .unwrap()
        .join("librivox");
    let mut audio = Vec::new();
    for f in [
        "sense_and_sensibility_01_austen_64kb-0870.wav",
        "sense_and_sensibility_01_austen_64kb-0920.wav",
    ] {
        audio.push(
            mosaic_data::audio::load_audio(&ps.join(f), &Default::default())
                .unwrap()
                .samples,
        );
    }
    let secs: f64 = audio.iter().map(|a| a.len() as f64 / 16000.0).sum();
    let dt = time(
        || {
            for a in &audio {
                drop(tr.transcribe(a).unwrap())
            }
        },
        3.0,
    );
    println!(
        "whisper-tiny-en greedy: {:.2} s for {secs:.1} s of audio, real-time factor {:.3}",
        dt,
        dt / secs
    );
    // Silero VAD over the same two utterances: probabilities + segments.
    let mut vad =
        mosaic_data::audio::vad::SileroVad::load(&store.path("silero-vad").unwrap()).unwrap();
    let opts = mosaic_data::audio::vad::VadOptions::default();
    let dt = time(
        || {
            for a in &audio {
                vad.reset();
                let p = vad.probabilities(a).unwrap();
                drop(mosaic_data::audio::vad::speech_segments(&p, a.len(), &opts));
            }
        },
        2.0,
    );
    println!(
        "silero-vad: {:.2} ms for {secs:.1} s of audio, real-time factor {:.4}",
        dt * 1e3,
        dt / secs
    );
    let _ = Device::Cpu;
}
