//! `mosaic train`: kill -9 mid-run, then `--resume`: the losses equal an
//! uninterrupted run's exactly, and checkpoints are never half-written;
//! bad configs are refused naming the key.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A tiny config in `dir` (model small enough for a debug build).
fn write_config(dir: &Path, out: &Path) -> PathBuf {
    let arch = dir.join("arch.toml");
    std::fs::write(
        &arch,
        r#"name = "tiny"
dim = 16
[encoders.image]
kind = "cnn"
image_size = 28
channels = 1
widths = [4]
dim = 16
[encoders.text]
kind = "bag_of_words"
vocab_size = 30522
dim = 16
[fusion]
kind = "late"
[heads.clip]
kind = "contrastive"
modalities = ["image", "text"]
dim = 16
"#,
    )
    .unwrap();
    let cfg = dir.join("train.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[run]
out_dir = "{}"
steps = 40
batch_size = 16
log_every = 1
eval_every = 0
checkpoint_every = 5
grad_clip = 1.0
[model]
arch = "arch.toml"
[data]
source = "fashion_mnist"
[optimizer]
kind = "adamw"
lr = 0.003
weight_decay = 0.01
[schedule]
kind = "cosine"
warmup_steps = 4
"#,
            out.display()
        ),
    )
    .unwrap();
    cfg
}

fn mosaic() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mosaic"));
    c.stdin(Stdio::null());
    c
}

fn losses(out: &Path) -> Vec<(usize, f64)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Some((v["step"].as_u64()? as usize, v.get("loss")?.as_f64()?))
        })
        .collect()
}

#[test]
fn kill_nine_then_resume_repeats_the_uninterrupted_losses_exactly() {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("fashion-mnist") && store.is_fetched("minilm-l6-v2"),
        "fetch fashion-mnist and minilm-l6-v2 (scripts/test.sh does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    // Uninterrupted reference run.
    let full_out = tmp.path().join("full");
    let cfg = write_config(tmp.path(), &full_out);
    let o = mosaic()
        .arg("train")
        .arg(&cfg)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference = losses(&full_out);
    assert_eq!(reference.len(), 40);

    // Interrupted run: SIGKILL once a couple of checkpoints exist.
    let out = tmp.path().join("killed");
    let cfg2 = write_config(tmp.path(), &out);
    let mut child = mosaic()
        .arg("train")
        .arg(&cfg2)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        let n = std::fs::read_to_string(out.join("metrics.jsonl"))
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n >= 12 || t0.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let before = losses(&out);
    assert!(
        before.len() < 40,
        "the run finished before it could be killed"
    );
    // Every checkpoint folder present is complete; no temporary folder is taken as one.
    for e in std::fs::read_dir(out.join("checkpoints")).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && p.extension().is_none_or(|x| x != "tmp") {
            for f in ["model.safetensors", "optimizer.safetensors", "state.json"] {
                assert!(p.join(f).is_file(), "{} lacks {f}", p.display());
            }
        }
    }
    let o = mosaic()
        .arg("train")
        .arg(&cfg2)
        .args(["--quiet", "--resume"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let resumed = losses(&out);
    assert_eq!(resumed.len(), 40, "{resumed:?}");
    for ((s1, a), (s2, b)) in reference.iter().zip(&resumed) {
        assert_eq!(s1, s2);
        assert_eq!(a.to_bits(), b.to_bits(), "step {s1}: {a} vs {b}");
    }
    // Starting again without --resume into a used folder is refused.
    let o = mosaic()
        .arg("train")
        .arg(&cfg2)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
}

#[test]
fn bad_train_configs_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), &tmp.path().join("x"));
    let err = |set: &str| {
        let o = mosaic()
            .arg("train")
            .arg(&cfg)
            .args(["--quiet", "--set", set])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{set} was accepted");
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let e = err("optimizer.kind=\"adamax\"");
    assert!(e.contains("optimizer.kind") && e.contains("adamax"), "{e}");
    let e = err("optimizer.lr=-0.1");
    assert!(e.contains("optimizer.lr"), "{e}");
    let e = err("run.accumulation_steps=0");
    assert!(e.contains("run.accumulation_steps"), "{e}");
    let e = err("model.freeze=[\"encoders.audio\"]");
    assert!(
        e.contains("model.freeze") && e.contains("encoders.audio"),
        "{e}"
    );
    let e = err("run.speed=3");
    assert!(e.contains("speed"), "{e}");
    let _ = repo();
}
