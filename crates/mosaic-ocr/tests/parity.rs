//! PP-OCRv4 through mosaic-ocr against rapidocr-onnxruntime 1.4.4 on the
//! rendered images of `tests/fixtures` (`scripts/reference/make_ocr_fixtures.py`):
//! the same lines in the same order with exactly the same text, every box
//! corner within 1 pixel and every score within 1e-3. Needs the `pp-ocrv4`
//! asset (`mosaic assets fetch pp-ocrv4`; scripts/test.sh fetches it).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mosaic_ocr::{OcrEngine, OcrLine};

/// Box corners may differ by this many pixels (the networks run in tract
/// instead of onnxruntime; a probability a hair from the 0.3 threshold can
/// move a contour by one pixel). Measured: 0 on every fixture.
const BOX_TOL: f32 = 1.0;
/// Scores (mean character probability) may differ by this much.
const SCORE_TOL: f32 = 1e-3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn engine() -> &'static OcrEngine {
    static ENGINE: OnceLock<OcrEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let store = mosaic_core::assets::AssetStore::from_env().unwrap();
        assert!(
            store.is_fetched("pp-ocrv4"),
            "fetch pp-ocrv4 (scripts/test.sh does): mosaic assets fetch pp-ocrv4"
        );
        OcrEngine::from_asset_dir(store.path("pp-ocrv4").unwrap()).unwrap()
    })
}

fn reference() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("ocr_reference.json")).unwrap()).unwrap()
}

#[test]
fn lines_text_boxes_and_scores_match_rapidocr() {
    let reference = reference();
    let images = reference["images"].as_array().unwrap();
    assert!(images.len() >= 5);
    let (mut worst_box, mut worst_score, mut n_lines) = (0f32, 0f32, 0usize);
    for entry in images {
        let file = entry["file"].as_str().unwrap();
        let got: Vec<OcrLine> = engine().recognize_file(&fixtures().join(file)).unwrap();
        let want = entry["lines"].as_array().unwrap();
        let got_text: Vec<&str> = got.iter().map(|l| l.text.as_str()).collect();
        let want_text: Vec<&str> = want.iter().map(|l| l["text"].as_str().unwrap()).collect();
        assert_eq!(got_text, want_text, "{file}: texts");
        for (g, w) in got.iter().zip(want) {
            for (k, corner) in g.r#box.iter().enumerate() {
                for (d, &v) in corner.iter().enumerate() {
                    let r = w["box"][k][d].as_f64().unwrap() as f32;
                    let diff = (v - r).abs();
                    worst_box = worst_box.max(diff);
                    assert!(
                        diff <= BOX_TOL,
                        "{file} `{}`: corner {k} {:?} vs {}",
                        g.text,
                        g.r#box,
                        w["box"]
                    );
                }
            }
            let ds = (g.score - w["score"].as_f64().unwrap() as f32).abs();
            worst_score = worst_score.max(ds);
            assert!(
                ds <= SCORE_TOL,
                "{file} `{}`: score {} vs {}",
                g.text,
                g.score,
                w["score"]
            );
            n_lines += 1;
        }
    }
    eprintln!(
        "{} images, {n_lines} lines: texts identical, max box corner difference {worst_box} px, max score difference {worst_score:.2e}",
        images.len()
    );
}

#[test]
fn upside_down_line_is_turned_by_the_classifier() {
    let got = engine()
        .recognize_file(&fixtures().join("ocr_upside_down.png"))
        .unwrap();
    assert!(
        got.iter().any(|l| l.text == "jumps over 13 lazy dogs"),
        "{got:?}"
    );
}

#[test]
fn hostile_inputs_give_errors_or_nothing_never_panics() {
    let e = engine();
    // a truncated PNG: a clear error naming the file
    let dir = tempfile::tempdir().unwrap();
    let png = std::fs::read(fixtures().join("ocr_receipt.png")).unwrap();
    let bad = dir.path().join("truncated.png");
    std::fs::write(&bad, &png[..png.len() / 3]).unwrap();
    let err = e.recognize_file(&bad).unwrap_err().to_string();
    assert!(err.contains("truncated.png"), "{err}");
    // not an image at all
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"definitely not a png").unwrap();
    assert!(
        e.recognize_file(&junk)
            .unwrap_err()
            .to_string()
            .contains("junk.png")
    );
    // a missing file
    assert!(e.recognize_file(&dir.path().join("missing.png")).is_err());
    // no pixels, one pixel, blank, a thin strip: no lines
    for (w, h, v) in [
        (0, 0, 0u8),
        (1, 1, 0),
        (1, 1, 255),
        (64, 64, 255),
        (640, 480, 255),
        (300, 2, 0),
    ] {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([v, v, v]));
        assert_eq!(
            e.recognize(&img).unwrap(),
            Vec::<OcrLine>::new(),
            "{w}x{h} of {v}"
        );
    }
    // extreme aspect ratios are refused with a message instead of being
    // allocated (rapidocr would scale a 2x300 image to a 736x103776 detector
    // input, about 76 million pixels)
    for (w, h) in [(2u32, 300u32), (16_000, 1)] {
        let strip = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
        let msg = e.recognize(&strip).unwrap_err().to_string();
        assert!(msg.contains(&format!("image {w}x{h}")), "{msg}");
    }
}

#[test]
fn bad_model_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = OcrEngine::from_asset_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(missing.contains("ch_PP-OCRv4_det_infer.onnx"), "{missing}");
    let junk = dir.path().join("ch_PP-OCRv4_det_infer.onnx");
    std::fs::write(&junk, b"\x08\x07garbage").unwrap();
    let msg = OcrEngine::from_asset_dir(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("ch_PP-OCRv4_det_infer.onnx") && msg.contains("detection"),
        "{msg}"
    );
}
