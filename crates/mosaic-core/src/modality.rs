//! The closed set of modalities Mosaic handles.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// One kind of input signal. The set is closed: every layer of Mosaic
/// (decoders, preprocessors, encoders, metrics) matches on it exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Natural-language text.
    Text,
    /// Still images.
    Image,
    /// Sound, speech included.
    Audio,
    /// Moving images, optionally with an audio track.
    Video,
    /// 3D point clouds.
    PointCloud,
    /// Multichannel time series from sensors (IMU, radar, temperature, ...).
    Sensor,
}

impl Modality {
    /// Every modality, in a fixed order.
    pub const ALL: [Modality; 6] = [
        Modality::Text,
        Modality::Image,
        Modality::Audio,
        Modality::Video,
        Modality::PointCloud,
        Modality::Sensor,
    ];

    /// The name used in configs, manifests and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
            Modality::Audio => "audio",
            Modality::Video => "video",
            Modality::PointCloud => "point_cloud",
            Modality::Sensor => "sensor",
        }
    }
}

impl fmt::Display for Modality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Modality {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        match norm.as_str() {
            "text" => Ok(Modality::Text),
            "image" => Ok(Modality::Image),
            "audio" => Ok(Modality::Audio),
            "video" => Ok(Modality::Video),
            "point_cloud" | "pointcloud" => Ok(Modality::PointCloud),
            "sensor" => Ok(Modality::Sensor),
            _ => Err(Error::InvalidArgument {
                what: "modality",
                value: s.to_string(),
                message: "expected one of text, image, audio, video, point_cloud, sensor".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Modality::ALL {
            assert_eq!(m.as_str().parse::<Modality>().unwrap(), m);
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
        }
        assert_eq!(
            "Point-Cloud".parse::<Modality>().unwrap(),
            Modality::PointCloud
        );
    }

    #[test]
    fn unknown_name_is_named_in_error() {
        let err = "smell".parse::<Modality>().unwrap_err().to_string();
        assert!(err.contains("`smell`"), "{err}");
    }
}
