//! A CLIP-family checkpoint fine-tuned inside a `MultimodalModel`: the
//! committed tiny CLIP (written by transformers, pre-trained on
//! Fashion-MNIST classes 0-4) as both towers of `configs/arch/clip_fmnist.toml`
//! gives transformers' image embeddings and zero-shot predictions on real
//! test images, and the fine-tuning recipe trains every part of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mosaic_core::assets::AssetStore;
use mosaic_core::{Batch, Modality, ModalityBatch};
use mosaic_models::arch::{ArchConfig, MultimodalModel};
use mosaic_train::config::{TrainConfig, run};
use mosaic_train::quickstart::{FashionMnist, ImageTextRun, fashion_mnist};
use mosaic_train::trainer::Task;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> (HashMap<String, Tensor>, serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let t = mosaic_core::formats::load_tensors(
        &dir.join("clip_fmnist_zeroshot.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
    .into_iter()
    .collect();
    let j = serde_json::from_str(
        &std::fs::read_to_string(dir.join("clip_fmnist_zeroshot.json")).unwrap(),
    )
    .unwrap();
    (t, j)
}

fn assets() -> AssetStore {
    let store = AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("fashion-mnist"),
        "fetch fashion-mnist (scripts/test.sh does)"
    );
    store
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
fn the_clip_checkpoint_inside_a_model_matches_transformers_zero_shot() {
    let (io, meta) = fixture();
    let arch = ArchConfig::from_file(&repo().join("configs/arch/clip_fmnist.toml")).unwrap();
    let model = MultimodalModel::from_config(&arch, DType::F32, &Device::Cpu).unwrap();

    // transformers' pixels → the model's image side: the same embeddings.
    let px = &io["pixel_values"];
    let ids: Vec<String> = (0..px.dim(0).unwrap()).map(|i| i.to_string()).collect();
    let mut b = Batch::new(ids);
    b.insert(
        Modality::Image,
        ModalityBatch::new(px.clone(), None, vec![true; px.dim(0).unwrap()]).unwrap(),
    )
    .unwrap();
    let e = model.embed(&b, "clip", Modality::Image).unwrap();
    let want = io["image_embeds"].narrow(0, 0, px.dim(0).unwrap()).unwrap();
    let d = max_abs(&e, &want);
    assert!(d <= 1e-5, "image embeddings differ by {d}");

    // Mosaic's own preprocessing, tokenizer and prompt ensembling on the
    // real test images: transformers' accuracy on the same 500.
    let store = assets();
    let (_, test) = fashion_mnist(&store, false).unwrap();
    let n = io["labels"].dim(0).unwrap();
    let first = FashionMnist {
        images: test.images.narrow(0, 0, n).unwrap(),
        labels: test.labels[..n].to_vec(),
    };
    let labels: Vec<i64> = io["labels"].to_vec1().unwrap();
    assert_eq!(
        first.labels,
        labels.iter().map(|&l| l as u32).collect::<Vec<_>>()
    );
    let classes: Vec<u32> = (0..10).collect();
    let mut task = ImageTextRun::new(&model, &first, &first, &store, &classes, 8, 0, 1).unwrap();
    let acc = task.evaluate(0).unwrap()["zero_shot_accuracy"];
    let want = meta["accuracy"].as_f64().unwrap();
    assert_eq!(
        acc, want,
        "zero-shot accuracy {acc} vs transformers' {want}"
    );
}

#[test]
fn the_clip_fine_tuning_recipe_trains_both_towers_and_the_temperature() {
    let store = assets();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = TrainConfig::load(
        &repo().join("configs/train/clip_fmnist_finetune.toml"),
        &[
            format!("run.out_dir=\"{}\"", tmp.path().join("run").display()),
            "run.steps=4".into(),
            "run.batch_size=16".into(),
            "run.eval_every=0".into(),
            "run.checkpoint_every=0".into(),
            "schedule.warmup_steps=1".into(),
            // Two classes keep the (debug-build) evaluation short.
            "data.classes=[5, 7]".into(),
        ],
    )
    .unwrap();
    assert!(cfg.run.eval_at_start);
    let s = run(&cfg, &store, false, false).unwrap();
    assert_eq!(s.losses.len(), 4);
    assert!(s.losses.iter().all(|l| l.is_finite()));
    assert!(s.initial_eval.contains_key("zero_shot_accuracy"));
    // The checkpoint's parts moved: both towers and the shared temperature.
    let saved = mosaic_core::formats::load_tensors(
        &s.final_checkpoint.join("model.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
    .into_iter()
    .collect::<HashMap<_, _>>();
    let original: HashMap<String, Tensor> = mosaic_core::formats::load_tensors(
        &repo().join("checkpoints/clip-fmnist-0to4/model.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
    .into_iter()
    .collect();
    for (name, orig) in [
        (
            "encoders.image.vision_model.embeddings.patch_embedding.weight",
            "vision_model.embeddings.patch_embedding.weight",
        ),
        (
            "encoders.text.text_model.embeddings.token_embedding.weight",
            "text_model.embeddings.token_embedding.weight",
        ),
        ("heads.clip.logit_scale", "logit_scale"),
    ] {
        let now = saved
            .get(name)
            .unwrap_or_else(|| panic!("{name} not saved"));
        let d = max_abs(
            &now.flatten_all().unwrap(),
            &original[orig].flatten_all().unwrap(),
        );
        assert!(d > 0.0, "{name} did not train");
    }
}
