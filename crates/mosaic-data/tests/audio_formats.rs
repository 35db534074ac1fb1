//! FLAC, MP3 and OGG/Vorbis decoding and stereo downmixing, on a real
//! recording encoded by ffmpeg.

use std::path::{Path, PathBuf};
use std::process::Command;

use mosaic_data::audio::{AudioLimits, load_audio};

fn real_wav() -> PathBuf {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("pocketsphinx-testdata"),
        "fetch pocketsphinx-testdata (scripts/test.sh does)"
    );
    store
        .path("pocketsphinx-testdata")
        .unwrap()
        .join("cards/001.wav")
}

fn encode(src: &Path, out: &Path, args: &[&str]) {
    let ok = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(src)
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg is needed (scripts/test.sh installs it)")
        .success();
    assert!(ok, "ffmpeg {args:?}");
}

/// Normalised cross-correlation at the best lag within ±2000 samples
/// (MP3 encoders add a delay).
fn best_correlation(a: &[f32], b: &[f32]) -> f64 {
    let mut best = 0f64;
    for lag in -2000i64..=2000 {
        let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
        for (i, &x) in a.iter().enumerate().step_by(3) {
            let j = i as i64 + lag;
            if j >= 0 && (j as usize) < b.len() {
                let y = b[j as usize] as f64;
                ab += x as f64 * y;
                aa += (x as f64).powi(2);
                bb += y * y;
            }
        }
        if aa > 0.0 && bb > 0.0 {
            best = best.max(ab / (aa * bb).sqrt());
        }
    }
    best
}

#[test]
fn flac_mp3_ogg_and_stereo() {
    let wav = real_wav();
    let reference = load_audio(&wav, &AudioLimits::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // FLAC is lossless: identical samples.
    let flac = dir.path().join("a.flac");
    encode(&wav, &flac, &[]);
    let f = load_audio(&flac, &AudioLimits::default()).unwrap();
    assert_eq!((f.sample_rate, f.channels), (16000, 1));
    assert_eq!(f.samples, reference.samples);
    // Lossy codecs: same signal up to coding noise and encoder delay.
    for (name, args) in [
        ("a.mp3", &["-c:a", "libmp3lame", "-b:a", "128k"][..]),
        ("a.ogg", &["-c:a", "libvorbis", "-q:a", "6"][..]),
    ] {
        let p = dir.path().join(name);
        encode(&wav, &p, args);
        let a = load_audio(&p, &AudioLimits::default()).unwrap();
        assert_eq!(a.sample_rate, 16000, "{name}");
        assert!(
            (a.frames() as i64 - reference.frames() as i64).abs() < 3000,
            "{name}: {} vs {} frames",
            a.frames(),
            reference.frames()
        );
        let c = best_correlation(&reference.samples, &a.to_mono());
        assert!(c > 0.95, "{name}: correlation {c}");
    }
    // Stereo with the signal on the left and silence on the right: the
    // downmix is half the signal.
    let stereo = dir.path().join("s.wav");
    encode(
        &wav,
        &stereo,
        &["-af", "pan=stereo|c0=c0|c1=0*c0", "-c:a", "pcm_s16le"],
    );
    let s = load_audio(&stereo, &AudioLimits::default()).unwrap();
    assert_eq!(s.channels, 2);
    let mono = s.to_mono();
    for (m, r) in mono.iter().zip(&reference.samples).take(5000) {
        assert!((m - r / 2.0).abs() < 1e-4, "{m} vs {r}");
    }
    // Too long for the limit.
    let e = load_audio(
        &wav,
        &AudioLimits {
            max_seconds: 0.1,
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("001.wav") && e.contains("limit"), "{e}");
}
