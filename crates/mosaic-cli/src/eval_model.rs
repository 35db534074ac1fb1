//! `mosaic eval model`: a trained Mosaic model (a [`MultimodalModel`]
//! folder, e.g. the quickstart's `runs/quickstart/image-text/model`) on an
//! image manifest: zero-shot prompt classification (top-1/top-5, macro-F1,
//! confusion matrix, ECE, alignment entropy) through one contrastive
//! image–text head, image↔caption retrieval when the manifest has captions,
//! image robustness sweeps and a breakdown by a manifest field.

use mosaic_models::arch::encoders::{CnnConfig, TextTransformerConfig, VitConfig};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use mosaic_core::assets::AssetStore;
use mosaic_core::candle::{D, DType, Device, Tensor};
use mosaic_core::{Batch, Modality, ModalityBatch};
use mosaic_data::image::{DecodeOptions, Filter, ImageProcessor, ResizeTo, decode_image};
use mosaic_data::manifest::jsonl::{LabelValue, ManifestReader, ManifestRecord, resolve};
use mosaic_data::text::{Padding, TextTokenizer};
use mosaic_eval::classification::{alignment_entropy, classification_report};
use mosaic_eval::fairness::{breakdown, groups_from_manifest};
use mosaic_eval::report::Report;
use mosaic_eval::retrieval::retrieval_from_embeddings;
use mosaic_eval::robustness::{ImagePerturbation, perturb_image, sweep};
use mosaic_eval::suite::retrieval_into_report;
use mosaic_models::arch::{ArchConfig, EncoderConfig, HeadConfig, MultimodalModel};

/// Arguments of `mosaic eval model`.
#[derive(Args, Debug)]
pub struct ModelEvalArgs {
    /// The model folder (`config.json` + `model.safetensors`, as `MultimodalModel::save` writes).
    #[arg(long)]
    model: PathBuf,
    /// JSONL manifest: one image and one `label` per line (optional `captions`, `meta`).
    #[arg(long)]
    manifest: PathBuf,
    /// Tokenizer of the text tower: an asset name, a model folder or a tokenizer.json.
    #[arg(long, default_value = "minilm-l6-v2")]
    tokenizer: String,
    /// The contrastive head joining image and text (default: the only one).
    #[arg(long)]
    head: Option<String>,
    /// Class labels in index order: a file (one per line) or a comma list.
    /// Default: `classes.txt` beside the manifest, else labels in order of
    /// first appearance.
    #[arg(long)]
    classes: Option<String>,
    /// Names put into the prompt templates, comma-separated, one per class
    /// (default: the class labels, lower-cased).
    #[arg(long, value_delimiter = ',')]
    prompt_names: Vec<String>,
    /// Prompt template with `{}` for the class name; repeat to ensemble
    /// (mean of the normalised text embeddings). Default: "a photo of a {}".
    #[arg(long = "template")]
    templates: Vec<String>,
    /// Text length the tokenizer pads/truncates to (default: the text
    /// encoder's `max_len`).
    #[arg(long)]
    max_text_len: Option<usize>,
    /// Image normalisation `(x/255 - mean) / std` per channel (default maps
    /// 0–255 to [-1, 1], as the quickstart trains).
    #[arg(long, default_value_t = 0.5)]
    image_mean: f32,
    /// See `--image-mean`.
    #[arg(long, default_value_t = 0.5)]
    image_std: f32,
    /// Images per forward pass.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Evaluate only the first N manifest lines.
    #[arg(long)]
    limit: Option<usize>,
    /// Break accuracy down by this `meta` field of the manifest.
    #[arg(long)]
    group_by: Option<String>,
    /// Robustness: Gaussian noise σ levels (0–1 pixel scale).
    #[arg(long, value_delimiter = ',')]
    noise: Vec<f64>,
    /// Robustness: Gaussian blur σ levels (pixels).
    #[arg(long, value_delimiter = ',')]
    blur: Vec<f64>,
    /// Robustness: JPEG quality levels (1–100).
    #[arg(long, value_delimiter = ',')]
    jpeg: Vec<f64>,
    /// Robustness: occluded share of the image area (0–1).
    #[arg(long, value_delimiter = ',')]
    occlusion: Vec<f64>,
    /// The run folder to write (report.json, report.md, *.png).
    #[arg(long)]
    out: PathBuf,
    /// The run's name (default: the folder's name).
    #[arg(long)]
    name: Option<String>,
}

/// One evaluated image: where it came from, its label index, its pixels.
struct Item {
    image: image::RgbImage,
    label: usize,
    record: ManifestRecord,
}

fn label_text(l: &LabelValue) -> String {
    match l {
        LabelValue::Name(s) => s.clone(),
        LabelValue::Index(i) => i.to_string(),
    }
}

/// The class list: `--classes` (file or comma list), else `classes.txt`
/// beside the manifest, else labels in order of first appearance.
fn class_list(
    arg: Option<&str>,
    manifest: &Path,
    records: &[(usize, ManifestRecord)],
) -> Result<Vec<String>> {
    let from_lines = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    if let Some(a) = arg {
        let p = Path::new(a);
        if p.is_file() {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            return Ok(from_lines(&text));
        }
        return Ok(a.split(',').map(|s| s.trim().to_string()).collect());
    }
    let beside = manifest
        .parent()
        .unwrap_or(Path::new("."))
        .join("classes.txt");
    if beside.is_file() {
        let text = std::fs::read_to_string(&beside)
            .with_context(|| format!("reading {}", beside.display()))?;
        return Ok(from_lines(&text));
    }
    let mut seen = Vec::new();
    for (_, r) in records {
        if let Some(l) = &r.label {
            let t = label_text(l);
            if !seen.contains(&t) {
                seen.push(t);
            }
        }
    }
    Ok(seen)
}

fn modality_batch(values: Tensor, mask: Option<Tensor>) -> Result<ModalityBatch> {
    let b = values.dim(0)?;
    Ok(ModalityBatch::new(values, mask, vec![true; b])?)
}

/// The image side: preprocessing that matches the image encoder's input.
struct ImageSide {
    processor: ImageProcessor,
    channels: usize,
}

impl ImageSide {
    fn new(enc: &EncoderConfig, mean: f32, std: f32) -> Result<Self> {
        let (size, channels) = match enc {
            EncoderConfig::Cnn(CnnConfig {
                image_size,
                channels,
                ..
            })
            | EncoderConfig::Vit(VitConfig {
                image_size,
                channels,
                ..
            }) => (*image_size, *channels),
            other => bail!(
                "the image encoder is `{}`; `eval model` needs a cnn or vit image encoder",
                other.kind()
            ),
        };
        if channels != 1 && channels != 3 {
            bail!(
                "the image encoder takes {channels} channels; `eval model` feeds 1 (grey) or 3 (RGB)"
            );
        }
        if !(std > 0.0 && std.is_finite() && mean.is_finite()) {
            bail!(
                "--image-std {std} / --image-mean {mean}: the std must be positive and both finite"
            );
        }
        Ok(ImageSide {
            processor: ImageProcessor {
                resize: Some(ResizeTo::Exact {
                    height: size,
                    width: size,
                }),
                filter: Filter::Bilinear,
                center_crop: None,
                rescale_factor: Some(1.0 / 255.0),
                normalize: Some(([mean; 3], [std; 3])),
            },
            channels,
        })
    }

    /// `[B, C, H, W]` for the encoder (grey = mean of the RGB channels).
    fn tensor(&self, images: &[&image::RgbImage]) -> Result<Tensor> {
        let owned: Vec<image::RgbImage> = images.iter().map(|i| (*i).clone()).collect();
        let t = self.processor.preprocess_batch(&owned)?;
        Ok(if self.channels == 1 {
            t.mean_keepdim(1)?
        } else {
            t
        })
    }
}

/// Normalised image embeddings of a contrastive head, `batch` at a time.
fn embed_images(
    model: &MultimodalModel,
    head: &str,
    side: &ImageSide,
    images: &[&image::RgbImage],
    batch: usize,
) -> Result<Tensor> {
    let mut out = Vec::new();
    for chunk in images.chunks(batch.max(1)) {
        let mut b = Batch::new(Vec::new());
        b.modalities
            .insert(Modality::Image, modality_batch(side.tensor(chunk)?, None)?);
        out.push(model.embed(&b, head, Modality::Image)?.detach());
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// Normalised embeddings of texts.
fn embed_texts(
    model: &MultimodalModel,
    head: &str,
    tok: &TextTokenizer,
    texts: &[String],
    batch: usize,
) -> Result<Tensor> {
    let mut out = Vec::new();
    for chunk in texts.chunks(batch.max(1)) {
        let enc = tok.encode_batch(chunk)?;
        let mut b = Batch::new(Vec::new());
        b.modalities.insert(
            Modality::Text,
            modality_batch(enc.ids, Some(enc.attention_mask))?,
        );
        out.push(model.embed(&b, head, Modality::Text)?.detach());
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// The contrastive head joining image and text: `--head` or the only one.
fn pick_head(cfg: &ArchConfig, want: Option<&str>) -> Result<String> {
    let joins = |h: &HeadConfig| {
        matches!(h, HeadConfig::Contrastive { modalities, .. }
            if modalities.contains(&Modality::Image) && modalities.contains(&Modality::Text))
    };
    if let Some(w) = want {
        match cfg.heads.get(w) {
            Some(h) if joins(h) => return Ok(w.to_string()),
            Some(_) => bail!("head `{w}` is not a contrastive image–text head"),
            None => bail!(
                "the model has no head `{w}` (heads: {})",
                cfg.heads.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
    let found: Vec<&String> = cfg
        .heads
        .iter()
        .filter(|(_, h)| joins(h))
        .map(|(k, _)| k)
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("the model has no contrastive image–text head"),
        many => bail!(
            "the model has several contrastive image–text heads ({}); pick one with --head",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Zero-shot top-1 accuracy of image embeddings against class embeddings.
fn top1(image_emb: &Tensor, class_emb: &Tensor, labels: &[usize]) -> Result<f64> {
    let labels: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    Ok(mosaic_models::zeroshot::top1_accuracy(
        image_emb, class_emb, &labels, None,
    )?)
}

/// `mosaic eval model ...`.
pub fn run(a: ModelEvalArgs, store: &dyn Fn() -> Result<AssetStore>) -> Result<()> {
    let model = MultimodalModel::load(&a.model, DType::F32, &Device::Cpu)
        .with_context(|| format!("loading the model in {}", a.model.display()))?;
    let cfg = model.config().clone();
    let head = pick_head(&cfg, a.head.as_deref())?;
    let image_enc = cfg
        .encoders
        .get(&Modality::Image)
        .context("the model has no image encoder")?;
    let side = ImageSide::new(image_enc, a.image_mean, a.image_std)?;
    let max_len = match (a.max_text_len, cfg.encoders.get(&Modality::Text)) {
        (Some(n), _) => n,
        (None, Some(EncoderConfig::TextTransformer(TextTransformerConfig { max_len, .. }))) => {
            *max_len
        }
        (None, _) => 77,
    };
    let tok = mosaic_train::manifest::load_tokenizer(
        &a.tokenizer,
        max_len,
        Padding::Fixed(max_len),
        &store()?,
    )?;

    let mut records = ManifestReader::read_all(&a.manifest)?;
    if records.is_empty() {
        bail!("{}: the manifest has no lines", a.manifest.display());
    }
    if let Some(n) = a.limit {
        if n == 0 {
            bail!("--limit 0 leaves no images to evaluate");
        }
        records.truncate(n);
    }
    let classes = class_list(a.classes.as_deref(), &a.manifest, &records)?;
    if classes.len() < 2 {
        bail!(
            "zero-shot classification needs at least 2 classes, found {}",
            classes.len()
        );
    }
    let prompt_names: Vec<String> = if a.prompt_names.is_empty() {
        classes.iter().map(|c| c.to_lowercase()).collect()
    } else if a.prompt_names.len() == classes.len() {
        a.prompt_names.clone()
    } else {
        bail!(
            "--prompt-names has {} names for {} classes",
            a.prompt_names.len(),
            classes.len()
        );
    };
    let templates = if a.templates.is_empty() {
        vec!["a photo of a {}".to_string()]
    } else {
        a.templates.clone()
    };
    if let Some(t) = templates.iter().find(|t| !t.contains("{}")) {
        bail!("--template `{t}` has no `{{}}` for the class name");
    }

    // Decode every image; errors name the manifest line.
    let base = a.manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    let decode = DecodeOptions::default();
    let mut items = Vec::with_capacity(records.len());
    for (line, r) in &records {
        let at = format!("{}:{line}", a.manifest.display());
        let img_ref = r
            .image
            .as_ref()
            .with_context(|| format!("{at}: no `image`"))?;
        let label = r
            .label
            .as_ref()
            .with_context(|| format!("{at}: no `label`"))?;
        let lt = label_text(label);
        let idx = match label {
            LabelValue::Index(i)
                if *i >= 0 && (*i as usize) < classes.len() && !classes.contains(&lt) =>
            {
                *i as usize
            }
            _ => classes.iter().position(|c| *c == lt).with_context(|| {
                format!(
                    "{at}: label `{lt}` is not one of the {} classes",
                    classes.len()
                )
            })?,
        };
        let path = resolve(&base, img_ref);
        let bytes =
            std::fs::read(&path).with_context(|| format!("{at}: reading {}", path.display()))?;
        let image = decode_image(&bytes, &path.display().to_string(), &decode)
            .with_context(|| at.clone())?;
        items.push(Item {
            image,
            label: idx,
            record: r.clone(),
        });
    }
    let labels: Vec<usize> = items.iter().map(|i| i.label).collect();
    let images: Vec<&image::RgbImage> = items.iter().map(|i| &i.image).collect();

    let t0 = std::time::Instant::now();
    let image_emb = embed_images(&model, &head, &side, &images, a.batch_size)?;
    // Prompt ensembling: mean of the normalised template embeddings, renormalised.
    let prompts: Vec<String> = prompt_names
        .iter()
        .flat_map(|c| templates.iter().map(move |t| t.replace("{}", c)))
        .collect();
    let te = embed_texts(&model, &head, &tok, &prompts, 256)?;
    let class_emb = mosaic_models::zeroshot::ensemble_templates(&te, classes.len())?;
    let scale_name = format!("heads.{head}.logit_scale");
    let logit_scale = model
        .params()
        .tensors()
        .get(&scale_name)
        .with_context(|| format!("the model has no `{scale_name}`"))?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?[0]
        .exp();
    let sim = image_emb.matmul(&class_emb.t()?)?;
    let logits: Vec<f32> = (sim.clone() * logit_scale)?.flatten_all()?.to_vec1()?;
    let cr = classification_report(&logits, classes.len(), &labels)?;
    let sim_flat: Vec<f32> = sim.flatten_all()?.to_vec1()?;
    let entropy = alignment_entropy(&sim_flat, classes.len(), 1.0 / logit_scale)?;

    let mut report = Report::new(&a.name.clone().unwrap_or_else(|| {
        a.out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    }));
    report
        .input("model", a.model.display())
        .input("manifest", a.manifest.display())
        .input("images", items.len())
        .input("head", &head)
        .input("classes", classes.join(", "))
        .input("templates", templates.join(" | "))
        .input("logit_scale", format!("{logit_scale:.4}"));
    report
        .metric("zero_shot_top1", cr.top1)
        .metric("zero_shot_top5", cr.top5)
        .metric("macro_f1", cr.macro_f1)
        .metric("ece", cr.ece)
        .metric("alignment_entropy", entropy);
    report.detail("confusion_matrix", &cr.confusion)?;
    let mut md = String::from("Confusion matrix (rows: true class, columns: predicted)\n\n| |");
    for c in &cr.confusion.labels {
        md.push_str(&format!(" {} |", classes[*c]));
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(cr.confusion.labels.len()));
    for (i, row) in cr.confusion.matrix.iter().enumerate() {
        md.push_str(&format!("\n| {} |", classes[cr.confusion.labels[i]]));
        for v in row {
            md.push_str(&format!(" {v} |"));
        }
    }
    report.notes.push(md);

    // Retrieval against the first caption of each sample, when every sample has one.
    if items.iter().all(|i| !i.record.captions.is_empty()) {
        let caps: Vec<String> = items.iter().map(|i| i.record.captions[0].clone()).collect();
        let ce = embed_texts(&model, &head, &tok, &caps, 256)?;
        let r = retrieval_from_embeddings(&image_emb, &ce, None, None, true)?;
        retrieval_into_report(&r, "image", "caption", &mut report)?;
    }

    if let Some(field) = &a.group_by {
        let recs: Vec<ManifestRecord> = items.iter().map(|i| i.record.clone()).collect();
        let groups = groups_from_manifest(&recs, field);
        let pred: Vec<u32> = sim.argmax(D::Minus1)?.to_vec1()?;
        let f = breakdown(field, "zero_shot_top1", &groups, |idx| {
            Ok(idx
                .iter()
                .filter(|&&i| pred[i] as usize == labels[i])
                .count() as f64
                / idx.len() as f64)
        })?;
        report.metric(&format!("zero_shot_top1_gap_by_{field}"), f.gap);
        report.fairness.push(f);
    }

    let sweeps: [(&str, &str, &Vec<f64>); 4] = [
        ("noise", "image Gaussian noise σ", &a.noise),
        ("blur", "image blur σ (px)", &a.blur),
        ("jpeg", "image JPEG quality", &a.jpeg),
        ("occlusion", "image occluded area", &a.occlusion),
    ];
    for (kind, title, levels) in sweeps {
        if levels.is_empty() {
            continue;
        }
        let s = sweep(title, "zero_shot_top1", levels, |level| {
            let p = ImagePerturbation::parse(kind, level)?;
            let perturbed: Vec<image::RgbImage> = items
                .iter()
                .enumerate()
                .map(|(i, it)| perturb_image(&it.image, p, i as u64))
                .collect::<mosaic_eval::Result<_>>()?;
            let refs: Vec<&image::RgbImage> = perturbed.iter().collect();
            let emb = embed_images(&model, &head, &side, &refs, a.batch_size)
                .map_err(|e| mosaic_eval::Error::invalid("robustness sweep", e.to_string()))?;
            top1(&emb, &class_emb, &labels)
                .map_err(|e| mosaic_eval::Error::invalid("robustness sweep", e.to_string()))
        })?;
        report.sweeps.push(s);
    }
    report.notes.push(format!(
        "embedding and scoring {} images (plus sweeps) took {:.2} s",
        items.len(),
        t0.elapsed().as_secs_f64()
    ));
    report.write(&a.out)?;
    println!("{}", a.out.join("report.md").display());
    for (k, v) in &report.metrics {
        println!("{k:<24} {v:.6}");
    }
    Ok(())
}
