//! Training any [`MultimodalModel`] on any JSONL manifest the data layer
//! reads (`[data] source = "manifest"` in a training config).
//!
//! The data pipeline is derived from the architecture: every encoder's
//! modality is read and preprocessed to the shape that encoder takes
//! (text → token ids of the configured tokenizer, images → resized and
//! normalised `[C, H, W]`, audio → Whisper log-mel frames `[T, n_mels]`,
//! video → `frames` uniformly sampled frames, point clouds → `[N, C]`,
//! sensors → `[T, C]`); a sample without `text` uses one of its
//! `captions` as text. The objective is the sum over heads: CLIP loss for
//! contrastive heads, cross-entropy on the manifest's labels for
//! classifiers, matched vs. in-batch-shifted pairs for ITM, next-token
//! cross-entropy on the text for LM heads. Batches are a seeded
//! permutation per epoch walked by step, so `--resume` reproduces them.

use mosaic_models::arch::encoders::{
    AudioConfig, CnnConfig, PointTransformerConfig, PointnetConfig, PretrainedConfig, SensorConfig,
    TextTransformerConfig, VideoConfig, VitConfig,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use mosaic_core::assets::{AssetStore, FetchOptions};
use mosaic_core::{Batch, Modality, ModalityBatch, ModalityValue, Sample};
use mosaic_data::audio::{WhisperFeatureConfig, WhisperFeatureExtractor};
use mosaic_data::image::{Filter, ImageProcessor, ResizeTo};
use mosaic_data::manifest::jsonl::ManifestReader;
use mosaic_data::pipeline::{AudioOutput, DataBatch, Pipeline, Prepared, SensorPipeline};
use mosaic_data::pointcloud::PointCloudConfig;
use mosaic_data::text::{Padding, TextConfig, TextTokenizer};
use mosaic_data::video::{FrameSampling, VideoOptions};
use mosaic_models::arch::{ArchConfig, EncoderConfig, FusionConfig, HeadConfig, MultimodalModel};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::loss;
use crate::trainer::Task;

/// How manifest samples become tensors (the `[data]` keys of a manifest run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestData {
    /// Training manifest (JSONL).
    pub train: PathBuf,
    /// Evaluation manifest (JSONL), optional.
    #[serde(default)]
    pub eval: Option<PathBuf>,
    /// Tokenizer for text: an asset name, a model folder or a tokenizer.json.
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Class names in index order for classifier heads (default: the
    /// manifest's labels in order of first appearance).
    #[serde(default)]
    pub classes: Option<Vec<String>>,
    /// Image normalisation `(x/255 - mean) / std` (default maps to [-1, 1]).
    #[serde(default = "half")]
    pub image_mean: f32,
    /// See `image_mean`.
    #[serde(default = "half")]
    pub image_std: f32,
}

fn half() -> f32 {
    0.5
}

fn cfg_err(key: &str, message: impl Into<String>) -> Error {
    Error::Config {
        source_name: "train config".into(),
        message: format!("key `{key}`: {}", message.into()),
    }
}

/// Reads a manifest into samples (paths resolved against its folder).
pub fn read_samples(path: &Path) -> Result<Vec<Sample>> {
    let records = ManifestReader::read_all(path)?;
    if records.is_empty() {
        return Err(Error::InvalidInput {
            what: path.display().to_string(),
            message: "the manifest has no samples".into(),
        });
    }
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    Ok(records
        .into_iter()
        .map(|(line, r)| r.to_sample(&base, line))
        .collect())
}

/// A tokenizer from an asset name (fetched if needed), a model folder
/// (its `tokenizer.json`) or a `tokenizer.json` file, truncating to
/// `max_len` and padding as `padding` says.
pub fn load_tokenizer(
    reference: &str,
    max_len: usize,
    padding: Padding,
    store: &AssetStore,
) -> Result<TextTokenizer> {
    let p = Path::new(reference);
    let file = if p.is_file() {
        p.to_path_buf()
    } else if p.is_dir() {
        p.join("tokenizer.json")
    } else if store.catalog().get(reference).is_ok() {
        store
            .fetch(
                reference,
                &FetchOptions {
                    force: false,
                    progress: false,
                },
            )?
            .join("tokenizer.json")
    } else {
        return Err(Error::InvalidInput {
            what: format!("tokenizer `{reference}`"),
            message: "not a file, a folder or a known asset".into(),
        });
    };
    Ok(TextTokenizer::from_file(
        &file,
        TextConfig {
            max_length: Some(max_len),
            padding,
            add_special_tokens: true,
        },
    )?)
}

/// What must happen to a collated batch so each encoder gets its shape.
#[derive(Debug, Clone, Default)]
struct Adapt {
    /// Modalities whose RGB values become one grey channel (the channel axis).
    grey: BTreeMap<Modality, usize>,
    /// Audio: `[B, n_mels, 3000]` → `[B, max_frames, n_mels]`.
    audio_frames: Option<usize>,
}

/// The pipeline reading what `arch`'s encoders take.
pub fn pipeline_for(
    arch: &ArchConfig,
    data: &ManifestData,
    classes: Vec<String>,
    store: &AssetStore,
) -> Result<(Pipeline, AdaptPlan)> {
    let mut p = Pipeline {
        classes: Some(classes),
        ..Default::default()
    };
    let mut adapt = Adapt::default();
    let image = |size: usize| ImageProcessor {
        resize: Some(ResizeTo::Exact {
            height: size,
            width: size,
        }),
        filter: Filter::Bilinear,
        center_crop: None,
        rescale_factor: Some(1.0 / 255.0),
        normalize: Some(([data.image_mean; 3], [data.image_std; 3])),
    };
    let check_channels = |key: &str, c: usize| -> Result<()> {
        if c == 1 || c == 3 {
            Ok(())
        } else {
            Err(cfg_err(
                key,
                format!("{c} channels: manifest images are read as grey (1) or RGB (3)"),
            ))
        }
    };
    let mut text_len = None;
    let mut tower_tokenizer: Option<String> = None;
    for (m, e) in &arch.encoders {
        let key = format!("encoders.{m}");
        match e {
            EncoderConfig::TextTransformer(TextTransformerConfig { max_len, .. }) => {
                text_len = Some(*max_len)
            }
            EncoderConfig::BagOfWords(_) => text_len = Some(text_len.unwrap_or(512)),
            EncoderConfig::Vit(VitConfig {
                image_size,
                channels,
                ..
            })
            | EncoderConfig::Cnn(CnnConfig {
                image_size,
                channels,
                ..
            }) => {
                check_channels(&key, *channels)?;
                p.image = Some(image(*image_size));
                if *channels == 1 {
                    adapt.grey.insert(*m, 1);
                }
            }
            EncoderConfig::Video(VideoConfig {
                frames,
                image_size,
                channels,
                ..
            }) => {
                check_channels(&key, *channels)?;
                p.image = Some(image(*image_size));
                p.video = Some(VideoOptions {
                    sampling: FrameSampling::Uniform(*frames),
                    ..Default::default()
                });
                if *channels == 1 {
                    adapt.grey.insert(*m, 2);
                }
            }
            EncoderConfig::Audio(AudioConfig {
                n_mels, max_frames, ..
            }) => {
                let cfg = WhisperFeatureConfig {
                    n_mels: *n_mels,
                    ..Default::default()
                };
                p.audio = Some(AudioOutput::WhisperLogMel(Box::new(
                    WhisperFeatureExtractor::new(cfg)?,
                )));
                adapt.audio_frames = Some(*max_frames);
            }
            EncoderConfig::Pointnet(PointnetConfig { in_features, .. })
            | EncoderConfig::PointTransformer(PointTransformerConfig { in_features, .. }) => {
                let cfg = PointCloudConfig {
                    normals: *in_features >= 6,
                    ..Default::default()
                };
                if *in_features != 3 && *in_features != 6 {
                    return Err(cfg_err(
                        &key,
                        format!(
                            "in_features {in_features}: manifest point clouds give xyz (3) or xyz + normals (6)"
                        ),
                    ));
                }
                p.point_cloud = Some(cfg);
            }
            EncoderConfig::Pretrained(PretrainedConfig {
                pretrained,
                max_len,
                ..
            }) => {
                // The tower's own preprocessing: its tokenizer and text
                // length, its image processor.
                let dir = mosaic_models::pretrained::resolve_tower(pretrained)?;
                let info = mosaic_models::pretrained::tower_info(&dir, *m)?;
                match m {
                    Modality::Text => {
                        text_len = Some(max_len.or(info.max_len).unwrap_or(512));
                        // Token ids are the tower's vocabulary: another
                        // tokenizer would train on garbage without an error.
                        if let Some(t) = data.tokenizer.as_deref() {
                            let same = t == pretrained.as_str()
                                || Path::new(t) == dir
                                || Path::new(t) == dir.join("tokenizer.json");
                            if !same {
                                return Err(cfg_err(
                                    "data.tokenizer",
                                    format!(
                                        "`{t}`, but the pretrained text tower `{pretrained}` reads its own tokenizer: leave the key out"
                                    ),
                                ));
                            }
                        }
                        tower_tokenizer.get_or_insert(dir.display().to_string());
                    }
                    Modality::Image => {
                        p.image = Some(if info.family == "efficientnet-lite" {
                            mosaic_models::pretrained::lite_preprocessor().0
                        } else {
                            ImageProcessor::from_pretrained(&dir)
                                .map_err(|e| cfg_err(&key, format!("{pretrained}: {e}")))?
                        });
                    }
                    other => {
                        return Err(cfg_err(
                            &key,
                            format!("pretrained towers read text or images, not {other}"),
                        ));
                    }
                }
            }
            EncoderConfig::Sensor(SensorConfig { max_len, .. }) => {
                p.sensor = Some(SensorPipeline {
                    max_steps: Some(*max_len),
                    normalize: true,
                    ..Default::default()
                });
            }
        }
    }
    if let FusionConfig::Generative { max_len, .. } = &arch.fusion {
        text_len = Some(text_len.map_or(*max_len, |t: usize| t.min(*max_len)));
    }
    if let Some(n) = text_len {
        // A pretrained text tower brings its tokenizer.
        let reference = data.tokenizer.as_deref().or(tower_tokenizer.as_deref()).ok_or_else(|| {
            cfg_err(
                "data.tokenizer",
                "the model reads text, so a tokenizer is needed (asset name, folder or tokenizer.json)",
            )
        })?;
        p.text = Some(load_tokenizer(reference, n, Padding::Longest, store)?);
    }
    Ok((p, AdaptPlan(adapt)))
}

/// Shape changes applied to collated batches (see [`pipeline_for`]).
#[derive(Debug, Clone, Default)]
pub struct AdaptPlan(Adapt);

impl AdaptPlan {
    /// Applies the plan to a collated batch.
    pub fn apply(&self, batch: &mut Batch) -> Result<()> {
        for (m, axis) in &self.0.grey {
            if let Some(mb) = batch.modalities.get_mut(m) {
                let v = mb.values.mean_keepdim(*axis)?;
                *mb = ModalityBatch::new(v, mb.mask.clone(), mb.present.clone())?;
            }
        }
        if let (Some(frames), Some(mb)) = (
            self.0.audio_frames,
            batch.modalities.get_mut(&Modality::Audio),
        ) {
            let v = mb.values.transpose(1, 2)?;
            let t = v.dim(1)?.min(frames);
            let v = v.narrow(1, 0, t)?.contiguous()?;
            *mb = ModalityBatch::new(v, None, mb.present.clone())?;
        }
        Ok(())
    }
}

/// The class list: configured, else labels in order of first appearance.
pub fn class_names(configured: Option<&Vec<String>>, samples: &[Sample]) -> Vec<String> {
    if let Some(c) = configured {
        return c.clone();
    }
    let mut seen: Vec<String> = Vec::new();
    for s in samples {
        if let Some(l) = s.labels.first()
            && !seen.contains(l)
        {
            seen.push(l.clone());
        }
    }
    seen
}

/// Prepares and collates samples (two decoding threads; order kept).
pub fn prepare_batch(
    pipeline: &Pipeline,
    plan: &AdaptPlan,
    samples: &[&Sample],
) -> Result<DataBatch> {
    let half = samples.len().div_ceil(2);
    let prepared: Vec<Prepared> = std::thread::scope(|s| {
        let handles: Vec<_> = samples
            .chunks(half.max(1))
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|x| pipeline.prepare(x))
                        .collect::<mosaic_data::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(samples.len());
        for h in handles {
            all.extend(h.join().map_err(|_| Error::InvalidInput {
                what: "data".into(),
                message: "a decoding thread panicked".into(),
            })??);
        }
        Ok::<_, Error>(all)
    })?;
    let mut db = pipeline.collate(&prepared)?;
    plan.apply(&mut db.batch)?;
    Ok(db)
}

/// The summed objective of every head on one batch.
pub fn objective(model: &MultimodalModel, db: &DataBatch) -> Result<Tensor> {
    let out = model.forward(&db.batch)?;
    let mut total: Option<Tensor> = None;
    for (name, h) in &model.config().heads {
        let logits = &out.heads[name];
        let l = match h {
            HeadConfig::Contrastive { .. } => loss::clip_loss(logits)?,
            HeadConfig::Classifier { .. } => {
                let y = db.classes.as_ref().ok_or_else(|| Error::InvalidInput {
                    what: format!("head `{name}`"),
                    message:
                        "a classifier head needs a `label` (one of data.classes) on every sample"
                            .into(),
                })?;
                loss::cross_entropy(logits, y, 0.0)?
            }
            HeadConfig::Itm {} => {
                // Negatives: every sample's text paired with the next sample's other modalities.
                let b = logits.dim(0)?;
                if b < 2 {
                    return Err(Error::InvalidInput {
                        what: format!("head `{name}`"),
                        message: "image–text matching needs batches of at least 2".into(),
                    });
                }
                let mut shifted = db.batch.clone();
                let text = shifted.modalities.get_mut(&Modality::Text).ok_or_else(|| {
                    Error::InvalidInput {
                        what: format!("head `{name}`"),
                        message: "image–text matching needs text in the batch".into(),
                    }
                })?;
                let order: Vec<u32> = (0..b as u32).map(|i| (i + 1) % b as u32).collect();
                let o = Tensor::new(order.as_slice(), &Device::Cpu)?;
                *text = ModalityBatch::new(
                    text.values.index_select(&o, 0)?,
                    text.mask
                        .as_ref()
                        .map(|m| m.index_select(&o, 0))
                        .transpose()?,
                    text.present.clone(),
                )?;
                let neg = model.forward(&shifted)?.heads[name].clone();
                let both = Tensor::cat(&[logits, &neg], 0)?;
                let y: Vec<u32> = (0..2 * b).map(|i| u32::from(i < b)).collect();
                loss::cross_entropy(&both, &Tensor::new(y.as_slice(), &Device::Cpu)?, 0.0)?
            }
            HeadConfig::Lm {} => {
                let text = db.batch.modalities.get(&Modality::Text).ok_or_else(|| {
                    Error::InvalidInput {
                        what: format!("head `{name}`"),
                        message: "a language-model head needs text (captions) in the batch".into(),
                    }
                })?;
                let t = text.values.dim(1)?;
                let pred = logits.narrow(1, logits.dim(1)? - t, t - 1)?;
                let tgt = text.values.narrow(1, 1, t - 1)?;
                let mask = text
                    .mask
                    .as_ref()
                    .map(|m| m.narrow(1, 1, t - 1))
                    .transpose()?;
                loss::sequence_cross_entropy(&pred, &tgt, mask.as_ref(), 0.0)?
            }
        };
        total = Some(match total {
            Some(t) => (t + l)?,
            None => l,
        });
    }
    total.ok_or_else(|| Error::InvalidInput {
        what: "model".into(),
        message: "the model has no heads to train".into(),
    })
}

/// A manifest training run as a [`Task`].
pub struct ManifestRun<'a> {
    model: &'a MultimodalModel,
    pipeline: Pipeline,
    plan: AdaptPlan,
    train: Vec<Sample>,
    eval: Vec<Sample>,
    batch: usize,
    seed: u64,
    micro: usize,
}

impl<'a> ManifestRun<'a> {
    /// Reads the manifests and builds the pipeline for `model`.
    pub fn new(
        model: &'a MultimodalModel,
        data: &ManifestData,
        store: &AssetStore,
        batch: usize,
        seed: u64,
        micro: usize,
    ) -> Result<Self> {
        let train = read_samples(&data.train)?;
        let eval = match &data.eval {
            Some(p) => read_samples(p)?,
            None => Vec::new(),
        };
        if train.len() < batch {
            return Err(cfg_err(
                "run.batch_size",
                format!(
                    "{batch} exceeds the {} training samples of {}",
                    train.len(),
                    data.train.display()
                ),
            ));
        }
        let classes = class_names(data.classes.as_ref(), &train);
        let (pipeline, plan) = pipeline_for(model.config(), data, classes, store)?;
        Ok(ManifestRun {
            model,
            pipeline,
            plan,
            train,
            eval,
            batch,
            seed,
            micro: micro.max(1),
        })
    }
}

impl ManifestRun<'_> {
    /// A sample without `text` but with `captions`, for a model that reads
    /// text, takes caption `pick % captions` as its text (training varies
    /// the pick by step; evaluation takes the first).
    fn with_caption(&self, s: &Sample, pick: usize) -> Sample {
        if self.pipeline.text.is_none() || s.has(Modality::Text) || s.captions.is_empty() {
            return s.clone();
        }
        let c = s.captions[pick % s.captions.len()].clone();
        s.clone().with(Modality::Text, ModalityValue::Text(c))
    }
}

impl Task for ManifestRun<'_> {
    fn micro_batches(&self) -> usize {
        self.micro
    }

    fn loss(&mut self, step: usize, micro: usize) -> Result<Tensor> {
        let all = crate::quickstart::batch_indices(self.train.len(), self.batch, self.seed, step);
        let per = self.batch / self.micro;
        let picked: Vec<Sample> = all[micro * per..(micro + 1) * per]
            .iter()
            .enumerate()
            .map(|(k, &i)| self.with_caption(&self.train[i as usize], step * 7 + k))
            .collect();
        let refs: Vec<&Sample> = picked.iter().collect();
        let db = prepare_batch(&self.pipeline, &self.plan, &refs)?;
        objective(self.model, &db)
    }

    /// Mean objective over the evaluation manifest (`eval_loss`), plus
    /// classifier accuracy (`accuracy_<head>`) and, for contrastive
    /// heads, R@1 of the first modality against the second over the whole
    /// evaluation set (`r1_<head>`).
    fn evaluate(&mut self, _step: usize) -> Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        if self.eval.is_empty() {
            return Ok(out);
        }
        let mut loss_sum = 0.0;
        let mut batches = 0usize;
        let mut hits: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut emb: BTreeMap<String, (Vec<Tensor>, Vec<Tensor>)> = BTreeMap::new();
        for chunk in self.eval.chunks(self.batch) {
            let chunk: Vec<Sample> = chunk.iter().map(|s| self.with_caption(s, 0)).collect();
            let refs: Vec<&Sample> = chunk.iter().collect();
            let db = prepare_batch(&self.pipeline, &self.plan, &refs)?;
            if chunk.len() >= 2 {
                loss_sum += objective(self.model, &db)?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
                batches += 1;
            }
            let o = self.model.forward(&db.batch)?;
            for (name, h) in &self.model.config().heads {
                match h {
                    HeadConfig::Classifier { .. } => {
                        if let Some(y) = &db.classes {
                            let pred: Vec<u32> = o.heads[name].argmax(D::Minus1)?.to_vec1()?;
                            let y: Vec<u32> = y.to_vec1()?;
                            let e = hits.entry(name.clone()).or_default();
                            e.0 += pred.iter().zip(&y).filter(|(p, t)| p == t).count();
                            e.1 += y.len();
                        }
                    }
                    HeadConfig::Contrastive { .. } => {
                        let (a, b) = &o.embeddings[name];
                        let e = emb.entry(name.clone()).or_default();
                        e.0.push(a.detach());
                        e.1.push(b.detach());
                    }
                    _ => {}
                }
            }
        }
        if batches > 0 {
            out.insert("eval_loss".into(), loss_sum / batches as f64);
        }
        for (name, (h, n)) in hits {
            out.insert(format!("accuracy_{name}"), h as f64 / n.max(1) as f64);
        }
        for (name, (a, b)) in emb {
            let a = Tensor::cat(&a, 0)?;
            let b = Tensor::cat(&b, 0)?;
            let best: Vec<u32> = a.matmul(&b.t()?)?.argmax(D::Minus1)?.to_vec1()?;
            let r1 = best
                .iter()
                .enumerate()
                .filter(|(i, j)| *i == **j as usize)
                .count() as f64
                / best.len() as f64;
            out.insert(format!("r1_{name}"), r1);
        }
        Ok(out)
    }
}
