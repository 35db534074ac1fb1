//! Whisper tiny.en (CTranslate2 weights) transcribing real speech.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use mosaic_data::audio::vad::SpeechSegment;
use mosaic_data::audio::{WhisperFeatureConfig, WhisperFeatureExtractor, load_audio, resample};
use mosaic_data::text::{Padding, TextConfig, TextTokenizer};
use mosaic_models::pretrained::whisper::{
    GreedyOptions, SampleRng, TextSegment, TranscribeOptions, VadFilter, WhisperModel,
    WhisperTokens, WhisperTranscriber, split_segments,
};

fn asset(name: &str) -> PathBuf {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched(name),
        "fetch {name} (scripts/test.sh does)"
    );
    store.path(name).unwrap()
}

/// Transcribes one file (≤ 30 s): (generated ids, text).
fn transcribe(
    model: &WhisperModel,
    tok: &TextTokenizer,
    opts: &GreedyOptions,
    wav: &std::path::Path,
) -> (Vec<u32>, String) {
    let a = load_audio(wav, &Default::default()).unwrap();
    let x = resample(&a.to_mono(), a.sample_rate, 16000).unwrap();
    let fe = WhisperFeatureExtractor::new(WhisperFeatureConfig::default()).unwrap();
    let mel = Tensor::from_vec(fe.extract(&x).unwrap(), (1, 80, 3000), &Device::Cpu).unwrap();
    let enc = model.encode(&mel).unwrap();
    let t = WhisperTokens::ENGLISH;
    let ids = model.generate_greedy(&enc, &[t.sot], t, opts).unwrap();
    let (segs, _) = split_segments(&ids, t, 0, x.len() / 160);
    let text: Vec<String> = segs
        .iter()
        .map(|s| tok.decode(&s.tokens, true).unwrap())
        .collect();
    (ids, text.concat().trim().to_string())
}

/// faster-whisper's greedy call of the fixtures (beam 1, temperature 0,
/// no previous-text prompt, no VAD), keeping the checkpoint's suppress lists.
fn greedy(tr: &mut WhisperTranscriber) {
    tr.options = tr.options.clone().with_greedy();
    assert_eq!(tr.options.decode.suppress.len(), 90);
    assert_eq!(TranscribeOptions::greedy().decode.beam_size, 1);
}

/// Segments equal faster-whisper's: start/end exactly (float64), text and ids.
fn assert_segments(file: &str, ours: &[TextSegment], want: &serde_json::Value) {
    let want = want.as_array().unwrap();
    assert_eq!(ours.len(), want.len(), "{file}: segment count");
    for (a, b) in ours.iter().zip(want) {
        assert_eq!(a.start, b["start"].as_f64().unwrap(), "{file}: start");
        assert_eq!(a.end, b["end"].as_f64().unwrap(), "{file}: end");
        assert_eq!(a.text, b["text"].as_str().unwrap(), "{file}: text");
        let ids: Vec<u32> = b["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(a.tokens, ids, "{file}: segment ids");
    }
}

#[test]
fn tiny_en_transcribes_real_recordings() {
    let dir = asset("whisper-tiny-en");
    let model = WhisperModel::from_pretrained(&dir).unwrap();
    let tok = TextTokenizer::from_file(
        &dir.join("tokenizer.json"),
        TextConfig {
            max_length: None,
            padding: Padding::None,
            add_special_tokens: false,
        },
    )
    .unwrap();
    let opts = GreedyOptions::from_config(&dir).unwrap();
    let ps = asset("pocketsphinx-testdata");
    let (_, text) = transcribe(
        &model,
        &tok,
        &opts,
        &ps.join("librivox/sense_and_sensibility_01_austen_64kb-0880.wav"),
    );
    eprintln!("librivox-0880: {text}");
    let ast = asset("asterisk-sounds");
    let (_, t2) = transcribe(
        &model,
        &tok,
        &opts,
        &ast.join("en_US_f_Allison/digits/7.wav"),
    );
    eprintln!("digits/7: {t2}");
    assert!(
        t2.contains('7') || t2.to_lowercase().contains("seven"),
        "{t2}"
    );
    assert!(text.to_lowercase().contains("young man"), "{text}");
}

/// Window-by-window generated ids against faster-whisper 1.2.1 /
/// CTranslate2 4.8.5 (greedy, temperature 0, timestamps) on real speech:
/// all pocketsphinx recordings and every 12th Asterisk prompt
/// (`WHISPER_PARITY_STRIDE=1` for all 578 files): every window's ids
/// (no-speech windows included) and, where they agree, every segment's
/// start, end, text and ids, and every window's no-speech skip and
/// compression ratio (zlib's size, exactly).
#[test]
fn token_ids_match_faster_whisper() {
    let dir = asset("whisper-tiny-en");
    let mut tr =
        mosaic_models::pretrained::whisper::WhisperTranscriber::from_pretrained(&dir).unwrap();
    greedy(&mut tr);
    let fx: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/audio/whisper_tiny_en.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    let root = store.home().join("assets");
    let stride: usize = std::env::var("WHISPER_PARITY_STRIDE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let (mut same, mut total) = (0, 0);
    let mut diffs = Vec::new();
    for (i, f) in fx["files"].as_array().unwrap().iter().enumerate() {
        let file = f["file"].as_str().unwrap();
        if file.starts_with("asterisk") && i % stride != 0 {
            continue;
        }
        let a = load_audio(&root.join(file), &Default::default()).unwrap();
        let x = resample(&a.to_mono(), a.sample_rate, 16000).unwrap();
        let full = tr.transcribe_full(&x).unwrap();
        let ours: Vec<Vec<u32>> = full.windows.iter().map(|w| w.tokens.clone()).collect();
        let want: Vec<Vec<u32>> = f["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                w["tokens"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect();
        total += 1;
        if ours == want {
            assert_segments(file, &full.segments, &f["segments"]);
            for (a, b) in full.windows.iter().zip(f["windows"].as_array().unwrap()) {
                assert_eq!(
                    a.skipped_no_speech,
                    b["skipped_no_speech"].as_bool().unwrap(),
                    "{file}: no-speech skip (ours: p {} avg {}; faster-whisper: p {} avg {})",
                    a.no_speech_prob,
                    a.avg_logprob,
                    b["no_speech_prob"],
                    b["avg_logprob"]
                );
                // Equal; serde_json's float parser may be one bit off.
                let cr = b["compression_ratio"].as_f64().unwrap();
                assert!(
                    (a.compression_ratio - cr).abs() <= 1e-12 * cr,
                    "{file}: compression ratio {} vs {cr}",
                    a.compression_ratio
                );
            }
            same += 1;
        } else {
            diffs.push(format!("{file}: ours {ours:?} vs {want:?}"));
        }
    }
    for d in diffs.iter().take(10) {
        eprintln!("differs: {d}");
    }
    eprintln!("whisper token parity: {same}/{total} files identical");
    assert!(
        same as f64 >= 0.95 * total as f64,
        "{same}/{total} identical"
    );
}

fn fixture(name: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/audio")
                .join(name),
        )
        .unwrap(),
    )
    .unwrap()
}

/// A recording under `$MOSAIC_HOME/assets/`, mono, at 16 kHz.
fn audio_16k(rel: &str) -> Vec<f32> {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    let a = load_audio(&store.home().join("assets").join(rel), &Default::default()).unwrap();
    resample(&a.to_mono(), a.sample_rate, 16000).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

/// Beam search (beam 5, patience 1, length penalty 1, previous-text prompts)
/// against faster-whisper 1.2.1 / CTranslate2 4.8.5 on 35 real recordings
/// (all pocketsphinx files, every 24th Asterisk prompt, the two
/// multi-window prompts): every window's prompt and ids, the no-speech
/// skip, every segment exactly, and the window statistics.
#[test]
fn beam_search_matches_faster_whisper() {
    let dir = asset("whisper-tiny-en");
    let mut tr = WhisperTranscriber::from_pretrained(&dir).unwrap();
    let fx = fixture("whisper_tiny_en_beam.json");
    let o = &mut tr.options;
    assert_eq!(o.decode.beam_size, 5);
    o.fallback.temperatures = vec![0.0];
    assert!(o.condition_on_previous_text && o.vad.is_none());
    let (mut same, mut total, mut windows) = (0, 0, 0);
    let (mut max_lp, mut max_ns, mut max_cr) = (0f64, 0f64, 0f64);
    let mut diffs = Vec::new();
    for f in fx["files"].as_array().unwrap() {
        let file = f["file"].as_str().unwrap();
        let x = audio_16k(file);
        let full = tr.transcribe_full(&x).unwrap();
        let want = f["windows"].as_array().unwrap();
        total += 1;
        let ours: Vec<(Vec<u32>, Vec<u32>)> = full
            .windows
            .iter()
            .map(|w| (w.prompt.clone(), w.tokens.clone()))
            .collect();
        let theirs: Vec<(Vec<u32>, Vec<u32>)> = want
            .iter()
            .map(|w| (ids(&w["prompt"]), ids(&w["tokens"])))
            .collect();
        if ours != theirs {
            diffs.push(format!(
                "{file}: ours {ours:?}\n   faster-whisper {theirs:?}"
            ));
            continue;
        }
        same += 1;
        for (a, b) in full.windows.iter().zip(want) {
            windows += 1;
            assert_eq!(
                a.skipped_no_speech,
                b["skipped_no_speech"].as_bool().unwrap()
            );
            max_lp = max_lp.max((a.avg_logprob - b["avg_logprob"].as_f64().unwrap()).abs());
            max_ns = max_ns.max((a.no_speech_prob - b["no_speech_prob"].as_f64().unwrap()).abs());
            max_cr =
                max_cr.max((a.compression_ratio - b["compression_ratio"].as_f64().unwrap()).abs());
        }
        assert_segments(file, &full.segments, &f["segments"]);
    }
    for d in &diffs {
        eprintln!("differs: {d}");
    }
    eprintln!(
        "beam parity: {same}/{total} files identical ({windows} windows); max |Δ avg_logprob| {max_lp:.2e}, \
         |Δ no_speech_prob| {max_ns:.2e}, |Δ compression ratio| {max_cr:.2e}"
    );
    assert!(same as f64 >= 0.95 * total as f64, "{same}/{total}");
    // Compression ratios equal (serde_json's float parser may be one bit off).
    assert!(max_lp < 1e-3 && max_ns < 1e-3 && max_cr < 1e-12);
}

/// `vad_filter=True` against faster-whisper on real speech with inserted
/// silence (three pocketsphinx recordings joined by 3 s and 2.5 s of
/// 0.0) and on a 73 s Asterisk prompt. Three levels:
/// 1. faster-whisper's own speech chunks, fed to `transcribe_chunks`:
///    identical segments (concatenation, decoding, timestamp restoring);
/// 2. Mosaic's Silero (the silero-vad asset, v6.2) end to end against
///    faster-whisper with that same model swapped in: identical chunks and
///    segments;
/// 3. against stock faster-whisper (its own Silero v6.0 ONNX weights,
///    which differ): chunk boundaries and timestamps compared, reported.
#[test]
fn vad_filter_matches_faster_whisper() {
    let dir = asset("whisper-tiny-en");
    let mut tr = WhisperTranscriber::from_pretrained(&dir).unwrap();
    greedy(&mut tr);
    tr.load_vad(&asset("silero-vad")).unwrap();
    tr.options.vad = Some(VadFilter::default());
    let fx = fixture("whisper_tiny_en_vad.json");
    let chunks_of = |v: &serde_json::Value| -> Vec<SpeechSegment> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| SpeechSegment {
                start: c["start"].as_u64().unwrap() as usize,
                end: c["end"].as_u64().unwrap() as usize,
            })
            .collect()
    };
    for (name, r) in fx["inputs"].as_object().unwrap() {
        let x: Vec<f32> = if name == "concat" {
            let mut x = Vec::new();
            for part in r["recipe"].as_array().unwrap() {
                x.extend(audio_16k(part["file"].as_str().unwrap()));
                let gap = part["silence_after_s"].as_f64().unwrap();
                x.extend(vec![0f32; (gap * 16000.0).round() as usize]);
            }
            x
        } else {
            audio_16k(r["file"].as_str().unwrap())
        };
        assert_eq!(x.len() as u64, r["n_samples_16k"].as_u64().unwrap());
        // 1. faster-whisper's chunks → identical segments, for both VAD models' chunks.
        for variant in ["faster_whisper_onnx", "silero_vad_jit"] {
            let v = &r[variant];
            let t = tr
                .transcribe_chunks(&x, &chunks_of(&v["speech_chunks"]))
                .unwrap();
            assert_segments(&format!("{name}/{variant}"), &t.segments, &v["segments"]);
            assert_eq!(
                t.duration_after_vad,
                v["duration_after_vad"].as_f64().unwrap()
            );
        }
        // 2. Mosaic's VAD end to end = faster-whisper with the same Silero model.
        let v = &r["silero_vad_jit"];
        let full = tr.transcribe_full(&x).unwrap();
        assert_eq!(
            full.speech_chunks.as_deref().unwrap(),
            chunks_of(&v["speech_chunks"]).as_slice(),
            "{name}: speech chunks"
        );
        assert_segments(&format!("{name}/mosaic"), &full.segments, &v["segments"]);
        // 3. Stock faster-whisper (different Silero weights): report.
        let s = &r["faster_whisper_onnx"];
        let theirs = chunks_of(&s["speech_chunks"]);
        let ours = full.speech_chunks.unwrap();
        let chunk_diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| {
                (a.start as f64 - b.start as f64)
                    .abs()
                    .max((a.end as f64 - b.end as f64).abs())
                    / 16000.0
            })
            .fold(0f64, f64::max);
        let segs = s["segments"].as_array().unwrap();
        let ts_diff = full
            .segments
            .iter()
            .zip(segs)
            .map(|(a, b)| {
                (a.start - b["start"].as_f64().unwrap())
                    .abs()
                    .max((a.end - b["end"].as_f64().unwrap()).abs())
            })
            .fold(0f64, f64::max);
        let text: String = full.segments.iter().map(|s| s.text.as_str()).collect();
        eprintln!(
            "{name}: vs stock faster-whisper: {} / {} chunks, boundaries within {:.3} s; {} / {} segments, \
             timestamps within {ts_diff:.3} s; same text: {}",
            ours.len(),
            theirs.len(),
            chunk_diff,
            full.segments.len(),
            segs.len(),
            text == s["text"].as_str().unwrap()
        );
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(full.segments.len(), segs.len());
        assert!(chunk_diff <= 0.064, "{chunk_diff}");
        assert!(ts_diff <= 0.1, "{ts_diff}");
    }
}

/// Timestamps land back on the original timeline: speech after inserted
/// silence gets times after the silence.
#[test]
fn vad_restores_timestamps_across_inserted_silence() {
    let dir = asset("whisper-tiny-en");
    let mut tr = WhisperTranscriber::from_pretrained(&dir).unwrap();
    greedy(&mut tr);
    tr.load_vad(&asset("silero-vad")).unwrap();
    tr.options.vad = Some(VadFilter::default());
    let a = audio_16k("pocketsphinx-testdata/cards/001.wav");
    let b = audio_16k("asterisk-sounds/en_US_f_Allison/tt-weasels.wav");
    // 4 s of silence, a, 6 s of silence, b, 1 s of silence.
    let mut x = vec![0f32; 64000];
    x.extend(&a);
    x.extend(vec![0f32; 96000]);
    let b_start = x.len();
    x.extend(&b);
    x.extend(vec![0f32; 16000]);
    let t = tr.transcribe_full(&x).unwrap();
    let chunks = t.speech_chunks.as_ref().unwrap();
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert!(t.duration_after_vad < 0.6 * t.duration);
    let text: String = t.segments.iter().map(|s| s.text.clone()).collect();
    assert!(text.to_lowercase().contains("weasels have eaten"), "{text}");
    // The first segment starts in the first speech chunk, the last one ends
    // in the second: times are back on the original timeline, past the 6 s
    // of removed silence (the model may make one segment of both parts).
    let secs = |n: usize| n as f64 / 16000.0;
    let (first, last) = (&t.segments[0], t.segments.last().unwrap());
    assert!(
        first.start >= secs(chunks[0].start) - 0.01 && first.start <= secs(chunks[0].end),
        "{first:?} {chunks:?}"
    );
    assert!(
        last.end >= secs(chunks[1].start) && last.end <= secs(chunks[1].end) + 0.01,
        "{last:?} {chunks:?}"
    );
    assert!(secs(chunks[0].start) >= 4.0 - 0.41 && secs(chunks[1].start) >= secs(b_start) - 0.41);
    assert!(last.end > secs(b_start) && last.end <= secs(x.len()));
    // Without VAD the same words come out.
    tr.options.vad = None;
    let plain: String = tr
        .transcribe(&x)
        .unwrap()
        .iter()
        .map(|s| s.text.clone())
        .collect();
    assert!(
        plain.to_lowercase().contains("weasels have eaten"),
        "{plain}"
    );
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn hf_fixture() -> (PathBuf, std::collections::HashMap<String, Tensor>) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio");
    let io =
        candle_core::safetensors::load(root.join("whisper_hf_tiny_io.safetensors"), &Device::Cpu)
            .unwrap();
    (root.join("whisper_hf_tiny"), io)
}

/// The Hugging Face layout: a tiny random `WhisperForConditionalGeneration`
/// (d_model 64, 2 + 2 layers, 4 heads, vocabulary 400, 200 mel frames)
/// against transformers 5.24: encoder output, teacher-forced logits, the
/// same logits through the KV cache one id at a time, and 20 greedy steps.
#[test]
fn hf_layout_matches_transformers() {
    let (dir, io) = hf_fixture();
    let m = WhisperModel::load(&dir).unwrap();
    assert_eq!(
        (m.vocab_size(), m.n_mels(), m.max_source_positions()),
        (400, 80, 100)
    );
    let enc = m.encode(&io["input_features"]).unwrap();
    let d_enc = max_abs_diff(&enc, &io["encoder_last_hidden_state"]);
    // Teacher forcing: all 12 positions at once.
    let ids = io["decoder_input_ids"]
        .to_dtype(candle_core::DType::U32)
        .unwrap();
    let want = &io["teacher_forced_logits"];
    let mut st = m.start(&enc).unwrap();
    let d_tf = max_abs_diff(&m.decode_all(&ids, &mut st).unwrap(), want);
    // The same through the KV cache, one position per call.
    let mut st = m.start(&enc).unwrap();
    let mut d_kv = 0f32;
    for i in 0..ids.dim(1).unwrap() {
        let step = m.decode(&ids.narrow(1, i, 1).unwrap(), &mut st).unwrap();
        d_kv = d_kv.max(max_abs_diff(
            &step,
            &want.narrow(1, i, 1).unwrap().squeeze(1).unwrap(),
        ));
    }
    // Greedy, 20 steps, <eos> (2) disabled, from <start> (1), both inputs as one batch.
    let mut st = m.start(&enc).unwrap();
    let mut next = Tensor::new(&[[1u32], [1]], &Device::Cpu).unwrap();
    let mut got: Vec<Vec<u32>> = vec![Vec::new(); 2];
    let mut d_greedy = 0f32;
    let want_steps = &io["greedy_step_logits"];
    for s in 0..20 {
        let logits = m.decode(&next, &mut st).unwrap();
        d_greedy = d_greedy.max(max_abs_diff(
            &logits,
            &want_steps.narrow(1, s, 1).unwrap().squeeze(1).unwrap(),
        ));
        let mut rows: Vec<Vec<f32>> = logits.to_vec2().unwrap();
        let mut ids_now = Vec::new();
        for (b, row) in rows.iter_mut().enumerate() {
            row[2] = f32::NEG_INFINITY;
            let best = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0 as u32;
            got[b].push(best);
            ids_now.push(best);
        }
        next = Tensor::new(ids_now.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(1)
            .unwrap();
    }
    let want_ids: Vec<Vec<i64>> = io["greedy_ids"].to_vec2().unwrap();
    let want_ids: Vec<Vec<u32>> = want_ids
        .iter()
        .map(|r| r.iter().map(|&v| v as u32).collect())
        .collect();
    eprintln!(
        "whisper HF tiny: encoder {d_enc:.2e}, teacher-forced logits {d_tf:.2e}, KV-cached {d_kv:.2e}, \
         greedy step logits {d_greedy:.2e}; greedy ids {got:?}"
    );
    assert_eq!(got, want_ids);
    assert!(d_enc <= 1e-4 && d_tf <= 1e-4 && d_kv <= 1e-4 && d_greedy <= 1e-4);
}

/// A missing or mis-shaped tensor names itself and the expected shape.
#[test]
fn hf_layout_errors_name_the_tensor() {
    let (dir, _) = hf_fixture();
    let mut t =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("config.json"), tmp.path().join("config.json")).unwrap();
    let save = |t: &std::collections::HashMap<String, Tensor>| {
        candle_core::safetensors::save(t, tmp.path().join("model.safetensors")).unwrap()
    };
    let name = "model.decoder.layers.1.encoder_attn.k_proj.weight";
    let w = t.remove(name).unwrap();
    save(&t);
    let e = WhisperModel::from_hf_dir(tmp.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("decoder.layers.1.encoder_attn.k_proj.weight") && e.contains("missing"),
        "{e}"
    );
    t.insert(name.into(), w.narrow(0, 0, 32).unwrap());
    save(&t);
    let e = WhisperModel::from_hf_dir(tmp.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("k_proj.weight") && e.contains("[32, 64]") && e.contains("[64, 64]"),
        "{e}"
    );
    // A config that does not fit the tensors.
    t.insert(name.into(), w);
    save(&t);
    let cfg = std::fs::read_to_string(dir.join("config.json"))
        .unwrap()
        .replace("\"encoder_layers\": 2", "\"encoder_layers\": 3");
    std::fs::write(tmp.path().join("config.json"), cfg).unwrap();
    let e = WhisperModel::from_hf_dir(tmp.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("encoder.layers.2."), "{e}");
}

/// The real tiny.en converted from CTranslate2 to the Hugging Face layout
/// (`save_hf`) loads through `from_hf_dir` / the transcriber and gives the
/// same encoder output, logits and transcripts.
#[test]
fn ct2_checkpoint_round_trips_through_hf_layout() {
    let dir = asset("whisper-tiny-en");
    let ct2 = WhisperModel::from_pretrained(&dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    ct2.save_hf(tmp.path()).unwrap();
    std::fs::copy(
        dir.join("tokenizer.json"),
        tmp.path().join("tokenizer.json"),
    )
    .unwrap();
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    std::fs::write(
        tmp.path().join("generation_config.json"),
        serde_json::json!({
            "suppress_tokens": cfg["suppress_ids"],
            "begin_suppress_tokens": cfg["suppress_ids_begin"],
        })
        .to_string(),
    )
    .unwrap();
    let hf = WhisperModel::load(tmp.path()).unwrap();
    let x = audio_16k("pocketsphinx-testdata/cards/001.wav");
    let fe = WhisperFeatureExtractor::new(WhisperFeatureConfig::default()).unwrap();
    let mel = Tensor::from_vec(fe.extract(&x).unwrap(), (1, 80, 3000), &Device::Cpu).unwrap();
    let (e1, e2) = (ct2.encode(&mel).unwrap(), hf.encode(&mel).unwrap());
    assert_eq!(max_abs_diff(&e1, &e2), 0.0);
    let ids = Tensor::new(&[[50257u32, 50363, 1002, 286]], &Device::Cpu).unwrap();
    let l1 = ct2.decode(&ids, &mut ct2.start(&e1).unwrap()).unwrap();
    let l2 = hf.decode(&ids, &mut hf.start(&e2).unwrap()).unwrap();
    assert_eq!(max_abs_diff(&l1, &l2), 0.0);
    let mut a = WhisperTranscriber::from_pretrained(&dir).unwrap();
    let mut b = WhisperTranscriber::from_pretrained(tmp.path()).unwrap();
    assert_eq!(
        a.options, b.options,
        "suppress lists from generation_config.json"
    );
    greedy(&mut a);
    greedy(&mut b);
    let y = audio_16k("asterisk-sounds/en_US_f_Allison/tt-weasels.wav");
    for audio in [&x, &y] {
        assert_eq!(a.transcribe(audio).unwrap(), b.transcribe(audio).unwrap());
    }
}

/// faster-whisper's compression ratio uses zlib's size: 400 generated
/// strings (text-like, repeated phrases, random letters, runs) against
/// CPython's zlib 1.2.13.
#[test]
fn compression_ratio_uses_zlib_sizes() {
    let fx = fixture("zlib_sizes.json");
    let mut bad = Vec::new();
    let cases = fx["cases"].as_array().unwrap();
    for c in cases {
        let s = c[0].as_str().unwrap();
        let want = c[1].as_u64().unwrap() as f64;
        let got = mosaic_models::pretrained::whisper::compression_ratio(s);
        let expected = if s.is_empty() {
            0.0
        } else {
            s.len() as f64 / want
        };
        if got != expected {
            bad.push(format!("{} bytes: {got} vs {expected}", s.len()));
        }
    }
    assert!(bad.is_empty(), "{} of {}: {bad:?}", bad.len(), cases.len());
}

/// Temperature fallback on real audio: clean speech stays at temperature
/// 0; with a compression threshold nothing can pass, every temperature is
/// tried (sampling above 0, seeded: reproducible), and the result carries
/// the last temperature, as faster-whisper reports it.
#[test]
fn temperature_fallback_on_real_audio() {
    let dir = asset("whisper-tiny-en");
    let mut tr = WhisperTranscriber::from_pretrained(&dir).unwrap();
    tr.options.decode.beam_size = 1;
    let x =
        audio_16k("pocketsphinx-testdata/librivox/sense_and_sensibility_01_austen_64kb-0930.wav");
    let clean = tr.transcribe_full(&x).unwrap();
    assert!(clean.windows.iter().all(|w| w.temperature == 0.0));
    tr.options.fallback.temperatures = vec![0.0, 0.5, 1.0];
    tr.options.fallback.compression_ratio_threshold = Some(0.1);
    tr.options.seed = 7;
    let a = tr.transcribe_full(&x).unwrap();
    let b = tr.transcribe_full(&x).unwrap();
    assert_eq!(a.windows, b.windows, "same seed, same samples");
    let w = &a.windows[0];
    assert_eq!(w.temperature, 1.0);
    assert!(w.compression_ratio > 0.1 && !w.tokens.is_empty());
    // Sampling itself: seeded, and at a low temperature it follows greedy.
    let model = tr.model();
    let fe = WhisperFeatureExtractor::new(WhisperFeatureConfig::default()).unwrap();
    let mel = Tensor::from_vec(fe.extract(&x).unwrap(), (1, 80, 3000), &Device::Cpu).unwrap();
    let enc = model.encode(&mel).unwrap();
    let t = WhisperTokens::ENGLISH;
    let o = &tr.options.decode;
    let greedy = model.generate_greedy(&enc, &[t.sot], t, o).unwrap();
    let mut rng = SampleRng::new(1);
    let cold = model
        .generate_sampled(&enc, &[t.sot], t, o, 1e-5, &mut rng)
        .unwrap();
    assert_eq!(cold.ids, greedy);
    let hot = |seed| {
        model
            .generate_sampled(&enc, &[t.sot], t, o, 1.0, &mut SampleRng::new(seed))
            .unwrap()
    };
    assert_eq!(hot(3), hot(3));
    assert!(hot(3).score <= 0.0 && hot(3).avg_logprob <= 0.0);
}
