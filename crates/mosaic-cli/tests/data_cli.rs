//! `mosaic data`: import the real Fashion-MNIST and Asterisk sets, validate,
//! stats, convert to shards and back, and a manifest of hostile inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn mosaic() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mosaic"));
    c.env_remove("MOSAIC_CATALOG")
        .env_remove("MOSAIC_CONFIG")
        .env_remove("RUST_LOG");
    c
}

fn run(args: &[&str]) -> Output {
    mosaic()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("mosaic runs")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "mosaic {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn asset(name: &str) -> PathBuf {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched(name),
        "asset {name} not fetched (scripts/test.sh fetches it)"
    );
    store.path(name).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn fashion_mnist_import_validate_stats_and_shards() {
    let src = asset("fashion-mnist");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fmnist");
    let o = ok(&[
        "data",
        "import",
        "fashion-mnist",
        "--source",
        s(&src),
        "--out",
        s(&out),
    ]);
    assert!(o.contains("imported 70000 samples"), "{o}");
    let manifest = out.join("manifest.jsonl");
    let v = ok(&["data", "validate", s(&manifest)]);
    assert!(v.contains("70000 samples, 70000 ok, 0 bad"), "{v}");
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&["data", "stats", "--json", s(&manifest)])).unwrap();
    assert_eq!(stats["samples"], 70000);
    assert_eq!(stats["splits"]["train"], 60000);
    assert_eq!(stats["splits"]["test"], 10000);
    assert_eq!(stats["labels"].as_object().unwrap().len(), 10);
    assert_eq!(stats["labels"]["Ankle boot"], 7000);
    // The loader through a data config: CLIP-style preprocessing at 32 px,
    // labels mapped to class indices, batches of 64.
    let cfg = dir.path().join("data.toml");
    let classes: Vec<String> = mosaic_data::import::FASHION_MNIST_CLASSES
        .iter()
        .map(|c| format!("{c:?}"))
        .collect();
    std::fs::write(&cfg, format!("classes = [{}]\n[image]\npreset = \"clip\"\nsize = 32\n[loader]\nbatch_size = 64\nshuffle_buffer = 1000\nseed = 7\n", classes.join(", "))).unwrap();
    let b = ok(&[
        "data",
        "batches",
        s(&out.join("test.jsonl")),
        "--data-config",
        s(&cfg),
        "--limit",
        "3",
    ]);
    assert!(
        b.contains("batch 0: 64 samples: image [64, 3, 32, 32], classes"),
        "{b}"
    );
    assert!(b.contains("3 batches, 192 samples, 0 skipped"), "{b}");
    std::fs::write(
        &cfg,
        "[image]\npreset = \"clip\"\n[loader]\nbatch_sise = 3\n",
    )
    .unwrap();
    let bad = run(&[
        "data",
        "batches",
        s(&out.join("test.jsonl")),
        "--data-config",
        s(&cfg),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("loader.batch_sise"));
    // A second import into the same folder is refused unless --force.
    let again = run(&[
        "data",
        "import",
        "fashion-mnist",
        "--source",
        s(&src),
        "--out",
        s(&out),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    // JSONL → shards → JSONL, validating each.
    let shards = dir.path().join("shards");
    ok(&[
        "data",
        "convert",
        s(&out.join("test.jsonl")),
        s(&shards),
        "--samples-per-shard",
        "4000",
    ]);
    let n_tars = std::fs::read_dir(&shards).unwrap().count();
    assert_eq!(n_tars, 3);
    let v = ok(&["data", "validate", s(&shards)]);
    assert!(v.contains("10000 samples, 10000 ok, 0 bad"), "{v}");
    let back = dir.path().join("back/test.jsonl");
    std::fs::create_dir_all(back.parent().unwrap()).unwrap();
    ok(&["data", "convert", s(&shards), s(&back)]);
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&["data", "stats", "--json", s(&back)])).unwrap();
    assert_eq!(stats["samples"], 10000);
    assert_eq!(stats["labels"]["Sandal"], 1000);
    assert!(ok(&["data", "validate", s(&back)]).contains("10000 ok"));
}

#[test]
fn asterisk_transcripts_import_and_validate() {
    let src = asset("asterisk-sounds");
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("asterisk.jsonl");
    let o = ok(&[
        "data",
        "import",
        "transcripts",
        s(&src.join("core-sounds-en.txt.gz")),
        "--audio-root",
        s(&src.join("en_US_f_Allison")),
        "--out",
        s(&m),
    ]);
    let n: usize = o
        .lines()
        .find_map(|l| {
            l.strip_prefix("imported ")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap();
    assert!(n >= 500, "{o}");
    let v = ok(&["data", "validate", s(&m)]);
    assert!(v.contains(&format!("{n} samples, {n} ok, 0 bad")), "{v}");
}

#[test]
fn validate_lists_every_bad_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.png"), b"").unwrap();
    std::fs::write(dir.path().join("nan.csv"), b"t,a\n0,1\n1,nan\n").unwrap();
    let mut m =
        b"{\"image\": \"empty.png\"}\nnot json\n{\"sensor\": \"nan.csv\"}\n{\"text\": \"fine\"}\n"
            .to_vec();
    m.extend(b"{\"text\": \"bad \xff\"}\n");
    let manifest = dir.path().join("m.jsonl");
    std::fs::write(&manifest, m).unwrap();
    let o = run(&["data", "validate", s(&manifest)]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    for line in [1, 2, 3, 5] {
        assert!(
            out.contains(&format!("m.jsonl:{line}:")),
            "line {line} not reported:\n{out}"
        );
    }
    assert!(out.contains("5 samples, 1 ok, 4 bad"), "{out}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: 4 of 5 samples"), "{err}");
    let missing = run(&["data", "validate", "/nonexistent/m.jsonl"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/m.jsonl"));
}
