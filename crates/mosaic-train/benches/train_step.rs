//! Training throughput (samples/s: forward, CLIP loss, backward, AdamW
//! step) of the quickstart model and of the CLIP ViT-B/32 shape.
//! `scripts/bench/train_step.sh` runs the same models in PyTorch alongside.

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
    EncoderConfig::TextTransformer {
        vocab_size: vocab,
        max_len: len,
        dim,
        layers,
        heads,
        positions: Positions::Learned,
        mlp_ratio: ratio,
        pre_norm: true,
    }
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
    let mut step = || {
        let out = model.forward(&b).unwrap();
        let l = clip_loss(&out.heads["clip"]).unwrap();
        opt.step(&l.backward().unwrap()).unwrap();
    };
    step();
    let t = Instant::now();
    for _ in 0..steps {
        step();
    }
    let dt = t.elapsed().as_secs_f64() / steps as f64;
    println!(
        "{name} batch {batch}: {:.3} s/step, {:.1} samples/s ({} parameters)",
        dt,
        batch as f64 / dt,
        model.params().num_params()
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benchmark: run with `cargo bench` (skipped under `cargo test`)");
        return;
    }
    let quick = ArchConfig::from_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/arch/fmnist_clip.toml"
    )))
    .unwrap();
    bench(
        "quickstart (fmnist_clip)",
        quick,
        (1, 28),
        16,
        30522,
        128,
        10,
    );
    let b32 = ArchConfig {
        name: "clip-vit-b32".into(),
        seed: 0,
        dim: 512,
        encoders: BTreeMap::from([
            (
                Modality::Image,
                EncoderConfig::Vit {
                    image_size: 224,
                    patch_size: 32,
                    channels: 3,
                    dim: 768,
                    layers: 12,
                    heads: 12,
                    mlp_ratio: 4,
                },
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
            },
        )]),
    };
    bench("CLIP ViT-B/32 shape", b32, (3, 224), 77, 49408, 8, 3);
}
