//! SigLIP, ResNet, sharded ViT, BLIP and LLaVA (random checkpoints written by
//! transformers 5.24 `save_pretrained`) against the reference outputs of
//! `scripts/reference/make_family_fixtures.py`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mosaic_models::pretrained::{BlipModel, LlavaModel, ResNetModel, SiglipModel, VitModel};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/families")
}

fn load(rel: &str) -> HashMap<String, Tensor> {
    let p = if rel.starts_with("../") {
        fixtures().join(rel)
    } else {
        fixtures().join(format!("{rel}_io.safetensors"))
    };
    mosaic_core::formats::load_tensors(&p, &Device::Cpu)
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

fn check(family: &str, checks: &[(&str, f32)]) {
    for (what, d) in checks {
        eprintln!("{family} {what}: max abs diff {d:e}");
        assert!(*d <= 1e-4, "{family} {what} differs by {d}");
    }
}

#[test]
fn siglip_matches_transformers() {
    let io = load("siglip_tiny");
    let m = SiglipModel::from_pretrained(&fixtures().join("siglip_tiny")).unwrap();
    let (th, tp) = m.text_features(&io["input_ids"]).unwrap();
    let v = m.vision_features(&io["pixel_values"]).unwrap();
    let img = v.pooler_output.clone().unwrap();
    let logits = m.logits_per_image(&img, &tp).unwrap();
    check(
        "siglip",
        &[
            (
                "text last_hidden_state",
                max_abs(&th, &io["text/last_hidden_state"]),
            ),
            (
                "text pooler_output",
                max_abs(&tp, &io["text/pooler_output"]),
            ),
            ("text_features", max_abs(&tp, &io["text_features"])),
            (
                "vision last_hidden_state",
                max_abs(&v.last_hidden_state, &io["vision/last_hidden_state"]),
            ),
            (
                "vision pooler_output",
                max_abs(&img, &io["vision/pooler_output"]),
            ),
            ("image_features", max_abs(&img, &io["image_features"])),
            (
                "logits_per_image",
                max_abs(&logits, &io["logits_per_image"]),
            ),
            (
                "logits_per_text",
                max_abs(&logits.t().unwrap(), &io["logits_per_text"]),
            ),
        ],
    );
}

#[test]
fn resnet_bottleneck_and_basic_match_transformers() {
    for name in ["resnet_tiny", "resnet_basic_tiny"] {
        let io = load(name);
        let m = ResNetModel::from_pretrained(&fixtures().join(name)).unwrap();
        let o = m.forward(&io["pixel_values"]).unwrap();
        check(
            name,
            &[
                (
                    "last_hidden_state",
                    max_abs(&o.last_hidden_state, &io["last_hidden_state"]),
                ),
                (
                    "pooler_output",
                    max_abs(&o.pooler_output, &io["pooler_output"]),
                ),
                ("logits", max_abs(o.logits.as_ref().unwrap(), &io["logits"])),
            ],
        );
    }
}

#[test]
fn sharded_vit_loads_from_its_index() {
    let io = load("../vision/tiny_io.safetensors");
    let m = VitModel::from_pretrained(&fixtures().join("vit_sharded")).unwrap();
    let o = m.forward(&io["pixel_values"]).unwrap();
    check(
        "vit (6 shards)",
        &[
            (
                "last_hidden_state",
                max_abs(&o.last_hidden_state, &io["vit/last_hidden_state"]),
            ),
            (
                "pooler_output",
                max_abs(o.pooler_output.as_ref().unwrap(), &io["vit/pooler_output"]),
            ),
        ],
    );
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
fn missing_extra_and_misshaped_tensors_are_named() {
    let name = "vision_model.head.mlp.fc1.weight";
    let d = copy_dir("siglip_tiny");
    rewrite_weights(d.path(), |m| {
        m.remove(name);
    });
    let e = SiglipModel::from_pretrained(d.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(name) && e.contains("missing") && e.contains("expected shape"),
        "{e}"
    );

    let d = copy_dir("siglip_tiny");
    rewrite_weights(d.path(), |m| {
        let t = m[name].clone();
        m.insert(name.into(), t.t().unwrap().contiguous().unwrap());
    });
    let e = SiglipModel::from_pretrained(d.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains(name) && e.contains("expected"), "{e}");

    let d = copy_dir("resnet_tiny");
    rewrite_weights(d.path(), |m| {
        m.insert(
            "resnet.extra.weight".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let e = ResNetModel::from_pretrained(d.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("extra.weight") && e.contains("unexpected"),
        "{e}"
    );
}

#[test]
fn unsupported_model_type_lists_the_supported_ones() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("config.json"), r#"{"model_type": "mamba"}"#).unwrap();
    let e = mosaic_models::pretrained::load_any(d.path())
        .unwrap_err()
        .to_string();
    for t in ["mamba", "bert", "clip", "siglip", "resnet", "vit"] {
        assert!(e.contains(t), "{e}");
    }
}

fn ids_of(t: &Tensor) -> Vec<Vec<u32>> {
    t.to_dtype(DType::U32).unwrap().to_vec2().unwrap()
}

#[test]
fn llava_matches_transformers_logits_and_greedy_ids() {
    let io = load("llava_tiny");
    let m = LlavaModel::from_pretrained(&fixtures().join("llava_tiny")).unwrap();
    let px = &io["pixel_values"];
    let feats = m.image_features(px).unwrap();
    let logits = m.forward(&io["input_ids"], px).unwrap();
    check(
        "llava",
        &[
            ("image_features", max_abs(&feats, &io["image_features"])),
            ("teacher-forced logits", max_abs(&logits, &io["logits"])),
        ],
    );
    let prompt = &io["input_ids"];
    let t = prompt.dim(1).unwrap();
    // 20 new tokens with eos (2) banned, as min_new_tokens = 20.
    let (ids, steps) = m.generate_greedy(prompt, px, 20, 20, Some(2)).unwrap();
    let want = ids_of(&io["generate/sequences"])[0][t..].to_vec();
    assert_eq!(ids, want, "greedy ids");
    let step_logits = Tensor::new(steps, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    check(
        "llava",
        &[(
            "KV-cached step logits",
            max_abs(&step_logits, &io["generate/step_logits"]),
        )],
    );
    // Without the ban: identical (eos never wins here).
    let (nat, _) = m.generate_greedy(prompt, px, 20, 0, Some(2)).unwrap();
    assert_eq!(
        nat,
        ids_of(&io["generate/natural_stop/sequences"])[0][t..].to_vec()
    );
    // An unexpanded prompt is refused with the count it needs.
    let short = Tensor::new(&[[1u32, 499, 5]], &Device::Cpu).unwrap();
    let e = m.forward(&short, px).unwrap_err().to_string();
    assert!(e.contains("1 image tokens") && e.contains("16"), "{e}");
}

#[test]
fn llava_loads_the_hub_layout_too() {
    // llava-hf checkpoints nest the tower one level deeper.
    let d = copy_dir("llava_tiny");
    rewrite_weights(d.path(), |m| {
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            if let Some(rest) = k.strip_prefix("vision_tower.") {
                let t = m.remove(&k).unwrap();
                m.insert(format!("vision_tower.vision_model.{rest}"), t);
            }
        }
    });
    let io = load("llava_tiny");
    let m = LlavaModel::from_pretrained(d.path()).unwrap();
    let logits = m.forward(&io["input_ids"], &io["pixel_values"]).unwrap();
    check(
        "llava (hub layout)",
        &[("logits", max_abs(&logits, &io["logits"]))],
    );
}

#[test]
fn blip_itm_and_retrieval_match_transformers() {
    let io = load("blip_itm_tiny");
    let m = BlipModel::from_pretrained(&fixtures().join("blip_itm_tiny")).unwrap();
    let (ids, mask, px) = (&io["input_ids"], &io["attention_mask"], &io["pixel_values"]);
    let vision = m.image_tokens(px).unwrap();
    let itm = m.itm_logits(ids, mask, px).unwrap();
    let img = m.image_embeds(px).unwrap();
    let txt = m.text_embeds(ids, mask).unwrap();
    let cos = img.matmul(&txt.t().unwrap()).unwrap();
    check(
        "blip itm",
        &[
            (
                "vision last_hidden_state",
                max_abs(&vision, &io["vision/last_hidden_state"]),
            ),
            ("itm logits", max_abs(&itm, &io["itm_score"])),
            ("image_feat", max_abs(&img, &io["image_feat"])),
            ("text_feat", max_abs(&txt, &io["text_feat"])),
            ("cosine_sim", max_abs(&cos, &io["cosine_sim"])),
        ],
    );
    let e = m.caption_logits(ids, px).unwrap_err().to_string();
    assert!(e.contains("no captioning head"), "{e}");
}

#[test]
fn blip_captioning_matches_transformers_logits_and_greedy_ids() {
    let io = load("blip_caption_tiny");
    let m = BlipModel::from_pretrained(&fixtures().join("blip_caption_tiny")).unwrap();
    let px = &io["pixel_values"];
    let logits = m
        .caption_logits(&io["teacher_forced/input_ids"], px)
        .unwrap();
    check(
        "blip caption",
        &[(
            "teacher-forced logits",
            max_abs(&logits, &io["teacher_forced/logits"]),
        )],
    );
    let prompted = m
        .generate_greedy(px, Some(&io["generate/prompt_input_ids"]), 20, 20)
        .unwrap();
    assert_eq!(
        prompted,
        ids_of(&io["generate/prompted/sequences"]),
        "prompted greedy ids"
    );
    let free = m.generate_greedy(px, None, 20, 20).unwrap();
    assert_eq!(
        free,
        ids_of(&io["generate/unprompted/sequences"]),
        "unprompted greedy ids"
    );
    let natural = m
        .generate_greedy(px, Some(&io["generate/prompt_input_ids"]), 20, 0)
        .unwrap();
    assert_eq!(
        natural,
        ids_of(&io["generate/prompted_natural_stop/sequences"])
    );
}
