//! `mosaic classify` on the real EfficientNet-Lite0 against PyTorch's top-5.

use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn classify_matches_pytorch_top5_with_names() {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    for a in ["efficientnet-lite0", "skimage-photos"] {
        assert!(store.is_fetched(a), "fetch {a} (scripts/test.sh does)");
    }
    let photos = store.path("skimage-photos").unwrap();
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../mosaic-models/tests/fixtures/vision/efficientnet_lite0.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let pick = ["astronaut", "coffee", "camera", "rocket"];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mosaic"));
    cmd.args(["classify", "--model", "efficientnet-lite0", "--json"]);
    for p in pick {
        let entry = meta["photos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["stem"] == p)
            .unwrap();
        cmd.arg(
            photos.join(
                Path::new(entry["file"].as_str().unwrap())
                    .file_name()
                    .unwrap(),
            ),
        );
    }
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), pick.len());
    for (line, p) in lines.iter().zip(pick) {
        let entry = meta["photos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["stem"] == p)
            .unwrap();
        let got: Vec<u64> = line["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["index"].as_u64().unwrap())
            .collect();
        let want: Vec<u64> = entry["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "{p}");
        let p0 = line["top"][0]["probability"].as_f64().unwrap();
        let w0 = entry["top5_probs"][0].as_f64().unwrap();
        // JPEGs (rocket) decode a grey level apart from libjpeg-turbo.
        assert!(
            (p0 - w0).abs() < if p == "rocket" { 2e-2 } else { 1e-4 },
            "{p}: {p0} vs {w0}"
        );
    }
    assert_eq!(lines[1]["top"][0]["label"], "espresso");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff junk").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args(["classify", "--model", "efficientnet-lite0"])
        .arg(&bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken.jpg"));
}
