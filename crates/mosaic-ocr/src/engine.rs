//! [`OcrEngine`]: rapidocr-onnxruntime 1.4.4's `RapidOCR.__call__`, step for
//! step: global resize, letterbox, detection, box sorting, perspective
//! crops, angle classification, batched recognition, CTC decoding, score
//! filter, boxes back in the input's coordinates.

use std::path::Path;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::cv::{self, Mat};
use crate::det;
use crate::error::{Error, Result};
use crate::onnx::{Net, metadata, read_proto};
use crate::options::OcrOptions;

/// File name of the detection model in the `pp-ocrv4` asset.
pub const DET_FILE: &str = "ch_PP-OCRv4_det_infer.onnx";
/// File name of the angle classifier in the `pp-ocrv4` asset.
pub const CLS_FILE: &str = "ch_ppocr_mobile_v2.0_cls_infer.onnx";
/// File name of the recognition model in the `pp-ocrv4` asset.
pub const REC_FILE: &str = "ch_PP-OCRv4_rec_infer.onnx";

const REC_HEIGHT: usize = 48;
const REC_WIDTH: usize = 320;
const CLS_HEIGHT: usize = 48;
const CLS_WIDTH: usize = 192;

/// One line of text found in an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcrLine {
    /// Corners in input-image pixels: top-left, top-right, bottom-right,
    /// bottom-left (clockwise from the text's start).
    pub r#box: [[f32; 2]; 4],
    /// The recognised text.
    pub text: String,
    /// Mean probability of the decoded characters, in [0, 1].
    pub score: f32,
}

/// PP-OCRv4 text detection + angle classification + recognition.
///
/// Thread-safe: `recognize` takes `&self`.
#[derive(Debug)]
pub struct OcrEngine {
    det: Net,
    cls: Option<Net>,
    rec: Net,
    chars: Vec<String>,
    options: OcrOptions,
}

/// Python's `str.splitlines()` (the line boundaries it knows).
fn split_lines(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\r' => {
                if it.peek() == Some(&'\n') {
                    it.next();
                }
                out.push(std::mem::take(&mut cur));
            }
            '\n' | '\x0b' | '\x0c' | '\x1c' | '\x1d' | '\x1e' | '\u{85}' | '\u{2028}'
            | '\u{2029}' => {
                out.push(std::mem::take(&mut cur));
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl OcrEngine {
    /// Loads the three models from a folder holding the `pp-ocrv4` asset's
    /// files ([`DET_FILE`], [`CLS_FILE`], [`REC_FILE`]) with default options.
    pub fn from_asset_dir(dir: impl AsRef<Path>) -> Result<OcrEngine> {
        OcrEngine::from_asset_dir_with(dir, OcrOptions::default())
    }

    /// [`OcrEngine::from_asset_dir`] with options.
    pub fn from_asset_dir_with(dir: impl AsRef<Path>, options: OcrOptions) -> Result<OcrEngine> {
        let dir = dir.as_ref();
        let cls = dir.join(CLS_FILE);
        OcrEngine::load(
            &dir.join(DET_FILE),
            options.use_cls.then_some(cls.as_path()),
            &dir.join(REC_FILE),
            options,
        )
    }

    /// Loads the detection model, the optional angle classifier and the
    /// recognition model (whose character list is read from its ONNX
    /// metadata `character`).
    pub fn load(
        det: &Path,
        cls: Option<&Path>,
        rec: &Path,
        options: OcrOptions,
    ) -> Result<OcrEngine> {
        options.validate()?;
        let det_net = Net::from_proto(
            read_proto(det, "detection")?,
            det,
            "detection",
            &["1", "3", "32*h", "32*w"],
            [1, 3, 736, 736],
        )?;
        let cls_net = match cls {
            Some(p) => Some(Net::from_proto(
                read_proto(p, "angle classifier")?,
                p,
                "angle classifier",
                &["N", "3", "48", "192"],
                [1, 3, 48, 192],
            )?),
            None => None,
        };
        let rec_proto = read_proto(rec, "recognition")?;
        let dict = metadata(&rec_proto, "character").ok_or_else(|| Error::Model {
            path: rec.to_path_buf(),
            what: "recognition",
            message: "no `character` entry in the ONNX metadata (the character list)".into(),
        })?;
        // rapidocr: splitlines(), then " " appended and "blank" (CTC) first
        let mut chars = vec!["blank".to_string()];
        chars.extend(split_lines(dict));
        chars.push(" ".to_string());
        let rec_net = Net::from_proto(
            rec_proto,
            rec,
            "recognition",
            &["N", "3", "48", "W"],
            [1, 3, 48, 320],
        )?;
        Ok(OcrEngine {
            det: det_net,
            cls: cls_net,
            rec: rec_net,
            chars,
            options,
        })
    }

    /// The options in use.
    pub fn options(&self) -> &OcrOptions {
        &self.options
    }

    /// The recogniser's classes: index 0 is the CTC blank, the last is " ".
    pub fn characters(&self) -> &[String] {
        &self.chars
    }

    /// Decodes an image file (PNG, JPEG, ...; errors name the file) and
    /// reads its text.
    pub fn recognize_file(&self, path: &Path) -> Result<Vec<OcrLine>> {
        let img =
            mosaic_data::image::load_image(path, &mosaic_data::image::DecodeOptions::default())?;
        self.recognize(&img)
    }

    /// Finds and reads every line of text, top to bottom then left to
    /// right. An image without text (or with no pixels) gives no lines.
    pub fn recognize(&self, image: &RgbImage) -> Result<Vec<OcrLine>> {
        let (raw_w, raw_h) = image.dimensions();
        if raw_w == 0 || raw_h == 0 {
            return Ok(Vec::new());
        }
        let o = &self.options;
        let mut img = rgb_to_bgr(image);
        let err = |message: String| Error::Image {
            width: raw_w,
            height: raw_h,
            message,
        };

        // RapidOCR.preprocess: bound the longer and the shorter side
        let (mut ratio_h, mut ratio_w) = (1.0f64, 1.0f64);
        if img.h.max(img.w) > o.max_side_len {
            let r = o.max_side_len as f64 / if img.h > img.w { img.h } else { img.w } as f64;
            (img, ratio_h, ratio_w) = resize_by(&img, r)
                .ok_or_else(|| err("too thin to scale down to max_side_len".into()))?;
        }
        if img.h.min(img.w) < o.min_side_len {
            let r = o.min_side_len as f64 / if img.h < img.w { img.h } else { img.w } as f64;
            let (rh, rw) = (
                det::round32((img.h as f64 * r) as i64),
                det::round32((img.w as f64 * r) as i64),
            );
            if rh.saturating_mul(rw) > o.max_det_pixels {
                return Err(err(format!(
                    "scaling it to min_side_len would make {rw}x{rh} pixels, over max_det_pixels"
                )));
            }
            (img, ratio_h, ratio_w) =
                resize_by(&img, r).ok_or_else(|| err("cannot scale up to min_side_len".into()))?;
        }

        // maybe_add_letterbox: black bands above and below short or wide images
        let mut top = 0usize;
        let wide = o.width_height_ratio > 0.0 && img.w as f64 / img.h as f64 > o.width_height_ratio;
        if img.h <= o.min_height || wide {
            let new_h = ((img.w as f64 / o.width_height_ratio) as i64).max(o.min_height as i64) * 2;
            top = ((new_h - img.h as i64).unsigned_abs() as f64 / 2.0) as usize;
            if (img.h + 2 * top).saturating_mul(img.w) > o.max_det_pixels {
                return Err(err(
                    "the letterboxed image would exceed max_det_pixels".into()
                ));
            }
            img = img.pad_rows(top, top);
        }

        // detection
        let boxes = self.detect(&img).map_err(|e| match e {
            Error::Image { message, .. } => err(message),
            other => other,
        })?;
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let mut kept = Vec::with_capacity(boxes.len());
        let mut crops = Vec::with_capacity(boxes.len());
        for q in boxes {
            if let Some(c) = det::crop(&img, &q) {
                kept.push(q);
                crops.push(c);
            }
        }
        if self.cls.is_some() {
            self.classify(&mut crops)?;
        }
        let rec = self.recognize_crops(&crops)?;

        // _get_origin_points + filter_result
        let mut lines = Vec::new();
        for (q, (text, score)) in kept.iter().zip(rec) {
            if score < o.text_score as f64 {
                continue;
            }
            let mut b = *q;
            for p in b.iter_mut() {
                p[1] -= top as f32;
                p[0] *= ratio_w as f32;
                p[1] *= ratio_h as f32;
                p[0] = if p[0] < 0.0 {
                    0.0
                } else {
                    p[0].min(raw_w as f32)
                };
                p[1] = if p[1] < 0.0 {
                    0.0
                } else {
                    p[1].min(raw_h as f32)
                };
            }
            lines.push(OcrLine {
                r#box: b,
                text,
                score: score as f32,
            });
        }
        Ok(lines)
    }

    /// Boxes in the (letterboxed) image, sorted as rapidocr sorts them.
    fn detect(&self, img: &Mat) -> Result<Vec<det::Quad>> {
        let o = &self.options;
        // the detector input size, checked before any allocation
        let (rh, rw) = det::input_size(img, o);
        if rh == 0 || rw == 0 {
            return Ok(Vec::new());
        }
        if rh.saturating_mul(rw) > o.max_det_pixels {
            return Err(Error::Image {
                width: 0,
                height: 0,
                message: format!(
                    "the detector input would be {rw}x{rh} pixels, over max_det_pixels ({})",
                    o.max_det_pixels
                ),
            });
        }
        let input = det::preprocess(img, rh, rw);
        let (prob, shape) = self.det.run(input, [1, 3, rh, rw])?;
        if shape.len() != 4 || shape[0] != 1 || shape[1] != 1 {
            return Err(Error::Inference {
                what: "detection",
                shape: vec![1, 3, rh, rw],
                message: format!("expected a [1, 1, H, W] probability map, got {shape:?}"),
            });
        }
        let (ph, pw) = (shape[2], shape[3]);
        let boxes = det::boxes_from_prob(&prob, ph, pw, img.w, img.h, o);
        Ok(det::sort_boxes(det::filter_boxes(boxes, img.h, img.w)))
    }

    /// TextClassifier: batches sorted by width/height, 180-degree turns.
    fn classify(&self, crops: &mut [Mat]) -> Result<()> {
        let Some(cls) = &self.cls else {
            return Ok(());
        };
        let order = argsort_ratio(crops);
        for chunk in order.chunks(self.options.cls_batch_num) {
            let n = chunk.len();
            let mut input = Vec::with_capacity(n * 3 * CLS_HEIGHT * CLS_WIDTH);
            for &i in chunk {
                input.extend(resize_norm(&crops[i], CLS_HEIGHT, CLS_WIDTH));
            }
            let (out, shape) = cls.run(input, [n, 3, CLS_HEIGHT, CLS_WIDTH])?;
            if shape != [n, 2] {
                return Err(Error::Inference {
                    what: "angle classifier",
                    shape: vec![n, 3, CLS_HEIGHT, CLS_WIDTH],
                    message: format!("expected [{n}, 2] probabilities, got {shape:?}"),
                });
            }
            for (k, &i) in chunk.iter().enumerate() {
                let (p0, p180) = (out[k * 2], out[k * 2 + 1]);
                // np.argmax: the first maximum
                if p180 > p0 && p180 > self.options.cls_thresh {
                    crops[i] = crops[i].rot180();
                }
            }
        }
        Ok(())
    }

    /// TextRecognizer: batches sorted by width/height, each padded to its
    /// widest line (at least 320x48), then CTC greedy decoding.
    fn recognize_crops(&self, crops: &[Mat]) -> Result<Vec<(String, f64)>> {
        let order = argsort_ratio(crops);
        let mut res = vec![(String::new(), 0.0f64); crops.len()];
        for chunk in order.chunks(self.options.rec_batch_num) {
            let n = chunk.len();
            let mut max_ratio = REC_WIDTH as f64 / REC_HEIGHT as f64;
            for &i in chunk {
                max_ratio = max_ratio.max(crops[i].w as f64 / crops[i].h as f64);
            }
            let width = (REC_HEIGHT as f64 * max_ratio) as usize;
            let mut input = Vec::with_capacity(n * 3 * REC_HEIGHT * width);
            for &i in chunk {
                input.extend(resize_norm(&crops[i], REC_HEIGHT, width));
            }
            let (out, shape) = self.rec.run(input, [n, 3, REC_HEIGHT, width])?;
            if shape.len() != 3 || shape[0] != n || shape[2] != self.chars.len() {
                return Err(Error::Inference {
                    what: "recognition",
                    shape: vec![n, 3, REC_HEIGHT, width],
                    message: format!(
                        "expected [{n}, T, {}] class probabilities (the character list + blank + space), got {shape:?}",
                        self.chars.len()
                    ),
                });
            }
            let (t, c) = (shape[1], shape[2]);
            for (k, &i) in chunk.iter().enumerate() {
                res[i] = ctc_decode(&out[k * t * c..(k + 1) * t * c], t, c, &self.chars);
            }
        }
        Ok(res)
    }
}

/// CTC greedy decoding: argmax per step, repeats merged, blanks dropped;
/// the score is the mean probability of the kept steps (0 when none).
fn ctc_decode(probs: &[f32], t: usize, c: usize, chars: &[String]) -> (String, f64) {
    let mut text = String::new();
    let mut sum = 0f64;
    let mut n = 0usize;
    let mut prev = usize::MAX;
    for s in 0..t {
        let row = &probs[s * c..(s + 1) * c];
        let (mut best, mut bp) = (0usize, row[0]);
        for (j, &p) in row.iter().enumerate().skip(1) {
            if p > bp {
                best = j;
                bp = p;
            }
        }
        if best != 0 && best != prev {
            text.push_str(&chars[best]);
            sum += bp as f64;
            n += 1;
        }
        prev = best;
    }
    (text, if n == 0 { 0.0 } else { sum / n as f64 })
}

/// Crop indices in ascending width/height (a stable sort).
fn argsort_ratio(crops: &[Mat]) -> Vec<usize> {
    let ratios: Vec<f64> = crops.iter().map(|m| m.w as f64 / m.h as f64).collect();
    let mut order: Vec<usize> = (0..crops.len()).collect();
    order.sort_by(|&a, &b| {
        ratios[a]
            .partial_cmp(&ratios[b])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    order
}

/// rapidocr's `resize_norm_img` (classifier and recogniser): resize to
/// height `h` keeping the aspect ratio (width at most `w`), scale to
/// [-1, 1] as float32 `(x / 255 - 0.5) / 0.5`, zero-pad to width `w`.
fn resize_norm(img: &Mat, h: usize, w: usize) -> Vec<f32> {
    let ratio = img.w as f64 / img.h as f64;
    let rw = ((h as f64 * ratio).ceil() as usize).clamp(1, w);
    let resized = cv::resize_linear(img, rw, h);
    let mut out = vec![0f32; 3 * h * w];
    for y in 0..h {
        for x in 0..rw {
            for c in 0..3 {
                let v = resized.data[(y * rw + x) * 3 + c] as f32 / 255.0;
                out[c * h * w + y * w + x] = (v - 0.5) / 0.5;
            }
        }
    }
    out
}

/// `reduce_max_side` / `increase_min_side`: scale by `r`, sides rounded to
/// multiples of 32; returns the image and rapidocr's back-ratios
/// (`h / new_h`, `w / new_w`). `None` when a side rounds to zero.
fn resize_by(img: &Mat, r: f64) -> Option<(Mat, f64, f64)> {
    let rh = det::round32((img.h as f64 * r) as i64);
    let rw = det::round32((img.w as f64 * r) as i64);
    if rh == 0 || rw == 0 {
        return None;
    }
    let out = cv::resize_linear(img, rw, rh);
    Some((out, img.h as f64 / rh as f64, img.w as f64 / rw as f64))
}

fn rgb_to_bgr(img: &RgbImage) -> Mat {
    let (w, h) = img.dimensions();
    let mut data = img.as_raw().clone();
    for px in data.chunks_exact_mut(3) {
        px.swap(0, 2);
    }
    Mat {
        h: h as usize,
        w: w as usize,
        c: 3,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitlines_like_python() {
        assert_eq!(
            split_lines("a\nb\r\nc\rd\x0be\u{2028}f\n"),
            vec!["a", "b", "c", "d", "e", "f"]
        );
        assert_eq!(split_lines("a\n\nb"), vec!["a", "", "b"]);
        assert_eq!(split_lines(""), Vec::<String>::new());
        // a full-width space is a character, not a line boundary
        assert_eq!(split_lines("\u{3000}\nx"), vec!["\u{3000}", "x"]);
    }

    #[test]
    fn ctc_merges_repeats_and_drops_blanks() {
        let chars: Vec<String> = ["blank", "a", "b", " "]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // steps: a a blank a b b blank
        let seq = [1usize, 1, 0, 1, 2, 2, 0];
        let mut probs = vec![0f32; seq.len() * 4];
        for (s, &k) in seq.iter().enumerate() {
            probs[s * 4 + k] = 0.5 + s as f32 * 0.05;
        }
        let (text, score) = ctc_decode(&probs, seq.len(), 4, &chars);
        assert_eq!(text, "aab");
        let want = (0.5 + 0.65 + 0.7) / 3.0;
        assert!((score - want).abs() < 1e-6);
        let (text, score) = ctc_decode(&[1.0, 0.0, 0.0, 0.0], 1, 4, &chars);
        assert_eq!((text.as_str(), score), ("", 0.0));
    }
}
