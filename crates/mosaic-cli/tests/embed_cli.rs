//! `mosaic embed` on the real MiniLM asset against sentence-transformers'
//! embeddings of the same real sentences.

use std::path::Path;
use std::process::{Command, Stdio};

use mosaic_core::candle::Device;

#[test]
fn embed_matches_sentence_transformers_and_writes_every_format() {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("minilm-l6-v2"),
        "fetch minilm-l6-v2 (scripts/test.sh does)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let sentences: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("mosaic-data/tests/fixtures/text/sentences.json")).unwrap(),
    )
    .unwrap();
    let real: Vec<&str> = sentences["real"]
        .as_array()
        .unwrap()
        .iter()
        .take(40)
        .map(|s| s.as_str().unwrap())
        .collect();
    let want: std::collections::HashMap<_, _> = mosaic_core::formats::load_tensors(
        &root.join("mosaic-models/tests/fixtures/text/minilm_real.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
    .into_iter()
    .collect();
    let want: Vec<Vec<f32>> = want["embeddings"]
        .narrow(0, 0, real.len())
        .unwrap()
        .to_vec2()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("s.txt");
    std::fs::write(&input, real.join("\n")).unwrap();
    for out in ["e.jsonl", "e.npy", "e.safetensors"] {
        let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
            .args(["embed", "--model", "minilm-l6-v2", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(dir.path().join(out))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("e.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), real.len());
    for (l, w) in lines.iter().zip(&want) {
        let e: Vec<f32> = l["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let cos: f32 = e.iter().zip(w).map(|(a, b)| a * b).sum::<f32>()
            / (e.iter().map(|a| a * a).sum::<f32>().sqrt()
                * w.iter().map(|a| a * a).sum::<f32>().sqrt());
        assert!(cos >= 0.9999, "{}: cosine {cos}", l["text"]);
    }
    let st: std::collections::HashMap<_, _> =
        mosaic_core::formats::load_tensors(&dir.path().join("e.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(st["embeddings"].dims(), &[real.len(), 384]);
    let npy = std::fs::read(dir.path().join("e.npy")).unwrap();
    let (shape, values) = mosaic_core::formats::npy::read_npy(&npy, "e.npy").unwrap();
    assert_eq!(shape, vec![real.len(), 384]);
    assert!((values[0] as f32 - want[0][0]).abs() < 1e-5);
    // Bad input: an empty file.
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args(["embed", "--model", "minilm-l6-v2", "--input"])
        .arg(&empty)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to embed"));
}
