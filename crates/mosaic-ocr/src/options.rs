//! [`OcrOptions`]: every knob of rapidocr-onnxruntime 1.4.4's `config.yaml`
//! that changes results, with its defaults.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the detector's input size is chosen (`Det.limit_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LimitType {
    /// Scale up so the shorter side is at least `limit_side_len` (default).
    #[default]
    Min,
    /// Scale down so the longer side is at most 960, 1500 or 2000 (by the
    /// image's size; rapidocr ignores `limit_side_len` in this mode).
    Max,
}

/// How a candidate box is scored against `box_thresh` (`Det.score_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScoreMode {
    /// Mean probability inside the min-area rectangle (default).
    #[default]
    Fast,
    /// Mean probability inside the contour itself.
    Slow,
}

/// OCR settings. Defaults are rapidocr-onnxruntime 1.4.4's `config.yaml`;
/// unknown keys are refused when read from TOML/JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcrOptions {
    /// Lines whose recognition score is below this are dropped (`Global.text_score`, 0.5).
    pub text_score: f32,
    /// Images this tall or less get black bands above and below before
    /// detection (`Global.min_height`, 30).
    pub min_height: usize,
    /// Images wider than this many heights also get the bands; a negative
    /// value turns the rule off (`Global.width_height_ratio`, 8).
    pub width_height_ratio: f64,
    /// Images whose longer side exceeds this are scaled down first (`Global.max_side_len`, 2000).
    pub max_side_len: usize,
    /// Images whose shorter side is below this are scaled up first (`Global.min_side_len`, 30).
    pub min_side_len: usize,
    /// Detector input size rule (`Det.limit_type`, min).
    pub limit_type: LimitType,
    /// Detector side length for `limit_type = min` (`Det.limit_side_len`, 736).
    pub limit_side_len: usize,
    /// Probability threshold of the text mask (`Det.thresh`, 0.3).
    pub det_thresh: f64,
    /// Minimum mean probability of a box (`Det.box_thresh`, 0.5).
    pub box_thresh: f64,
    /// At most this many contours are considered (`Det.max_candidates`, 1000).
    pub max_candidates: usize,
    /// How far boxes are grown: area * ratio / perimeter (`Det.unclip_ratio`, 1.6).
    pub unclip_ratio: f64,
    /// Dilate the text mask with a 2x2 kernel (`Det.use_dilation`, true).
    pub use_dilation: bool,
    /// Box scoring (`Det.score_mode`, fast).
    pub score_mode: ScoreMode,
    /// Run the 0/180-degree angle classifier (`Global.use_cls`, true).
    pub use_cls: bool,
    /// A line is turned when the classifier says 180 with more than this (`Cls.cls_thresh`, 0.9).
    pub cls_thresh: f32,
    /// Classifier batch size (`Cls.cls_batch_num`, 6).
    pub cls_batch_num: usize,
    /// Recognizer batch size (`Rec.rec_batch_num`, 6). Batches are padded to
    /// their widest line, so this changes scores slightly, as in rapidocr.
    pub rec_batch_num: usize,
    /// Refuse images whose detector input would exceed this many pixels
    /// (not in rapidocr, which would allocate it: a 1x16000 strip becomes a
    /// 736x368000 detector input there). Default 40 million.
    pub max_det_pixels: usize,
}

impl Default for OcrOptions {
    fn default() -> Self {
        OcrOptions {
            text_score: 0.5,
            min_height: 30,
            width_height_ratio: 8.0,
            max_side_len: 2000,
            min_side_len: 30,
            limit_type: LimitType::Min,
            limit_side_len: 736,
            det_thresh: 0.3,
            box_thresh: 0.5,
            max_candidates: 1000,
            unclip_ratio: 1.6,
            use_dilation: true,
            score_mode: ScoreMode::Fast,
            use_cls: true,
            cls_thresh: 0.9,
            cls_batch_num: 6,
            rec_batch_num: 6,
            max_det_pixels: 40_000_000,
        }
    }
}

impl OcrOptions {
    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, message: String| Err(Error::InvalidOption { name, message });
        if self.limit_side_len < 32 {
            return bad(
                "limit_side_len",
                format!("must be at least 32, got {}", self.limit_side_len),
            );
        }
        if self.max_side_len < 32 {
            return bad(
                "max_side_len",
                format!("must be at least 32, got {}", self.max_side_len),
            );
        }
        if self.min_side_len == 0 || self.min_side_len > self.max_side_len {
            return bad(
                "min_side_len",
                format!("must be in 1..=max_side_len, got {}", self.min_side_len),
            );
        }
        if !(0.0..1.0).contains(&self.det_thresh) {
            return bad(
                "det_thresh",
                format!("must be in [0, 1), got {}", self.det_thresh),
            );
        }
        if !(0.0..=1.0).contains(&self.box_thresh) {
            return bad(
                "box_thresh",
                format!("must be in [0, 1], got {}", self.box_thresh),
            );
        }
        if !(self.unclip_ratio.is_finite() && self.unclip_ratio > 0.0) {
            return bad(
                "unclip_ratio",
                format!("must be positive, got {}", self.unclip_ratio),
            );
        }
        if !self.width_height_ratio.is_finite() || self.width_height_ratio == 0.0 {
            return bad(
                "width_height_ratio",
                format!(
                    "must be positive (or negative to disable), got {}",
                    self.width_height_ratio
                ),
            );
        }
        if self.cls_batch_num == 0 {
            return bad("cls_batch_num", "must be at least 1".into());
        }
        if self.rec_batch_num == 0 {
            return bad("rec_batch_num", "must be at least 1".into());
        }
        if !self.text_score.is_finite() || !self.cls_thresh.is_finite() {
            return bad(
                "text_score",
                "text_score and cls_thresh must be finite".into(),
            );
        }
        Ok(())
    }
}
