//! `mosaic transcribe` on real recordings with the real Whisper tiny.en.

use std::process::{Command, Stdio};

#[test]
fn transcribes_real_speech_with_timestamps() {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    for a in [
        "whisper-tiny-en",
        "pocketsphinx-testdata",
        "asterisk-sounds",
    ] {
        assert!(store.is_fetched(a), "fetch {a} (scripts/test.sh does)");
    }
    let ps = store
        .path("pocketsphinx-testdata")
        .unwrap()
        .join("librivox/sense_and_sensibility_01_austen_64kb-0930.wav");
    let ast = store
        .path("asterisk-sounds")
        .unwrap()
        .join("en_US_f_Allison/tt-weasels.wav");
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args(["transcribe", "--model", "whisper-tiny-en", "--json"])
        .arg(&ps)
        .arg(&ast)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    // Reference transcripts: "he might even have been made amiable himself",
    // "weasels have eaten our phone system".
    let t0 = lines[0]["text"].as_str().unwrap().to_lowercase();
    assert!(t0.contains("amiable himself"), "{t0}");
    let t1 = lines[1]["text"].as_str().unwrap().to_lowercase();
    assert!(t1.contains("weasels have eaten our phone system"), "{t1}");
    for l in &lines {
        for s in l["segments"].as_array().unwrap() {
            let (a, b) = (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap());
            assert!(a >= 0.0 && b > a && b <= 30.0, "{s}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("lying.wav");
    std::fs::write(&bad, b"RIFF\x10\x00\x00\x00WAVEjunk").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args(["transcribe", "--model", "whisper-tiny-en"])
        .arg(&bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lying.wav"));
}
