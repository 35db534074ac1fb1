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

/// A 16-bit mono WAV of `x` at 16 kHz.
fn write_wav(path: &std::path::Path, x: &[f32]) {
    let data: Vec<u8> = x
        .iter()
        .flat_map(|&v| ((v * 32768.0).round().clamp(-32768.0, 32767.0) as i16).to_le_bytes())
        .collect();
    let mut w = Vec::new();
    w.extend(b"RIFF");
    w.extend(((36 + data.len()) as u32).to_le_bytes());
    w.extend(b"WAVEfmt ");
    w.extend(16u32.to_le_bytes());
    w.extend(1u16.to_le_bytes()); // PCM
    w.extend(1u16.to_le_bytes()); // mono
    w.extend(16000u32.to_le_bytes());
    w.extend(32000u32.to_le_bytes());
    w.extend(2u16.to_le_bytes());
    w.extend(16u16.to_le_bytes());
    w.extend(b"data");
    w.extend((data.len() as u32).to_le_bytes());
    w.extend(data);
    std::fs::write(path, w).unwrap();
}

fn run_json(args: &[&str]) -> Vec<serde_json::Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Beam search, greedy, VAD gating, the thresholds and a Hugging Face
/// folder, through the flags.
#[test]
fn beam_vad_and_hf_flags() {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    for a in ["whisper-tiny-en", "pocketsphinx-testdata", "silero-vad"] {
        assert!(store.is_fetched(a), "fetch {a} (scripts/test.sh does)");
    }
    let ps = store.path("pocketsphinx-testdata").unwrap();
    let load = |rel: &str| {
        mosaic_data::audio::load_audio(&ps.join(rel), &Default::default())
            .unwrap()
            .samples
    };
    // 3 s of silence, an utterance, 5 s of silence, another utterance.
    let a = load("librivox/sense_and_sensibility_01_austen_64kb-0930.wav");
    let b = load("cards/001.wav");
    let mut x = vec![0f32; 48000];
    x.extend(&a);
    x.extend(vec![0f32; 80000]);
    let b_start = x.len() as f64 / 16000.0;
    x.extend(&b);
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("gaps.wav");
    write_wav(&wav, &x);
    let w = wav.to_str().unwrap();
    let base = ["transcribe", "--model", "whisper-tiny-en", "--json"];
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend(extra);
        v.push(w);
        run_json(&v)
    };
    // Beam 5 with VAD: two speech chunks, times on the original timeline.
    let beam = with(&["--beam-size", "5", "--vad"]);
    let l = &beam[0];
    let chunks = l["speech_chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 2, "{l}");
    assert!(
        chunks[0][0].as_f64().unwrap() >= 2.5 && chunks[1][0].as_f64().unwrap() >= b_start - 0.5
    );
    assert!(l["duration_after_vad"].as_f64().unwrap() < l["duration"].as_f64().unwrap() - 7.0);
    let text = l["text"].as_str().unwrap().to_lowercase();
    assert!(text.contains("amiable himself"), "{text}");
    let segs = l["segments"].as_array().unwrap();
    assert!(segs[0]["start"].as_f64().unwrap() >= 2.5, "{l}");
    assert!(
        segs.last().unwrap()["end"].as_f64().unwrap() > b_start,
        "{l}"
    );
    for s in segs {
        assert_eq!(s["temperature"].as_f64(), Some(0.0));
    }
    // Greedy without VAD, fallback off, thresholds off: same words, times from 0.
    let greedy = with(&[
        "--beam-size",
        "1",
        "--no-vad",
        "--temperatures",
        "0",
        "--log-prob-threshold",
        "none",
        "--compression-ratio-threshold",
        "none",
        "--no-speech-threshold=0.9",
        "--no-condition-on-previous-text",
    ]);
    assert!(greedy[0].get("speech_chunks").is_none());
    let gtext = greedy[0]["text"].as_str().unwrap().to_lowercase();
    assert!(gtext.contains("amiable himself"), "{gtext}");
    // --vad then --no-vad: the last one wins.
    let off = with(&["--beam-size", "1", "--vad", "--no-vad"]);
    assert!(off[0].get("speech_chunks").is_none());
    // A Hugging Face folder converted from the CTranslate2 asset gives the same result.
    let asset = store.path("whisper-tiny-en").unwrap();
    let hf = dir.path().join("hf");
    mosaic_models::pretrained::WhisperModel::from_pretrained(&asset)
        .unwrap()
        .save_hf(&hf)
        .unwrap();
    std::fs::copy(asset.join("tokenizer.json"), hf.join("tokenizer.json")).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(asset.join("config.json")).unwrap()).unwrap();
    std::fs::write(
        hf.join("generation_config.json"),
        serde_json::json!({"suppress_tokens": cfg["suppress_ids"],
            "begin_suppress_tokens": cfg["suppress_ids_begin"]})
        .to_string(),
    )
    .unwrap();
    let mut v = vec!["transcribe", "--model", hf.to_str().unwrap(), "--json"];
    v.extend(["--beam-size", "5", "--vad", w]);
    let from_hf = run_json(&v);
    assert_eq!(from_hf[0]["segments"], l["segments"]);
    // Bad values are named.
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args([
            "transcribe",
            "--model",
            "whisper-tiny-en",
            "--temperatures",
            "0,x",
            w,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--temperatures"));
    let o = Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args([
            "transcribe",
            "--model",
            "whisper-tiny-en",
            "--vad",
            "--vad-model",
        ])
        .arg(dir.path().join("no-such-vad"))
        .arg(w)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-vad"));
}
