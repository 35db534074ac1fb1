//! `mosaic quickstart`: from a fresh machine to a trained, evaluated
//! multimodal model on real data, using only Mosaic's own parts.
//!
//! 1. Fetches Fashion-MNIST (and the MiniLM tokenizer/encoder) through the
//!    asset store.
//! 2. Builds captions from class names with templates.
//! 3. Trains an image–text dual encoder (late fusion, CLIP loss) and
//!    measures zero-shot prompt classification on the 10,000 test images.
//! 4. LiT: the real MiniLM text tower frozen, an image tower trained on 8
//!    classes, evaluated on the 2 held-out classes' test images.
//! 5. Tri-modal: spoken captions from `espeak-ng` (several voices, speeds,
//!    pitches) as a third modality; speech→image retrieval on held-out voices.
//! 6. Writes `report.json`, `report.md` and curve PNGs, and returns where
//!    everything is.

use mosaic_models::arch::encoders::{AudioConfig, CnnConfig, TextTransformerConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use mosaic_core::assets::{AssetStore, FetchOptions};
use mosaic_core::{Batch, Modality, ModalityBatch};
use mosaic_data::image::ImageProcessor;
use mosaic_data::text::{Padding, TextConfig, TextTokenizer};
use mosaic_models::arch::config::{EncoderConfig, FusionConfig, HeadConfig, Positions};
use mosaic_models::arch::{ArchConfig, MultimodalModel};
use mosaic_models::pretrained::bert::l2_normalize;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::loss;
use crate::optim::AdamW;
use crate::schedule::{Schedule, ScheduleKind};
use crate::trainer::{Task, Trainer, TrainerOptions};

/// Fashion-MNIST class names, index order.
pub const CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Caption templates (`{}` = class name).
pub const TEMPLATES: [&str; 5] = [
    "a photo of a {}",
    "a picture of a {}",
    "an image of a {}",
    "a black and white photo of a {}",
    "a small photo of a {}",
];

/// Quickstart settings.
#[derive(Debug, Clone)]
pub struct QuickstartOptions {
    /// Run folder.
    pub out_dir: PathBuf,
    /// Training steps of the image–text model.
    pub steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Seed.
    pub seed: u64,
    /// Show progress bars.
    pub progress: bool,
    /// Run the LiT phase.
    pub lit: bool,
    /// Run the tri-modal (speech) phase.
    pub speech: bool,
}

impl QuickstartOptions {
    /// Defaults sized for a 2-core CPU (a few minutes per phase).
    pub fn new(out_dir: PathBuf) -> Self {
        QuickstartOptions {
            out_dir,
            steps: 1200,
            batch_size: 256,
            seed: 0,
            progress: true,
            lit: true,
            speech: true,
        }
    }
}

/// Fashion-MNIST in memory: images `[N, 1, 28, 28]` scaled to [-1, 1].
pub struct FashionMnist {
    /// Images.
    pub images: Tensor,
    /// Labels.
    pub labels: Vec<u32>,
}

fn load_split(dir: &Path, prefix: &str) -> Result<FashionMnist> {
    let img = mosaic_data::import::read_idx(&dir.join(format!("{prefix}-images-idx3-ubyte.gz")))?;
    let lab = mosaic_data::import::read_idx(&dir.join(format!("{prefix}-labels-idx1-ubyte.gz")))?;
    if img.dims.len() != 3 || img.dims[1] != 28 || img.dims[2] != 28 || lab.dims != [img.dims[0]] {
        return Err(Error::InvalidInput {
            what: dir.display().to_string(),
            message: format!(
                "unexpected Fashion-MNIST shapes {:?} / {:?}",
                img.dims, lab.dims
            ),
        });
    }
    let n = img.dims[0];
    let px: Vec<f32> = img.data.iter().map(|&v| v as f32 / 127.5 - 1.0).collect();
    Ok(FashionMnist {
        images: Tensor::from_vec(px, (n, 1, 28, 28), &Device::Cpu)?,
        labels: lab.data.iter().map(|&v| v as u32).collect(),
    })
}

/// Loads (fetching if needed) the training and test splits.
pub fn fashion_mnist(store: &AssetStore, progress: bool) -> Result<(FashionMnist, FashionMnist)> {
    let dir = store.fetch(
        "fashion-mnist",
        &FetchOptions {
            force: false,
            progress,
        },
    )?;
    Ok((load_split(&dir, "train")?, load_split(&dir, "t10k")?))
}

/// Token ids `[R, T]` + mask for every (class, template) caption, row
/// `class · templates + template`.
fn caption_table(
    tok: &TextTokenizer,
    classes: &[&str],
    templates: &[&str],
) -> Result<(Tensor, Tensor)> {
    let texts: Vec<String> = classes
        .iter()
        .flat_map(|c| templates.iter().map(move |t| t.replace("{}", c)))
        .collect();
    let b = tok.encode_batch(&texts)?;
    Ok((b.ids, b.attention_mask))
}

/// A seeded permutation of `0..n` for an epoch.
fn permutation(n: usize, seed: u64, epoch: usize) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    v.shuffle(&mut rng);
    v
}

/// Batch indices of `step`: epochs are seeded permutations, walked in order.
pub(crate) fn batch_indices(n: usize, batch: usize, seed: u64, step: usize) -> Vec<u32> {
    let per_epoch = n / batch;
    let epoch = step / per_epoch;
    let k = step % per_epoch;
    permutation(n, seed, epoch)[k * batch..(k + 1) * batch].to_vec()
}

fn modality(values: Tensor, mask: Option<Tensor>) -> Result<ModalityBatch> {
    let b = values.dim(0)?;
    Ok(ModalityBatch::new(values, mask, vec![true; b])?)
}

/// The image–text dual encoder of phase 1.
pub fn image_text_config(vocab: usize, max_len: usize) -> ArchConfig {
    ArchConfig {
        name: "quickstart-image-text".into(),
        seed: 0,
        dim: 128,
        encoders: BTreeMap::from([
            (
                Modality::Image,
                EncoderConfig::Cnn(CnnConfig {
                    image_size: 28,
                    channels: 1,
                    widths: vec![32, 64, 128],
                    dim: 128,
                }),
            ),
            (
                Modality::Text,
                EncoderConfig::TextTransformer(TextTransformerConfig {
                    vocab_size: vocab,
                    max_len,
                    dim: 64,
                    layers: 1,
                    heads: 4,
                    positions: Positions::Learned,
                    mlp_ratio: 2,
                    pre_norm: true,
                }),
            ),
        ]),
        fusion: FusionConfig::Late {},
        heads: BTreeMap::from([(
            "clip".to_string(),
            HeadConfig::Contrastive {
                modalities: vec![Modality::Image, Modality::Text],
                dim: 64,
                init_temperature: 0.07,
                project: true,
                init_logit_scale: None,
            },
        )]),
        lora: None,
    }
}

/// Fashion-MNIST image–caption contrastive training as a [`Task`]:
/// batches of the chosen classes, a template per sample chosen by
/// `(seed, step, position)`, evaluation = zero-shot accuracy on the test
/// images of those classes (prompt ensembling over all templates).
///
/// Config-built towers read the `[-1, 1]` grey images and MiniLM's
/// WordPiece ids; a pretrained tower (`encoders.* = { pretrained = … }`)
/// reads what it was trained on: its own tokenizer's ids, and its image
/// processor's pixels of the image as RGB (grey replicated, as Pillow's
/// `convert("RGB")` does).
pub struct ImageTextRun<'a> {
    model: &'a MultimodalModel,
    data: &'a FashionMnist,
    test: &'a FashionMnist,
    train_idx: Vec<u32>,
    classes: Vec<u32>,
    captions: (Tensor, Tensor),
    batch: usize,
    seed: u64,
    micro: usize,
    /// The pretrained image tower's preprocessing, if it has one.
    image_processor: Option<ImageProcessor>,
}

/// The checkpoint folder of the model's pretrained `modality` tower.
fn pretrained_tower(model: &MultimodalModel, modality: Modality) -> Result<Option<PathBuf>> {
    match model.config().encoders.get(&modality) {
        Some(EncoderConfig::Pretrained(c)) => Ok(Some(mosaic_models::pretrained::resolve_tower(
            &c.pretrained,
        )?)),
        _ => Ok(None),
    }
}

/// `[N, 1, 28, 28]` images in `[-1, 1]` → the processor's `[N, 3, H, W]`.
fn preprocess_grey(processor: &ImageProcessor, images: &Tensor) -> Result<Tensor> {
    let (n, _, h, w) = images.dims4()?;
    let px: Vec<f32> = images.flatten_all()?.to_vec1()?;
    let rgb: Vec<image::RgbImage> = (0..n)
        .map(|i| {
            let grey = &px[i * h * w..(i + 1) * h * w];
            // Exact inverse of `v / 127.5 - 1` for the 256 byte values.
            let bytes = grey
                .iter()
                .flat_map(|&v| {
                    let b = ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
                    [b, b, b]
                })
                .collect();
            image::RgbImage::from_raw(w as u32, h as u32, bytes).expect("w·h·3 bytes")
        })
        .collect();
    Ok(processor.preprocess_batch(&rgb)?)
}

impl<'a> ImageTextRun<'a> {
    /// Training on `classes` (batch `batch`, split into `micro` micro-batches).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: &'a MultimodalModel,
        data: &'a FashionMnist,
        test: &'a FashionMnist,
        store: &AssetStore,
        classes: &[u32],
        batch: usize,
        seed: u64,
        micro: usize,
    ) -> Result<Self> {
        let tok = match pretrained_tower(model, Modality::Text)? {
            Some(dir) => {
                let max_len = match model.config().encoders.get(&Modality::Text) {
                    Some(EncoderConfig::Pretrained(c)) => c.max_len,
                    _ => None,
                };
                TextTokenizer::from_file(
                    &dir.join("tokenizer.json"),
                    TextConfig {
                        max_length: max_len,
                        padding: Padding::Longest,
                        add_special_tokens: true,
                    },
                )?
            }
            None => minilm_tokenizer(store, false)?,
        };
        let image_processor =
            match pretrained_tower(model, Modality::Image)? {
                // As `manifest::pipeline_for`: EfficientNet-Lite folders carry
                // no processor config; the published one is built in.
                Some(dir)
                    if mosaic_models::pretrained::tower_info(&dir, Modality::Image)?.family
                        == "efficientnet-lite" =>
                {
                    Some(mosaic_models::pretrained::lite_preprocessor().0)
                }
                Some(dir) => Some(ImageProcessor::from_pretrained(&dir).map_err(|e| {
                    Error::InvalidInput {
                        what: format!("the image tower {}", dir.display()),
                        message: format!("its image processor: {e}"),
                    }
                })?),
                None => None,
            };
        let train_idx: Vec<u32> = (0..data.labels.len() as u32)
            .filter(|&i| classes.contains(&data.labels[i as usize]))
            .collect();
        if train_idx.len() < batch {
            return Err(Error::InvalidInput {
                what: "batch_size".into(),
                message: format!("{batch} exceeds the {} training images", train_idx.len()),
            });
        }
        Ok(ImageTextRun {
            model,
            data,
            test,
            train_idx,
            classes: classes.to_vec(),
            captions: caption_table(&tok, &CLASSES, &TEMPLATES)?,
            batch,
            seed,
            micro: micro.max(1),
            image_processor,
        })
    }
}

impl Task for ImageTextRun<'_> {
    fn micro_batches(&self) -> usize {
        self.micro
    }

    fn loss(&mut self, step: usize, micro: usize) -> Result<Tensor> {
        let all = batch_indices(self.train_idx.len(), self.batch, self.seed, step);
        let per = self.batch / self.micro;
        let idx: Vec<u32> = all[micro * per..(micro + 1) * per]
            .iter()
            .map(|&k| self.train_idx[k as usize])
            .collect();
        let it = Tensor::new(idx.as_slice(), &Device::Cpu)?;
        let mut images = self.data.images.index_select(&it, 0)?;
        if let Some(p) = &self.image_processor {
            images = preprocess_grey(p, &images)?;
        }
        // Caption row: the sample's class with a template chosen by (seed, step, i).
        let rows: Vec<u32> = idx
            .iter()
            .enumerate()
            .map(|(i, &j)| {
                let t = (self.seed as usize).wrapping_add(step * 31 + (micro * per + i) * 7)
                    % TEMPLATES.len();
                self.data.labels[j as usize] * TEMPLATES.len() as u32 + t as u32
            })
            .collect();
        let rt = Tensor::new(rows.as_slice(), &Device::Cpu)?;
        let mut batch = Batch::new(Vec::new());
        batch
            .modalities
            .insert(Modality::Image, modality(images, None)?);
        batch.modalities.insert(
            Modality::Text,
            modality(
                self.captions.0.index_select(&rt, 0)?,
                Some(self.captions.1.index_select(&rt, 0)?),
            )?,
        );
        let out = self.model.forward(&batch)?;
        loss::clip_loss(&out.heads["clip"])
    }

    fn evaluate(&mut self, _step: usize) -> Result<BTreeMap<String, f64>> {
        let keep: Vec<u32> = (0..self.test.labels.len() as u32)
            .filter(|&i| self.classes.contains(&self.test.labels[i as usize]))
            .collect();
        let it = Tensor::new(keep.as_slice(), &Device::Cpu)?;
        let images = self.test.images.index_select(&it, 0)?;
        let labels: Vec<u32> = keep.iter().map(|&i| self.test.labels[i as usize]).collect();
        let ce = class_embeddings(self.model, &self.captions, CLASSES.len(), "clip")?;
        let rows = Tensor::new(self.classes.as_slice(), &Device::Cpu)?;
        let ce = ce.index_select(&rows, 0)?;
        let ie = match &self.image_processor {
            None => image_embeddings(self.model, &images, "clip")?,
            // A pretrained tower's pixels (224² RGB for a real CLIP) are
            // made a chunk at a time: all 10,000 at once would take GBs.
            Some(p) => {
                let n = images.dim(0)?;
                let mut out = Vec::new();
                for start in (0..n).step_by(500) {
                    let chunk = images.narrow(0, start, (n - start).min(500))?;
                    out.push(image_embeddings(
                        self.model,
                        &preprocess_grey(p, &chunk)?,
                        "clip",
                    )?);
                }
                Tensor::cat(&out, 0)?
            }
        };
        Ok(BTreeMap::from([(
            "zero_shot_accuracy".to_string(),
            accuracy(&ie, &ce, &labels, &self.classes)?,
        )]))
    }
}

/// The MiniLM WordPiece tokenizer (fetched with the asset), captions
/// padded to 16 tokens.
pub fn minilm_tokenizer(store: &AssetStore, progress: bool) -> Result<TextTokenizer> {
    let minilm = store.fetch(
        "minilm-l6-v2",
        &FetchOptions {
            force: false,
            progress,
        },
    )?;
    Ok(TextTokenizer::from_file(
        &minilm.join("tokenizer.json"),
        TextConfig {
            max_length: Some(16),
            padding: Padding::Fixed(16),
            add_special_tokens: true,
        },
    )?)
}

/// Normalised embeddings of the image tower's contrastive side, in chunks.
fn image_embeddings(model: &MultimodalModel, images: &Tensor, head: &str) -> Result<Tensor> {
    let n = images.dim(0)?;
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let b = (n - i).min(1000);
        let mut batch = Batch::new(Vec::new());
        batch
            .modalities
            .insert(Modality::Image, modality(images.narrow(0, i, b)?, None)?);
        out.push(model.embed(&batch, head, Modality::Image)?.detach());
        i += b;
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// Class embeddings from all templates (prompt ensembling).
fn class_embeddings(
    model: &MultimodalModel,
    captions: &(Tensor, Tensor),
    classes: usize,
    head: &str,
) -> Result<Tensor> {
    let mut batch = Batch::new(Vec::new());
    batch.modalities.insert(
        Modality::Text,
        modality(captions.0.clone(), Some(captions.1.clone()))?,
    );
    let e = model.embed(&batch, head, Modality::Text)?.detach();
    Ok(mosaic_models::zeroshot::ensemble_templates(&e, classes)?)
}

/// Top-1 accuracy of argmax(image · class) against labels; `class_ids[k]`
/// is the label of class row k.
fn accuracy(
    image_emb: &Tensor,
    class_emb: &Tensor,
    labels: &[u32],
    class_ids: &[u32],
) -> Result<f64> {
    Ok(mosaic_models::zeroshot::top1_accuracy(
        image_emb,
        class_emb,
        labels,
        Some(class_ids),
    )?)
}

/// The quickstart's results.
#[derive(Debug, Clone, Serialize)]
pub struct QuickstartReport {
    /// Where everything is.
    pub out_dir: PathBuf,
    /// Phase results by name.
    pub phases: BTreeMap<String, serde_json::Value>,
}

/// Runs the quickstart.
pub fn run(opts: &QuickstartOptions, store: &AssetStore) -> Result<QuickstartReport> {
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|e| Error::Core(Box::new(mosaic_core::Error::io(&opts.out_dir, e))))?;
    let t0 = std::time::Instant::now();
    let (train, test) = fashion_mnist(store, opts.progress)?;
    let tok = minilm_tokenizer(store, opts.progress)?;
    let mut phases = BTreeMap::new();

    // Phase 1: image–text contrastive, zero-shot on the test set.
    let cfg = image_text_config(tok.vocab_size(), 16);
    let model = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu)?;
    let run_dir = opts.out_dir.join("image-text");
    let _ = std::fs::remove_dir_all(&run_dir);
    let mut trainer = Trainer::new(
        model.params().clone(),
        Box::new(AdamW::new(model.params().vars(), 2e-3, 0.01)),
        Some(Schedule::new(
            ScheduleKind::Cosine { num_cycles: 0.5 },
            2e-3,
            opts.steps / 20,
            opts.steps,
        )?),
        TrainerOptions {
            out_dir: run_dir.clone(),
            steps: opts.steps,
            log_every: 20,
            eval_every: (opts.steps / 4).max(1),
            eval_at_start: false,
            checkpoint_every: (opts.steps / 4).max(1),
            grad_clip: Some(1.0),
            best_metric: Some("zero_shot_accuracy".into()),
            keep_checkpoints: 2,
            progress: opts.progress,
        },
    )?;
    let all: Vec<u32> = (0..CLASSES.len() as u32).collect();
    let mut task = ImageTextRun::new(
        &model,
        &train,
        &test,
        store,
        &all,
        opts.batch_size,
        opts.seed,
        1,
    )?;
    let summary = trainer.run(&mut task, false)?;
    model.save(&run_dir.join("model"))?;
    let acc = summary
        .last_eval
        .get("zero_shot_accuracy")
        .copied()
        .unwrap_or(0.0);
    phases.insert(
        "image_text".to_string(),
        serde_json::json!({
            "zero_shot_accuracy_10k_test": acc,
            "templates": TEMPLATES,
            "steps": opts.steps,
            "batch_size": opts.batch_size,
            "train_seconds": summary.seconds,
            "final_loss": summary.losses.last(),
            "best": summary.best,
            "model": run_dir.join("model"),
            "loss_curve": run_dir.join("loss.png"),
            "metrics": run_dir.join("metrics.jsonl"),
        }),
    );
    let mut report = QuickstartReport {
        out_dir: opts.out_dir.clone(),
        phases,
    };
    write_report(&report, t0.elapsed().as_secs_f64())?;
    if opts.lit {
        let v = lit_phase(opts, store, &train, &test, [1, 9], (opts.steps / 2).max(1))?;
        report.phases.insert("lit".into(), v);
        write_report(&report, t0.elapsed().as_secs_f64())?;
    }
    if opts.speech {
        let v = speech_phase(opts, &model, &train, &test, (opts.steps / 3).max(1))?;
        report.phases.insert("speech".into(), v);
    }
    write_report(&report, t0.elapsed().as_secs_f64())?;
    Ok(report)
}

fn write_report(report: &QuickstartReport, seconds: f64) -> Result<()> {
    let mut json = serde_json::to_value(report).map_err(|e| Error::InvalidInput {
        what: "report".into(),
        message: e.to_string(),
    })?;
    json["total_seconds"] = serde_json::json!(seconds);
    let text = serde_json::to_vec_pretty(&json).map_err(|e| Error::InvalidInput {
        what: "report".into(),
        message: e.to_string(),
    })?;
    mosaic_core::atomic::write_bytes_atomic(&report.out_dir.join("report.json"), &text)?;
    let mut md = format!("# Mosaic quickstart\n\nTotal time: {seconds:.0} s.\n\n");
    for (name, v) in &report.phases {
        md.push_str(&format!("## {name}\n\n| key | value |\n|---|---|\n"));
        if let Some(o) = v.as_object() {
            for (k, x) in o {
                md.push_str(&format!("| {k} | {x} |\n"));
            }
        }
        md.push('\n');
    }
    mosaic_core::atomic::write_bytes_atomic(&report.out_dir.join("report.md"), md.as_bytes())?;
    Ok(())
}

/// A trainable tower: an encoder from the architecture crate plus a
/// projection into a joint space, with a learnable log inverse temperature.
struct Tower {
    params: mosaic_models::nn::ParamStore,
    encoder: mosaic_models::arch::encoders::ArchEncoder,
    proj: mosaic_models::nn::Linear,
    logit_scale: Tensor,
}

impl Tower {
    fn new(seed: u64, m: Modality, enc: &EncoderConfig, out: usize) -> Result<Self> {
        let params = mosaic_models::nn::ParamStore::new(seed, DType::F32, &Device::Cpu);
        let encoder = mosaic_models::arch::encoders::ArchEncoder::build(&params, m, enc)?;
        let proj = params.linear("proj", enc.dim(), out, false)?;
        let logit_scale = params.get(
            "logit_scale",
            &[1],
            mosaic_models::nn::Init::Constant((1.0f64 / 0.07).ln()),
        )?;
        Ok(Tower {
            params,
            encoder,
            proj,
            logit_scale,
        })
    }

    fn embed(&self, values: Tensor, mask: Option<Tensor>) -> Result<Tensor> {
        use mosaic_models::Encoder;
        let f = self.encoder.encode(&modality(values, mask)?)?;
        l2_normalize(&self.proj.forward(&f.pooled)?).map_err(Into::into)
    }

    fn embed_all(&self, values: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let n = values.dim(0)?;
        let mut out = Vec::new();
        let mut i = 0;
        while i < n {
            let b = (n - i).min(500);
            out.push(
                self.embed(
                    values.narrow(0, i, b)?,
                    mask.map(|m| m.narrow(0, i, b)).transpose()?,
                )?
                .detach(),
            );
            i += b;
        }
        Ok(Tensor::cat(&out, 0)?)
    }

    /// AdamW (2e-3, decay 0.01) with warm-up + cosine over `steps`, gradient
    /// clipping at 1, one checkpoint at the end in `out_dir`.
    fn trainer(&self, out_dir: PathBuf, steps: usize, progress: bool) -> Result<Trainer> {
        Trainer::new(
            self.params.clone(),
            Box::new(AdamW::new(self.params.vars(), 2e-3, 0.01)),
            Some(Schedule::new(
                ScheduleKind::Cosine { num_cycles: 0.5 },
                2e-3,
                steps / 20,
                steps,
            )?),
            TrainerOptions {
                out_dir,
                steps,
                log_every: 20,
                eval_every: 0,
                eval_at_start: false,
                checkpoint_every: 0,
                grad_clip: Some(1.0),
                best_metric: None,
                keep_checkpoints: 1,
                progress,
            },
        )
    }

    /// CLIP loss of `a` (this tower's embeddings) against fixed `b`.
    fn clip(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let logits = a.matmul(&b.t()?)?.broadcast_mul(&self.logit_scale.exp()?)?;
        loss::clip_loss(&logits)
    }
}

/// LiT: the real MiniLM sentence encoder (frozen) embeds the captions; an
/// image tower is trained on `seen` classes only; zero-shot on the test
/// images of the held-out classes, among the held-out classes and among all
/// ten.
struct LitTask<'a> {
    tower: &'a Tower,
    data: &'a FashionMnist,
    idx: Vec<u32>,
    text: Tensor,
    batch: usize,
    seed: u64,
}

impl Task for LitTask<'_> {
    fn loss(&mut self, step: usize, _micro: usize) -> Result<Tensor> {
        let pick = batch_indices(self.idx.len(), self.batch, self.seed, step);
        let idx: Vec<u32> = pick.iter().map(|&k| self.idx[k as usize]).collect();
        let images = self
            .data
            .images
            .index_select(&Tensor::new(idx.as_slice(), &Device::Cpu)?, 0)?;
        let rows: Vec<u32> = idx
            .iter()
            .enumerate()
            .map(|(i, &j)| {
                self.data.labels[j as usize] * TEMPLATES.len() as u32
                    + ((step * 31 + i * 7) % TEMPLATES.len()) as u32
            })
            .collect();
        let t = self
            .text
            .index_select(&Tensor::new(rows.as_slice(), &Device::Cpu)?, 0)?;
        let a = self.tower.embed(images, None)?;
        self.tower.clip(&a, &t)
    }
}

/// Mean of a class's template embeddings (re-normalised): `[classes, D]`.
fn class_means(table: &Tensor, classes: usize) -> Result<Tensor> {
    let d = table.dim(1)?;
    l2_normalize(&table.reshape((classes, TEMPLATES.len(), d))?.mean(1)?).map_err(Into::into)
}

/// The LiT phase; returns its report entry.
pub fn lit_phase(
    opts: &QuickstartOptions,
    store: &AssetStore,
    train: &FashionMnist,
    test: &FashionMnist,
    held_out: [u32; 2],
    steps: usize,
) -> Result<serde_json::Value> {
    let t0 = std::time::Instant::now();
    let dir = store.fetch(
        "minilm-l6-v2",
        &FetchOptions {
            force: false,
            progress: opts.progress,
        },
    )?;
    let minilm = mosaic_models::pretrained::SentenceEncoder::from_pretrained(&dir)?;
    let captions: Vec<String> = CLASSES
        .iter()
        .flat_map(|c| TEMPLATES.iter().map(move |t| t.replace("{}", c)))
        .collect();
    let text = minilm.encode(&captions, 64)?.detach();
    let seen: Vec<u32> = (0..10).filter(|c| !held_out.contains(c)).collect();
    let idx: Vec<u32> = (0..train.labels.len() as u32)
        .filter(|&i| seen.contains(&train.labels[i as usize]))
        .collect();
    let tower = Tower::new(
        opts.seed,
        Modality::Image,
        &EncoderConfig::Cnn(CnnConfig {
            image_size: 28,
            channels: 1,
            widths: vec![16, 32, 64],
            dim: 64,
        }),
        text.dim(1)?,
    )?;
    let run_dir = opts.out_dir.join("lit");
    let _ = std::fs::remove_dir_all(&run_dir);
    let mut trainer = tower.trainer(run_dir.clone(), steps, opts.progress)?;
    let mut task = LitTask {
        tower: &tower,
        data: train,
        idx,
        text: text.clone(),
        batch: opts.batch_size,
        seed: opts.seed,
    };
    let summary = trainer.run(&mut task, false)?;
    // Held-out test images.
    let keep: Vec<u32> = (0..test.labels.len() as u32)
        .filter(|&i| held_out.contains(&test.labels[i as usize]))
        .collect();
    let images = test
        .images
        .index_select(&Tensor::new(keep.as_slice(), &Device::Cpu)?, 0)?;
    let labels: Vec<u32> = keep.iter().map(|&i| test.labels[i as usize]).collect();
    let emb = tower.embed_all(&images, None)?;
    let means = class_means(&text, CLASSES.len())?;
    let all: Vec<u32> = (0..10).collect();
    let acc10 = accuracy(&emb, &means, &labels, &all)?;
    let unseen = means.index_select(&Tensor::new(&held_out[..], &Device::Cpu)?, 0)?;
    let acc2 = accuracy(&emb, &unseen, &labels, &held_out)?;
    // One-sided binomial test against chance 1/2 (normal approximation).
    let n = labels.len() as f64;
    let z = (acc2 - 0.5) / (0.25 / n).sqrt();
    let seen_keep: Vec<u32> = (0..test.labels.len() as u32)
        .filter(|&i| !held_out.contains(&test.labels[i as usize]))
        .collect();
    let seen_imgs = test
        .images
        .index_select(&Tensor::new(seen_keep.as_slice(), &Device::Cpu)?, 0)?;
    let seen_labels: Vec<u32> = seen_keep.iter().map(|&i| test.labels[i as usize]).collect();
    let seen_acc = accuracy(
        &tower.embed_all(&seen_imgs, None)?,
        &means,
        &seen_labels,
        &all,
    )?;
    Ok(serde_json::json!({
        "text_tower": "all-MiniLM-L6-v2 (frozen, real weights)",
        "held_out_classes": held_out.iter().map(|&c| CLASSES[c as usize]).collect::<Vec<_>>(),
        "held_out_test_images": labels.len(),
        "unseen_only_accuracy": acc2,
        "unseen_only_z_vs_chance": z,
        "unseen_beats_chance_95pct": z > 1.645,
        "held_out_10_way_accuracy": acc10,
        "seen_classes_10_way_accuracy": seen_acc,
        "steps": steps,
        "train_seconds": summary.seconds,
        "phase_seconds": t0.elapsed().as_secs_f64(),
        "loss_curve": run_dir.join("loss.png"),
    }))
}

/// Speech for the tri-modal phase: `espeak-ng` voices, split into the
/// voices trained on and those held out.
pub const TRAIN_VOICES: [(&str, u32, u32); 8] = [
    ("en-us+m1", 150, 45),
    ("en-us+f2", 175, 65),
    ("en-gb+m3", 140, 50),
    ("en-gb+f1", 165, 70),
    ("en-gb-scotland+m2", 160, 40),
    ("en-gb-x-rp+f3", 150, 60),
    ("en-gb-x-gbclan+m4", 180, 55),
    ("en-gb-x-gbcwmd+f4", 145, 75),
];
/// Voices only heard at evaluation.
pub const HELD_OUT_VOICES: [(&str, u32, u32); 2] = [("en-029+m5", 155, 50), ("en-us+f4", 170, 68)];

const N_MELS: usize = 40;
const MAX_FRAMES: usize = 160;

/// Synthesises `text` and returns `[frames, N_MELS]` log-mel features
/// (16 kHz, 25 ms windows every 20 ms, per-utterance standardised).
fn speak(text: &str, voice: &(&str, u32, u32), tmp: &Path) -> Result<Vec<Vec<f32>>> {
    let wav = tmp.join("utt.wav");
    let status = std::process::Command::new("espeak-ng")
        .args([
            "-v",
            voice.0,
            "-s",
            &voice.1.to_string(),
            "-p",
            &voice.2.to_string(),
            "-w",
        ])
        .arg(&wav)
        .arg(text)
        .status()
        .map_err(|e| Error::InvalidInput {
            what: "espeak-ng".into(),
            message: format!(
                "cannot run it ({e}); install it (apt-get install espeak-ng) or pass --no-speech"
            ),
        })?;
    if !status.success() {
        return Err(Error::InvalidInput {
            what: "espeak-ng".into(),
            message: format!("failed on voice {} for `{text}`", voice.0),
        });
    }
    let audio = mosaic_data::audio::load_audio(&wav, &Default::default())?;
    let pcm = mosaic_data::audio::resample(&audio.samples, audio.sample_rate, 16000)?;
    let mut cfg = mosaic_data::audio::features::MelConfig::librosa(16000);
    cfg.n_fft = 400;
    cfg.hop = 320;
    cfg.n_mels = N_MELS;
    let mel = mosaic_data::audio::features::power_to_db(
        &mosaic_data::audio::features::mel_spectrogram(&pcm, &cfg)?,
        Some(80.0),
    );
    let frames = mel[0].len().min(MAX_FRAMES);
    let flat: Vec<f64> = mel
        .iter()
        .flat_map(|r| r[..frames].iter().copied())
        .collect();
    let mean = flat.iter().sum::<f64>() / flat.len().max(1) as f64;
    let sd = (flat.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / flat.len().max(1) as f64)
        .sqrt()
        .max(1e-6);
    Ok((0..frames)
        .map(|t| {
            (0..N_MELS)
                .map(|m| ((mel[m][t] - mean) / sd) as f32)
                .collect()
        })
        .collect())
}

/// Utterances `[N, MAX_FRAMES, N_MELS]` + masks + class per utterance.
fn utterances(voices: &[(&str, u32, u32)], tmp: &Path) -> Result<(Tensor, Tensor, Vec<u32>)> {
    let mut feats = Vec::new();
    let mut masks = Vec::new();
    let mut labels = Vec::new();
    for v in voices {
        for (c, name) in CLASSES.iter().enumerate() {
            for t in TEMPLATES {
                let f = speak(&t.replace("{}", name), v, tmp)?;
                let mut x = vec![0f32; MAX_FRAMES * N_MELS];
                let mut m = vec![0u8; MAX_FRAMES];
                for (i, row) in f.iter().enumerate() {
                    x[i * N_MELS..(i + 1) * N_MELS].copy_from_slice(row);
                    m[i] = 1;
                }
                feats.extend(x);
                masks.extend(m);
                labels.push(c as u32);
            }
        }
    }
    let n = labels.len();
    Ok((
        Tensor::from_vec(feats, (n, MAX_FRAMES, N_MELS), &Device::Cpu)?,
        Tensor::from_vec(masks, (n, MAX_FRAMES), &Device::Cpu)?,
        labels,
    ))
}

struct SpeechTask<'a> {
    tower: &'a Tower,
    speech: &'a (Tensor, Tensor, Vec<u32>),
    image_emb: &'a Tensor,
    by_class: Vec<Vec<u32>>,
    batch: usize,
    seed: u64,
}

impl Task for SpeechTask<'_> {
    fn loss(&mut self, step: usize, _micro: usize) -> Result<Tensor> {
        let n = self.speech.2.len();
        let pick = batch_indices(n, self.batch.min(n), self.seed, step);
        let it = Tensor::new(pick.as_slice(), &Device::Cpu)?;
        // Each utterance is paired with a training image of its class.
        let imgs: Vec<u32> = pick
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                let c = &self.by_class[self.speech.2[u as usize] as usize];
                c[(step * 131 + i * 17 + self.seed as usize) % c.len()]
            })
            .collect();
        let b = self
            .image_emb
            .index_select(&Tensor::new(imgs.as_slice(), &Device::Cpu)?, 0)?;
        let a = self.tower.embed(
            self.speech.0.index_select(&it, 0)?,
            Some(self.speech.1.index_select(&it, 0)?),
        )?;
        self.tower.clip(&a, &b)
    }
}

/// The tri-modal phase: spoken captions aligned to the (frozen) image tower
/// of phase 1; speech→image R@1 on held-out voices.
pub fn speech_phase(
    opts: &QuickstartOptions,
    model: &MultimodalModel,
    train: &FashionMnist,
    test: &FashionMnist,
    steps: usize,
) -> Result<serde_json::Value> {
    let t0 = std::time::Instant::now();
    let tmp = tempfile_dir(&opts.out_dir)?;
    let train_speech = utterances(&TRAIN_VOICES, &tmp)?;
    let held = utterances(&HELD_OUT_VOICES, &tmp)?;
    let _ = std::fs::remove_dir_all(&tmp);
    let synth_seconds = t0.elapsed().as_secs_f64();
    let image_emb = image_embeddings(model, &train.images, "clip")?;
    let mut by_class = vec![Vec::new(); CLASSES.len()];
    for (i, &l) in train.labels.iter().enumerate() {
        by_class[l as usize].push(i as u32);
    }
    let tower = Tower::new(
        opts.seed,
        Modality::Audio,
        &EncoderConfig::Audio(AudioConfig {
            n_mels: N_MELS,
            max_frames: MAX_FRAMES,
            dim: 64,
            layers: 1,
            heads: 4,
        }),
        image_emb.dim(1)?,
    )?;
    let run_dir = opts.out_dir.join("speech");
    let _ = std::fs::remove_dir_all(&run_dir);
    let mut trainer = tower.trainer(run_dir.clone(), steps, opts.progress)?;
    let mut task = SpeechTask {
        tower: &tower,
        speech: &train_speech,
        image_emb: &image_emb,
        by_class,
        batch: 64,
        seed: opts.seed,
    };
    let summary = trainer.run(&mut task, false)?;
    // Gallery: the first 10 test images of each class.
    let mut gallery = Vec::new();
    for c in 0..CLASSES.len() as u32 {
        gallery.extend(
            (0..test.labels.len() as u32)
                .filter(|&i| test.labels[i as usize] == c)
                .take(10),
        );
    }
    let g_labels: Vec<u32> = gallery.iter().map(|&i| test.labels[i as usize]).collect();
    let g_emb = image_embeddings(
        model,
        &test
            .images
            .index_select(&Tensor::new(gallery.as_slice(), &Device::Cpu)?, 0)?,
        "clip",
    )?;
    let q = tower.embed_all(&held.0, Some(&held.1))?;
    let top: Vec<u32> = q.matmul(&g_emb.t()?)?.argmax(D::Minus1)?.to_vec1()?;
    let hits = top
        .iter()
        .zip(&held.2)
        .filter(|(t, l)| g_labels[**t as usize] == **l)
        .count();
    let r1 = hits as f64 / held.2.len() as f64;
    Ok(serde_json::json!({
        "train_utterances": train_speech.2.len(),
        "held_out_utterances": held.2.len(),
        "train_voices": TRAIN_VOICES.iter().map(|v| v.0).collect::<Vec<_>>(),
        "held_out_voices": HELD_OUT_VOICES.iter().map(|v| v.0).collect::<Vec<_>>(),
        "gallery": "100 test images, 10 per class; a hit = top-1 image of the spoken class",
        "speech_to_image_r1_held_out_voices": r1,
        "chance": 0.1,
        "r1_over_chance": r1 / 0.1,
        "steps": steps,
        "synthesis_seconds": synth_seconds,
        "train_seconds": summary.seconds,
        "loss_curve": run_dir.join("loss.png"),
    }))
}

fn tempfile_dir(out: &Path) -> Result<PathBuf> {
    let d = out.join(".speech-tmp");
    std::fs::create_dir_all(&d)
        .map_err(|e| Error::Core(Box::new(mosaic_core::Error::io(&d, e))))?;
    Ok(d)
}
