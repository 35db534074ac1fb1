//! The arch paradigm modules load random checkpoints written by transformers
//! 5.24 and match its outputs (issue 5): ViLT through single-stream fusion,
//! BLIP image–text matching through cross-attention fusion, LLaVA through
//! generative fusion. Fixtures: `scripts/reference/make_vilt_fixtures.py`
//! (`families/vilt_tiny*`) and `make_family_fixtures.py` (BLIP, LLaVA).

use mosaic_models::arch::encoders::VitConfig;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mosaic_core::{Batch, Modality, ModalityBatch};
use mosaic_models::arch::config::{EncoderConfig, FusionConfig};
use mosaic_models::arch::{Decoding, MultimodalModel, import};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families")
}

fn io(name: &str) -> HashMap<String, Tensor> {
    mosaic_core::formats::load_tensors(
        &fixtures().join(format!("{name}_io.safetensors")),
        &Device::Cpu,
    )
    .unwrap()
    .into_iter()
    .collect()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    let b = b
        .reshape(a.dims())
        .unwrap_or_else(|_| panic!("{:?} vs {:?}", a.dims(), b.dims()));
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Asserts each difference is ≤ 1e-4 and says what it measured.
fn check(model: &str, checks: &[(&str, f32)]) {
    for (what, d) in checks {
        eprintln!("{model} {what}: max abs diff {d:e}");
        assert!(
            *d <= 1e-4,
            "{model} {what}: max abs diff {d:e} vs transformers exceeds 1e-4"
        );
    }
}

fn batch(text: Option<(&Tensor, Option<&Tensor>)>, pixels: &Tensor) -> Batch {
    let b = pixels.dim(0).unwrap();
    let mut batch = Batch::new((0..b).map(|i| format!("s{i}")).collect());
    if let Some((ids, mask)) = text {
        let mask = mask.map(|m| m.to_dtype(DType::U8).unwrap());
        batch
            .insert(
                Modality::Text,
                ModalityBatch::new(ids.clone(), mask, vec![true; b]).unwrap(),
            )
            .unwrap();
    }
    batch
        .insert(
            Modality::Image,
            ModalityBatch::new(pixels.clone(), None, vec![true; b]).unwrap(),
        )
        .unwrap();
    batch
}

fn load(name: &str) -> MultimodalModel {
    MultimodalModel::from_hf(&fixtures().join(name), DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn vilt_through_single_stream_fusion_matches_transformers() {
    let m = load("vilt_tiny");
    assert!(matches!(
        m.config().fusion,
        FusionConfig::SingleStream { .. }
    ));
    let io = io("vilt_tiny");
    let out = m
        .forward(&batch(
            Some((&io["input_ids"], Some(&io["attention_mask"]))),
            &io["pixel_values"],
        ))
        .unwrap();
    check(
        "vilt (single-stream)",
        &[
            (
                "last_hidden_state",
                max_abs(out.fused.tokens.as_ref().unwrap(), &io["last_hidden_state"]),
            ),
            (
                "pooler_output",
                max_abs(out.fused.pooled.as_ref().unwrap(), &io["pooler_output"]),
            ),
            (
                "rank_output logits",
                max_abs(&out.heads["rank"], &io["logits"]),
            ),
        ],
    );
}

#[test]
fn blip_itm_through_cross_attention_fusion_matches_transformers() {
    let m = load("blip_itm_tiny");
    assert!(matches!(
        m.config().fusion,
        FusionConfig::CrossAttention { .. }
    ));
    let io = io("blip_itm_tiny");
    let out = m
        .forward(&batch(
            Some((&io["input_ids"], Some(&io["attention_mask"]))),
            &io["pixel_values"],
        ))
        .unwrap();
    let vision = &out.features[&Modality::Image].tokens;
    let (img, txt) = &out.embeddings["itc"];
    check(
        "blip (cross-attention)",
        &[
            (
                "vision last_hidden_state",
                max_abs(vision, &io["vision/last_hidden_state"]),
            ),
            (
                "itm question_embeds",
                max_abs(
                    out.fused.tokens.as_ref().unwrap(),
                    &io["itm_question_embeds"],
                ),
            ),
            ("itm logits", max_abs(&out.heads["itm"], &io["itm_score"])),
            ("image_feat", max_abs(img, &io["image_feat"])),
            ("text_feat", max_abs(txt, &io["text_feat"])),
            (
                "cosine_sim (itc)",
                max_abs(&out.heads["itc"], &io["cosine_sim"]),
            ),
        ],
    );
}

#[test]
fn llava_through_generative_fusion_matches_transformers_logits_and_greedy_ids() {
    let imp = import::llava(&fixtures().join("llava_tiny")).unwrap();
    // Exactly the tensors LLaVA never reads are set aside: the last vision
    // layer (vision_feature_layer = -2 of 2 layers) and post_layernorm.
    let dropped: Vec<&str> = imp.dropped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(dropped.len(), 18, "{dropped:?}");
    assert!(
        dropped
            .iter()
            .all(|n| n.starts_with("vision_tower.encoder.layers.1.")
                || n.starts_with("vision_tower.post_layernorm.")),
        "{dropped:?}"
    );
    assert!(imp.synthesized.is_empty());
    let m = imp
        .into_model(DType::F32, &Device::Cpu, "llava_tiny")
        .unwrap();
    let io = io("llava_tiny");
    let (ids, px) = (&io["input_ids"], &io["pixel_values"]);
    let out = m.forward(&batch(Some((ids, None)), px)).unwrap();
    check(
        "llava (generative)",
        &[
            (
                "vision selected_hidden_state",
                max_abs(
                    &out.features[&Modality::Image].tokens,
                    &io["vision/selected_hidden_state"],
                ),
            ),
            (
                "image_features (projector)",
                max_abs(out.fused.tokens.as_ref().unwrap(), &io["image_features"]),
            ),
            (
                "teacher-forced logits",
                max_abs(&out.heads["lm"], &io["logits"]),
            ),
        ],
    );
    // Greedy through the KV cache: the same 20 ids as transformers' generate
    // (eos 2 never wins here, so the natural stop equals the forced one).
    let prompt: Vec<u32> = ids.to_dtype(DType::U32).unwrap().to_vec2().unwrap()[0].clone();
    let dec = m.decoder().unwrap();
    let got = dec
        .generate(
            out.fused.tokens.as_ref().unwrap(),
            &prompt,
            20,
            Some(2),
            Decoding::Greedy,
        )
        .unwrap();
    let want: Vec<u32> = io["generate/natural_stop/sequences"]
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec2()
        .unwrap()[0][prompt.len()..]
        .to_vec();
    assert_eq!(got, want, "greedy ids");
}

/// Copies a fixture folder so a test can damage it.
fn copy_dir(name: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), t.path().join(e.file_name())).unwrap();
    }
    t
}

fn rewrite_weights(dir: &Path, f: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let file = dir.join("model.safetensors");
    let mut m: HashMap<String, Tensor> = mosaic_core::formats::load_tensors(&file, &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect();
    f(&mut m);
    mosaic_core::checkpoint::save_safetensors(&file, &m).unwrap();
}

#[test]
fn missing_extra_and_misshaped_tensors_are_refused_by_name() {
    let err = |d: &Path| {
        MultimodalModel::from_hf(d, DType::F32, &Device::Cpu)
            .unwrap_err()
            .to_string()
    };
    let name = "vilt.encoder.layer.1.intermediate.dense.weight";
    let d = copy_dir("vilt_tiny");
    rewrite_weights(d.path(), |m| {
        m.remove(name);
    });
    let e = err(d.path());
    assert!(e.contains(name) && e.contains("missing"), "{e}");

    let d = copy_dir("vilt_tiny");
    rewrite_weights(d.path(), |m| {
        m.insert(
            "vilt.encoder.layer.2.extra.weight".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let e = err(d.path());
    assert!(
        e.contains("vilt.encoder.layer.2.extra.weight") && e.contains("unexpected"),
        "{e}"
    );

    let d = copy_dir("blip_itm_tiny");
    let name = "text_encoder.encoder.layer.0.crossattention.self.key.weight";
    rewrite_weights(d.path(), |m| {
        let t = m[name].narrow(0, 0, 16).unwrap().contiguous().unwrap();
        m.insert(name.into(), t);
    });
    let e = err(d.path());
    assert!(e.contains(name) && e.contains("expected"), "{e}");

    // Strict on the arch side too: a converted set without a parameter.
    let mut imp = import::vilt(&fixtures().join("vilt_tiny")).unwrap();
    imp.tensors.remove("fusion.pooler.weight");
    let e = imp
        .into_model(DType::F32, &Device::Cpu, "converted vilt")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fusion.pooler.weight") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn converted_configs_round_trip_and_unknown_types_are_refused() {
    for name in ["vilt_tiny", "blip_itm_tiny", "llava_tiny"] {
        let imp = import::convert(&fixtures().join(name)).unwrap();
        let json = serde_json::to_string(&imp.config).unwrap();
        let back: mosaic_models::arch::ArchConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, imp.config, "{name}");
        back.validate().unwrap();
    }
    let imp = import::llava(&fixtures().join("llava_tiny")).unwrap();
    let EncoderConfig::Vit(VitConfig {
        layers,
        drop_class_token,
        ..
    }) = &imp.config.encoders[&Modality::Image]
    else {
        panic!("vit")
    };
    assert_eq!((*layers, *drop_class_token), (1, true));
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("config.json"), r#"{"model_type": "clip"}"#).unwrap();
    let e = import::convert(d.path()).unwrap_err().to_string();
    for t in ["clip", "blip", "llava", "vilt"] {
        assert!(e.contains(t), "{e}");
    }
}
