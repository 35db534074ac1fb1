//! Per-modality preprocessing of a [`Sample`] into tensors, and collation
//! of prepared samples into a padded, masked [`Batch`].

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use mosaic_core::{Batch, Modality, ModalityBatch, ModalityValue, Sample};

use crate::audio::{self, AudioLimits, WhisperFeatureExtractor};
use crate::error::{Error, Result};
use crate::image::{DecodeOptions, ImageProcessor, decode_image};
use crate::pointcloud::{PointCloudConfig, load_point_cloud};
use crate::sensor::{SensorReadOptions, TimeSeries};
use crate::text::TextTokenizer;
use crate::video::{VideoOptions, load_frames};

/// What the audio path produces.
#[derive(Debug)]
pub enum AudioOutput {
    /// Mono waveform `[T]` at `rate` Hz (padded in the batch, with a mask),
    /// at most `max_seconds` long.
    Waveform {
        /// Target sample rate.
        rate: u32,
        /// Trim longer audio to this many seconds.
        max_seconds: f64,
    },
    /// Whisper log-mel features `[n_mels, 3000]`.
    WhisperLogMel(Box<WhisperFeatureExtractor>),
}

/// Sensor preprocessing.
#[derive(Debug, Clone, Default)]
pub struct SensorPipeline {
    /// How to read files.
    pub read: SensorReadOptions,
    /// Resample to this rate (Hz) first.
    pub rate: Option<f64>,
    /// Refuse gaps longer than this (seconds) when resampling.
    pub max_gap: Option<f64>,
    /// Z-score each channel with its own statistics.
    pub normalize: bool,
    /// Keep at most this many steps.
    pub max_steps: Option<usize>,
}

/// How every modality of a sample becomes a tensor. Modalities without a
/// recipe are left out of the batch.
#[derive(Debug, Default)]
pub struct Pipeline {
    /// Text: token ids `[T]` (u32), padded in the batch.
    pub text: Option<TextTokenizer>,
    /// Images: `[3, H, W]`.
    pub image: Option<ImageProcessor>,
    /// Image decoding options (also for video frames).
    pub image_decode: DecodeOptions,
    /// Audio.
    pub audio: Option<AudioOutput>,
    /// Video: `[F, 3, H, W]` frames through `image` (which must be set).
    pub video: Option<VideoOptions>,
    /// Point clouds: `[N, C]`.
    pub point_cloud: Option<PointCloudConfig>,
    /// Sensors: `[T, C]`, padded in the batch.
    pub sensor: Option<SensorPipeline>,
    /// Class names, in index order; labels map to their index.
    pub classes: Option<Vec<String>>,
    /// Seed for sampling steps (point sampling).
    pub seed: u64,
}

/// A sample after preprocessing.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Sample id.
    pub id: String,
    /// One tensor per modality.
    pub values: BTreeMap<Modality, Tensor>,
    /// Class index of the first label, when classes are known.
    pub class: Option<u32>,
    /// The sample's metadata (modalities removed).
    pub meta: Sample,
}

fn bytes_of(v: &ModalityValue, what: &str, limit: u64) -> Result<(Vec<u8>, String)> {
    match v {
        ModalityValue::Bytes(b) => Ok((b.clone(), String::new())),
        ModalityValue::Path(p) => Ok((
            crate::error::read_limited(p, limit)?,
            p.display().to_string(),
        )),
        _ => Err(Error::invalid(what, "expected a file or encoded bytes")),
    }
}

impl Pipeline {
    /// Preprocesses one sample.
    pub fn prepare(&self, sample: &Sample) -> Result<Prepared> {
        let mut values = BTreeMap::new();
        let id = &sample.id;
        let name = |detail: &str| {
            if detail.is_empty() {
                format!("sample `{id}`")
            } else {
                detail.to_string()
            }
        };
        for (m, v) in &sample.modalities {
            // A tensor is taken as already prepared, whatever the modality.
            if let ModalityValue::Tensor(t) = v {
                values.insert(*m, t.clone());
                continue;
            }
            let t = match m {
                Modality::Text => {
                    let Some(tok) = &self.text else { continue };
                    let text = match v {
                        ModalityValue::Text(t) => t.clone(),
                        ModalityValue::Path(p) => std::fs::read_to_string(p).map_err(|e| {
                            if e.kind() == std::io::ErrorKind::InvalidData {
                                Error::decode(p.display().to_string(), "text", "invalid UTF-8")
                            } else {
                                Error::io(p, e)
                            }
                        })?,
                        ModalityValue::Bytes(b) => String::from_utf8(b.clone()).map_err(|e| {
                            Error::decode(
                                name(""),
                                "text",
                                format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
                            )
                        })?,
                        ModalityValue::Tensor(t) => {
                            values.insert(*m, t.clone());
                            continue;
                        }
                    };
                    let enc = tok.encode(&text)?;
                    let n = enc.attention_mask.iter().filter(|&&x| x == 1).count();
                    Tensor::from_vec(enc.ids[..n].to_vec(), n, &Device::Cpu)?
                }
                Modality::Image => {
                    let Some(proc_) = &self.image else { continue };
                    if let ModalityValue::Tensor(t) = v {
                        values.insert(*m, t.clone());
                        continue;
                    }
                    let (bytes, src) =
                        bytes_of(v, "image", self.image_decode.limits.max_file_bytes)?;
                    let img = decode_image(&bytes, &name(&src), &self.image_decode)?;
                    proc_.preprocess(&img)?
                }
                Modality::Audio => {
                    let Some(out) = &self.audio else { continue };
                    if let ModalityValue::Tensor(t) = v {
                        values.insert(*m, t.clone());
                        continue;
                    }
                    let limits = AudioLimits::default();
                    let (bytes, src) = bytes_of(v, "audio", limits.max_file_bytes)?;
                    let ext = Path::new(&src)
                        .extension()
                        .and_then(|e| e.to_str())
                        .map(str::to_string)
                        .or_else(|| {
                            sample
                                .extra
                                .get("audio_ext")
                                .and_then(|v| v.as_str())
                                .map(str::to_string)
                        });
                    let a = audio::decode_audio(bytes, &name(&src), ext.as_deref(), &limits)?;
                    let mono = a.to_mono();
                    match out {
                        AudioOutput::Waveform { rate, max_seconds } => {
                            let mut w = audio::resample(&mono, a.sample_rate, *rate)?;
                            w.truncate((max_seconds * *rate as f64) as usize);
                            let n = w.len();
                            Tensor::from_vec(w, n, &Device::Cpu)?
                        }
                        AudioOutput::WhisperLogMel(fe) => {
                            let w = audio::resample(&mono, a.sample_rate, fe.config().sample_rate)?;
                            let f = fe.extract(&w)?;
                            let n_mels = fe.config().n_mels;
                            let frames = f.len() / n_mels;
                            Tensor::from_vec(f, (n_mels, frames), &Device::Cpu)?
                        }
                    }
                }
                Modality::Video => {
                    let Some(vo) = &self.video else { continue };
                    let proc_ = self.image.as_ref().ok_or_else(|| {
                        Error::config("pipeline", "video needs an image processor for its frames")
                    })?;
                    // ffmpeg reads files: bytes from a shard go through a
                    // temporary file with the member's extension.
                    let tmp;
                    let p: &Path = match v {
                        ModalityValue::Path(p) => p,
                        ModalityValue::Bytes(b) => {
                            let ext = sample
                                .extra
                                .get("video_ext")
                                .and_then(|e| e.as_str())
                                .unwrap_or("mp4");
                            tmp = tempfile::Builder::new()
                                .suffix(&format!(".{ext}"))
                                .tempfile()
                                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
                            std::fs::write(tmp.path(), b).map_err(|e| Error::io(tmp.path(), e))?;
                            tmp.path()
                        }
                        _ => {
                            return Err(Error::invalid(
                                format!("sample `{id}` video"),
                                "expected a file, a folder or encoded bytes",
                            ));
                        }
                    };
                    let fr = load_frames(p, vo)?;
                    let frames: Vec<_> = fr
                        .frames
                        .iter()
                        .map(|f| proc_.preprocess(f))
                        .collect::<Result<_>>()?;
                    Tensor::stack(&frames, 0)?
                }
                Modality::PointCloud => {
                    let Some(pc) = &self.point_cloud else {
                        continue;
                    };
                    let cloud = match v {
                        ModalityValue::Path(p) => load_point_cloud(p)?,
                        ModalityValue::Bytes(b) => crate::pointcloud::decode_point_cloud(
                            b,
                            &name(""),
                            sample.extra.get("point_cloud_ext").and_then(|e| e.as_str()),
                        )?,
                        _ => {
                            return Err(Error::invalid(
                                format!("sample `{id}` point_cloud"),
                                "expected a file or encoded bytes",
                            ));
                        }
                    };
                    pc.apply(&cloud, self.seed)?
                }
                Modality::Sensor => {
                    let Some(sp) = &self.sensor else { continue };
                    let (mut ts, src): (TimeSeries, String) = match v {
                        ModalityValue::Path(p) => (
                            crate::sensor::load_sensor(p, &sp.read)?,
                            p.display().to_string(),
                        ),
                        ModalityValue::Bytes(b) => (
                            crate::sensor::decode_sensor(b, &name(""), &sp.read)?,
                            name(""),
                        ),
                        _ => {
                            return Err(Error::invalid(
                                format!("sample `{id}` sensor"),
                                "expected a file or encoded bytes",
                            ));
                        }
                    };
                    if let Some(r) = sp.rate {
                        ts = ts.resample(r, sp.max_gap).map_err(|e| {
                            Error::decode(src.clone(), "sensor stream", e.to_string())
                        })?;
                    }
                    if sp.normalize {
                        ts.normalize(None)?;
                    }
                    if let Some(max) = sp.max_steps
                        && ts.len() > max
                    {
                        ts.timestamps.truncate(max);
                        ts.values.truncate(max * ts.num_channels());
                    }
                    ts.to_tensor()?
                }
            };
            values.insert(*m, t);
        }
        let class = match (&self.classes, sample.labels.first()) {
            (Some(classes), Some(l)) => {
                Some(classes.iter().position(|c| c == l).ok_or_else(|| {
                    Error::invalid(
                        format!("sample `{id}` label"),
                        format!("`{l}` is not one of the {} classes", classes.len()),
                    )
                })? as u32)
            }
            _ => None,
        };
        let mut meta = sample.clone();
        meta.modalities.clear();
        Ok(Prepared {
            id: id.clone(),
            values,
            class,
            meta,
        })
    }

    /// The pad value for text ids.
    fn text_pad_id(&self) -> u32 {
        self.text
            .as_ref()
            .and_then(|t| {
                t.inner().get_padding().map(|p| p.pad_id).or_else(|| {
                    ["[PAD]", "<pad>", "<|endoftext|>"]
                        .iter()
                        .find_map(|s| t.inner().token_to_id(s))
                })
            })
            .unwrap_or(0)
    }

    /// Collates prepared samples into a batch: per modality, values of equal
    /// shape are stacked; variable-length ones (dimension 0) are padded with
    /// zeros (text: the pad id) and get a `[B, T]` mask. Samples without a
    /// modality hold zeros and `present = false`.
    pub fn collate(&self, items: &[Prepared]) -> Result<DataBatch> {
        if items.is_empty() {
            return Err(Error::invalid("batch", "no samples to collate"));
        }
        let mut batch = Batch::new(items.iter().map(|p| p.id.clone()).collect());
        let modalities: std::collections::BTreeSet<Modality> = items
            .iter()
            .flat_map(|p| p.values.keys().copied())
            .collect();
        for m in modalities {
            let present: Vec<bool> = items.iter().map(|p| p.values.contains_key(&m)).collect();
            let first = items
                .iter()
                .find_map(|p| p.values.get(&m))
                .expect("present somewhere");
            let rest_dims = first.dims().get(1..).unwrap_or(&[]).to_vec();
            let dtype = first.dtype();
            for p in items {
                if let Some(t) = p.values.get(&m)
                    && (t.dims().get(1..).unwrap_or(&[]) != rest_dims.as_slice()
                        || t.dtype() != dtype)
                {
                    return Err(Error::invalid(
                        format!("batch {m}"),
                        format!(
                            "sample `{}` has {:?} {:?}, sample `{}` has {:?} {:?}",
                            p.id,
                            t.dims(),
                            t.dtype(),
                            items[0].id,
                            first.dims(),
                            dtype
                        ),
                    ));
                }
            }
            let lens: Vec<usize> = items
                .iter()
                .map(|p| {
                    p.values
                        .get(&m)
                        .map(|t| t.dims().first().copied().unwrap_or(1))
                        .unwrap_or(0)
                })
                .collect();
            let max_len = lens.iter().copied().max().unwrap_or(0);
            let variable = first.rank() > 0
                && items
                    .iter()
                    .filter_map(|p| p.values.get(&m))
                    .any(|t| t.dims()[0] != max_len);
            let pad_id = if m == Modality::Text {
                self.text_pad_id()
            } else {
                0
            };
            let mut rows = Vec::with_capacity(items.len());
            for p in items {
                let t = match p.values.get(&m) {
                    Some(t) => t.clone(),
                    None => {
                        let mut shape = vec![max_len];
                        shape.extend(&rest_dims);
                        if first.rank() == 0 {
                            shape.clear();
                        }
                        full(&shape, dtype, if m == Modality::Text { pad_id } else { 0 })?
                    }
                };
                let t = if variable && t.dims()[0] < max_len {
                    let mut shape = vec![max_len - t.dims()[0]];
                    shape.extend(&rest_dims);
                    Tensor::cat(&[t, full(&shape, dtype, pad_id)?], 0)?
                } else {
                    t
                };
                rows.push(t);
            }
            let values = Tensor::stack(&rows, 0)?;
            let mask = if variable || (m == Modality::Text) {
                let mut mk = vec![0u8; items.len() * max_len];
                for (i, &l) in lens.iter().enumerate() {
                    mk[i * max_len..i * max_len + l].fill(1);
                }
                Some(Tensor::from_vec(mk, (items.len(), max_len), &Device::Cpu)?)
            } else {
                None
            };
            batch.insert(m, ModalityBatch::new(values, mask, present)?)?;
        }
        let classes = if items.iter().all(|p| p.class.is_some()) {
            Some(Tensor::from_vec(
                items.iter().map(|p| p.class.unwrap()).collect::<Vec<u32>>(),
                items.len(),
                &Device::Cpu,
            )?)
        } else {
            None
        };
        Ok(DataBatch {
            batch,
            classes,
            samples: items.iter().map(|p| p.meta.clone()).collect(),
        })
    }
}

fn full(shape: &[usize], dtype: DType, value: u32) -> Result<Tensor> {
    let t = Tensor::zeros(shape, dtype, &Device::Cpu)?;
    Ok(if value == 0 { t } else { (t + value as f64)? })
}

/// A collated batch with its labels and metadata.
#[derive(Debug, Clone)]
pub struct DataBatch {
    /// Values and masks per modality.
    pub batch: Batch,
    /// `[B]` class indices (u32) when every sample has a known class.
    pub classes: Option<Tensor>,
    /// Per-sample metadata (labels, captions, timestamps, boxes, extra).
    pub samples: Vec<Sample>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collate_pads_and_masks_missing_modalities() {
        let p = Pipeline {
            sensor: Some(SensorPipeline::default()),
            ..Default::default()
        };
        let mk = |id: &str, n: Option<usize>| Prepared {
            id: id.into(),
            values: n
                .map(|n| {
                    (
                        Modality::Sensor,
                        Tensor::ones((n, 2), DType::F32, &Device::Cpu).unwrap(),
                    )
                })
                .into_iter()
                .collect(),
            class: Some(1),
            meta: Sample::new(id),
        };
        let b = p
            .collate(&[mk("a", Some(3)), mk("b", None), mk("c", Some(1))])
            .unwrap();
        let s = b.batch.get(Modality::Sensor).unwrap();
        assert_eq!(s.values.dims(), &[3, 3, 2]);
        assert_eq!(s.present, vec![true, false, true]);
        let mask: Vec<Vec<u8>> = s.mask.as_ref().unwrap().to_vec2().unwrap();
        assert_eq!(mask, vec![vec![1, 1, 1], vec![0, 0, 0], vec![1, 0, 0]]);
        let sum: f32 = s.values.sum_all().unwrap().to_scalar().unwrap();
        assert_eq!(sum, 8.0);
        assert_eq!(b.classes.unwrap().to_vec1::<u32>().unwrap(), vec![1, 1, 1]);
    }
}
