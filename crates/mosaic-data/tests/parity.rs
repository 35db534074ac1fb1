//! Parity with the reference preprocessing on real assets, against the
//! fixtures written by `scripts/reference/make_data_fixtures.py`
//! (transformers 5.24 PIL image processors, WhisperFeatureExtractor,
//! torchaudio resample, librosa, tokenizers, silero-vad, librosa DTW).
//!
//! The real photos and recordings come from the asset store
//! (`$MOSAIC_HOME`, fetched by `scripts/test.sh`).

use std::path::{Path, PathBuf};

use mosaic_data::image::{AlphaMode, DecodeOptions, ImageProcessor, decode_image};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn assets() -> PathBuf {
    let store = mosaic_core::assets::AssetStore::from_env().expect("asset store");
    let root = store.home().join("assets");
    for name in [
        "skimage-photos",
        "pocketsphinx-testdata",
        "asterisk-sounds",
        "silero-vad",
        "minilm-l6-v2",
        "whisper-tiny-en",
    ] {
        assert!(
            store.is_fetched(name),
            "asset `{name}` is not fetched: run `mosaic assets fetch {name}` (scripts/test.sh does)"
        );
    }
    root
}

fn json(rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(rel)).unwrap()).unwrap()
}

struct St {
    bytes: Vec<u8>,
}

impl St {
    fn open(rel: &str) -> St {
        St {
            bytes: std::fs::read(fixtures().join(rel)).unwrap(),
        }
    }
    fn get(&self, name: &str) -> (Vec<usize>, safetensors::Dtype, Vec<u8>) {
        let st = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(name)
            .unwrap_or_else(|_| panic!("fixture tensor `{name}` missing"));
        (t.shape().to_vec(), t.dtype(), t.data().to_vec())
    }
    fn f32(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let (s, d, b) = self.get(name);
        assert_eq!(d, safetensors::Dtype::F32, "{name}");
        (
            s,
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }
    fn f64(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        let (s, d, b) = self.get(name);
        assert_eq!(d, safetensors::Dtype::F64, "{name}");
        (
            s,
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }
    fn i64(&self, name: &str) -> (Vec<usize>, Vec<i64>) {
        let (s, d, b) = self.get(name);
        assert_eq!(d, safetensors::Dtype::I64, "{name}");
        (
            s,
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
    }
    fn u8(&self, name: &str) -> (Vec<usize>, Vec<u8>) {
        let (s, d, b) = self.get(name);
        assert_eq!(d, safetensors::Dtype::U8, "{name}");
        (s, b)
    }
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// CLIP, SigLIP and ViT pixel values on every scikit-image photo — PNG,
/// TIFF, GIF and the three real JPEGs — within 1e-5 of transformers' PIL
/// processors (JPEG decoded as Pillow decodes it).
#[test]
fn image_processors_match_transformers_on_real_photos() {
    let root = assets();
    let meta = json("image/images.json");
    let indices = St::open("image/samples_224.safetensors").i64("indices").1;
    let samples = St::open("image/samples_224.safetensors");
    let mut worst = 0f32;
    let mut jpegs = 0;
    let mut checked = 0;
    for img in meta["images"].as_array().unwrap() {
        let file = img["file"].as_str().unwrap();
        let stem = img["stem"].as_str().unwrap();
        let bytes = std::fs::read(root.join(file)).unwrap();
        for proc_name in ["clip_small", "siglip_small", "clip", "siglip", "vit"] {
            let p = ImageProcessor::from_pretrained(&fixtures().join(format!("image/{proc_name}")))
                .unwrap();
            // ViT's processor has no convert_rgb: the fixture converted with
            // PIL's plain convert("RGB"), which drops alpha.
            let alpha = if proc_name == "vit" {
                AlphaMode::Drop
            } else {
                AlphaMode::CompositeWhite
            };
            let opts = DecodeOptions {
                apply_exif_orientation: false,
                alpha,
                ..Default::default()
            };
            let rgb = decode_image(&bytes, file, &opts).unwrap();
            let (h, w, ours) = p.preprocess_to_vec(&rgb).unwrap();
            let shape = img["processors"][proc_name]["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect::<Vec<_>>();
            assert_eq!(vec![3, h, w], shape, "{file} {proc_name}");
            let diff = if proc_name.ends_with("_small") {
                let (_, want) = St::open(&format!("image/{proc_name}.safetensors")).f32(stem);
                max_abs(&ours, &want)
            } else {
                let (_, want) = samples.f32(&format!("{proc_name}/{stem}"));
                let got: Vec<f32> = indices.iter().map(|&i| ours[i as usize]).collect();
                let sums = img["processors"][proc_name]["channel_sum_f64"]
                    .as_array()
                    .unwrap();
                let plane = h * w;
                for c in 0..3 {
                    let s: f64 = ours[c * plane..(c + 1) * plane]
                        .iter()
                        .map(|&v| v as f64)
                        .sum();
                    let want_s = sums[c].as_f64().unwrap();
                    assert!(
                        (s - want_s).abs() < 1e-2,
                        "{file} {proc_name} channel {c} sum {s} vs {want_s}"
                    );
                }
                max_abs(&got, &want)
            };
            assert!(diff <= 1e-5, "{file} {proc_name}: max abs diff {diff}");
            worst = worst.max(diff);
            jpegs += usize::from(file.ends_with(".jpg"));
            checked += 1;
        }
    }
    eprintln!(
        "image parity: {checked} (image, processor) pairs ({jpegs} JPEG); max diff {worst:e}"
    );
    assert!(checked >= 28 * 5);
    assert_eq!(
        jpegs,
        3 * 5,
        "the three real JPEG photos, five processors each"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Asserts `rgb` equals Pillow's decoded pixels `want` (`[H, W, 3]`) byte for
/// byte, naming the first differing pixel.
fn assert_same_pixels(what: &str, rgb: &image::RgbImage, want: &[u8], w: u32, h: u32) {
    assert_eq!(want.len(), (w * h * 3) as usize, "{what}");
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let got = rgb.get_pixel(x, y)[c];
                let exp = want[((y * w + x) * 3 + c as u32) as usize];
                assert_eq!(got, exp, "{what}: pixel ({x}, {y}) channel {c}");
            }
        }
    }
}

/// JPEG decoding equals Pillow's (libjpeg-turbo) exactly: the three real
/// JPEG photos whole (sha256 of the RGB bytes, channel sums, a 64×64 crop),
/// and crops of real photos saved by Pillow in every layout a decoder
/// treats differently (4:4:4, 4:2:2, 4:2:0, progressive, grayscale,
/// restart markers, partial MCUs) — `make_jpeg_fixtures.py`.
#[test]
fn jpeg_decoding_equals_pillow() {
    let root = assets();
    let meta = json("image/jpeg_pillow.json");
    let st = St::open("image/jpeg_pillow.safetensors");
    let opts = DecodeOptions {
        apply_exif_orientation: false,
        ..Default::default()
    };
    let old = St::open("image/jpeg_decode.safetensors");
    for e in meta["real"].as_array().unwrap() {
        let file = e["file"].as_str().unwrap();
        let stem = file.rsplit('/').next().unwrap().trim_end_matches(".jpg");
        let rgb = mosaic_data::image::load_image(&root.join(file), &opts).unwrap();
        let (w, h) = rgb.dimensions();
        let size: Vec<u64> = e["size_wh"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(vec![w as u64, h as u64], size, "{file}");
        let sums: Vec<i64> = (0..3)
            .map(|c| rgb.pixels().map(|p| p[c] as i64).sum())
            .collect();
        let want: Vec<i64> = e["rgb_channel_sums"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(sums, want, "{file}: channel sums");
        assert_eq!(
            sha256_hex(rgb.as_raw()),
            e["rgb_sha256"].as_str().unwrap(),
            "{file}: decoded bytes"
        );
        for (name, fixture) in [(format!("real/{stem}"), &st), (stem.to_string(), &old)] {
            let (shape, crop) = fixture.u8(&name);
            assert_eq!(shape, vec![64, 64, 3]);
            let top_left = image::imageops::crop_imm(&rgb, 0, 0, 64, 64).to_image();
            assert_same_pixels(&format!("{file} {name}"), &top_left, &crop, 64, 64);
        }
    }
    let made = meta["made"].as_array().unwrap();
    assert!(made.len() >= 7);
    for e in made {
        let file = e["file"].as_str().unwrap();
        let name = file.trim_start_matches("jpeg/").trim_end_matches(".jpg");
        let rgb =
            mosaic_data::image::load_image(&fixtures().join("image").join(file), &opts).unwrap();
        let (shape, want) = st.u8(&format!("made/{name}"));
        assert_eq!(
            vec![rgb.height() as usize, rgb.width() as usize, 3],
            shape,
            "{file}"
        );
        assert_same_pixels(file, &rgb, &want, rgb.width(), rgb.height());
        assert_eq!(
            sha256_hex(rgb.as_raw()),
            e["rgb_sha256"].as_str().unwrap(),
            "{file}"
        );
    }
}

/// Broken JPEGs are named errors, never grey-filled pictures: a file cut in
/// its scan, one cut before it, and one with its entropy-coded data garbled.
#[test]
fn broken_jpegs_are_refused_with_the_file_named() {
    let good = std::fs::read(fixtures().join("image/jpeg/astronaut_420.jpg")).unwrap();
    let opts = DecodeOptions::default();
    let sos = good.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    for (what, bytes) in [
        ("cut in the scan", good[..good.len() * 2 / 3].to_vec()),
        ("cut before the scan", good[..sos].to_vec()),
    ] {
        let e = decode_image(&bytes, "broken.jpg", &opts)
            .unwrap_err()
            .to_string();
        assert!(e.contains("broken.jpg"), "{what}: {e}");
    }
    // Garbage in the header is the C decoder's error, caught and named.
    let mut bad = good.clone();
    for b in &mut bad[20..sos.min(200)] {
        *b = 0xFF;
    }
    let e = decode_image(&bad, "garbled.jpg", &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("garbled.jpg"), "{e}");
}

#[test]
fn exif_orientation_is_applied() {
    let st = St::open("image/exif_expected.safetensors");
    for n in 1..=8 {
        let p = fixtures().join(format!("image/exif_orient{n}.png"));
        let on = mosaic_data::image::load_image(&p, &DecodeOptions::default()).unwrap();
        let off = mosaic_data::image::load_image(
            &p,
            &DecodeOptions {
                apply_exif_orientation: false,
                ..Default::default()
            },
        )
        .unwrap();
        let (ts, t) = st.u8(&format!("orient{n}/transposed"));
        let (rs, r) = st.u8(&format!("orient{n}/raw"));
        assert_eq!(
            (on.height() as usize, on.width() as usize),
            (ts[0], ts[1]),
            "orientation {n}"
        );
        assert_eq!(on.as_raw(), &t, "orientation {n}");
        assert_eq!(
            (off.height() as usize, off.width() as usize),
            (rs[0], rs[1])
        );
        assert_eq!(off.as_raw(), &r, "orientation {n} raw");
    }
}

fn load_wav(root: &Path, file: &str) -> Vec<f32> {
    let a = mosaic_data::audio::load_audio(&root.join(file), &Default::default()).unwrap();
    assert_eq!(a.channels, 1);
    a.samples
}

#[test]
fn wav_decoding_matches_soundfile() {
    let root = assets();
    let w = json("audio/waveforms.json");
    for f in w["pocketsphinx"]
        .as_array()
        .unwrap()
        .iter()
        .chain(w["asterisk_used"].as_array().unwrap())
    {
        let file = f["file"].as_str().unwrap();
        let a = mosaic_data::audio::load_audio(&root.join(file), &Default::default()).unwrap();
        assert_eq!(
            a.sample_rate as u64,
            f["sample_rate"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            a.samples.len() as u64,
            f["n_samples"].as_u64().unwrap(),
            "{file}"
        );
        let first: Vec<f32> = f["first64"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(&a.samples[..first.len()], first.as_slice(), "{file}");
        let sum: f64 = a.samples.iter().map(|&v| v as f64).sum();
        assert!(
            (sum - f["sum_f64"].as_f64().unwrap()).abs() < 1e-6,
            "{file}"
        );
    }
    // Every Asterisk recording decodes to the same length and sum.
    let all = w["asterisk_all"].as_array().unwrap();
    assert!(all.len() >= 560);
    for row in all {
        let file = row[0].as_str().unwrap();
        let a = mosaic_data::audio::load_audio(&root.join(file), &Default::default()).unwrap();
        assert_eq!(a.samples.len() as u64, row[2].as_u64().unwrap(), "{file}");
        let sum: f64 = a.samples.iter().map(|&v| v as f64).sum();
        assert!((sum - row[3].as_f64().unwrap()).abs() < 1e-6, "{file}");
    }
}

#[test]
fn whisper_log_mel_matches_transformers() {
    use mosaic_data::audio::{WhisperFeatureConfig, WhisperFeatureExtractor};
    let root = assets();
    let st = St::open("audio/whisper_features.safetensors");
    let fe80 = WhisperFeatureExtractor::new(WhisperFeatureConfig::default()).unwrap();
    let w = json("audio/waveforms.json");
    let mut worst = 0f32;
    let check =
        |name: &str, audio: &[f32], fe: &WhisperFeatureExtractor, prefix: &str, worst: &mut f32| {
            let ours = fe.extract(audio).unwrap();
            let n_mels = fe.config().n_mels;
            let (shape, want) = st.f32(&format!("{prefix}/{name}"));
            assert_eq!(shape[0], n_mels);
            let k = shape[1];
            let mut d = 0f32;
            for m in 0..n_mels {
                d = d.max(max_abs(
                    &ours[m * 3000..m * 3000 + k],
                    &want[m * k..(m + 1) * k],
                ));
            }
            let (_, col) = st.f32(&format!("{prefix}_col2999/{name}"));
            let ours_col: Vec<f32> = (0..n_mels).map(|m| ours[m * 3000 + 2999]).collect();
            d = d.max(max_abs(&ours_col, &col));
            assert!(d <= 1e-4, "{name} ({prefix} mels): max abs diff {d}");
            *worst = worst.max(d);
        };
    for f in w["pocketsphinx"].as_array().unwrap() {
        let file = f["file"].as_str().unwrap();
        check(file, &load_wav(&root, file), &fe80, "80", &mut worst);
    }
    let fe128 = WhisperFeatureExtractor::new(WhisperFeatureConfig {
        n_mels: 128,
        ..Default::default()
    })
    .unwrap();
    check(
        "pocketsphinx-testdata/cards/001.wav",
        &load_wav(&root, "pocketsphinx-testdata/cards/001.wav"),
        &fe128,
        "128",
        &mut worst,
    );
    // 8 kHz Asterisk prompts resampled to 16 kHz like torchaudio, then features.
    let rs = St::open("audio/resample.safetensors");
    let mut worst_rs = 0f32;
    for f in w["asterisk_used"].as_array().unwrap() {
        let file = f["file"].as_str().unwrap();
        let x = load_wav(&root, file);
        let y = mosaic_data::audio::resample(&x, 8000, 16000).unwrap();
        let (_, want) = rs.f32(&format!("resampled/{file}"));
        let d = max_abs(&y, &want);
        assert!(d <= 1e-6, "{file}: resample max abs diff {d}");
        worst_rs = worst_rs.max(d);
        check(&format!("{file}@16k"), &y, &fe80, "80", &mut worst);
    }
    // 40 s of speech: trimmed to the first 30 s.
    let long = json("audio/whisper.json");
    let files = long["long40"]["files"].as_array().unwrap();
    let mut cat: Vec<f32> = Vec::new();
    for _ in 0..2 {
        for f in files {
            cat.extend(load_wav(&root, f.as_str().unwrap()));
        }
    }
    cat.truncate(640_000);
    let ours = fe80.extract(&cat).unwrap();
    let (_, first) = st.f32("80_long40/first100");
    let (_, last) = st.f32("80_long40/last100");
    for m in 0..80 {
        worst = worst.max(max_abs(
            &ours[m * 3000..m * 3000 + 100],
            &first[m * 100..(m + 1) * 100],
        ));
        worst = worst.max(max_abs(
            &ours[m * 3000 + 2900..m * 3000 + 3000],
            &last[m * 100..(m + 1) * 100],
        ));
    }
    assert!(worst <= 1e-4, "{worst}");
    eprintln!(
        "whisper log-mel max abs diff {worst:e}; torchaudio resample max abs diff {worst_rs:e}"
    );
}

#[test]
fn librosa_mel_and_mfcc_match() {
    use mosaic_data::audio::{MelConfig, mel_spectrogram, mfcc};
    let root = assets();
    let st = St::open("audio/librosa.safetensors");
    let y = load_wav(
        &root,
        "pocketsphinx-testdata/librivox/sense_and_sensibility_01_austen_64kb-0880.wav",
    );
    let cfg = MelConfig::librosa(16000);
    let mel = mel_spectrogram(&y, &cfg).unwrap();
    let (shape, want) = st.f32("mel");
    assert_eq!((mel.len(), mel[0].len()), (shape[0], shape[1]));
    let mut rel = 0f64;
    let peak = want.iter().fold(0f32, |a, &b| a.max(b)) as f64;
    for (m, row) in mel.iter().enumerate() {
        for (t, &v) in row.iter().enumerate() {
            // librosa computes |X|² and the filter product in f32.
            rel = rel.max((v - want[m * shape[1] + t] as f64).abs() / peak);
        }
    }
    assert!(rel < 1e-5, "mel relative diff {rel}");
    let ours = mfcc(&y, &cfg, 13).unwrap();
    let (s2, want2) = st.f32("mfcc");
    let mut worst = 0f64;
    for (k, row) in ours.iter().enumerate() {
        for (t, &v) in row.iter().enumerate() {
            worst = worst.max((v - want2[k * s2[1] + t] as f64).abs());
        }
    }
    // dB values up to a few hundred; f32 arithmetic in librosa.
    assert!(worst < 2e-3, "mfcc max abs diff {worst}");
    eprintln!("librosa mel relative diff {rel:e}, mfcc max abs diff {worst:e}");
}

#[test]
fn silero_vad_matches_the_package() {
    use mosaic_data::audio::vad::{SileroVad, VadOptions, speech_segments};
    let root = assets();
    let v = json("audio/silero_vad.json");
    let mut vad = SileroVad::load(&root.join("silero-vad")).unwrap();
    let mut worst = 0f32;
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let audio: Vec<f32> = if name == "long_concat" {
            let r = &v["long_concat_recipe"];
            let files: Vec<&str> = r["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            let gap = r["gap_samples"].as_u64().unwrap_or(8000) as usize;
            let repeat = r["repeat"].as_u64().unwrap_or(2) as usize;
            let mut a = Vec::new();
            for _ in 0..repeat {
                for f in &files {
                    a.extend(load_wav(&root, f));
                    a.extend(std::iter::repeat_n(0.0, gap));
                }
            }
            a.truncate(case["n_samples"].as_u64().unwrap() as usize);
            a
        } else {
            load_wav(&root, case["file"].as_str().unwrap())
        };
        assert_eq!(
            audio.len() as u64,
            case["n_samples"].as_u64().unwrap(),
            "{name}"
        );
        let probs = vad.probabilities(&audio).unwrap();
        let want: Vec<f32> = case["jit"]["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap() as f32)
            .collect();
        let d = max_abs(&probs, &want);
        assert!(d < 1e-4, "{name}: probability max abs diff {d}");
        worst = worst.max(d);
        let segs = speech_segments(&probs, audio.len(), &VadOptions::default());
        let want_ts: Vec<(usize, usize)> = case["jit"]["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["start"].as_u64().unwrap() as usize,
                    t["end"].as_u64().unwrap() as usize,
                )
            })
            .collect();
        let got_ts: Vec<(usize, usize)> = segs.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(got_ts, want_ts, "{name}");
    }
    eprintln!("silero VAD probability max abs diff {worst:e}");
}

#[test]
fn tokenizers_match_python_on_real_sentences() {
    use mosaic_data::text::{Padding, TextConfig, TextTokenizer};
    let root = assets();
    let sentences = json("text/sentences.json");
    let real: Vec<&str> = sentences["real"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let extra: Vec<&str> = sentences["extra"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(real.len() >= 200);
    for (expected, file) in [
        (
            "text/expected_minilm_wordpiece.json",
            root.join("minilm-l6-v2/tokenizer.json"),
        ),
        (
            "text/expected_whisper_bpe.json",
            root.join("whisper-tiny-en/tokenizer.json"),
        ),
        (
            "text/expected_unigram.json",
            fixtures().join("text/unigram_tokenizer.json"),
        ),
        (
            "text/expected_clip_bpe.json",
            fixtures().join("text/clip_bpe_tokenizer.json"),
        ),
    ] {
        let exp = json(expected);
        let plain = TextConfig {
            max_length: None,
            padding: Padding::None,
            add_special_tokens: true,
        };
        let tok = TextTokenizer::from_file(&file, plain).unwrap();
        let cases = exp["encode"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&real)
            .chain(exp["encode_extra"].as_array().unwrap().iter().zip(&extra));
        let mut n = 0;
        for (e, s) in cases {
            let enc = tok.encode(s).unwrap();
            let ids: Vec<u32> = e["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(enc.ids, ids, "{expected}: `{s}`");
            let mask: Vec<u32> = e["attention_mask"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(enc.attention_mask, mask, "{expected}: `{s}`");
            if let Some(bo) = e.get("byte_offsets") {
                let bo: Vec<(usize, usize)> = bo
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p[0].as_u64().unwrap() as usize,
                            p[1].as_u64().unwrap() as usize,
                        )
                    })
                    .collect();
                assert_eq!(enc.offsets, bo, "{expected}: `{s}`");
            }
            assert_eq!(
                tok.decode(&enc.ids, true).unwrap(),
                e["decoded"].as_str().unwrap(),
                "{expected}: `{s}`"
            );
            n += 1;
        }
        assert!(n >= 200);
        // Batch: truncate and pad to 16.
        let tok16 = TextTokenizer::from_file(
            &file,
            TextConfig {
                max_length: Some(16),
                padding: Padding::Fixed(16),
                add_special_tokens: true,
            },
        )
        .unwrap();
        let all: Vec<&str> = real.iter().chain(&extra).copied().collect();
        let b = tok16.encode_batch(&all).unwrap();
        let want: Vec<Vec<u32>> = exp["batch"]["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect();
        assert_eq!(
            b.ids.to_vec2::<u32>().unwrap(),
            want,
            "{expected} batch ids"
        );
        let wmask: Vec<Vec<u32>> = exp["batch"]["attention_mask"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as u32)
                    .collect()
            })
            .collect();
        assert_eq!(
            b.attention_mask.to_vec2::<u32>().unwrap(),
            wmask,
            "{expected} batch mask"
        );
    }
}

#[test]
fn dtw_matches_librosa() {
    use mosaic_data::align::{dtw, euclidean_cost};
    let meta = json("align/dtw.json");
    let st = St::open("align/dtw.safetensors");
    let mut n = 0;
    for (case, c) in meta["cases"].as_object().unwrap() {
        let (xs, x) = st.f32(&format!("{case}/X"));
        let (ys, y) = st.f32(&format!("{case}/Y"));
        let rows = |v: &[f32], s: &[usize]| {
            (0..s[0])
                .map(|i| {
                    v[i * s[1]..(i + 1) * s[1]]
                        .iter()
                        .map(|&a| a as f64)
                        .collect()
                })
                .collect::<Vec<Vec<f64>>>()
        };
        let cost = euclidean_cost(&rows(&x, &xs), &rows(&y, &ys)).unwrap();
        let (cs, cwant) = st.f64(&format!("{case}/C"));
        for i in 0..cs[0] {
            for j in 0..cs[1] {
                assert!(
                    (cost[i][j] - cwant[i * cs[1] + j]).abs()
                        <= 1e-9 * cwant[i * cs[1] + j].abs().max(1.0),
                    "{case} C[{i},{j}]"
                );
            }
        }
        for (variant, v) in c["variants"].as_object().unwrap() {
            // The band radius is in the recorded librosa call.
            let call = v["call"].as_str().unwrap();
            let band = call
                .split("band_rad=")
                .nth(1)
                .map(|r| r.trim_end_matches(')').parse::<f64>().unwrap());
            let r = dtw(&cost, band).unwrap();
            let (ds, dwant) = st.f64(&format!("{case}/{variant}/D"));
            for i in 0..ds[0] {
                for j in 0..ds[1] {
                    let (a, b) = (r.cost_matrix[i][j], dwant[i * ds[1] + j]);
                    assert!(
                        a == b || (a - b).abs() <= 1e-9 * b.abs(),
                        "{case}/{variant} D[{i},{j}] {a} vs {b}"
                    );
                }
            }
            let (_, wp) = st.i64(&format!("{case}/{variant}/wp"));
            let mut want_path: Vec<(usize, usize)> = wp
                .chunks_exact(2)
                .map(|p| (p[0] as usize, p[1] as usize))
                .collect();
            want_path.reverse();
            assert_eq!(r.path, want_path, "{case}/{variant} path");
            n += 1;
        }
    }
    assert!(n >= 6, "{n} DTW cases");
}

#[test]
fn subtitles_parse_as_expected() {
    let exp = json("align/subtitles_expected.json");
    for name in ["sample.srt", "sample_crlf_bom.srt", "sample.vtt"] {
        let cues =
            mosaic_data::align::load_subtitles(&fixtures().join(format!("align/{name}"))).unwrap();
        // The CRLF + BOM file holds the same cues as sample.srt.
        let key = if name == "sample_crlf_bom.srt" {
            "sample.srt"
        } else {
            name
        };
        let want = exp[key].as_array().unwrap();
        assert_eq!(cues.len(), want.len(), "{name}");
        for (c, w) in cues.iter().zip(want) {
            assert_eq!(
                (c.start * 1000.0).round() as u64,
                w["start_ms"].as_u64().unwrap(),
                "{name}"
            );
            assert_eq!(
                (c.end * 1000.0).round() as u64,
                w["end_ms"].as_u64().unwrap(),
                "{name}"
            );
            assert_eq!(
                c.text.as_deref().unwrap(),
                w["text"].as_str().unwrap(),
                "{name}"
            );
        }
    }
}
