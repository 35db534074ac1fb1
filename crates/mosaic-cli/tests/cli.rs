//! End-to-end tests of the `mosaic` binary: real assets, bad input, the
//! asset store's fetch/verify life cycle and the hub cache.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mosaic_core::candle::{DType, Device, Tensor};
use sha2::Digest;

fn mosaic() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mosaic"));
    c.env_remove("MOSAIC_CATALOG")
        .env_remove("MOSAIC_CONFIG")
        .env_remove("RUST_LOG");
    c
}

fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().expect("mosaic runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failing command: exit code 1 and one `error:` line naming `needles`.
fn assert_clean_error(o: &Output, needles: &[&str]) {
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stdout(o)
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "error must be one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "`{n}` missing from: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

// ---------------------------------------------------------------- real assets

fn asset_home() -> PathBuf {
    mosaic_core::assets::AssetStore::default_home().expect("a home folder")
}

/// The asset folder, or `None` (skip) when it is not fetched outside CI.
/// Under CI=true a missing asset fails the test.
fn real_asset(name: &str) -> Option<PathBuf> {
    let dir = asset_home().join("assets").join(name);
    if dir.join(".mosaic-asset.json").is_file() {
        return Some(dir);
    }
    let msg = format!(
        "asset `{name}` is not fetched into {}; run `mosaic assets fetch {name}`",
        asset_home().display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("skipping: {msg}");
    None
}

fn inspect_json(path: &Path) -> serde_json::Value {
    let o = run(mosaic().args(["inspect", "--json"]).arg(path));
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn minilm_parameter_total() {
    let Some(dir) = real_asset("minilm-l6-v2") else {
        return;
    };
    let j = inspect_json(&dir);
    assert_eq!(j["total_params"], 22_713_728);
    assert_eq!(j["total_tensors"], 104);
    assert_eq!(j["files"][0]["format"], "safetensors");
    assert_eq!(j["config"]["hidden_size"], 384);
}

#[test]
fn whisper_ct2_parameter_total() {
    let Some(dir) = real_asset("whisper-tiny-en") else {
        return;
    };
    let j = inspect_json(&dir.join("model.bin"));
    // ≈37.8M: 37,764,873 elements over 148 stored variables (config scalars included).
    assert_eq!(j["total_params"], 37_764_873);
    assert_eq!(j["total_tensors"], 148);
    assert_eq!(j["files"][0]["format"], "ctranslate2");
    let o = run(mosaic()
        .args(["inspect", "whisper-tiny-en", "--summary"])
        .env("MOSAIC_HOME", asset_home()));
    let out = stdout(&o);
    assert!(
        out.contains("spec WhisperSpec revision 3") && out.contains("37,764,873 (37.76M)"),
        "{out}"
    );
}

#[test]
fn silero_vad_parameter_total() {
    let Some(dir) = real_asset("silero-vad") else {
        return;
    };
    let j = inspect_json(&dir.join("silero_vad_16k.safetensors"));
    assert_eq!(j["total_params"], 309_633);
}

#[test]
fn efficientnet_lite0_parameter_total() {
    let Some(dir) = real_asset("efficientnet-lite0") else {
        return;
    };
    let pth = dir.join("efficientnet-lite0.pth");
    let j = inspect_json(&pth);
    assert_eq!(j["files"][0]["format"], "pytorch-legacy");
    assert_eq!(j["total_tensors"], 296);
    assert_eq!(j["total_params"], 4_694_073);
    // ≈4.65M learned parameters once BatchNorm statistics are set aside.
    let o = run(mosaic().args(["inspect", "--summary", "--check"]).arg(&pth));
    let out = stdout(&o);
    assert!(
        out.contains("learned parameters: 4,652,008 (4.65M)"),
        "{out}"
    );
    assert!(
        out.contains("check: loaded 296 tensors on cpu; 0 with NaN/Inf"),
        "{out}"
    );
}

// ---------------------------------------------------------------- bad input

#[test]
fn truncated_safetensors_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("weights.safetensors");
    let mut t = HashMap::new();
    t.insert(
        "w".to_string(),
        Tensor::zeros((16, 16), DType::F32, &Device::Cpu).unwrap(),
    );
    mosaic_core::checkpoint::save_safetensors(&p, &t).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    assert_clean_error(
        &run(mosaic().arg("inspect").arg(&p)),
        &["weights.safetensors", "truncated"],
    );
}

#[test]
fn bad_pickle_opcode_is_a_one_line_error() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mosaic-core/tests/fixtures/pth/bad_opcode.pth");
    assert_clean_error(
        &run(mosaic().arg("inspect").arg(&p)),
        &["bad_opcode.pth", "unknown opcode 0xff", "byte 137"],
    );
}

#[test]
fn ct2_with_wrong_version_or_magic_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.bin");
    let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    mosaic_core::formats::ct2::write(
        &p,
        "WhisperSpec",
        3,
        &[("w", mosaic_core::formats::StorageDType::F32, &[2], &data)],
        &[],
    )
    .unwrap();
    let good = std::fs::read(&p).unwrap();
    let mut bad = good.clone();
    bad[0] = 42;
    std::fs::write(&p, &bad).unwrap();
    assert_clean_error(
        &run(mosaic().arg("inspect").arg(&p)),
        &["model.bin", "CTranslate2", "binary version 42"],
    );
    let mut bad = good.clone();
    bad[6..10].copy_from_slice(b"\xff\xfe\xfd\xfc");
    std::fs::write(&p, &bad).unwrap();
    assert_clean_error(
        &run(mosaic().arg("inspect").arg(&p)),
        &["model.bin", "CTranslate2", "spec name"],
    );
}

#[test]
fn config_with_unknown_key_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mosaic.toml");
    std::fs::write(&p, "device = \"cpu\"\ncolour = \"blue\"\n").unwrap();
    assert_clean_error(
        &run(mosaic().arg("--config").arg(&p).args(["assets", "list"])),
        &["mosaic.toml", "unknown key `colour`"],
    );
    std::fs::write(&p, "device = \"tpu:0\"\n").unwrap();
    assert_clean_error(
        &run(mosaic().arg("--config").arg(&p).args(["assets", "list"])),
        &["mosaic.toml", "`device`", "tpu:0"],
    );
    let cat = dir.path().join("catalog.toml");
    std::fs::write(
        &cat,
        "[[asset]]\nname = \"x\"\nkind = \"model\"\ndescription = \"d\"\nlicense = \"l\"\nsource = []\nsize = 3\n",
    )
    .unwrap();
    assert_clean_error(
        &run(mosaic()
            .env("MOSAIC_CATALOG", &cat)
            .args(["assets", "list"])),
        &["catalog.toml", "size"],
    );
}

#[test]
fn settings_file_sets_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mosaic.json");
    let home = dir.path().join("home");
    std::fs::write(
        &p,
        serde_json::json!({"home": home, "dtype": "bf16"}).to_string(),
    )
    .unwrap();
    let o = run(mosaic()
        .env_remove("MOSAIC_HOME")
        .arg("--config")
        .arg(&p)
        .args(["assets", "list"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&home.join("assets").display().to_string()),
        "{}",
        stdout(&o)
    );
}

#[test]
fn unknown_asset_and_missing_file_are_one_line_errors() {
    let home = tempfile::tempdir().unwrap();
    assert_clean_error(
        &run(mosaic()
            .env("MOSAIC_HOME", home.path())
            .args(["assets", "fetch", "no-such-model"])),
        &["unknown asset `no-such-model`", "minilm-l6-v2"],
    );
    assert_clean_error(
        &run(mosaic()
            .env("MOSAIC_HOME", home.path())
            .args(["inspect", "./no/such/file.safetensors"])),
        &["no/such/file.safetensors"],
    );
    assert_clean_error(
        &run(mosaic()
            .env("MOSAIC_HOME", home.path())
            .args(["inspect", "minilm-l6-v2"])),
        &[
            "minilm-l6-v2",
            "not fetched",
            "mosaic assets fetch minilm-l6-v2",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.safetensors");
    let mut t = HashMap::new();
    t.insert(
        "w".to_string(),
        Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
    );
    mosaic_core::checkpoint::save_safetensors(&p, &t).unwrap();
    assert_clean_error(
        &run(mosaic()
            .args(["--device", "cuda:0", "inspect", "--check"])
            .arg(&p)),
        &["cuda:0"],
    );
}

// ---------------------------------------------------------------- asset store life cycle

/// A local package "registry": a wheel, a catalog naming it, and a stand-in
/// for `pip` that copies the wheel (optionally half, then hangs).
struct FakeRegistry {
    dir: tempfile::TempDir,
    home: PathBuf,
}

impl FakeRegistry {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("toy_model-1.0-py3-none-any.whl");
        let f = std::fs::File::create(&wheel).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("toy_model/weights/config.json", opts).unwrap();
        z.write_all(br#"{"hidden_size": 8}"#).unwrap();
        z.start_file("toy_model/weights/model.safetensors", opts)
            .unwrap();
        // Big enough that a half copy is clearly half.
        let mut t = HashMap::new();
        t.insert(
            "w".to_string(),
            Tensor::ones((256, 256), DType::F32, &Device::Cpu).unwrap(),
        );
        let st = dir.path().join("m.safetensors");
        mosaic_core::checkpoint::save_safetensors(&st, &t).unwrap();
        z.write_all(&std::fs::read(&st).unwrap()).unwrap();
        z.start_file("toy_model/__init__.py", opts).unwrap();
        z.finish().unwrap();
        let sha = hex::encode(sha2::Sha256::digest(std::fs::read(&wheel).unwrap()));
        std::fs::write(
            dir.path().join("catalog.toml"),
            format!(
                "[[asset]]\nname = \"toy\"\nkind = \"model\"\ndescription = \"toy model\"\nlicense = \"MIT\"\n[[asset.source]]\npypi = \"toy-model==1.0\"\nfile = \"toy_model-1.0-py3-none-any.whl\"\nsha256 = \"{sha}\"\nextract = [{{ from = \"toy_model/weights/\", to = \"\" }}]\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pip.sh"),
            r#"#!/bin/sh
# Stand-in for `python3 -m pip download ... -d DIR REQ`.
dir=""; prev=""
for a in "$@"; do [ "$prev" = "-d" ] && dir="$a"; prev="$a"; done
out="$dir/toy_model-1.0-py3-none-any.whl"
if [ -n "$SLOW_PIP" ]; then
  echo $$ > "$SLOW_PIP.pid"
  head -c 5000 "$WHEEL" > "$out"
  touch "$SLOW_PIP"
  exec sleep 60
fi
cp "$WHEEL" "$out"
"#,
        )
        .unwrap();
        let home = dir.path().join("home");
        FakeRegistry { dir, home }
    }

    fn cmd(&self) -> Command {
        let mut c = mosaic();
        c.env("MOSAIC_HOME", &self.home)
            .env("MOSAIC_CATALOG", self.dir.path().join("catalog.toml"))
            .env(
                "MOSAIC_PIP",
                format!("sh {}", self.dir.path().join("pip.sh").display()),
            )
            .env(
                "WHEEL",
                self.dir.path().join("toy_model-1.0-py3-none-any.whl"),
            )
            .env_remove("SLOW_PIP");
        c
    }

    fn files_under_home(&self) -> Vec<String> {
        fn walk(p: &Path, root: &Path, out: &mut Vec<String>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path, root, out);
                    } else {
                        out.push(path.strip_prefix(root).unwrap().display().to_string());
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.home, &self.home, &mut out);
        out
    }
}

fn walkdir_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir_files(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn killed_fetch_leaves_no_half_asset_and_rerun_completes() {
    let reg = FakeRegistry::new();
    let marker = reg.dir.path().join("half-written");
    let tmp = reg.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut child = reg
        .cmd()
        .args(["assets", "fetch", "toy"])
        .env("SLOW_PIP", &marker)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !marker.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "download never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup code runs
    child.wait().unwrap();
    let pid_file = PathBuf::from(format!("{}.pid", marker.display()));
    if let Ok(pid) = std::fs::read_to_string(pid_file) {
        let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
    }
    // The kill caught a partial download (in the temp folder) ...
    let partial: Vec<_> = walkdir_files(&tmp);
    assert!(
        partial.iter().any(|f| f.ends_with(".whl")),
        "the kill should have caught a partial download: {partial:?}"
    );
    // ... and nothing at all is under $MOSAIC_HOME.
    let files = reg.files_under_home();
    assert!(files.is_empty(), "{files:?}");
    assert!(!reg.home.join("assets/toy").exists());
    assert_clean_error(
        &run(reg.cmd().args(["inspect", "toy"])),
        &["toy", "not fetched"],
    );

    // Re-running completes.
    let o = run(reg.cmd().args(["assets", "fetch", "toy"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let files = reg.files_under_home();
    assert!(
        files.iter().all(|f| f.starts_with("assets/toy/")),
        "{files:?}"
    );
    let o = run(reg.cmd().args(["assets", "verify", "toy"]));
    assert!(
        o.status.success() && stdout(&o).contains("toy: ok (2 files)"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = run(reg.cmd().args(["inspect", "toy", "--json"]));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["total_params"], 65_536);
}

#[test]
fn checksum_mismatch_and_tampering_are_reported() {
    let reg = FakeRegistry::new();
    // A package whose bytes differ from the recorded sha256 is refused.
    let other = reg.dir.path().join("other.whl");
    std::fs::write(&other, b"not the wheel").unwrap();
    let o = run(reg
        .cmd()
        .env("WHEEL", &other)
        .args(["assets", "fetch", "toy"]));
    assert_clean_error(&o, &["toy_model-1.0-py3-none-any.whl", "sha256 mismatch"]);
    assert!(!reg.home.join("assets/toy").exists());

    let o = run(reg.cmd().args(["assets", "fetch", "toy"]));
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(reg.home.join("assets/toy/config.json"), b"{}").unwrap();
    let o = run(reg.cmd().args(["assets", "verify", "toy"]));
    assert!(!o.status.success());
    assert!(stdout(&o).contains("config.json: sha256"), "{}", stdout(&o));
    // --force restores it.
    let o = run(reg.cmd().args(["assets", "fetch", "--force", "toy"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        run(reg.cmd().args(["assets", "verify", "toy"]))
            .status
            .success()
    );
}

#[test]
fn missing_package_client_is_a_clear_error() {
    let reg = FakeRegistry::new();
    let o = run(reg
        .cmd()
        .env("MOSAIC_PIP", "/nonexistent/pip")
        .args(["assets", "fetch", "toy"]));
    assert_clean_error(&o, &["asset `toy`", "/nonexistent/pip"]);
}

// ---------------------------------------------------------------- hub cache

#[test]
fn hub_cache_layout_resolves_offline() {
    let root = tempfile::tempdir().unwrap();
    let commit = "89abcdef0123456789abcdef0123456789abcdef";
    let repo = root.path().join("models--acme--tiny-bert");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    let mut t = HashMap::new();
    t.insert(
        "encoder.weight".to_string(),
        Tensor::zeros((4, 6), DType::F32, &Device::Cpu).unwrap(),
    );
    mosaic_core::checkpoint::save_safetensors(&repo.join("blobs/aaa111"), &t).unwrap();
    std::fs::write(repo.join("blobs/bbb222"), br#"{"model_type":"bert"}"#).unwrap();
    std::os::unix::fs::symlink("../../blobs/aaa111", snap.join("model.safetensors")).unwrap();
    std::os::unix::fs::symlink("../../blobs/bbb222", snap.join("config.json")).unwrap();

    let hub = |args: &[&str]| {
        run(mosaic()
            .env("HF_HUB_CACHE", root.path())
            .env("HF_HUB_OFFLINE", "1")
            .args(args))
    };
    let o = hub(&["inspect", "acme/tiny-bert", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["total_params"], 24);
    assert_eq!(j["config"]["model_type"], "bert");
    let pinned = format!("acme/tiny-bert@{commit}");
    let o = hub(&["inspect", &pinned, "--summary"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_error(
        &hub(&["inspect", "acme/absent"]),
        &["acme/absent", "config.json", "HF_HUB_OFFLINE"],
    );
}
