//! Zero-shot classification (a complete CLIP-like folder: random CLIPModel,
//! CLIP-layout tokenizer, PIL-semantics preprocessor) against transformers +
//! CLIP's prompt ensembling (`scripts/reference/make_zeroshot_fixtures.py`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use mosaic_models::zeroshot::ZeroShotClassifier;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zeroshot")
}

fn io() -> (HashMap<String, Tensor>, serde_json::Value) {
    let t = mosaic_core::formats::load_tensors(
        &fixtures().join("zeroshot_io.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
    .into_iter()
    .collect();
    let j = serde_json::from_slice(&std::fs::read(fixtures().join("zeroshot_io.json")).unwrap())
        .unwrap();
    (t, j)
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn max_diff(a: &[Vec<f32>], b: &Tensor) -> f32 {
    let b: Vec<Vec<f32>> = b.to_vec2().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn single_template_and_ensemble_match_reference() {
    let (t, j) = io();
    let zs = ZeroShotClassifier::from_pretrained(&fixtures().join("clip_zs")).unwrap();
    let labels = strings(&j["labels"]);
    let single = zs
        .class_embeddings(&labels, &[j["single_template"].as_str().unwrap()])
        .unwrap();
    let ens = zs
        .class_embeddings(&labels, &strings(&j["templates"]))
        .unwrap();
    let d = (ens.embeddings.clone() - &t["ensemble/class_embeddings"])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d <= 1e-5, "class embeddings differ by {d}");
    // The model on the reference's own pixels.
    let px = &t["pixel_values"];
    let p1 = zs.classify_pixels(px, &single).unwrap();
    let pe = zs.classify_pixels(px, &ens).unwrap();
    let (d1, de) = (
        max_diff(&p1, &t["single/probs"]),
        max_diff(&pe, &t["ensemble/probs"]),
    );
    eprintln!("zero-shot probabilities max abs diff: single {d1:e}, ensemble {de:e}");
    assert!(d1 <= 1e-5 && de <= 1e-5, "{d1} {de}");

    // End to end from the photo files (decode + resize + crop in Mosaic).
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("skimage-photos"),
        "fetch skimage-photos (scripts/test.sh does)"
    );
    let root = store.path("skimage-photos").unwrap();
    let files: Vec<PathBuf> = strings(&j["photos"])
        .iter()
        .map(|p| root.join(Path::new(p).file_name().unwrap()))
        .collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let pe_files = zs.classify_files(&refs, &ens).unwrap();
    let df = max_diff(&pe_files, &t["ensemble/probs"]);
    eprintln!("zero-shot from files (PNG, PIL-exact resize) max abs diff {df:e}");
    assert!(df <= 1e-5, "{df}");
    let top: Vec<String> = pe_files
        .iter()
        .map(|r| {
            let i = r
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            labels[i].clone()
        })
        .collect();
    assert_eq!(top, strings(&j["ensemble_top1"]));
}

#[test]
fn bad_labels_and_templates_are_refused() {
    let zs = ZeroShotClassifier::from_pretrained(&fixtures().join("clip_zs")).unwrap();
    let e = zs
        .class_embeddings(&["a cat"], &["a photo"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`a photo`") && e.contains("{}"), "{e}");
    let e = zs
        .class_embeddings(&["a", "a"], &["{}"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("twice"), "{e}");
    let e = zs
        .class_embeddings::<&str, &str>(&[], &["{}"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("label"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let e = ZeroShotClassifier::from_pretrained(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("gpt2") && e.contains("clip, siglip"), "{e}");
}
