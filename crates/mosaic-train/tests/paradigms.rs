//! Every paradigm config of `configs/arch/` builds, runs forward and
//! backward on a batch collated by the data layer, and overfits a fixed
//! small batch: 50 AdamW steps take the loss down by at least 90%.

use mosaic_models::arch::encoders::{
    AudioConfig, CnnConfig, PointTransformerConfig, PointnetConfig, SensorConfig, VideoConfig,
    VitConfig,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mosaic_core::{Modality, ModalityValue, Sample};
use mosaic_data::pipeline::{DataBatch, Pipeline};
use mosaic_data::text::{TextConfig, TextTokenizer};
use mosaic_models::arch::{ArchConfig, EncoderConfig, HeadConfig, ModelOutput, MultimodalModel};
use mosaic_train::loss;
use mosaic_train::optim::{AdamW, Optimizer};

const LABELS: [&str; 8] = [
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(
        &repo().join("crates/mosaic-data/tests/fixtures/text/clip_bpe_tokenizer.json"),
        TextConfig {
            max_length: Some(16),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Seeded values in [-1, 1) of `shape`, different per sample.
fn noise(seed: u64, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// One input tensor per modality the config encodes, per sample.
fn sample_value(m: Modality, e: &EncoderConfig, i: u64) -> ModalityValue {
    let t = match e {
        EncoderConfig::Vit(VitConfig {
            image_size,
            channels,
            ..
        })
        | EncoderConfig::Cnn(CnnConfig {
            image_size,
            channels,
            ..
        }) => noise(i, &[*channels, *image_size, *image_size]),
        EncoderConfig::Audio(AudioConfig {
            n_mels, max_frames, ..
        }) => noise(i, &[*max_frames, *n_mels]),
        EncoderConfig::Video(VideoConfig {
            frames,
            channels,
            image_size,
            ..
        }) => noise(i, &[*frames, *channels, *image_size, *image_size]),
        // Variable lengths: the collator pads and masks.
        EncoderConfig::Pointnet(PointnetConfig { in_features, .. })
        | EncoderConfig::PointTransformer(PointTransformerConfig { in_features, .. }) => {
            noise(i, &[40 + 3 * i as usize, *in_features])
        }
        EncoderConfig::Sensor(SensorConfig {
            channels, max_len, ..
        }) => noise(i, &[max_len - i as usize, *channels]),
        EncoderConfig::TextTransformer(_) | EncoderConfig::BagOfWords(_) => {
            return ModalityValue::Text(format!("a photo of a {}", LABELS[i as usize]));
        }
        EncoderConfig::Pretrained(_) => {
            panic!("{m}: the paradigm configs build every encoder from the config")
        }
    };
    let _ = m;
    ModalityValue::Tensor(t)
}

fn data_batch(cfg: &ArchConfig) -> DataBatch {
    let pipeline = Pipeline {
        text: Some(tokenizer()),
        classes: Some(LABELS.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let needs_text = cfg.heads.values().any(|h| matches!(h, HeadConfig::Lm {}));
    let samples: Vec<Sample> = (0..LABELS.len() as u64)
        .map(|i| {
            let mut s = Sample::new(format!("s{i}"));
            for (m, e) in &cfg.encoders {
                s = s.with(*m, sample_value(*m, e, i));
            }
            if needs_text {
                s = s.with(
                    Modality::Text,
                    ModalityValue::Text(format!("a photo of a {}", LABELS[i as usize])),
                );
            }
            s.labels = vec![LABELS[i as usize].to_string()];
            s
        })
        .collect();
    let prepared: Vec<_> = samples
        .iter()
        .map(|s| pipeline.prepare(s).unwrap())
        .collect();
    pipeline.collate(&prepared).unwrap()
}

/// Sum of every head's objective.
fn objective(cfg: &ArchConfig, out: &ModelOutput, db: &DataBatch) -> Tensor {
    let classes = db.classes.as_ref().expect("class per sample");
    let mut total: Option<Tensor> = None;
    for (name, h) in &cfg.heads {
        let logits = &out.heads[name];
        let l = match h {
            HeadConfig::Contrastive { .. } => loss::clip_loss(logits).unwrap(),
            HeadConfig::Classifier { .. } => loss::cross_entropy(logits, classes, 0.0).unwrap(),
            // Match labels: alternate samples marked as matching.
            HeadConfig::Itm {} => {
                let y = Tensor::new(
                    (0..LABELS.len() as u32).map(|i| i % 2).collect::<Vec<_>>(),
                    &Device::Cpu,
                )
                .unwrap();
                loss::cross_entropy(logits, &y, 0.0).unwrap()
            }
            // Next-token prediction over the caption (position t predicts t+1).
            HeadConfig::Lm {} => {
                let text = &db.batch.modalities[&Modality::Text];
                let t = text.values.dim(1).unwrap();
                let pred = logits.narrow(1, 0, t - 1).unwrap();
                let tgt = text.values.narrow(1, 1, t - 1).unwrap();
                let mask = text.mask.as_ref().unwrap().narrow(1, 1, t - 1).unwrap();
                loss::sequence_cross_entropy(&pred, &tgt, Some(&mask), 0.0).unwrap()
            }
        };
        total = Some(match total {
            Some(t) => (t + l).unwrap(),
            None => l,
        });
    }
    total.unwrap()
}

fn overfit(name: &str) -> (f32, f32) {
    let cfg = ArchConfig::from_file(&repo().join(format!("configs/arch/{name}.toml"))).unwrap();
    let model = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu).unwrap();
    let db = data_batch(&cfg);
    let mut opt = AdamW::new(model.params().vars(), 5e-3, 0.0);
    let mut losses = Vec::new();
    for _ in 0..50 {
        let out = model.forward(&db.batch).unwrap();
        let l = objective(&cfg, &out, &db);
        losses.push(l.to_scalar::<f32>().unwrap());
        let grads = l.backward().unwrap();
        // Backward reaches every parameter.
        for (n, v) in model.params().vars() {
            assert!(
                grads.get(v.as_tensor()).is_some(),
                "{name}: no gradient for {n}"
            );
        }
        opt.step(&grads).unwrap();
    }
    let out = model.forward(&db.batch).unwrap();
    let last = objective(&cfg, &out, &db).to_scalar::<f32>().unwrap();
    eprintln!(
        "{name}: loss {:.4} → {:.4} ({:.1}% lower)",
        losses[0],
        last,
        100.0 * (1.0 - last / losses[0])
    );
    (losses[0], last)
}

macro_rules! paradigm {
    ($test:ident, $name:literal) => {
        #[test]
        fn $test() {
            let (first, last) = overfit($name);
            assert!(
                last <= 0.1 * first,
                "{}: loss {first} → {last}, less than a 90% drop",
                $name
            );
        }
    };
}

paradigm!(early_fusion_overfits, "early");
paradigm!(late_fusion_overfits, "late");
paradigm!(cross_attention_fusion_overfits, "cross_attention");
paradigm!(single_stream_fusion_overfits, "single_stream");
paradigm!(multi_stream_fusion_overfits, "multi_stream");
paradigm!(gated_fusion_overfits, "gated");
paradigm!(generative_fusion_overfits, "generative");

#[test]
fn every_paradigm_has_a_config() {
    let mut kinds = BTreeMap::new();
    for e in std::fs::read_dir(repo().join("configs/arch")).unwrap() {
        let p = e.unwrap().path();
        let cfg = ArchConfig::from_file(&p).unwrap();
        kinds.insert(cfg.fusion.kind(), p);
    }
    for k in [
        "early",
        "late",
        "cross_attention",
        "single_stream",
        "multi_stream",
        "gated",
        "generative",
    ] {
        assert!(kinds.contains_key(k), "no config for {k}");
    }
}
