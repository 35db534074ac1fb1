//! Data configuration from TOML or JSON: which preprocessing each modality
//! gets and how the loader batches. Unknown keys are refused with their
//! dotted path.
//!
//! ```toml
//! classes = ["cat", "dog"]
//!
//! [text]
//! tokenizer = "/models/clip/tokenizer.json"   # a file or a folder
//! max_length = 77
//! padding = "fixed"                            # "longest" | "fixed" | "none"
//!
//! [image]
//! preprocessor = "/models/clip"               # preprocessor_config.json (file or folder)
//! # or: preset = "clip" / "siglip", size = 224
//!
//! [audio]
//! output = "whisper_log_mel"                   # or "waveform"
//! n_mels = 80
//!
//! [loader]
//! batch_size = 64
//! shuffle_buffer = 10000
//! seed = 1
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::audio::{WhisperFeatureConfig, WhisperFeatureExtractor};
use crate::error::{Error, Result};
use crate::image::{AlphaMode, DecodeOptions, ImageProcessor};
use crate::loader::LoaderConfig;
use crate::pipeline::{AudioOutput, Pipeline, SensorPipeline};
use crate::pointcloud::{PointCloudConfig, Sampling};
use crate::sensor::{NanPolicy, SensorReadOptions};
use crate::text::{Padding, TextConfig, TextTokenizer};
use crate::video::{FrameSampling, VideoOptions};

/// The whole data configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Class names in index order (labels map to indices).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Text settings.
    #[serde(default)]
    pub text: Option<TextSection>,
    /// Image settings.
    #[serde(default)]
    pub image: Option<ImageSection>,
    /// Audio settings.
    #[serde(default)]
    pub audio: Option<AudioSection>,
    /// Video settings (frames go through `image`).
    #[serde(default)]
    pub video: Option<VideoSection>,
    /// Point-cloud settings.
    #[serde(default)]
    pub point_cloud: Option<PointCloudSection>,
    /// Sensor settings.
    #[serde(default)]
    pub sensor: Option<SensorSection>,
    /// Loader settings.
    #[serde(default)]
    pub loader: LoaderSection,
    /// Seed for preprocessing randomness (point sampling).
    #[serde(default)]
    pub seed: u64,
}

/// `[text]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TextSection {
    /// `tokenizer.json` or a folder holding it.
    pub tokenizer: PathBuf,
    /// Truncate to this many tokens (default 512; CLIP uses 77).
    #[serde(default)]
    pub max_length: Option<usize>,
    /// `"longest"` (default), `"fixed"` (to `max_length`) or `"none"`.
    #[serde(default)]
    pub padding: Option<String>,
    /// Add special tokens (default true).
    #[serde(default)]
    pub add_special_tokens: Option<bool>,
}

/// `[image]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    /// A `preprocessor_config.json` or a checkpoint folder holding one.
    #[serde(default)]
    pub preprocessor: Option<PathBuf>,
    /// `"clip"` or `"siglip"` when no preprocessor file is given.
    #[serde(default)]
    pub preset: Option<String>,
    /// Size for the preset (default 224).
    #[serde(default)]
    pub size: Option<usize>,
    /// Apply EXIF orientation (default true).
    #[serde(default)]
    pub exif_orientation: Option<bool>,
    /// `"white"` (composite alpha over white, default) or `"drop"`.
    #[serde(default)]
    pub alpha: Option<String>,
}

/// `[audio]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AudioSection {
    /// `"waveform"` (default) or `"whisper_log_mel"`.
    #[serde(default)]
    pub output: Option<String>,
    /// Sample rate (default 16000).
    #[serde(default)]
    pub rate: Option<u32>,
    /// Waveform: trim to this many seconds (default 30).
    #[serde(default)]
    pub max_seconds: Option<f64>,
    /// Whisper: mel bins (default 80).
    #[serde(default)]
    pub n_mels: Option<usize>,
}

/// `[video]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VideoSection {
    /// Uniformly spaced frames (default 8).
    #[serde(default)]
    pub frames: Option<usize>,
    /// Or one frame every this many seconds.
    #[serde(default)]
    pub every_seconds: Option<f64>,
    /// Frame rate of image-sequence folders (default 1).
    #[serde(default)]
    pub sequence_fps: Option<f64>,
}

/// `[point_cloud]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PointCloudSection {
    /// Points per cloud (default 1024).
    #[serde(default)]
    pub num_points: Option<usize>,
    /// `"farthest"` (default) or `"random"`.
    #[serde(default)]
    pub sampling: Option<String>,
    /// Centre (default true).
    #[serde(default)]
    pub center: Option<bool>,
    /// Unit-sphere scaling (default true).
    #[serde(default)]
    pub unit_sphere: Option<bool>,
    /// Append normals.
    #[serde(default)]
    pub normals: bool,
    /// Append colours.
    #[serde(default)]
    pub colors: bool,
}

/// `[sensor]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SensorSection {
    /// Time column name (CSV).
    #[serde(default)]
    pub time_column: Option<String>,
    /// Input rate when there is no time column.
    #[serde(default)]
    pub input_rate: Option<f64>,
    /// Multiply timestamps by this to get seconds.
    #[serde(default)]
    pub time_scale: Option<f64>,
    /// Missing values: reject (default), drop_row, interpolate, forward_fill, zero.
    #[serde(default)]
    pub nan_policy: NanPolicy,
    /// Resample to this rate (Hz).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Largest gap allowed when resampling (seconds).
    #[serde(default)]
    pub max_gap: Option<f64>,
    /// Per-channel z-score.
    #[serde(default)]
    pub normalize: bool,
    /// Keep at most this many steps.
    #[serde(default)]
    pub max_steps: Option<usize>,
}

/// `[loader]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoaderSection {
    /// Batch size (default 32).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Shuffle buffer (default 0 = in order).
    #[serde(default)]
    pub shuffle_buffer: Option<usize>,
    /// Shuffle seed (default 0).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Drop a last short batch.
    #[serde(default)]
    pub drop_last: bool,
    /// Decode threads (default: all cores).
    #[serde(default)]
    pub num_workers: Option<usize>,
    /// Samples in flight (default 256).
    #[serde(default)]
    pub queue_depth: Option<usize>,
    /// Stop at the first bad sample.
    #[serde(default)]
    pub strict: bool,
}

impl DataConfig {
    /// Reads a TOML or JSON file; relative paths inside are resolved
    /// against the file's folder.
    pub fn load(path: &Path) -> Result<Self> {
        let mut cfg: DataConfig = mosaic_core::config::load_config(path)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(t) = cfg.text.as_mut() {
            fix(&mut t.tokenizer);
        }
        if let Some(p) = cfg.image.as_mut().and_then(|i| i.preprocessor.as_mut()) {
            fix(p);
        }
        Ok(cfg)
    }

    /// Builds the preprocessing pipeline.
    pub fn pipeline(&self) -> Result<Pipeline> {
        let text = match &self.text {
            None => None,
            Some(t) => {
                let max_length = t.max_length.or(Some(512));
                let padding = match t.padding.as_deref().unwrap_or("longest") {
                    "longest" => Padding::Longest,
                    "none" => Padding::None,
                    "fixed" | "max_length" => Padding::Fixed(max_length.unwrap_or(512)),
                    other => {
                        return Err(Error::config(
                            "text.padding",
                            format!("`{other}` is not one of longest, fixed, none"),
                        ));
                    }
                };
                Some(TextTokenizer::from_file(
                    &t.tokenizer,
                    TextConfig {
                        max_length,
                        padding,
                        add_special_tokens: t.add_special_tokens.unwrap_or(true),
                    },
                )?)
            }
        };
        let mut image_decode = DecodeOptions::default();
        let image = match &self.image {
            None => None,
            Some(i) => {
                image_decode.apply_exif_orientation = i.exif_orientation.unwrap_or(true);
                image_decode.alpha = match i.alpha.as_deref().unwrap_or("white") {
                    "white" => AlphaMode::CompositeWhite,
                    "drop" => AlphaMode::Drop,
                    other => {
                        return Err(Error::config(
                            "image.alpha",
                            format!("`{other}` is not one of white, drop"),
                        ));
                    }
                };
                Some(match (&i.preprocessor, i.preset.as_deref()) {
                    (Some(p), None) => ImageProcessor::from_pretrained(p)?,
                    (None, Some("clip")) => ImageProcessor::clip(i.size.unwrap_or(224)),
                    (None, Some("siglip")) => ImageProcessor::siglip(i.size.unwrap_or(224)),
                    (None, Some(other)) => {
                        return Err(Error::config(
                            "image.preset",
                            format!("`{other}` is not one of clip, siglip"),
                        ));
                    }
                    (Some(_), Some(_)) => {
                        return Err(Error::config(
                            "image",
                            "give either `preprocessor` or `preset`, not both",
                        ));
                    }
                    (None, None) => {
                        return Err(Error::config(
                            "image",
                            "needs `preprocessor` (a preprocessor_config.json) or `preset`",
                        ));
                    }
                })
            }
        };
        let audio = match &self.audio {
            None => None,
            Some(a) => Some(match a.output.as_deref().unwrap_or("waveform") {
                "waveform" => AudioOutput::Waveform {
                    rate: a.rate.unwrap_or(16_000),
                    max_seconds: a.max_seconds.unwrap_or(30.0),
                },
                "whisper_log_mel" => AudioOutput::WhisperLogMel(Box::new(
                    WhisperFeatureExtractor::new(WhisperFeatureConfig {
                        n_mels: a.n_mels.unwrap_or(80),
                        sample_rate: a.rate.unwrap_or(16_000),
                        ..Default::default()
                    })?,
                )),
                other => {
                    return Err(Error::config(
                        "audio.output",
                        format!("`{other}` is not one of waveform, whisper_log_mel"),
                    ));
                }
            }),
        };
        let video = match &self.video {
            None => None,
            Some(v) => {
                if image.is_none() {
                    return Err(Error::config(
                        "video",
                        "video frames need an [image] section",
                    ));
                }
                let sampling = match (v.frames, v.every_seconds) {
                    (Some(_), Some(_)) => {
                        return Err(Error::config(
                            "video",
                            "give either `frames` or `every_seconds`, not both",
                        ));
                    }
                    (_, Some(s)) => FrameSampling::Every(s),
                    (n, None) => FrameSampling::Uniform(n.unwrap_or(8)),
                };
                Some(VideoOptions {
                    sampling,
                    sequence_fps: v.sequence_fps.unwrap_or(1.0),
                    ..Default::default()
                })
            }
        };
        let point_cloud = match &self.point_cloud {
            None => None,
            Some(p) => Some(PointCloudConfig {
                num_points: p.num_points.unwrap_or(1024),
                sampling: match p.sampling.as_deref().unwrap_or("farthest") {
                    "farthest" => Sampling::Farthest,
                    "random" => Sampling::Random,
                    other => {
                        return Err(Error::config(
                            "point_cloud.sampling",
                            format!("`{other}` is not one of farthest, random"),
                        ));
                    }
                },
                center: p.center.unwrap_or(true),
                unit_sphere: p.unit_sphere.unwrap_or(true),
                normals: p.normals,
                colors: p.colors,
            }),
        };
        let sensor = self.sensor.as_ref().map(|s| SensorPipeline {
            read: SensorReadOptions {
                time_column: s.time_column.clone(),
                rate: s.input_rate,
                time_scale: s.time_scale,
                nan_policy: s.nan_policy,
            },
            rate: s.rate,
            max_gap: s.max_gap,
            normalize: s.normalize,
            max_steps: s.max_steps,
        });
        Ok(Pipeline {
            text,
            image,
            image_decode,
            audio,
            video,
            point_cloud,
            sensor,
            classes: self.classes.clone(),
            seed: self.seed,
        })
    }

    /// The loader settings.
    pub fn loader_config(&self) -> LoaderConfig {
        let d = LoaderConfig::default();
        let l = &self.loader;
        LoaderConfig {
            batch_size: l.batch_size.unwrap_or(d.batch_size),
            shuffle_buffer: l.shuffle_buffer.unwrap_or(d.shuffle_buffer),
            seed: l.seed.unwrap_or(d.seed),
            drop_last: l.drop_last,
            num_workers: l.num_workers.unwrap_or(d.num_workers),
            queue_depth: l.queue_depth.unwrap_or(d.queue_depth),
            strict: l.strict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.toml");
        std::fs::write(
            &p,
            "[image]\npreset = \"clip\"\nsize = 32\n[loader]\nbatch_sise = 4\n",
        )
        .unwrap();
        let e = DataConfig::load(&p).unwrap_err().to_string();
        assert!(e.contains("loader.batch_sise"), "{e}");
        std::fs::write(&p, "[image]\npreset = \"vit\"\n").unwrap();
        let e = DataConfig::load(&p)
            .unwrap()
            .pipeline()
            .unwrap_err()
            .to_string();
        assert!(e.contains("image.preset") && e.contains("vit"), "{e}");
        std::fs::write(&p, "[video]\nframes = 4\n").unwrap();
        assert!(
            DataConfig::load(&p)
                .unwrap()
                .pipeline()
                .unwrap_err()
                .to_string()
                .contains("[image]")
        );
        std::fs::write(&p, "classes = [\"a\"]\n[image]\npreset = \"siglip\"\nsize = 16\n[sensor]\nnan_policy = \"interpolate\"\nrate = 10.0\n[loader]\nbatch_size = 4\nseed = 3\n").unwrap();
        let c = DataConfig::load(&p).unwrap();
        let pipe = c.pipeline().unwrap();
        assert_eq!(pipe.image.unwrap().output_size(100, 50), (16, 16));
        assert_eq!(pipe.sensor.unwrap().read.nan_policy, NanPolicy::Interpolate);
        assert_eq!(c.loader_config().batch_size, 4);
    }
}
