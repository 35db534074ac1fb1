//! Word error rate and real-time factor of Whisper (`mosaic transcribe`'s
//! library path) on the real recordings of the `pocketsphinx-testdata` and
//! `asterisk-sounds` assets; `scripts/bench/whisper.sh` runs it next to
//! faster-whisper.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release -p mosaic-models --example whisper_eval -- \
//!     [--model whisper-tiny-en] [--beam-size 5] [--out results.json] [--limit N] [--files LIST]
//! ```
//!
//! Decoding: temperature 0 only, no previous-text prompt, no VAD (the
//! settings of the parity fixtures), beam size from the flag. WER here uses
//! the simple normalisation of the fixtures (lowercase, `[...]` dropped,
//! every character outside `[a-z0-9' ]` → space, edge apostrophes stripped,
//! numbers not spelled out); corpus WER = (S + D + I) / reference words,
//! files whose normalised reference is empty left out. Timing: one
//! untimed warm-up call, then the wall time of `transcribe_full` per file
//! (features, encoder, decoding; audio decoding and resampling excluded).
//! `WHISPER_EVAL_PROFILE=1` also prints the encoder time per window, the
//! cross-attention key time and the decoder step time for 1 and 5 rows.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mosaic_data::audio::{load_audio, resample};
use mosaic_models::pretrained::whisper::WhisperTranscriber;

/// The fixtures' simple normalisation.
fn normalise(s: &str) -> Vec<String> {
    let lower = s.to_lowercase();
    // re.sub(r"\[[^\]]*\]", " ", s): each '[' up to the next ']' becomes a space.
    let mut text = String::new();
    let mut rest = lower.as_str();
    while let Some(i) = rest.find('[') {
        match rest[i..].find(']') {
            Some(j) => {
                text.push_str(&rest[..i]);
                text.push(' ');
                rest = &rest[i + j + 1..];
            }
            None => break,
        }
    }
    text.push_str(rest);
    let kept: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect();
    kept.split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word-level edit operations (substitutions, deletions, insertions).
fn edits(r: &[String], h: &[String]) -> (usize, usize, usize) {
    // dp over (cost, S, D, I), minimal cost; ties broken like jiwer
    // (any minimal alignment gives the same total).
    let (n, m) = (r.len(), h.len());
    let mut prev: Vec<(usize, usize, usize, usize)> = (0..=m).map(|j| (j, 0, 0, j)).collect();
    for i in 1..=n {
        let mut cur = vec![(i, 0, i, 0); m + 1];
        for j in 1..=m {
            let sub = prev[j - 1];
            let same = r[i - 1] == h[j - 1];
            let a = (
                sub.0 + usize::from(!same),
                sub.1 + usize::from(!same),
                sub.2,
                sub.3,
            );
            let d = prev[j];
            let b = (d.0 + 1, d.1, d.2 + 1, d.3);
            let ins = cur[j - 1];
            let c = (ins.0 + 1, ins.1, ins.2, ins.3 + 1);
            cur[j] = *[a, b, c].iter().min_by_key(|x| x.0).unwrap();
        }
        prev = cur;
    }
    let x = prev[m];
    (x.1, x.2, x.3)
}

struct Item {
    file: String,
    set: &'static str,
    reference: String,
}

fn load_items(assets: &Path) -> Vec<Item> {
    let mut items = Vec::new();
    for (dir, list) in [
        ("pocketsphinx-testdata/cards", "cards.transcription"),
        ("pocketsphinx-testdata/librivox", "transcription"),
    ] {
        let text = std::fs::read_to_string(assets.join(dir).join(list)).unwrap();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let body = line.strip_prefix("<s>").expect(line);
            let (words, rest) = body.split_once("</s>").expect(line);
            let id = rest.trim().trim_start_matches('(').trim_end_matches(')');
            items.push(Item {
                file: format!("{dir}/{id}.wav"),
                set: "pocketsphinx",
                reference: words.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }
    }
    let mut gz = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(assets.join("asterisk-sounds/core-sounds-en.txt.gz")).unwrap(),
    )
    .read_to_string(&mut gz)
    .unwrap();
    let refs: HashMap<String, String> = gz
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(';'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let root = assets.join("asterisk-sounds/en_US_f_Allison");
    let mut wavs = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "wav") {
                wavs.push(
                    p.strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    wavs.sort();
    for w in wavs {
        let key = w.trim_end_matches(".wav");
        items.push(Item {
            file: format!("asterisk-sounds/en_US_f_Allison/{w}"),
            set: "asterisk",
            reference: refs.get(key).cloned().expect(key),
        });
    }
    items
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut model, mut beam, mut out) = ("whisper-tiny-en".to_string(), 5usize, None::<PathBuf>);
    let mut limit = usize::MAX;
    let mut only: Option<Vec<String>> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--model" => model = args.next().expect("--model NAME"),
            "--beam-size" => {
                beam = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--beam-size N")
            }
            "--out" => out = args.next().map(PathBuf::from),
            "--limit" => limit = args.next().and_then(|v| v.parse().ok()).expect("--limit N"),
            "--files" => {
                let list = std::fs::read_to_string(args.next().expect("--files LIST")).unwrap();
                only = Some(list.lines().map(str::to_string).collect());
            }
            _ => panic!("unknown argument {a}"),
        }
    }
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    let assets = store.home().join("assets");
    let dir = mosaic_core::assets::resolve_model(&model, &store).unwrap();
    let mut tr = WhisperTranscriber::from_pretrained(&dir).unwrap();
    tr.options = tr.options.clone().with_greedy();
    tr.options.decode.beam_size = beam;
    let mut items = load_items(&assets);
    if let Some(only) = &only {
        items.retain(|it| only.contains(&it.file));
        assert_eq!(items.len(), only.len(), "--files lists unknown recordings");
    }
    items.truncate(limit);
    let audio: Vec<Vec<f32>> = items
        .iter()
        .map(|it| {
            let a = load_audio(&assets.join(&it.file), &Default::default()).unwrap();
            resample(&a.to_mono(), a.sample_rate, 16000).unwrap()
        })
        .collect();
    drop(tr.transcribe_full(&audio[0]).unwrap()); // warm-up
    if std::env::var_os("WHISPER_EVAL_PROFILE").is_some() {
        let mel = candle_core::Tensor::zeros(
            (1, 80, 3000),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            drop(tr.model().encode(&mel).unwrap());
        }
        eprintln!(
            "encoder: {:.3} s per window",
            t0.elapsed().as_secs_f64() / 5.0
        );
        let enc = tr.model().encode(&mel).unwrap();
        let t0 = Instant::now();
        drop(tr.model().start(&enc).unwrap());
        eprintln!("cross keys: {:.3} s", t0.elapsed().as_secs_f64());
        for rows in [1usize, 5] {
            let mut st = tr.model().start(&enc).unwrap();
            let ids = candle_core::Tensor::new(
                vec![50257u32; rows].as_slice(),
                &candle_core::Device::Cpu,
            )
            .unwrap()
            .unsqueeze(1)
            .unwrap();
            let t0 = Instant::now();
            for _ in 0..20 {
                drop(tr.model().decode(&ids, &mut st).unwrap());
            }
            eprintln!(
                "decoder step, {rows} rows: {:.4} s",
                t0.elapsed().as_secs_f64() / 20.0
            );
        }
        let t0 = Instant::now();
        let w = tr.transcribe_windows(&audio[0]).unwrap();
        eprintln!(
            "first file: {:.3} s, {} windows, {} ids",
            t0.elapsed().as_secs_f64(),
            w.len(),
            w.iter().map(|w| w.tokens.len()).sum::<usize>()
        );
    }
    let mut files = Vec::new();
    let mut totals: HashMap<&str, [usize; 5]> = HashMap::new(); // S, D, I, N, files
    let mut secs: HashMap<&str, (f64, f64)> = HashMap::new();
    for (it, x) in items.iter().zip(&audio) {
        let t0 = Instant::now();
        let full = tr.transcribe_full(x).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        let hyp: String = full.segments.iter().map(|s| s.text.as_str()).collect();
        let (r, h) = (normalise(&it.reference), normalise(&hyp));
        let e = secs.entry(it.set).or_default();
        e.0 += x.len() as f64 / 16000.0;
        e.1 += dt;
        if !r.is_empty() {
            let (s, d, i) = edits(&r, &h);
            let t = totals.entry(it.set).or_default();
            t[0] += s;
            t[1] += d;
            t[2] += i;
            t[3] += r.len();
            t[4] += 1;
        }
        files.push(serde_json::json!({
            "file": it.file, "set": it.set, "reference": it.reference, "text": hyp,
            "audio_s": x.len() as f64 / 16000.0, "seconds": dt,
        }));
    }
    let mut wer = serde_json::Map::new();
    for (set, t) in &totals {
        let (a, s) = secs[set];
        let w = (t[0] + t[1] + t[2]) as f64 / t[3] as f64;
        eprintln!(
            "{set}: WER {:.2} % (S {} D {} I {} / {} words, {} files); {a:.1} s of audio in {s:.1} s, RTF {:.4}",
            100.0 * w,
            t[0],
            t[1],
            t[2],
            t[3],
            t[4],
            s / a
        );
        wer.insert(
            set.to_string(),
            serde_json::json!({"wer": w, "substitutions": t[0], "deletions": t[1], "insertions": t[2],
                "ref_words": t[3], "files": t[4], "audio_s": a, "transcribe_s": s}),
        );
    }
    let (a, s): (f64, f64) = secs
        .values()
        .fold((0.0, 0.0), |x, y| (x.0 + y.0, x.1 + y.1));
    eprintln!("all: {a:.1} s of audio in {s:.1} s, RTF {:.4}", s / a);
    let doc = serde_json::json!({
        "model": model, "beam_size": beam,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "normalisation": "simple (fixtures README)",
        "wer": wer, "audio_s": a, "transcribe_s": s, "rtf": s / a, "files": files,
    });
    if let Some(p) = out {
        std::fs::write(&p, serde_json::to_string(&doc).unwrap()).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_edits() {
        assert_eq!(
            normalise("[ascending tones] It's 10 O'Clock, 'ok'!"),
            vec!["it's", "10", "o'clock", "ok"]
        );
        let w = |s: &str| normalise(s);
        assert_eq!(edits(&w("a b c d"), &w("a x c d e")), (1, 0, 1));
        assert_eq!(edits(&w("a b c"), &w("")), (0, 3, 0));
    }
}
