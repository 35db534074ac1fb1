//! `mosaic zero-shot` on the committed CLIP-like folder against the
//! transformers + prompt-ensembling reference probabilities.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mosaic-models/tests/fixtures/zeroshot")
}

#[test]
fn zero_shot_ensemble_matches_reference() {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("zeroshot_io.json")).unwrap())
            .unwrap();
    let io = mosaic_core::formats::load_tensors(
        &fixtures().join("zeroshot_io.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let probs: Vec<Vec<f32>> = io
        .iter()
        .find(|(n, _)| n == "ensemble/probs")
        .unwrap()
        .1
        .to_vec2()
        .unwrap();
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("skimage-photos"),
        "fetch skimage-photos (scripts/test.sh does)"
    );
    let root = store.path("skimage-photos").unwrap();
    let labels: Vec<&str> = meta["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let tfile = tmp.path().join("templates.txt");
    let templates: Vec<&str> = meta["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    // First template on the command line, the rest from a file.
    std::fs::write(
        &tfile,
        format!("# ensemble\n{}\n\n", templates[1..].join("\n")),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mosaic"));
    cmd.args(["zero-shot", "--model"])
        .arg(fixtures().join("clip_zs"))
        .args([
            "--labels",
            &labels.join(","),
            "--template",
            templates[0],
            "--templates-file",
        ])
        .arg(&tfile)
        .arg("--json");
    for p in meta["photos"].as_array().unwrap() {
        cmd.arg(root.join(Path::new(p.as_str().unwrap()).file_name().unwrap()));
    }
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (row, want) in lines.iter().zip(&probs) {
        let got = row["labels"].as_array().unwrap();
        assert_eq!(got.len(), labels.len());
        // Sorted by probability, highest first.
        for (rank, g) in got.iter().enumerate() {
            let i = labels
                .iter()
                .position(|l| *l == g["label"].as_str().unwrap())
                .unwrap();
            let p = g["probability"].as_f64().unwrap() as f32;
            assert!((p - want[i]).abs() <= 1e-5, "{row}");
            if rank > 0 {
                assert!(p <= got[rank - 1]["probability"].as_f64().unwrap() as f32);
            }
        }
    }
}

#[test]
fn zero_shot_rejects_bad_arguments() {
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let model = fixtures().join("clip_zs");
    let m = model.to_str().unwrap();
    let e = run(&["zero-shot", "--model", m, "--labels", "a,,b", "x.png"]);
    assert!(e.contains("--labels"), "{e}");
    let e = run(&[
        "zero-shot",
        "--model",
        m,
        "--labels",
        "a,b",
        "--template",
        "no slot",
        "x.png",
    ]);
    assert!(e.contains("no slot"), "{e}");
    let e = run(&[
        "zero-shot",
        "--model",
        m,
        "--labels",
        "a,b",
        "/nonexistent/x.png",
    ]);
    assert!(e.contains("/nonexistent/x.png"), "{e}");
}
