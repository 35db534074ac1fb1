//! Pretrained checkpoints as parts of a config-built `MultimodalModel`:
//! `kind = "pretrained"` encoders load the real all-MiniLM-L6-v2 and a
//! transformers-written ViT into the model's store; the model's text
//! features equal the sentence-transformers encoder's; gradients reach the
//! tower (or not, frozen); LoRA targets it by name; save → load is exact;
//! bad references are named.

use mosaic_models::arch::encoders::PretrainedConfig;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mosaic_core::{Batch, Modality, ModalityBatch};
use mosaic_models::arch::{ArchConfig, MultimodalModel};
use mosaic_models::nn::{LoraSpec, ParamStore};
use mosaic_models::pretrained::SentenceEncoder;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn minilm() -> PathBuf {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("minilm-l6-v2"),
        "fetch minilm-l6-v2 (scripts/test.sh does)"
    );
    store.path("minilm-l6-v2").unwrap()
}

/// A CLIP-style dual encoder whose towers are both checkpoints.
fn config(text_extra: &str) -> ArchConfig {
    let text = minilm();
    let vit = fixtures().join("vision/vit_tiny");
    let toml = format!(
        r#"
name = "pretrained-towers"
seed = 0
dim = 32

[encoders.text]
kind = "pretrained"
pretrained = "{}"
{text_extra}

# The short form: no `kind`.
[encoders.image]
checkpoint = "{}"
tower = "vision"

[fusion]
kind = "late"

[heads.clip]
kind = "contrastive"
modalities = ["image", "text"]
dim = 16
init_temperature = 0.07
"#,
        text.display(),
        vit.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("arch.toml");
    std::fs::write(&f, toml).unwrap();
    ArchConfig::from_file(&f).unwrap()
}

fn batch(enc: &SentenceEncoder) -> Batch {
    let texts = ["a photo of a cat", "two dogs play in the snow"];
    let tb = enc.tokenizer().encode_batch(&texts).unwrap();
    let px: Vec<f32> = (0..2 * 3 * 32 * 32)
        .map(|i| ((i as f32) * 0.01).sin())
        .collect();
    let px = Tensor::from_vec(px, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let mut b = Batch::new(vec!["a".into(), "b".into()]);
    b.insert(
        Modality::Text,
        ModalityBatch::new(tb.ids, Some(tb.attention_mask), vec![true; 2]).unwrap(),
    )
    .unwrap();
    b.insert(
        Modality::Image,
        ModalityBatch::new(px, None, vec![true; 2]).unwrap(),
    )
    .unwrap();
    b
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
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

#[test]
fn a_pretrained_tower_trains_inside_a_multimodal_model() {
    let cfg = config("");
    let model = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu).unwrap();
    let reference = SentenceEncoder::from_pretrained(&minilm()).unwrap();
    let b = batch(&reference);
    let out = model.forward(&b).unwrap();

    // The tower is the checkpoint, unchanged: same sentence embedding.
    let text = &b.modalities[&Modality::Text];
    let (_, want) = reference
        .embed_tokens(&text.values, None, text.mask.as_ref().unwrap())
        .unwrap();
    let d = max_abs(&out.features[&Modality::Text].pooled, &want);
    assert!(d < 1e-6, "tower vs sentence-transformers encoder: {d}");
    assert_eq!(out.features[&Modality::Text].pooled.dims(), &[2, 384]);

    // Trainable: the checkpoint's tensors are Vars under the model's names,
    // and a contrastive loss's gradient reaches them.
    let vars = model.params().vars();
    let q = "encoders.text.encoder.layer.0.attention.self.query.weight";
    let patch = "encoders.image.embeddings.patch_embeddings.projection.weight";
    assert!(vars.contains_key(q), "no {q} among {} vars", vars.len());
    assert!(vars.contains_key(patch));
    let logits = &out.heads["clip"];
    let loss = logits.log_sum_exp(1).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    for name in [q, patch] {
        let g = grads.get(vars[name].as_tensor()).expect(name);
        let n = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n > 0.0, "{name}: zero gradient");
    }
}

#[test]
fn frozen_and_lora_towers_train_only_what_they_should() {
    let frozen =
        MultimodalModel::from_config(&config("freeze = true"), DType::F32, &Device::Cpu).unwrap();
    let vars = frozen.params().vars();
    assert!(
        !vars.keys().any(|k| k.starts_with("encoders.text.")),
        "a frozen tower has no trainable parameters"
    );
    assert!(vars.keys().any(|k| k.starts_with("encoders.image.")));
    assert!(vars.keys().any(|k| k.starts_with("heads.clip.")));

    let cfg = config("freeze = true");
    let store = ParamStore::new(cfg.seed, DType::F32, &Device::Cpu);
    store.set_lora(Some(LoraSpec {
        rank: 4,
        alpha: 8.0,
        targets: vec!["encoders.text.*.attention.self.query".into()],
    }));
    let lora = MultimodalModel::with_params(&cfg, store).unwrap();
    let text_vars: Vec<String> = lora
        .params()
        .vars()
        .into_keys()
        .filter(|k| k.starts_with("encoders.text."))
        .collect();
    assert_eq!(text_vars.len(), 6 * 2, "{text_vars:?}");
    assert!(text_vars.iter().all(|k| k.contains(".query.lora_")));
    // B = 0 at the start: the adapted tower is still the checkpoint.
    let reference = SentenceEncoder::from_pretrained(&minilm()).unwrap();
    let b = batch(&reference);
    let d = max_abs(
        &lora.forward(&b).unwrap().features[&Modality::Text].pooled,
        &frozen.forward(&b).unwrap().features[&Modality::Text].pooled,
    );
    assert_eq!(d, 0.0);
}

#[test]
fn a_model_with_pretrained_towers_saves_and_loads_exactly() {
    let cfg = config("");
    let model = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu).unwrap();
    // A step away from the checkpoint, so the saved tower differs from it.
    let (name, v) = model
        .params()
        .vars()
        .into_iter()
        .find(|(k, _)| k.ends_with("encoder.layer.0.attention.self.value.bias"))
        .unwrap();
    v.set(&(v.as_tensor() + 0.05).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let saved: ArchConfig = ArchConfig::from_file(&dir.path().join("config.json")).unwrap();
    match &saved.encoders[&Modality::Text] {
        mosaic_models::arch::EncoderConfig::Pretrained(PretrainedConfig { dim, .. }) => {
            assert_eq!(*dim, 384)
        }
        other => panic!("saved as {other:?}"),
    }
    let back = MultimodalModel::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let reference = SentenceEncoder::from_pretrained(&minilm()).unwrap();
    let b = batch(&reference);
    let (a, c) = (model.forward(&b).unwrap(), back.forward(&b).unwrap());
    assert_eq!(
        max_abs(&a.heads["clip"], &c.heads["clip"]),
        0.0,
        "{name} not restored"
    );
}

fn build_err(toml_encoders: &str) -> String {
    let toml = format!(
        "name = \"bad\"\nseed = 0\ndim = 8\n{toml_encoders}\n[fusion]\nkind = \"late\"\n[heads.cls]\nkind = \"classifier\"\nclasses = 2\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("arch.toml");
    std::fs::write(&f, toml).unwrap();
    let cfg = match ArchConfig::from_file(&f) {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_pretrained_references_are_named() {
    let e = build_err("[encoders.text]\nkind = \"pretrained\"\npretrained = \"no-such-model\"\n");
    assert!(e.contains("no-such-model"), "{e}");

    let clip = fixtures().join("vision/clip_tiny");
    let e = build_err(&format!(
        "[encoders.audio]\nkind = \"pretrained\"\npretrained = \"{}\"\n",
        clip.display()
    ));
    assert!(
        e.contains("encoders.audio.kind") && e.contains("not audio"),
        "{e}"
    );

    let vit = fixtures().join("vision/vit_tiny");
    let e = build_err(&format!(
        "[encoders.image]\nkind = \"pretrained\"\npretrained = \"{}\"\ntower = \"text\"\n",
        vit.display()
    ));
    assert!(e.contains("encoders.image.tower"), "{e}");

    let e = build_err(&format!(
        "[encoders.text]\nkind = \"pretrained\"\npretrained = \"{}\"\n",
        vit.display()
    ));
    assert!(e.contains("`vit` gives no text tower"), "{e}");

    let e = build_err(&format!(
        "[encoders.image]\nkind = \"pretrained\"\npretrained = \"{}\"\ndim = 99\n",
        vit.display()
    ));
    assert!(e.contains("encoders.image.dim") && e.contains("99"), "{e}");
}

#[test]
fn pretrained_widths_are_checked_once_read_from_the_checkpoint() {
    // Single-stream fusion needs every encoder at the model width; the
    // towers' widths (MiniLM 384, the tiny ViT 32) are only known from
    // their checkpoints, so the file parses and the build names the misfit.
    let toml = format!(
        "name = \"stream\"\nseed = 0\ndim = 384\n\
         [encoders.text]\nkind = \"pretrained\"\npretrained = \"{}\"\n\
         [encoders.image]\nkind = \"pretrained\"\npretrained = \"vit_tiny\"\n\
         [fusion]\nkind = \"single_stream\"\nlayers = 1\nheads = 4\n\
         [heads.cls]\nkind = \"classifier\"\nclasses = 2\n",
        minilm().display()
    );
    // `vit_tiny` is relative to the config file's folder.
    let dir = tempfile::tempdir().unwrap();
    let f2 = dir.path().join("arch.toml");
    std::fs::write(&f2, &toml).unwrap();
    // Relative to a folder without it: resolution fails, naming it.
    let cfg = ArchConfig::from_file(&f2).unwrap();
    let e = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("vit_tiny"), "{e}");
    // Next to the fixture folder it resolves; the widths then disagree.
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir(copy.path().join("vit_tiny")).unwrap();
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(
            fixtures().join("vision/vit_tiny").join(name),
            copy.path().join("vit_tiny").join(name),
        )
        .unwrap();
    }
    let f3 = copy.path().join("arch.toml");
    std::fs::write(&f3, &toml).unwrap();
    let cfg = ArchConfig::from_file(&f3).unwrap();
    let e = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("encoders.image.dim") && e.contains("32 differs from the model dim 384"),
        "{e}"
    );
}

/// Both towers of the transformers-written tiny CLIP, in the joint space,
/// compared without new projections and with the checkpoint's own
/// temperature.
fn clip_dual_encoder(head_extra: &str) -> std::result::Result<MultimodalModel, String> {
    let clip = fixtures().join("vision/clip_tiny");
    let toml = format!(
        r#"
name = "clip-towers"
seed = 0
dim = 32

[encoders.image]
pretrained = "{clip}"

[encoders.text]
pretrained = "{clip}"

[fusion]
kind = "late"

[heads.clip]
kind = "contrastive"
modalities = ["image", "text"]
{head_extra}
"#,
        clip = clip.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("arch.toml");
    std::fs::write(&f, toml).unwrap();
    let cfg = ArchConfig::from_file(&f).map_err(|e| e.to_string())?;
    MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu).map_err(|e| e.to_string())
}

#[test]
fn a_clip_checkpoint_is_both_towers_of_a_trainable_dual_encoder() {
    let model =
        clip_dual_encoder("project = false\ninit_logit_scale = \"encoders.image.logit_scale\"")
            .unwrap();
    let io: std::collections::HashMap<String, Tensor> = mosaic_core::formats::load_tensors(
        &fixtures().join("vision/tiny_io.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
    .into_iter()
    .collect();
    let mut b = Batch::new(vec!["a".into(), "b".into()]);
    let mask = io["attention_mask"].to_dtype(DType::U8).unwrap();
    b.insert(
        Modality::Text,
        ModalityBatch::new(io["input_ids"].clone(), Some(mask), vec![true; 2]).unwrap(),
    )
    .unwrap();
    b.insert(
        Modality::Image,
        ModalityBatch::new(io["pixel_values"].clone(), None, vec![true; 2]).unwrap(),
    )
    .unwrap();
    let out = model.forward(&b).unwrap();
    // At step 0 the model is the checkpoint: transformers' logits.
    let d = max_abs(&out.heads["clip"], &io["clip/logits_per_image"]);
    assert!(d <= 1e-4, "logits_per_image differ by {d}");
    // The head has no projections, only its temperature.
    let head_vars: Vec<String> = model
        .params()
        .vars()
        .keys()
        .filter(|k| k.starts_with("heads."))
        .cloned()
        .collect();
    assert_eq!(head_vars, vec!["heads.clip.logit_scale".to_string()]);
    // Every part trains: both towers and the temperature.
    let loss = out.heads["clip"].log_sum_exp(1).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let vars = model.params().vars();
    for name in [
        "encoders.image.vision_model.embeddings.patch_embedding.weight",
        "encoders.image.visual_projection.weight",
        "heads.clip.logit_scale",
        "encoders.text.text_model.embeddings.token_embedding.weight",
        "encoders.text.text_projection.weight",
    ] {
        let v = vars.get(name).unwrap_or_else(|| panic!("no var {name}"));
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no grad {name}"));
        let n = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(n > 0.0, "zero gradient at {name}");
    }

    // With projections (the default) the head is new: other logits.
    let projected = clip_dual_encoder("dim = 16").unwrap();
    let d = max_abs(
        &projected.forward(&b).unwrap().heads["clip"],
        &io["clip/logits_per_image"],
    );
    assert!(d > 1e-3);

    // Misfits are named.
    let e = clip_dual_encoder("project = false\ndim = 99").unwrap_err();
    assert!(e.contains("heads.clip.dim") && e.contains("16"), "{e}");
    let e = clip_dual_encoder("project = false\ninit_logit_scale = \"encoders.image.nope\"")
        .unwrap_err();
    assert!(
        e.contains("heads.clip.init_logit_scale") && e.contains("encoders.image.nope"),
        "{e}"
    );
    let e = clip_dual_encoder("dim = 0").unwrap_err();
    assert!(e.contains("heads.clip.dim"), "{e}");
}
