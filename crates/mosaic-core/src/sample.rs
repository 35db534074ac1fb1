//! One item of a data set: any subset of modalities plus metadata.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::modality::Modality;

/// The value of one modality in a [`Sample`], at whatever stage it is in:
/// a reference not yet read, raw bytes not yet decoded, text, or decoded
/// numbers.
#[derive(Debug, Clone)]
pub enum ModalityValue {
    /// Text, as is.
    Text(String),
    /// A file not yet read.
    Path(PathBuf),
    /// Encoded bytes (a JPEG, a WAV, ...) not yet decoded.
    Bytes(Vec<u8>),
    /// Decoded numbers, e.g. an image as `[H, W, C]` u8 or audio as `[T]` f32.
    Tensor(Tensor),
}

/// A time interval in seconds, optionally with the text that belongs to it
/// (a subtitle cue, a transcript segment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSpan {
    /// Start in seconds.
    pub start: f64,
    /// End in seconds (not before `start`).
    pub end: f64,
    /// Text attached to the span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// An axis-aligned box in pixel coordinates of the original image:
/// top-left corner `(x, y)`, width `w`, height `h`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundingBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
    /// Class or phrase of the box.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// One item: any subset of modalities plus metadata. A missing modality is
/// normal (not an error): fusion layers and collators handle absence.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Stable identifier (a manifest row id, a file stem, ...).
    pub id: String,
    /// The modalities this sample has.
    pub modalities: BTreeMap<Modality, ModalityValue>,
    /// Class labels.
    pub labels: Vec<String>,
    /// Captions or transcripts.
    pub captions: Vec<String>,
    /// Timed segments (subtitle cues, transcript segments, events).
    pub timestamps: Vec<TimeSpan>,
    /// Boxes on the image or frames.
    pub boxes: Vec<BoundingBox>,
    /// Any other metadata, kept as JSON (used e.g. for fairness breakdowns).
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Sample {
    /// An empty sample with the given id.
    pub fn new(id: impl Into<String>) -> Self {
        Sample {
            id: id.into(),
            ..Default::default()
        }
    }

    /// Adds (or replaces) a modality, builder style.
    pub fn with(mut self, modality: Modality, value: ModalityValue) -> Self {
        self.modalities.insert(modality, value);
        self
    }

    /// The value of `modality`, if this sample has it.
    pub fn get(&self, modality: Modality) -> Option<&ModalityValue> {
        self.modalities.get(&modality)
    }

    /// Whether this sample has `modality`.
    pub fn has(&self, modality: Modality) -> bool {
        self.modalities.contains_key(&modality)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_modalities_are_normal() {
        let s = Sample::new("a").with(Modality::Text, ModalityValue::Text("hi".into()));
        assert!(s.has(Modality::Text));
        assert!(!s.has(Modality::Image));
        assert!(s.get(Modality::Audio).is_none());
    }

    #[test]
    fn metadata_rejects_unknown_keys() {
        let ok: TimeSpan = serde_json::from_str(r#"{"start":1.0,"end":2.5,"text":"hi"}"#).unwrap();
        assert_eq!(ok.end, 2.5);
        let err = serde_json::from_str::<BoundingBox>(r#"{"x":1,"y":2,"w":3,"h":4,"z":5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`z`"), "{err}");
    }
}
