//! Robustness sweeps on real models and data, written as a report folder:
//! EfficientNet-Lite0 on the scikit-image photos (top-1 agreement with the
//! clean prediction under Gaussian noise, blur, JPEG quality, occlusion) and
//! Whisper tiny.en on Asterisk prompts (WER under white noise at SNR levels
//! and speed changes), with a fairness breakdown of the clean WER.

use std::path::Path;

use candle_core::Tensor;
use mosaic_eval::fairness::breakdown;
use mosaic_eval::report::Report;
use mosaic_eval::robustness::{
    AudioPerturbation, ImagePerturbation, perturb_audio, perturb_image, sweep,
};
use mosaic_eval::text::wer;

fn store() -> mosaic_core::assets::AssetStore {
    mosaic_core::assets::AssetStore::from_env().unwrap()
}

fn check_report(dir: &Path, plots: usize) {
    let r = Report::load(dir).unwrap();
    assert_eq!(r.plots.len(), plots, "{:?}", r.plots);
    for p in &r.plots {
        let img = image::open(dir.join(p)).unwrap();
        assert!(img.width() > 100);
    }
    assert!(dir.join("report.md").exists());
}

fn argmax_rows(logits: &Tensor) -> Vec<usize> {
    logits
        .to_vec2::<f32>()
        .unwrap()
        .iter()
        .map(|r| {
            let mut b = 0;
            for (i, &v) in r.iter().enumerate() {
                if v > r[b] {
                    b = i;
                }
            }
            b
        })
        .collect()
}

#[test]
fn image_sweeps_on_efficientnet_lite0() {
    let store = store();
    assert!(store.is_fetched("efficientnet-lite0") && store.is_fetched("skimage-photos"));
    let net = mosaic_models::pretrained::EfficientNetLite::from_pretrained(
        &store.path("efficientnet-lite0").unwrap(),
    )
    .unwrap();
    let (proc_, dec) = mosaic_models::pretrained::lite_preprocessor();
    let photos = store.path("skimage-photos").unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&photos)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png") || n.ends_with(".jpg"))
        .collect();
    names.sort();
    // Twelve photos keep the debug-build test short.
    names.retain(|n| {
        [
            "astronaut.png",
            "brick.png",
            "camera.png",
            "chelsea.png",
            "coffee.png",
            "coins.png",
            "grass.png",
            "horse.png",
            "hubble_deep_field.jpg",
            "logo.png",
            "motorcycle_left.png",
            "rocket.jpg",
        ]
        .contains(&n.as_str())
    });
    let images: Vec<image::RgbImage> = names
        .iter()
        .filter_map(|n| mosaic_data::image::load_image(&photos.join(n), &dec).ok())
        .collect();
    assert!(images.len() >= 10, "{} photos", images.len());
    let classify = |imgs: &[image::RgbImage]| -> Vec<usize> {
        let x = proc_.preprocess_batch(imgs).unwrap();
        argmax_rows(&net.forward(&x).unwrap())
    };
    let clean = classify(&images);
    let mut report = Report::new("efficientnet-lite0 robustness on scikit-image photos");
    report
        .input("model", "efficientnet-lite0")
        .input("photos", images.len());
    report.metric("photos", images.len() as f64);
    let kinds: [(&str, &str, &[f64]); 4] = [
        (
            "noise",
            "Gaussian noise sigma (0-1 scale)",
            &[0.0, 0.1, 0.4],
        ),
        ("blur", "blur sigma (px)", &[0.0, 2.0, 8.0]),
        ("jpeg", "JPEG quality", &[90.0, 20.0, 3.0]),
        ("occlusion", "occluded area share", &[0.0, 0.25, 0.75]),
    ];
    for (kind, label, levels) in kinds {
        let s = sweep(label, "top-1 agreement with clean", levels, |level| {
            let p = ImagePerturbation::parse(kind, level)?;
            let noisy: Vec<image::RgbImage> = images
                .iter()
                .enumerate()
                .map(|(i, im)| perturb_image(im, p, i as u64))
                .collect::<mosaic_eval::Result<_>>()?;
            let pred = classify(&noisy);
            Ok(pred.iter().zip(&clean).filter(|(a, b)| a == b).count() as f64 / clean.len() as f64)
        })
        .unwrap();
        println!("{}", s.markdown());
        let v: Vec<f64> = s.points.iter().map(|p| p.1).collect();
        assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
        if kind != "jpeg" {
            assert_eq!(v[0], 1.0, "{kind}: level 0 is the clean input");
        }
        assert!(
            v[v.len() - 1] < 1.0,
            "{kind}: the strongest level changes some predictions: {v:?}"
        );
        report.metric(&format!("agreement_{kind}_strongest"), v[v.len() - 1]);
        report.sweeps.push(s);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    report.write(&out).unwrap();
    check_report(&out, 1 + 4);
}

#[test]
fn audio_sweeps_on_whisper_tiny_en() {
    let store = store();
    assert!(store.is_fetched("whisper-tiny-en") && store.is_fetched("asterisk-sounds"));
    let mut tr = mosaic_models::pretrained::whisper::WhisperTranscriber::from_pretrained(
        &store.path("whisper-tiny-en").unwrap(),
    )
    .unwrap();
    tr.options = tr.options.clone().with_greedy();
    let root = store
        .path("asterisk-sounds")
        .unwrap()
        .join("en_US_f_Allison");
    // Real prompts with their transcripts (core-sounds-en.txt).
    let prompts = [
        ("agent-loginok", "Agent logged in."),
        ("vm-password", "password"),
        ("conf-getpin", "Please enter the conference pin number."),
        ("digits/7", "seven"),
    ];
    let mut audio = Vec::new();
    for (name, _) in prompts {
        let a =
            mosaic_data::audio::load_audio(&root.join(format!("{name}.wav")), &Default::default())
                .unwrap();
        assert_eq!(a.channels, 1);
        audio.push(mosaic_data::audio::resample(&a.samples, a.sample_rate, 16000).unwrap());
    }
    let refs: Vec<&str> = prompts.iter().map(|p| p.1).collect();
    // WER after the simple normalisation of the Whisper fixtures: lower-case,
    // keep [a-z0-9' ], so punctuation does not count.
    let norm = |s: &str| -> String {
        s.to_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '\'' {
                    c
                } else {
                    ' '
                }
            })
            .collect()
    };
    let refs_n: Vec<String> = refs.iter().map(|r| norm(r)).collect();
    let transcribe = |a: &[f32]| -> String {
        tr.transcribe(a)
            .unwrap()
            .iter()
            .map(|s| s.text.as_str())
            .collect::<String>()
    };
    let mut report = Report::new("whisper-tiny-en robustness on Asterisk prompts");
    report
        .input("model", "whisper-tiny-en (greedy)")
        .input("prompts", prompts.len());
    let clean: Vec<String> = audio.iter().map(|a| norm(&transcribe(a))).collect();
    let clean_wer = wer::wer(&refs_n, &clean).unwrap().error_rate;
    report.metric("wer_clean", clean_wer);
    let snr = sweep("white noise SNR (dB)", "WER", &[30.0, 10.0, 0.0], |db| {
        let hyps: Vec<String> = audio
            .iter()
            .enumerate()
            .map(|(i, a)| {
                perturb_audio(a, 16000, AudioPerturbation::NoiseSnrDb(db), i as u64)
                    .map(|x| norm(&transcribe(&x)))
            })
            .collect::<mosaic_eval::Result<_>>()?;
        Ok(wer::wer(&refs_n, &hyps)?.error_rate)
    })
    .unwrap();
    let speed = sweep("speed factor", "WER", &[1.0, 1.5], |f| {
        let hyps: Vec<String> = audio
            .iter()
            .map(|a| {
                perturb_audio(a, 16000, AudioPerturbation::Speed(f), 0)
                    .map(|x| norm(&transcribe(&x)))
            })
            .collect::<mosaic_eval::Result<_>>()?;
        Ok(wer::wer(&refs_n, &hyps)?.error_rate)
    })
    .unwrap();
    println!("{}\n{}", snr.markdown(), speed.markdown());
    assert_eq!(speed.points[0].1, clean_wer, "speed 1.0 is the clean audio");
    assert!(snr.points.iter().all(|p| p.1.is_finite() && p.1 >= 0.0));
    assert!(
        snr.points[2].1 >= snr.points[0].1,
        "0 dB is no better than 30 dB: {:?}",
        snr.points
    );
    report.sweeps.push(snr);
    report.sweeps.push(speed);
    // Fairness: clean WER by prompt kind (a sub-folder vs the top level).
    let groups: Vec<String> = prompts
        .iter()
        .map(|p| {
            if p.0.contains('/') {
                "digits".to_string()
            } else {
                "phrases".to_string()
            }
        })
        .collect();
    let f = breakdown("kind", "WER", &groups, |idx| {
        let r: Vec<&String> = idx.iter().map(|&i| &refs_n[i]).collect();
        let h: Vec<&String> = idx.iter().map(|&i| &clean[i]).collect();
        Ok(wer::wer(&r, &h)?.error_rate)
    })
    .unwrap();
    report.fairness.push(f);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    report.write(&out).unwrap();
    check_report(&out, 1 + 2 + 1);
}
