//! `mosaic ocr` on the real PP-OCRv4 asset against rapidocr-onnxruntime's
//! lines (crates/mosaic-ocr/tests/fixtures/ocr_reference.json).

use std::path::Path;
use std::process::{Command, Stdio};

#[test]
#[cfg(feature = "ocr")]
fn ocr_prints_rapidocr_lines_as_json_and_names_bad_files() {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("pp-ocrv4"),
        "fetch pp-ocrv4 (scripts/test.sh does)"
    );
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mosaic-ocr/tests/fixtures");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("ocr_reference.json")).unwrap())
            .unwrap();
    let pick = [
        "ocr_receipt.png",
        "ocr_upside_down.png",
        "ocr_wide_strip.png",
    ];
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args(["ocr", "--model", "pp-ocrv4", "--json"])
        .args(pick.iter().map(|f| fixtures.join(f)))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), pick.len());
    for (got, file) in out.iter().zip(pick) {
        assert!(got["image"].as_str().unwrap().ends_with(file));
        let want = reference["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["file"] == file)
            .unwrap();
        let texts = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|l| l["text"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(texts(&got["lines"]), texts(&want["lines"]), "{file}");
        for (g, w) in got["lines"]
            .as_array()
            .unwrap()
            .iter()
            .zip(want["lines"].as_array().unwrap())
        {
            for k in 0..4 {
                for d in 0..2 {
                    let (a, b) = (
                        g["box"][k][d].as_f64().unwrap(),
                        w["box"][k][d].as_f64().unwrap(),
                    );
                    assert!((a - b).abs() <= 1.0, "{file}: {} vs {}", g["box"], w["box"]);
                }
            }
            assert!((g["score"].as_f64().unwrap() - w["score"].as_f64().unwrap()).abs() < 1e-3);
        }
    }

    // text output: one header line per image, one line per text line
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args(["ocr", "--model", "pp-ocrv4"])
        .arg(fixtures.join("ocr_receipt.png"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Total:$1,284.50"), "{text}");

    // a broken image: exit code 1 and the file named
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n junk").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args(["ocr", "--model", "pp-ocrv4"])
        .arg(&bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("broken.png"));

    // an options file with an unknown key is refused, naming the key
    let opts = dir.path().join("ocr.toml");
    std::fs::write(&opts, "box_thresh = 0.6\nbogus_key = 1\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args(["ocr", "--options"])
        .arg(&opts)
        .arg(fixtures.join("ocr_receipt.png"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bogus_key"));
}
