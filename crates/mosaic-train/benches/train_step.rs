//! Training throughput (samples/s: forward, CLIP loss, backward, AdamW
//! step) of the quickstart model and of the CLIP ViT-B/32 shape.
//! `scripts/bench/train_step.sh` runs the same models in PyTorch alongside.

use mosaic_models::arch::encoders::TextTransformerConfig;
use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use mosaic_core::{Batch, Modality, ModalityBatch};
use mosaic_models::arch::config::{EncoderConfig, FusionConfig, HeadConfig, Positions};
use mosaic_models::arch::{ArchConfig, MultimodalModel};
use mosaic_train::loss::clip_loss;
use mosaic_train::optim::{AdamW, Optimizer};

fn text(
    vocab: usize,
    len: usize,
    dim: usize,
    layers: usize,
    heads: usize,
    ratio: usize,
) -> EncoderConfig {
    EncoderConfig::TextTransformer(TextTransformerConfig {
        vocab_size: vocab,
        max_len: len,
        dim,
        layers,
        heads,
        positions: Positions::Learned,
        mlp_ratio: ratio,
        pre_norm: true,
    })
}

fn bench(
    name: &str,
    cfg: ArchConfig,
    image: (usize, usize),
    text_len: usize,
    vocab: usize,
    batch: usize,
    steps: usize,
) {
    let model = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu).unwrap();
    let mut opt = AdamW::new(model.params().vars(), 1e-4, 0.01);
    let mut b = Batch::new(vec![]);
    let (c, s) = image;
    let px = Tensor::randn(0f32, 1.0, (batch, c, s, s), &Device::Cpu).unwrap();
    b.modalities.insert(
        Modality::Image,
        ModalityBatch::new(px, None, vec![true; batch]).unwrap(),
    );
    let ids: Vec<u32> = (0..batch * text_len)
        .map(|i| (i * 7919 % vocab) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (batch, text_len), &Device::Cpu).unwrap();
    b.modalities.insert(
        Modality::Text,
        ModalityBatch::new(ids, None, vec![true; batch]).unwrap(),
    );
    // One step, timed in its three parts: forward (+ loss), backward,
    // optimiser update.
    let mut step = || -> [f64; 3] {
        let t0 = Instant::now();
        let out = model.forward(&b).unwrap();
        let l = clip_loss(&out.heads["clip"]).unwrap();
        let t1 = Instant::now();
        let grads = l.backward().unwrap();
        let t2 = Instant::now();
        opt.step(&grads).unwrap();
        let t3 = Instant::now();
        [
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
        ]
    };
    step();
    let t = Instant::now();
    let mut parts = [0.0; 3];
    for _ in 0..steps {
        for (p, x) in parts.iter_mut().zip(step()) {
            *p += x;
        }
    }
    let dt = t.elapsed().as_secs_f64() / steps as f64;
    println!(
        "{name} batch {batch}: {:.3} s/step, {:.1} samples/s ({} parameters); forward {:.3} s, backward {:.3} s, update {:.3} s",
        dt,
        batch as f64 / dt,
        model.params().num_params(),
        parts[0] / steps as f64,
        parts[1] / steps as f64,
        parts[2] / steps as f64,
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benchmark: run with `cargo bench` (skipped under `cargo test`)");
        return;
    }
    // `BENCH_ONLY=quickstart` or `BENCH_ONLY=vit` runs one model (profiling).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let quick = ArchConfig::from_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/arch/fmnist_clip.toml"
    )))
    .unwrap();
    if only != "vit" {
        bench(
            "quickstart (fmnist_clip)",
            quick,
            (1, 28),
            16,
            30522,
            128,
            30,
        );
    }
    if only == "quickstart" {
        return;
    }
    let b32 = ArchConfig {
        name: "clip-vit-b32".into(),
        seed: 0,
        dim: 512,
        encoders: BTreeMap::from([
            (
                Modality::Image,
                EncoderConfig::vit(224, 32, 3, 768, 12, 12, 4),
            ),
            (Modality::Text, text(49408, 77, 512, 12, 8, 4)),
        ]),
        fusion: FusionConfig::Late {},
        heads: BTreeMap::from([(
            "clip".to_string(),
            HeadConfig::Contrastive {
                modalities: vec![Modality::Image, Modality::Text],
                dim: 512,
                init_temperature: 0.07,
                project: true,
                init_logit_scale: None,
            },
        )]),
        lora: None,
    };
    bench("CLIP ViT-B/32 shape", b32, (3, 224), 77, 49408, 8, 5);
}
