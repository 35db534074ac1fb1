//! OCR with the real PP-OCRv4 models, giving what
//! [rapidocr-onnxruntime](https://pypi.org/project/rapidocr-onnxruntime/)
//! 1.4.4 gives: the same lines, the same text, the same boxes and scores.
//!
//! The pipeline is rapidocr's, step for step: bound the image size, add
//! black bands to short or very wide images, run the DB text detector
//! (PP-OCRv4 det) on the image scaled so its shorter side is 736 pixels,
//! turn its probability map into boxes (threshold 0.3, 2x2 dilation,
//! contours, min-area rectangles, box score ≥ 0.5, "unclip" by 1.6), sort
//! them top to bottom, cut each out with a perspective warp, turn lines the
//! angle classifier (mobile v2.0 cls) reads as upside down, recognise them
//! in width-sorted batches of 6 (PP-OCRv4 rec, 48 pixels high) and decode
//! the CTC output with the character list stored in the model's metadata.
//! [`OcrOptions`] holds every setting of rapidocr's `config.yaml` that
//! changes results, with its defaults.
//!
//! **Why tract.** The three networks run with
//! [tract](https://crates.io/crates/tract-onnx), a pure-Rust ONNX runtime,
//! not with candle like the rest of Mosaic: porting PP-OCR's graphs
//! (PP-LCNetV3 + DB head, SVTR-LCNet, MobileNetV3) to candle by hand would
//! be a large, error-prone transcription of hundreds of nodes, while tract
//! runs the published ONNX files unchanged.
//!
//! **Why own OpenCV ports.** The steps between the networks are OpenCV and
//! pyclipper calls whose exact arithmetic decides where boxes end up (see
//! the `cv` and `clipper` modules); they are ported and checked bit for bit
//! against `cv2` 4.14 and pyclipper 1.4.0.
//!
//! Known differences from rapidocr: images with an alpha channel are
//! composited onto white (rapidocr 1.4.4 inverts such images whenever they
//! have any non-black pixel), palette PNGs are read as colour (rapidocr
//! reads their palette indices as grey levels), and inputs whose detector
//! image would exceed [`OcrOptions::max_det_pixels`] are refused instead of
//! allocated.
//!
//! ```no_run
//! use mosaic_core::assets::AssetStore;
//! use mosaic_ocr::OcrEngine;
//!
//! // `mosaic assets fetch pp-ocrv4` puts the three ONNX files here
//! let dir = AssetStore::from_env()?.path("pp-ocrv4")?;
//! let engine = OcrEngine::from_asset_dir(&dir)?;
//! for line in engine.recognize_file("receipt.png".as_ref())? {
//!     println!("{:?} {} ({:.3})", line.r#box, line.text, line.score);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod clipper;
mod cv;
mod det;
mod engine;
mod error;
mod onnx;
mod options;

pub use engine::{CLS_FILE, DET_FILE, OcrEngine, OcrLine, REC_FILE};
pub use error::{Error, Result};
pub use options::{LimitType, OcrOptions, ScoreMode};
