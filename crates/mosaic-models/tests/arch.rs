//! Architecture invariants and gradient checks: finite differences (f64)
//! against autograd for attention, cross-attention, gated fusion, PointNet
//! and the sensor encoder; padding never changes real positions; gated
//! fusion treats a missing modality like an absent one; KV-cached decoding
//! equals full recomputation; save → load is bit-exact; bad configs name
//! their key.

use mosaic_models::arch::encoders::{
    AudioConfig, PointTransformerConfig, PointnetConfig, SensorConfig, TextTransformerConfig,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use mosaic_core::{Batch, Modality, ModalityBatch};
use mosaic_models::Encoder;
use mosaic_models::arch::config::EncoderConfig;
use mosaic_models::arch::encoders::ArchEncoder;
use mosaic_models::arch::{ArchConfig, Decoding, MultimodalModel};
use mosaic_models::nn::blocks::key_bias;
use mosaic_models::nn::gradcheck::check_gradients;
use mosaic_models::nn::{MultiHeadAttention, ParamStore};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn arch(name: &str) -> ArchConfig {
    ArchConfig::from_file(&repo().join(format!("configs/arch/{name}.toml"))).unwrap()
}

fn randn(seed: u64, shape: &[usize]) -> Tensor {
    let p = ParamStore::new(seed, DType::F64, &Device::Cpu);
    p.get("x", shape, mosaic_models::nn::Init::Normal(1.0))
        .unwrap()
        .detach()
}

fn vars(p: &ParamStore) -> Vec<(String, Var)> {
    p.vars().into_iter().collect()
}

fn weighted_sum(y: &Tensor, seed: u64) -> Tensor {
    let r = randn(seed, y.dims());
    (y * r).unwrap().sum_all().unwrap()
}

fn mb(values: Tensor, mask: Option<Tensor>) -> ModalityBatch {
    let b = values.dim(0).unwrap();
    ModalityBatch::new(values, mask, vec![true; b]).unwrap()
}

#[test]
fn attention_and_cross_attention_gradients_match_finite_differences() {
    let p = ParamStore::new(1, DType::F64, &Device::Cpu);
    let self_attn = MultiHeadAttention::new(&p, "self", 8, 8, 2, false).unwrap();
    let rotary = MultiHeadAttention::new(&p, "rot", 8, 8, 2, true).unwrap();
    let cross = MultiHeadAttention::new(&p, "cross", 8, 6, 2, false).unwrap();
    let x = Var::from_tensor(&randn(2, &[2, 5, 8])).unwrap();
    let ctx = Var::from_tensor(&randn(3, &[2, 4, 6])).unwrap();
    let mask = Tensor::new(&[[1u8, 1, 1, 1], [1, 1, 0, 0]], &Device::Cpu).unwrap();
    let bias = key_bias(&mask, DType::F64).unwrap();
    let loss = || -> mosaic_models::Result<Tensor> {
        let a = self_attn.forward(x.as_tensor(), None, None)?;
        let r = rotary.forward(x.as_tensor(), None, None)?;
        let c = cross.forward(x.as_tensor(), Some(ctx.as_tensor()), Some(&bias))?;
        Ok(((weighted_sum(&a, 10) + weighted_sum(&r, 11))? + weighted_sum(&c, 12))?)
    };
    let mut all = vars(&p);
    all.push(("x".into(), x.clone()));
    all.push(("context".into(), ctx.clone()));
    let rep = check_gradients(&all, loss, 6, 1e-5, 1e-6).unwrap();
    eprintln!(
        "attention: {} elements, max relative error {:e} at {}",
        rep.checked, rep.max_rel, rep.worst
    );
}

fn encoder_check(cfg: EncoderConfig, m: Modality, input: Tensor, mask: Option<Tensor>) {
    let p = ParamStore::new(4, DType::F64, &Device::Cpu);
    let enc = ArchEncoder::build(&p, m, &cfg).unwrap();
    let x = Var::from_tensor(&input).unwrap();
    let loss = || -> mosaic_models::Result<Tensor> {
        let f = enc.encode(&mb(x.as_tensor().clone(), mask.clone()))?;
        Ok((weighted_sum(&f.tokens, 20) + weighted_sum(&f.pooled, 21))?)
    };
    let mut all = vars(&p);
    all.push(("input".into(), x.clone()));
    let rep = check_gradients(&all, loss, 4, 1e-5, 1e-6).unwrap();
    eprintln!(
        "{}: {} elements, max relative error {:e} at {}",
        cfg.kind(),
        rep.checked,
        rep.max_rel,
        rep.worst
    );
}

#[test]
fn pointnet_gradients_match_finite_differences() {
    let mask = Tensor::new(&[[1u8, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], &Device::Cpu).unwrap();
    encoder_check(
        EncoderConfig::Pointnet(PointnetConfig {
            in_features: 3,
            widths: vec![8],
            dim: 6,
        }),
        Modality::PointCloud,
        randn(5, &[2, 6, 3]),
        Some(mask),
    );
}

#[test]
fn sensor_encoder_gradients_match_finite_differences() {
    let mask = Tensor::new(&[[1u8, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &Device::Cpu).unwrap();
    encoder_check(
        EncoderConfig::Sensor(SensorConfig {
            channels: 2,
            max_len: 8,
            dim: 8,
            layers: 1,
            heads: 2,
            kernel: 3,
        }),
        Modality::Sensor,
        randn(6, &[2, 5, 2]),
        Some(mask),
    );
}

#[test]
fn gated_fusion_gradients_match_finite_differences() {
    let mut cfg = arch("gated");
    cfg.dim = 4;
    cfg.encoders = BTreeMap::from([
        (
            Modality::Sensor,
            EncoderConfig::Sensor(SensorConfig {
                channels: 2,
                max_len: 4,
                dim: 4,
                layers: 0,
                heads: 1,
                kernel: 1,
            }),
        ),
        (
            Modality::PointCloud,
            EncoderConfig::Pointnet(PointnetConfig {
                in_features: 3,
                widths: vec![4],
                dim: 4,
            }),
        ),
    ]);
    let model = MultimodalModel::from_config(&cfg, DType::F64, &Device::Cpu).unwrap();
    let mut batch = Batch::new(vec!["a".into(), "b".into()]);
    batch
        .modalities
        .insert(Modality::Sensor, mb(randn(7, &[2, 3, 2]), None));
    // Sample b has no point cloud.
    batch.modalities.insert(
        Modality::PointCloud,
        ModalityBatch::new(randn(8, &[2, 5, 3]), None, vec![true, false]).unwrap(),
    );
    let loss = || -> mosaic_models::Result<Tensor> {
        let out = model.forward(&batch)?;
        Ok((weighted_sum(out.fused.pooled.as_ref().unwrap(), 30)
            + weighted_sum(&out.heads["label"], 31))?)
    };
    let rep = check_gradients(&vars(model.params()), loss, 3, 1e-5, 1e-6).unwrap();
    eprintln!(
        "gated fusion: {} elements, max relative error {:e} at {}",
        rep.checked, rep.max_rel, rep.worst
    );
    // The absent sample's gate on the point cloud is exactly 0.
    let g: Vec<Vec<f64>> = model
        .forward(&batch)
        .unwrap()
        .fused
        .gates
        .unwrap()
        .to_vec2()
        .unwrap();
    assert_eq!(g[1][0], 0.0, "gates {g:?} (point_cloud first)");
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn padding_never_changes_real_positions() {
    let dev = Device::Cpu;
    let cases: Vec<(Modality, EncoderConfig, Tensor, usize)> = vec![
        (
            Modality::Text,
            EncoderConfig::TextTransformer(TextTransformerConfig {
                vocab_size: 50,
                max_len: 12,
                dim: 8,
                layers: 2,
                heads: 2,
                positions: Default::default(),
                mlp_ratio: 2,
                pre_norm: true,
            }),
            Tensor::new(&[[3u32, 7, 9, 11, 4]], &dev).unwrap(),
            1,
        ),
        (
            Modality::Text,
            EncoderConfig::TextTransformer(TextTransformerConfig {
                vocab_size: 50,
                max_len: 12,
                dim: 8,
                layers: 2,
                heads: 2,
                positions: mosaic_models::arch::config::Positions::Rotary,
                mlp_ratio: 2,
                pre_norm: false,
            }),
            Tensor::new(&[[3u32, 7, 9, 11, 4]], &dev).unwrap(),
            1,
        ),
        (
            Modality::Sensor,
            EncoderConfig::Sensor(SensorConfig {
                channels: 2,
                max_len: 12,
                dim: 8,
                layers: 1,
                heads: 2,
                kernel: 3,
            }),
            randn(1, &[1, 5, 2]).to_dtype(DType::F32).unwrap(),
            1,
        ),
        (
            Modality::PointCloud,
            EncoderConfig::Pointnet(PointnetConfig {
                in_features: 3,
                widths: vec![8],
                dim: 8,
            }),
            randn(2, &[1, 5, 3]).to_dtype(DType::F32).unwrap(),
            1,
        ),
        (
            Modality::PointCloud,
            EncoderConfig::PointTransformer(PointTransformerConfig {
                in_features: 3,
                groups: 2,
                group_size: 3,
                dim: 8,
                layers: 1,
                heads: 2,
            }),
            randn(3, &[1, 5, 3]).to_dtype(DType::F32).unwrap(),
            1,
        ),
        (
            Modality::Audio,
            EncoderConfig::Audio(AudioConfig {
                n_mels: 4,
                max_frames: 12,
                dim: 8,
                layers: 1,
                heads: 2,
            }),
            randn(4, &[1, 6, 4]).to_dtype(DType::F32).unwrap(),
            1,
        ),
    ];
    for (m, cfg, x, axis) in cases {
        let p = ParamStore::new(9, DType::F32, &dev);
        let enc = ArchEncoder::build(&p, m, &cfg).unwrap();
        let n = x.dim(axis).unwrap();
        let alone = enc.encode(&mb(x.clone(), None)).unwrap();
        // The same sample padded with 3 junk positions, next to a full one.
        let mut junk_shape = x.dims().to_vec();
        junk_shape[axis] = 3;
        let junk = if x.dtype() == DType::U32 {
            Tensor::new(&[[1u32, 2, 3]], &dev).unwrap()
        } else {
            (randn(99, &junk_shape).to_dtype(DType::F32).unwrap() * 50.0).unwrap()
        };
        let padded = Tensor::cat(&[&x, &junk], axis).unwrap();
        let other = if x.dtype() == DType::U32 {
            Tensor::new(&[[5u32, 6, 7, 8, 9, 10, 12, 13]], &dev).unwrap()
        } else {
            randn(77, padded.dims()).to_dtype(DType::F32).unwrap()
        };
        let values = Tensor::cat(&[&padded, &other], 0).unwrap();
        let mut mask = vec![0u8; 2 * (n + 3)];
        for (i, v) in mask.iter_mut().enumerate() {
            *v = u8::from(i >= n + 3 || i < n);
        }
        let mask = Tensor::from_vec(mask, (2, n + 3), &dev).unwrap();
        let both = enc.encode(&mb(values, Some(mask))).unwrap();
        let d = max_abs(&both.pooled.get(0).unwrap(), &alone.pooled.get(0).unwrap());
        eprintln!("{}: pooled differs by {d:e} with padding", cfg.kind());
        assert!(
            d < 1e-5,
            "{} pooled output changed by {d} when padded",
            cfg.kind()
        );
        // Per-position tokens too, where tokens map 1:1 to positions.
        if matches!(
            cfg,
            EncoderConfig::TextTransformer(_)
                | EncoderConfig::Sensor(_)
                | EncoderConfig::Pointnet(_)
        ) {
            let d = max_abs(
                &both.tokens.get(0).unwrap().narrow(0, 0, n).unwrap(),
                &alone.tokens.get(0).unwrap(),
            );
            assert!(d < 1e-5, "{} tokens changed by {d} when padded", cfg.kind());
        }
    }
}

#[test]
fn gated_fusion_missing_modality_equals_absent_modality() {
    let cfg = arch("gated");
    let model = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu).unwrap();
    let text = Tensor::new(&[[5u32, 6, 7], [8, 9, 10]], &Device::Cpu).unwrap();
    let sensor = randn(3, &[2, 10, 3]).to_dtype(DType::F32).unwrap();
    let points = randn(4, &[2, 20, 3]).to_dtype(DType::F32).unwrap();
    // Batch 1: sample 1 lacks its point cloud (zeros, present = false).
    let mut with = Batch::new(vec!["a".into(), "b".into()]);
    with.modalities
        .insert(Modality::Text, mb(text.clone(), None));
    with.modalities
        .insert(Modality::Sensor, mb(sensor.clone(), None));
    with.modalities.insert(
        Modality::PointCloud,
        ModalityBatch::new(points, None, vec![true, false]).unwrap(),
    );
    // Batch 2: sample 1 alone, without the modality at all.
    let mut without = Batch::new(vec!["b".into()]);
    without
        .modalities
        .insert(Modality::Text, mb(text.narrow(0, 1, 1).unwrap(), None));
    without
        .modalities
        .insert(Modality::Sensor, mb(sensor.narrow(0, 1, 1).unwrap(), None));
    let a = model.forward(&with).unwrap();
    let b = model.forward(&without).unwrap();
    let d = max_abs(
        &a.heads["label"].get(1).unwrap(),
        &b.heads["label"].get(0).unwrap(),
    );
    assert!(d < 1e-6, "missing vs absent modality differ by {d}");
}

#[test]
fn kv_cached_decoding_equals_full_recomputation() {
    let cfg = arch("generative");
    let model = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu).unwrap();
    let dec = model.decoder().unwrap();
    let img = randn(5, &[1, 1, 28, 28]).to_dtype(DType::F32).unwrap();
    let f = model.encoders()[&Modality::Image]
        .encode(&mb(img, None))
        .unwrap();
    let prefix = dec
        .prefix_tokens(&BTreeMap::from([(Modality::Image, f)]))
        .unwrap();
    let prompt = [3u32, 9];
    let cached = dec
        .generate(&prefix, &prompt, 12, None, Decoding::Greedy)
        .unwrap();
    // Recompute from scratch at every step, argmax of the last position.
    let mut seq = prompt.to_vec();
    for (step, &tok) in cached.iter().enumerate() {
        let logits = dec.recompute_logits(&prefix, &seq).unwrap();
        let last: Vec<f32> = logits
            .get(0)
            .unwrap()
            .get(seq.len() - 1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let best = last
            .iter()
            .enumerate()
            .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a })
            .0 as u32;
        assert_eq!(best, tok, "step {step}");
        seq.push(tok);
    }
    assert_eq!(cached.len(), 12);
    // Logits of cached steps equal recomputation ≤ 1e-5.
    let d = dec.max_cache_logit_diff(&prefix, &seq).unwrap();
    eprintln!("cached vs recomputed logits: max abs diff {d:e}");
    assert!(d <= 1e-5, "{d}");
    // Other strategies run and respect the vocabulary; sampling is seeded.
    let v = dec.vocab_size() as u32;
    for how in [
        Decoding::TopK {
            k: 5,
            temperature: 1.0,
            seed: 7,
        },
        Decoding::TopP {
            p: 0.9,
            temperature: 0.8,
            seed: 7,
        },
        Decoding::Beam { beams: 3 },
    ] {
        let a = dec.generate(&prefix, &prompt, 6, None, how).unwrap();
        assert!(!a.is_empty() && a.iter().all(|&t| t < v), "{how:?}");
        assert_eq!(
            a,
            dec.generate(&prefix, &prompt, 6, None, how).unwrap(),
            "{how:?} not reproducible"
        );
    }
    // Beam 1 = greedy.
    assert_eq!(
        dec.generate(&prefix, &prompt, 6, None, Decoding::Beam { beams: 1 })
            .unwrap(),
        cached[..6].to_vec()
    );
}

#[test]
fn save_then_load_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["late", "multi_stream", "generative"] {
        let cfg = arch(name);
        let mut c2 = cfg.clone();
        c2.seed = 123;
        let model = MultimodalModel::from_config(&c2, DType::F32, &Device::Cpu).unwrap();
        let d = dir.path().join(name);
        model.save(&d).unwrap();
        let back = MultimodalModel::load(&d, DType::F32, &Device::Cpu).unwrap();
        assert_eq!(back.config(), model.config());
        let (a, b) = (model.params().tensors(), back.params().tensors());
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (k, t) in &a {
            let x: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let y: Vec<f32> = b[k].flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{name}: {k} differs"
            );
        }
        // A model with a different seed really differs (the test can fail).
        let fresh = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu).unwrap();
        let k = a.keys().next().unwrap();
        assert!(max_abs(&fresh.params().tensors()[k], &a[k]) > 0.0);
    }
}

fn config_error(edit: impl FnOnce(&mut toml::Table), base: &str) -> String {
    let text = std::fs::read_to_string(repo().join(format!("configs/arch/{base}.toml"))).unwrap();
    let mut t: toml::Table = toml::from_str(&text).unwrap();
    edit(&mut t);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, toml::to_string(&t).unwrap()).unwrap();
    ArchConfig::from_file(&p).unwrap_err().to_string()
}

#[test]
fn wrong_configs_are_rejected_naming_the_key() {
    let e = config_error(
        |t| {
            t["encoders"]["image"]["kind"] = "transformer_xl".into();
        },
        "late",
    );
    assert!(
        e.contains("transformer_xl") && e.contains("encoders"),
        "{e}"
    );
    let e = config_error(
        |t| {
            t["encoders"]["image"]["dim"] = 48.into();
        },
        "single_stream",
    );
    assert!(e.contains("encoders.image.dim") && e.contains("48"), "{e}");
    let e = config_error(
        |t| {
            t["heads"]["clip"]["modalities"] =
                toml::Value::Array(vec!["image".into(), "audio".into()]);
        },
        "late",
    );
    assert!(
        e.contains("heads.clip.modalities") && e.contains("audio"),
        "{e}"
    );
    let e = config_error(
        |t| {
            t["fusion"]["context"] = "video".into();
        },
        "cross_attention",
    );
    assert!(e.contains("fusion.context") && e.contains("video"), "{e}");
    let e = config_error(
        |t| {
            t["encoders"]["text"]["heads"] = 5.into();
        },
        "late",
    );
    assert!(e.contains("encoders.text.heads"), "{e}");
    let e = config_error(
        |t| {
            t["fusion"]
                .as_table_mut()
                .unwrap()
                .insert("speed".into(), 1.into());
        },
        "late",
    );
    assert!(e.contains("speed"), "{e}");
    let e = config_error(
        |t| {
            t["heads"].as_table_mut().unwrap().insert(
                "caption".into(),
                toml::Value::Table(toml::Table::from_iter([("kind".to_string(), "lm".into())])),
            );
        },
        "late",
    );
    assert!(
        e.contains("heads.caption.kind") && e.contains("generative"),
        "{e}"
    );
    let e = config_error(
        |t| {
            t["encoders"].as_table_mut().unwrap().remove("audio");
        },
        "multi_stream",
    );
    assert!(e.contains("at least 3"), "{e}");
}

#[test]
fn describe_counts_parameters_and_flops() {
    let model = MultimodalModel::from_config(&arch("late"), DType::F32, &Device::Cpu).unwrap();
    let s = mosaic_models::arch::describe::describe(&model, 3);
    assert!(
        s.contains(&format!("{}", model.params().num_params())) || s.contains("parameters"),
        "{s}"
    );
    for needle in [
        "encoders",
        "image",
        "text",
        "fusion",
        "heads",
        "FLOPs per sample",
        "total",
    ] {
        assert!(s.contains(needle), "{needle} missing from\n{s}");
    }
    let tree_total: usize = model.params().vars().values().map(|v| v.elem_count()).sum();
    assert_eq!(tree_total, model.params().num_params());
}

#[test]
fn lora_and_prompt_tokens() {
    use mosaic_models::nn::{LoraSpec, PromptTokens};
    let p = ParamStore::new(0, DType::F64, &Device::Cpu);
    p.set_lora(Some(LoraSpec {
        rank: 2,
        alpha: 4.0,
        targets: vec!["*.attn.q".into()],
    }));
    let attn = MultiHeadAttention::new(&p.sub("blk"), "attn", 8, 8, 2, false).unwrap();
    assert!(attn.q.lora.is_some() && attn.k.lora.is_none());
    // B starts at zero: the adapted layer equals the base one.
    let x = randn(1, &[2, 3, 8]);
    let d = max_abs(
        &attn.q.forward(&x).unwrap(),
        &mosaic_models::nn::Linear::new(attn.q.weight.clone(), attn.q.bias.clone())
            .forward(&x)
            .unwrap(),
    );
    assert_eq!(d, 0.0);
    let names: Vec<String> = p.vars().keys().cloned().collect();
    assert!(
        names.iter().any(|n| n == "blk.attn.q.lora_a")
            && names.iter().any(|n| n == "blk.attn.q.lora_b"),
        "{names:?}"
    );
    // Merged weight = W + scale·B·A.
    let l = attn.q.lora.as_ref().unwrap();
    let lb = p.vars()["blk.attn.q.lora_b"].clone();
    lb.set(&randn(2, &[8, 2])).unwrap();
    let merged = attn.q.merged_weight().unwrap();
    let y1 = x
        .broadcast_matmul(&merged.t().unwrap())
        .unwrap()
        .broadcast_add(attn.q.bias.as_ref().unwrap())
        .unwrap();
    assert!(max_abs(&y1, &attn.q.forward(&x).unwrap()) < 1e-12);
    assert_eq!(l.scale, 2.0);
    let prompts = PromptTokens::new(&p, "prompt", 4, 8).unwrap();
    let mask = Tensor::ones((2, 3), DType::U8, &Device::Cpu).unwrap();
    let (y, m) = prompts.prepend(&x, Some(&mask)).unwrap();
    assert_eq!(y.dims(), &[2, 7, 8]);
    assert_eq!(m.unwrap().dims(), &[2, 7]);
}

#[test]
fn conv1d_gradients_match_finite_differences() {
    // candle's own conv1d fails this (wrong kernel gradients); Mosaic's passes.
    for (k, pad, stride) in [(1usize, 0usize, 1usize), (3, 1, 1), (3, 1, 2), (3, 0, 2)] {
        let w = Var::from_tensor(&randn(1, &[4, 2, k])).unwrap();
        let b = Var::from_tensor(&randn(4, &[4])).unwrap();
        let x = Var::from_tensor(&randn(2, &[2, 2, 5])).unwrap();
        let loss = || -> mosaic_models::Result<Tensor> {
            let y = mosaic_models::nn::conv1d(
                x.as_tensor(),
                w.as_tensor(),
                Some(b.as_tensor()),
                pad,
                stride,
            )?;
            Ok(weighted_sum(&y, 3))
        };
        let all = [
            ("w".to_string(), w.clone()),
            ("b".to_string(), b.clone()),
            ("x".to_string(), x.clone()),
        ];
        check_gradients(&all, loss, 12, 1e-6, 1e-6).unwrap();
        // Same values as candle's forward.
        let reference = x
            .as_tensor()
            .conv1d(w.as_tensor(), pad, stride, 1, 1)
            .unwrap()
            .broadcast_add(&b.as_tensor().reshape((1, 4, 1)).unwrap())
            .unwrap();
        let ours = mosaic_models::nn::conv1d(
            x.as_tensor(),
            w.as_tensor(),
            Some(b.as_tensor()),
            pad,
            stride,
        )
        .unwrap();
        assert!(max_abs(&ours, &reference) < 1e-12);
    }
}
