//! `mosaic train` on a JSONL manifest (`[data] source = "manifest"`): real
//! PNG files and captions go through the data layer into an architecture
//! config's model; the run learns (loss falls, held-out accuracy and R@1
//! rise) and bad `[data]` keys are refused by name.

use std::path::{Path, PathBuf};

use image::{GrayImage, Luma};
use mosaic_core::assets::AssetStore;
use mosaic_train::config::{TrainConfig, run};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const SHAPES: [&str; 3] = ["stripes", "square", "cross"];

/// A 28×28 grey drawing of `shape` shifted by `(dx, dy)` with a grey level.
fn draw(shape: usize, dx: u32, dy: u32, level: u8) -> GrayImage {
    GrayImage::from_fn(28, 28, |x, y| {
        let (u, v) = ((x + 28 - dx) % 28, (y + 28 - dy) % 28);
        let on = match shape {
            0 => u % 6 < 3,
            1 => (6..20).contains(&u) && (6..20).contains(&v),
            _ => (12..16).contains(&u) || (12..16).contains(&v),
        };
        Luma([if on { level } else { 20 }])
    })
}

/// Writes `n` PNGs + a manifest line each (label, caption, meta) into `dir`.
fn write_manifest(dir: &Path, name: &str, n: usize, offset: u32) -> PathBuf {
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut lines = String::new();
    for i in 0..n {
        let s = i % 3;
        let k = i as u32 + offset;
        let img = draw(s, k * 5 % 11, k * 7 % 13, 150 + (k * 13 % 100) as u8);
        let file = format!("img/{name}-{i:03}.png");
        img.save(dir.join(&file)).unwrap();
        lines.push_str(&format!(
            "{{\"id\": \"{name}{i}\", \"image\": \"{file}\", \"label\": \"{}\", \"captions\": [\"a drawing of a {}\"], \"meta\": {{\"shift\": {}}}}}\n",
            SHAPES[s], SHAPES[s], k % 2
        ));
    }
    let path = dir.join(format!("{name}.jsonl"));
    std::fs::write(&path, lines).unwrap();
    path
}

fn write_config(dir: &Path, arch: &str, head_block: &str, steps: usize, extra: &str) -> PathBuf {
    let tok = repo().join("crates/mosaic-data/tests/fixtures/text/clip_bpe_tokenizer.json");
    std::fs::write(
        dir.join("arch.toml"),
        format!(
            r#"name = "shapes"
seed = 0
dim = 32
{arch}
{head_block}
"#
        ),
    )
    .unwrap();
    let cfg = dir.join("train.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[run]
out_dir = "{out}"
steps = {steps}
batch_size = 12
eval_every = {steps}
checkpoint_every = {steps}
log_every = 10

[model]
arch = "arch.toml"

[data]
source = "manifest"
train = "train.jsonl"
eval = "eval.jsonl"
tokenizer = "{tok}"
{extra}

[optimizer]
kind = "adamw"
lr = 0.003
"#,
            out = dir.join("run").display(),
            tok = tok.display(),
        ),
    )
    .unwrap();
    cfg
}

const IMAGE_CNN: &str = r#"
[encoders.image]
kind = "cnn"
image_size = 28
channels = 1
widths = [8, 16]
dim = 32
"#;

/// Runs a config; returns the summary and the mean of the first and of
/// the last five losses.
fn train(cfg_path: &Path, dir: &Path) -> (mosaic_train::trainer::TrainSummary, f64, f64) {
    let cfg = TrainConfig::load(cfg_path, &[]).unwrap();
    let s = run(&cfg, &store(dir), false, false).unwrap();
    let first = s.losses[..5].iter().sum::<f64>() / 5.0;
    let last = s.losses[s.losses.len() - 5..].iter().sum::<f64>() / 5.0;
    (s, first, last)
}

fn store(dir: &Path) -> AssetStore {
    AssetStore::new(
        dir.join("assets"),
        mosaic_core::assets::Catalog::load().unwrap(),
    )
}

#[test]
fn classifier_learns_from_a_png_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    write_manifest(tmp.path(), "train", 48, 0);
    write_manifest(tmp.path(), "eval", 30, 1000);
    let cfg_path = write_config(
        tmp.path(),
        &format!("{IMAGE_CNN}\n[fusion]\nkind = \"early\"\nhidden = 32\nlayers = 1\n"),
        "[heads.shape]\nkind = \"classifier\"\nclasses = 3\n",
        100,
        "class_names = [\"stripes\", \"square\", \"cross\"]",
    );
    let (s, first, last) = train(&cfg_path, tmp.path());
    assert!(last < 0.4 * first, "loss {first:.3} → {last:.3}");
    let acc = s.last_eval["accuracy_shape"];
    assert!(acc >= 0.9, "held-out accuracy {acc}");
    assert!(s.last_eval["eval_loss"].is_finite());
    // The best checkpoint was tracked on the classifier's accuracy.
    assert!(s.best.is_some());
}

#[test]
fn image_text_contrastive_learns_from_a_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    write_manifest(tmp.path(), "train", 48, 0);
    write_manifest(tmp.path(), "eval", 30, 1000);
    let cfg_path = write_config(
        tmp.path(),
        &format!(
            "{IMAGE_CNN}\n[encoders.text]\nkind = \"text_transformer\"\nvocab_size = 714\nmax_len = 16\ndim = 32\nlayers = 1\nheads = 4\n\n[fusion]\nkind = \"late\"\n"
        ),
        "[heads.clip]\nkind = \"contrastive\"\nmodalities = [\"image\", \"text\"]\ndim = 32\n",
        60,
        "",
    );
    let (s, first, last) = train(&cfg_path, tmp.path());
    // Each batch of 12 holds 4 pairs per shape with the same caption, so
    // the loss can only fall from ln 12 ≈ 2.48 towards ln 4 ≈ 1.39.
    assert!(
        first > 2.2 && last < first - 0.6,
        "loss {first:.3} → {last:.3}"
    );
    let r1 = s.last_eval["r1_clip"];
    assert!((0.0..=1.0).contains(&r1), "R@1 {r1}");
    assert!(s.last_eval["eval_loss"] < 2.0, "{:?}", s.last_eval);
}

#[test]
fn bad_manifest_keys_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    write_manifest(tmp.path(), "train", 12, 0);
    write_manifest(tmp.path(), "eval", 6, 100);
    let arch = format!("{IMAGE_CNN}\n[fusion]\nkind = \"early\"\nhidden = 32\nlayers = 1\n");
    let head = "[heads.shape]\nkind = \"classifier\"\nclasses = 3\n";
    let cfg_path = write_config(tmp.path(), &arch, head, 2, "");
    let err = |over: &[&str]| {
        let o: Vec<String> = over.iter().map(|s| s.to_string()).collect();
        TrainConfig::load(&cfg_path, &o).unwrap_err().to_string()
    };
    assert!(err(&["data.train=\"missing.jsonl\""]).contains("data.train"));
    assert!(err(&["data.classes=[0, 1]"]).contains("data.classes"));
    assert!(err(&["data.image_std=0"]).contains("data.image_std"));
    assert!(err(&["data.source=\"folder\""]).contains("data.source"));
    // A label outside class_names is a data error naming the sample.
    let cfg = TrainConfig::load(
        &cfg_path,
        &["data.class_names=[\"stripes\", \"square\"]".to_string()],
    )
    .unwrap();
    let e = run(&cfg, &store(tmp.path()), false, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cross") || e.contains("label"), "{e}");
}

/// A frozen all-MiniLM-L6-v2 text tower with LoRA on its queries and
/// values, against a CNN image tower, contrastive on the shape captions.
fn write_lora_config(dir: &Path) -> PathBuf {
    let assets = AssetStore::from_env().unwrap();
    assert!(
        assets.is_fetched("minilm-l6-v2"),
        "fetch minilm-l6-v2 (scripts/test.sh does)"
    );
    let minilm = assets.path("minilm-l6-v2").unwrap();
    std::fs::write(
        dir.join("arch.toml"),
        format!(
            r#"name = "shapes-minilm"
seed = 0
dim = 32
{IMAGE_CNN}
[encoders.text]
kind = "pretrained"
pretrained = "{}"
freeze = true

[fusion]
kind = "late"

[heads.clip]
kind = "contrastive"
modalities = ["image", "text"]
dim = 32
"#,
            minilm.display()
        ),
    )
    .unwrap();
    let cfg = dir.join("train.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[run]
out_dir = "{out}"
steps = 20
batch_size = 12
checkpoint_every = 10
log_every = 10

[model]
arch = "arch.toml"

[model.lora]
rank = 4
targets = ["encoders.text.*.attention.self.query", "encoders.text.*.attention.self.value"]

[data]
source = "manifest"
train = "train.jsonl"

[optimizer]
kind = "adamw"
lr = 0.003
"#,
            out = dir.join("run").display(),
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn lora_on_a_frozen_pretrained_tower_trains_only_its_adapters_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    write_manifest(tmp.path(), "train", 36, 0);
    let cfg_path = write_lora_config(tmp.path());
    let cfg = TrainConfig::load(&cfg_path, &[]).unwrap();
    let full = run(&cfg, &store(tmp.path()), false, false).unwrap();
    let (first, last) = (full.losses[0], full.losses[full.losses.len() - 1]);
    assert!(last < first, "loss {first:.3} → {last:.3}");

    // The optimiser holds state for the adapters, the image tower and the
    // head: no base weight of the tower trains.
    let ckpt = full.final_checkpoint.clone();
    let opt = candle_core::safetensors::load(
        ckpt.join("optimizer.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let text_state: Vec<&String> = opt
        .keys()
        .filter(|k| k.contains("encoders.text."))
        .collect();
    assert!(!text_state.is_empty());
    assert!(
        text_state
            .iter()
            .all(|k| k.contains(".lora_a") || k.contains(".lora_b")),
        "{text_state:?}"
    );
    // The saved tower still holds the checkpoint's weights; the adapters moved.
    let saved =
        candle_core::safetensors::load(ckpt.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let minilm = AssetStore::from_env()
        .unwrap()
        .path("minilm-l6-v2")
        .unwrap();
    let original =
        candle_core::safetensors::load(minilm.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let q = "encoder.layer.0.attention.self.query.weight";
    let orig_q = original
        .get(q)
        .or_else(|| original.get(&format!("bert.{q}")))
        .unwrap();
    let diff = (&saved[&format!("encoders.text.{q}")] - orig_q)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
    let b = &saved["encoders.text.encoder.layer.0.attention.self.query.lora_b"];
    let moved = b
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(moved > 0.0, "lora_b never moved");

    // Interrupted at step 10 and resumed: the same losses, exactly.
    let tmp2 = tempfile::tempdir().unwrap();
    write_manifest(tmp2.path(), "train", 36, 0);
    let cfg2_path = write_lora_config(tmp2.path());
    let half = TrainConfig::load(&cfg2_path, &["run.steps=10".into()]).unwrap();
    let a = run(&half, &store(tmp2.path()), false, false).unwrap();
    let rest = TrainConfig::load(&cfg2_path, &[]).unwrap();
    let b = run(&rest, &store(tmp2.path()), true, false).unwrap();
    assert_eq!(a.losses[..], full.losses[..10]);
    // The resumed run's history: the first ten from the checkpoint, then
    // its own ten.
    assert_eq!(b.losses, full.losses);
}

/// The shipped MiniLM fine-tuning recipes (`configs/train/minilm_supersense_*`)
/// load and validate; the LoRA one trains a few steps on the real WordNet
/// text (imported into `$MOSAIC_HOME/datasets` on first use) and evaluates
/// on the held-out split; a bad parameter group is named.
#[test]
fn minilm_supersense_recipes_load_and_the_lora_one_trains() {
    let assets = AssetStore::from_env().unwrap();
    assert!(
        assets.is_fetched("minilm-l6-v2") && assets.is_fetched("wordnet"),
        "fetch minilm-l6-v2 and wordnet (scripts/test.sh does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    for name in ["probe", "full", "lora"] {
        let p = repo().join(format!("configs/train/minilm_supersense_{name}.toml"));
        let cfg = TrainConfig::load(&p, &[]).unwrap();
        assert_eq!(cfg.data.source, "wordnet_supersenses", "{name}");
    }
    let p = repo().join("configs/train/minilm_supersense_full.toml");
    let e = TrainConfig::load(
        &p,
        &["optimizer.groups=[{ name = \"x\", patterns = [\"heads\"], lr_scale = -1.0 }]".into()],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("optimizer.groups[0]") && e.contains("lr_scale"),
        "{e}"
    );
    let e = TrainConfig::load(&p, &["data.class_names=[\"a\"]".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("data.class_names"), "{e}");

    let out = tmp.path().join("run");
    let cfg = TrainConfig::load(
        &repo().join("configs/train/minilm_supersense_lora.toml"),
        &[
            format!("run.out_dir=\"{}\"", out.display()),
            "run.steps=3".into(),
            "run.batch_size=8".into(),
            "run.eval_every=0".into(),
            "run.checkpoint_every=0".into(),
        ],
    )
    .unwrap();
    let s = run(&cfg, &assets, false, false).unwrap();
    assert_eq!(s.losses.len(), 3);
    assert!(s.losses.iter().all(|l| l.is_finite()));
    let acc = s.last_eval["accuracy_supersense"];
    assert!((0.0..=1.0).contains(&acc), "{acc}");

    // The checkpoint is a model folder: it loads with its adapters, which
    // hold the trained values.
    let m = mosaic_models::arch::MultimodalModel::load(
        &s.final_checkpoint,
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let spec = m.config().lora.clone().expect("the LoRA spec is saved");
    assert_eq!(spec.rank, 8);
    let saved: std::collections::HashMap<String, candle_core::Tensor> =
        mosaic_core::formats::load_tensors(
            &s.final_checkpoint.join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap()
        .into_iter()
        .collect();
    let b = "encoders.text.encoder.layer.0.attention.self.query.lora_b";
    let vars = m.params().vars();
    let loaded = vars.get(b).unwrap_or_else(|| panic!("no {b}"));
    let d = (loaded.as_tensor() - &saved[b])
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(d, 0.0);
    // LoRA B starts at zero: three steps moved it.
    assert!(
        saved[b]
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
}

/// `[model.ewc]`: the Fisher is estimated before the first step at the
/// loaded weights and written to the run folder; a large λ holds the
/// anchored encoder near those weights while the head still learns; a
/// later run reads the file; resuming reproduces the losses; bad keys are
/// named.
#[test]
fn ewc_in_a_training_config_holds_the_anchored_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    write_manifest(tmp.path(), "train", 48, 0);
    write_manifest(tmp.path(), "eval", 12, 1000);
    let arch = format!("{IMAGE_CNN}\n[fusion]\nkind = \"early\"\nhidden = 32\nlayers = 1\n");
    let head = "[heads.shape]\nkind = \"classifier\"\nclasses = 3\n";
    let cfg_path = write_config(tmp.path(), &arch, head, 20, "");
    let assets = store(tmp.path());
    let start: std::collections::HashMap<String, candle_core::Tensor> = {
        let a = mosaic_models::arch::ArchConfig::from_file(&tmp.path().join("arch.toml")).unwrap();
        let m = mosaic_models::arch::MultimodalModel::from_config(
            &a,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        m.params().tensors().into_iter().collect()
    };
    let encoder_moved = |dir: &Path| -> f32 {
        let latest = std::fs::read_to_string(dir.join("checkpoints/latest")).unwrap();
        let saved = mosaic_core::formats::load_tensors(
            &dir.join("checkpoints")
                .join(latest.trim())
                .join("model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        saved
            .iter()
            .filter(|(n, _)| n.starts_with("encoders.image"))
            .map(|(n, t)| {
                (t - &start[n])
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .sum()
    };
    let run_with = |out: &str, extra: &[&str]| {
        let mut o = vec![format!(
            "run.out_dir=\"{}\"",
            tmp.path().join(out).display()
        )];
        o.extend(extra.iter().map(|s| s.to_string()));
        let cfg = TrainConfig::load(&cfg_path, &o).unwrap();
        run(&cfg, &assets, false, false).unwrap()
    };
    let plain = run_with("plain", &[]);
    let held = run_with(
        "ewc",
        &["model.ewc={ lambda = 1e6, patterns = [\"encoders.image\"], fisher_batches = 4 }"],
    );
    let (d_plain, d_held) = (
        encoder_moved(&tmp.path().join("plain")),
        encoder_moved(&tmp.path().join("ewc")),
    );
    assert!(
        d_held < 0.5 * d_plain,
        "EWC moved the encoder {d_held}, plain training {d_plain}"
    );
    assert!(held.losses.iter().all(|l| l.is_finite()));
    // Written at the end: the anchors are the trained weights.
    let file = tmp.path().join("ewc/ewc.safetensors");
    let latest = std::fs::read_to_string(tmp.path().join("ewc/checkpoints/latest")).unwrap();
    let trained = mosaic_core::formats::load_tensors(
        &tmp.path()
            .join("ewc/checkpoints")
            .join(latest.trim())
            .join("model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap()
    .into_iter()
    .collect::<std::collections::HashMap<_, _>>();
    for (n, t) in mosaic_core::formats::load_tensors(&file, &candle_core::Device::Cpu).unwrap() {
        if let Some(p) = n.strip_prefix("anchor.") {
            let d = (&t - &trained[p])
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(d, 0.0, "anchor {p} is not the trained value");
        }
    }
    let names: Vec<String> = mosaic_core::formats::load_tensors(&file, &candle_core::Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(
        names.iter().all(|n| n.contains("encoders.image")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("fisher.")));

    // λ = 0 is plain training, exactly.
    let zero = run_with("zero", &["model.ewc={ lambda = 0.0, fisher_batches = 2 }"]);
    assert_eq!(zero.losses, plain.losses);

    // A later run remembers the earlier one through its file.
    let later = run_with(
        "later",
        &[&format!(
            "model.ewc={{ lambda = 10.0, fisher = \"{}\" }}",
            file.display()
        )],
    );
    assert_eq!(later.losses.len(), 20);

    // Interrupted at step 10 and resumed: the same losses.
    let ewc_key = "model.ewc={ lambda = 1e3, fisher_batches = 3 }";
    let whole = run_with("whole", &[ewc_key]);
    let out = tmp.path().join("halves");
    let over = |steps: &str| {
        TrainConfig::load(
            &cfg_path,
            &[
                format!("run.out_dir=\"{}\"", out.display()),
                ewc_key.to_string(),
                format!("run.steps={steps}"),
                "run.checkpoint_every=10".into(),
            ],
        )
        .unwrap()
    };
    run(&over("10"), &assets, false, false).unwrap();
    let resumed = run(&over("20"), &assets, true, false).unwrap();
    assert_eq!(resumed.losses, whole.losses);

    // Bad keys are named.
    let err = |o: &str| {
        TrainConfig::load(&cfg_path, &[o.to_string()])
            .unwrap_err()
            .to_string()
    };
    assert!(err("model.ewc={ lambda = -1.0 }").contains("model.ewc.lambda"));
    assert!(
        err("model.ewc={ lambda = 1.0, fisher_batches = 0 }").contains("model.ewc.fisher_batches")
    );
    let cfg = TrainConfig::load(
        &cfg_path,
        &["model.ewc={ lambda = 1.0, patterns = [\"encoders.audio\"] }".to_string()],
    )
    .unwrap();
    let e = run(&cfg, &assets, false, false).unwrap_err().to_string();
    assert!(
        e.contains("model.ewc.patterns") && e.contains("encoders.audio"),
        "{e}"
    );
}
