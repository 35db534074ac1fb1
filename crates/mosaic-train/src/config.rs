//! `mosaic train CONFIG`: the training config (TOML, `configs/train/*.toml`)
//! with `key=value` overrides, and the run it describes.
//!
//! Data: the built-in `fashion_mnist` image–caption source (in memory,
//! deterministic batches by step, optional class subset) — the data the
//! quickstart and the acceptance runs use —, `manifest`: any JSONL
//! manifest, read through a pipeline derived from the architecture
//! ([`crate::manifest`]), or `wordnet_supersenses`: real English text
//! (WordNet noun definitions labelled by supersense, imported on first use
//! into `$MOSAIC_HOME/datasets/`) run as a manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use mosaic_core::assets::AssetStore;
use mosaic_models::arch::{ArchConfig, MultimodalModel};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::{OptimizerKind, ParamGroupBuilder, build_optimizer, check_learning_rate};
use crate::quickstart::{CLASSES, ImageTextRun};
use crate::schedule::{Schedule, ScheduleKind};
use crate::strategy::Ewc;
use crate::trainer::{Task, TrainSummary, Trainer, TrainerOptions};

fn cfg_err(key: &str, message: impl Into<String>) -> Error {
    Error::Config {
        source_name: "train config".into(),
        message: format!("key `{key}`: {}", message.into()),
    }
}

/// `[run]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Run folder.
    pub out_dir: PathBuf,
    /// Optimiser steps.
    pub steps: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// Seed of data order and captions.
    #[serde(default)]
    pub seed: u64,
    /// Log every N steps.
    #[serde(default = "twenty")]
    pub log_every: usize,
    /// Evaluate every N steps (0: at the end).
    #[serde(default)]
    pub eval_every: usize,
    /// Checkpoint every N steps (0: at the end).
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Micro-batches whose gradients are averaged per step.
    #[serde(default = "one")]
    pub accumulation_steps: usize,
    /// Global gradient-norm clip.
    #[serde(default)]
    pub grad_clip: Option<f64>,
    /// Evaluate the model as built, before the first step (the baseline a
    /// fine-tune is measured against; step 0 in metrics.jsonl).
    #[serde(default)]
    pub eval_at_start: bool,
}

fn twenty() -> usize {
    20
}
fn one() -> usize {
    1
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Architecture config, relative to the training config's folder.
    pub arch: PathBuf,
    /// Parameter-name patterns (module prefixes or `*` globs) to freeze.
    #[serde(default)]
    pub freeze: Vec<String>,
    /// LoRA adapters on the linear layers whose full names match
    /// `targets` (e.g. `encoders.text.*.attention.self.query`). Adapters
    /// always train; pair them with a frozen pretrained tower (`freeze =
    /// true` in its encoder config) to train only them there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSection>,
    /// Elastic weight consolidation: a penalty on moving the parameters
    /// that mattered, `λ/2 · Σ F (θ - θ*)²`, added to every step's loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ewc: Option<EwcSection>,
}

/// `[model.ewc]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EwcSection {
    /// Penalty weight λ.
    pub lambda: f64,
    /// Parameter-name patterns (module prefixes or `*` globs) to anchor,
    /// e.g. `["encoders.text"]` for a pretrained tower (default: every
    /// trainable parameter).
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Fisher diagonal and anchors written by an earlier run (its
    /// `ewc.safetensors`: that task's Fisher at its trained weights, written
    /// when it ended; relative to this config's folder): classic EWC,
    /// pulling the parameters that mattered to that task back towards what
    /// it learned. Without it the Fisher is estimated before the first step
    /// on this run's own batches, anchored at the weights as loaded (the
    /// pretrained checkpoint), so fine-tuning keeps what the checkpoint
    /// knew where it matters. Every EWC run writes its own file at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fisher: Option<PathBuf>,
    /// Batches for the estimate (default 16; small batches estimate
    /// better, see [`crate::strategy::Ewc::estimate_fisher`]).
    #[serde(default = "sixteen")]
    pub fisher_batches: usize,
}

fn sixteen() -> usize {
    16
}

/// `[model.lora]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    /// Rank r of each adapter.
    pub rank: usize,
    /// Scale numerator: the update is `alpha / r · B A x` (default 2r).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Name patterns (`*` wildcard) of the linear layers to adapt.
    pub targets: Vec<String>,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// `fashion_mnist` (the built-in image–caption source), `manifest`
    /// (any JSONL manifest; see [`crate::manifest`]) or
    /// `wordnet_supersenses` (WordNet noun definitions → 24 supersense
    /// classes; [`mosaic_data::import::import_wordnet_supersenses`]).
    pub source: String,
    /// `fashion_mnist`: training classes (default: all 10).
    #[serde(default)]
    pub classes: Option<Vec<u32>>,
    /// `manifest`: the training manifest (relative to the config's folder).
    #[serde(default)]
    pub train: Option<PathBuf>,
    /// `manifest`: the evaluation manifest.
    #[serde(default)]
    pub eval: Option<PathBuf>,
    /// `manifest`: tokenizer for text (asset name, folder or tokenizer.json).
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// `manifest`: class names in index order (classifier heads).
    #[serde(default)]
    pub class_names: Option<Vec<String>>,
    /// `manifest`: image normalisation mean (default 0.5).
    #[serde(default)]
    pub image_mean: Option<f32>,
    /// `manifest`: image normalisation std (default 0.5).
    #[serde(default)]
    pub image_std: Option<f32>,
}

impl DataSection {
    /// The manifest settings (for `source = "manifest"`).
    pub fn manifest(&self) -> Result<crate::manifest::ManifestData> {
        let train = self.train.clone().ok_or_else(|| {
            cfg_err(
                "data.train",
                "`source = \"manifest\"` needs a training manifest",
            )
        })?;
        Ok(crate::manifest::ManifestData {
            train,
            eval: self.eval.clone(),
            tokenizer: self.tokenizer.clone(),
            classes: self.class_names.clone(),
            image_mean: self.image_mean.unwrap_or(0.5),
            image_std: self.image_std.unwrap_or(0.5),
        })
    }
}

/// `[optimizer]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSection {
    /// `adamw`, `lion` or `sgd`.
    pub kind: String,
    /// Peak learning rate.
    pub lr: f64,
    /// Weight decay (not on biases, norms, temperatures).
    #[serde(default)]
    pub weight_decay: f64,
    /// Parameter groups with their own learning-rate multiplier and weight
    /// decay (`[[optimizer.groups]]`, first match wins), e.g. a new head
    /// learning faster than a pretrained tower.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupSection>,
}

/// `[[optimizer.groups]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSection {
    /// Group name (in logs and the optimiser state).
    pub name: String,
    /// Parameter-name patterns (module prefixes or `*` globs).
    pub patterns: Vec<String>,
    /// The group's learning rate is `lr_scale ×` the optimiser's (default 1).
    #[serde(default = "one_f64")]
    pub lr_scale: f64,
    /// The group's weight decay (default: the optimiser's).
    #[serde(default)]
    pub weight_decay: Option<f64>,
}

fn one_f64() -> f64 {
    1.0
}

/// The first key of `keys` that is set is an error with `why`.
fn refuse_keys(keys: &[(&str, bool)], why: &str) -> Result<()> {
    match keys.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(cfg_err(key, why)),
        None => Ok(()),
    }
}

/// A training config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Run settings.
    pub run: RunSection,
    /// Model.
    pub model: ModelSection,
    /// Data.
    pub data: DataSection,
    /// Optimiser.
    pub optimizer: OptimizerSection,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: Option<ScheduleSection>,
}

/// `[schedule]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    /// `constant`, `linear` or `cosine`.
    pub kind: String,
    /// Warm-up steps.
    #[serde(default)]
    pub warmup_steps: usize,
}

/// Sets `a.b.c = value` in a TOML table (the value parsed as TOML, else
/// taken as a string).
pub fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| cfg_err(spec, "an override must look like `section.key=value`"))?;
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .ok_or_else(|| cfg_err(key, format!("`{p}` is not a section")))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

impl TrainConfig {
    /// Reads a TOML config, applies `overrides` (`section.key=value`),
    /// resolves the architecture path against the config's folder, and
    /// validates; errors name the key.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Core(Box::new(mosaic_core::Error::io(path, e))))?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| Error::Config {
            source_name: path.display().to_string(),
            message: e.message().to_string(),
        })?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let text = toml::to_string(&table).map_err(|e| cfg_err("*", e.to_string()))?;
        let mut cfg: TrainConfig = mosaic_core::config::parse_config(
            &text,
            mosaic_core::config::ConfigFormat::Toml,
            path,
        )?;
        let folder = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        for p in [cfg.data.train.as_mut(), cfg.data.eval.as_mut()]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = folder.join(&*p);
            }
        }
        if let Some(f) = cfg.model.ewc.as_mut().and_then(|e| e.fisher.as_mut())
            && f.is_relative()
        {
            *f = folder.join(&*f);
        }
        if cfg.model.arch.is_relative() {
            cfg.model.arch = path
                .parent()
                .unwrap_or(Path::new("."))
                .join(&cfg.model.arch);
        }
        cfg.validate().map_err(|e| match e {
            Error::Config { message, .. } => Error::Config {
                source_name: path.display().to_string(),
                message,
            },
            other => other,
        })?;
        Ok(cfg)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<()> {
        let r = &self.run;
        if r.steps == 0 {
            return Err(cfg_err("run.steps", "must be at least 1"));
        }
        if r.batch_size < 2 {
            return Err(cfg_err(
                "run.batch_size",
                "must be at least 2 (contrastive batches)",
            ));
        }
        if let Some(e) = &self.model.ewc {
            if !(e.lambda.is_finite() && e.lambda >= 0.0) {
                return Err(cfg_err(
                    "model.ewc.lambda",
                    format!("must be a finite number ≥ 0, got {}", e.lambda),
                ));
            }
            if e.fisher_batches == 0 {
                return Err(cfg_err("model.ewc.fisher_batches", "must be at least 1"));
            }
        }
        if r.accumulation_steps == 0 {
            return Err(cfg_err("run.accumulation_steps", "must be at least 1"));
        }
        if r.batch_size % r.accumulation_steps != 0 {
            return Err(cfg_err(
                "run.accumulation_steps",
                format!(
                    "{} does not divide batch_size {}",
                    r.accumulation_steps, r.batch_size
                ),
            ));
        }
        self.optimizer.kind.parse::<OptimizerKind>().map_err(|_| {
            cfg_err(
                "optimizer.kind",
                format!(
                    "unknown optimiser `{}` (known: adamw, lion, sgd)",
                    self.optimizer.kind
                ),
            )
        })?;
        check_learning_rate(self.optimizer.lr).map_err(|_| {
            cfg_err(
                "optimizer.lr",
                format!("{} must be a finite number ≥ 0", self.optimizer.lr),
            )
        })?;
        if self.optimizer.lr == 0.0 {
            return Err(cfg_err("optimizer.lr", "must be positive"));
        }
        if !(self.optimizer.weight_decay >= 0.0 && self.optimizer.weight_decay.is_finite()) {
            return Err(cfg_err(
                "optimizer.weight_decay",
                format!("{} must be ≥ 0", self.optimizer.weight_decay),
            ));
        }
        if let Some(s) = &self.schedule {
            self.schedule_kind(s)?;
        }
        for (i, g) in self.optimizer.groups.iter().enumerate() {
            let key = format!("optimizer.groups[{i}]");
            if g.patterns.is_empty() {
                return Err(cfg_err(&key, "`patterns` is empty"));
            }
            if !(g.lr_scale >= 0.0 && g.lr_scale.is_finite()) {
                return Err(cfg_err(
                    &key,
                    format!("lr_scale {} must be a finite number ≥ 0", g.lr_scale),
                ));
            }
            if g.weight_decay.is_some_and(|w| !(w >= 0.0 && w.is_finite())) {
                return Err(cfg_err(&key, "weight_decay must be ≥ 0"));
            }
        }
        let d = &self.data;
        match d.source.as_str() {
            "fashion_mnist" => refuse_keys(
                &[
                    ("data.train", d.train.is_some()),
                    ("data.eval", d.eval.is_some()),
                    ("data.tokenizer", d.tokenizer.is_some()),
                    ("data.class_names", d.class_names.is_some()),
                    ("data.image_mean", d.image_mean.is_some()),
                    ("data.image_std", d.image_std.is_some()),
                ],
                "only used with `source = \"manifest\"`",
            )?,
            "wordnet_supersenses" => refuse_keys(
                &[
                    ("data.train", d.train.is_some()),
                    ("data.eval", d.eval.is_some()),
                    ("data.classes", d.classes.is_some()),
                    ("data.class_names", d.class_names.is_some()),
                    ("data.image_mean", d.image_mean.is_some()),
                    ("data.image_std", d.image_std.is_some()),
                ],
                "not used with `source = \"wordnet_supersenses\"` (its splits and classes are fixed)",
            )?,
            "manifest" => {
                if d.classes.is_some() {
                    return Err(cfg_err(
                        "data.classes",
                        "class ids select Fashion-MNIST classes; a manifest takes `class_names`",
                    ));
                }
                for (key, p) in [
                    ("data.train", d.train.as_ref()),
                    ("data.eval", d.eval.as_ref()),
                ] {
                    match p {
                        Some(p) if !p.is_file() => {
                            return Err(cfg_err(key, format!("{} is not a file", p.display())));
                        }
                        None if key == "data.train" => {
                            return Err(cfg_err(
                                key,
                                "`source = \"manifest\"` needs a training manifest",
                            ));
                        }
                        _ => {}
                    }
                }
                let std = d.image_std.unwrap_or(0.5);
                if !(std > 0.0 && std.is_finite() && d.image_mean.unwrap_or(0.5).is_finite()) {
                    return Err(cfg_err(
                        "data.image_std",
                        format!("{std} must be a positive number"),
                    ));
                }
            }
            other => {
                return Err(cfg_err(
                    "data.source",
                    format!(
                        "unknown source `{other}` (known: fashion_mnist, manifest, wordnet_supersenses)"
                    ),
                ));
            }
        }
        if let Some(c) = &self.data.classes {
            if c.len() < 2 || c.iter().any(|&x| x as usize >= CLASSES.len()) {
                return Err(cfg_err("data.classes", "needs ≥ 2 class ids in 0..=9"));
            }
        }
        Ok(())
    }

    fn schedule_kind(&self, s: &ScheduleSection) -> Result<ScheduleKind> {
        match s.kind.as_str() {
            "constant" => Ok(ScheduleKind::Constant),
            "linear" => Ok(ScheduleKind::Linear),
            "cosine" => Ok(ScheduleKind::Cosine { num_cycles: 0.5 }),
            other => Err(cfg_err(
                "schedule.kind",
                format!("unknown schedule `{other}` (known: constant, linear, cosine)"),
            )),
        }
    }
}

/// The WordNet supersense data set (default [`SupersenseOptions`]) in
/// `$MOSAIC_HOME/datasets/wordnet-supersenses`, fetching the `wordnet`
/// asset and importing on first use.
///
/// [`SupersenseOptions`]: mosaic_data::import::SupersenseOptions
pub fn wordnet_supersenses(store: &AssetStore, progress: bool) -> Result<PathBuf> {
    let out = store.home().join("datasets").join("wordnet-supersenses");
    if out.join("train.jsonl").is_file() && out.join("eval.jsonl").is_file() {
        return Ok(out);
    }
    let wn = store.fetch(
        "wordnet",
        &mosaic_core::assets::FetchOptions {
            force: false,
            progress,
        },
    )?;
    mosaic_data::import::import_wordnet_supersenses(
        &wn,
        &out,
        &mosaic_data::import::SupersenseOptions::default(),
        out.exists(),
    )?;
    Ok(out)
}

/// Runs a training config (resuming the run folder's latest checkpoint
/// with `resume`).
pub fn run(
    cfg: &TrainConfig,
    store: &AssetStore,
    resume: bool,
    progress: bool,
) -> Result<TrainSummary> {
    let arch = ArchConfig::from_file(&cfg.model.arch)?;
    let params = mosaic_models::nn::ParamStore::new(arch.seed, DType::F32, &Device::Cpu);
    let lora_err = |e: Error| match e {
        Error::Config { message, .. } => cfg_err("model.lora", message),
        other => other,
    };
    if let Some(l) = &cfg.model.lora {
        let spec = mosaic_models::nn::LoraSpec {
            rank: l.rank,
            alpha: l.alpha.unwrap_or(2.0 * l.rank as f64),
            targets: l.targets.clone(),
        };
        crate::strategy::set_lora(&params, spec).map_err(lora_err)?;
    }
    let model = MultimodalModel::with_params(&arch, params)?;
    // Every LoRA target must have adapted a layer (named otherwise).
    let adapters = match &cfg.model.lora {
        Some(_) => crate::strategy::trainable_lora_vars(model.params()).map_err(lora_err)?,
        None => Default::default(),
    };
    let mut vars = crate::strategy::freeze(&model.params().vars(), &cfg.model.freeze).map_err(
        |e| match e {
            Error::Config { message, .. } => cfg_err("model.freeze", message),
            other => other,
        },
    )?;
    // Adapters train even under a frozen prefix.
    vars.extend(adapters);
    let mut builder = ParamGroupBuilder::new(cfg.optimizer.weight_decay);
    for g in &cfg.optimizer.groups {
        let patterns: Vec<&str> = g.patterns.iter().map(String::as_str).collect();
        builder = builder.rule(&g.name, &patterns, g.lr_scale, g.weight_decay);
    }
    let groups = builder.build(&vars)?;
    let kind: OptimizerKind = cfg.optimizer.kind.parse()?;
    let optimizer = build_optimizer(kind, groups, cfg.optimizer.lr)?;
    let schedule = match &cfg.schedule {
        Some(s) => Some(Schedule::new(
            cfg.schedule_kind(s)?,
            cfg.optimizer.lr,
            s.warmup_steps,
            cfg.run.steps,
        )?),
        None => None,
    };
    let options = |best: Option<String>| TrainerOptions {
        out_dir: cfg.run.out_dir.clone(),
        steps: cfg.run.steps,
        log_every: cfg.run.log_every.max(1),
        eval_every: cfg.run.eval_every,
        eval_at_start: cfg.run.eval_at_start,
        checkpoint_every: cfg.run.checkpoint_every,
        grad_clip: cfg.run.grad_clip,
        best_metric: best,
        keep_checkpoints: 2,
        progress,
    };
    if cfg.data.source == "manifest" || cfg.data.source == "wordnet_supersenses" {
        let data = if cfg.data.source == "manifest" {
            cfg.data.manifest()?
        } else {
            let dir = wordnet_supersenses(store, progress)?;
            DataSection {
                train: Some(dir.join("train.jsonl")),
                eval: Some(dir.join("eval.jsonl")),
                ..cfg.data.clone()
            }
            .manifest()?
        };
        let mut task = crate::manifest::ManifestRun::new(
            &model,
            &data,
            store,
            cfg.run.batch_size,
            cfg.run.seed,
            cfg.run.accumulation_steps,
        )?;
        // Best checkpoint: the first classifier's accuracy, else the first
        // contrastive head's R@1 (only with an evaluation manifest).
        let best = data.eval.as_ref().and_then(|_| {
            arch.heads.iter().find_map(|(name, h)| match h {
                mosaic_models::arch::HeadConfig::Classifier { .. } => {
                    Some(format!("accuracy_{name}"))
                }
                mosaic_models::arch::HeadConfig::Contrastive { .. } => Some(format!("r1_{name}")),
                _ => None,
            })
        });
        let mut trainer = Trainer::new(model.params().clone(), optimizer, schedule, options(best))?
            .with_checkpoint_file("config.json", model_json(&model)?);
        return run_task(cfg, &vars, &mut trainer, &mut task, resume);
    }
    let (train, test) = crate::quickstart::fashion_mnist(store, progress)?;
    let classes: Vec<u32> = cfg
        .data
        .classes
        .clone()
        .unwrap_or_else(|| (0..CLASSES.len() as u32).collect());
    let mut task = ImageTextRun::new(
        &model,
        &train,
        &test,
        store,
        &classes,
        cfg.run.batch_size,
        cfg.run.seed,
        cfg.run.accumulation_steps,
    )?;
    let mut trainer = Trainer::new(
        model.params().clone(),
        optimizer,
        schedule,
        options(Some("zero_shot_accuracy".into())),
    )?
    .with_checkpoint_file("config.json", model_json(&model)?);
    run_task(cfg, &vars, &mut trainer, &mut task, resume)
}

/// The model's architecture (with its LoRA spec) as `MultimodalModel::save`
/// writes it: each checkpoint folder then loads as a model.
fn model_json(model: &MultimodalModel) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(model.config()).map_err(|e| cfg_err("model", e.to_string()))
}

/// A task with the EWC penalty added to every micro-batch's loss (the
/// trainer averages micro-batch gradients, so each carries it whole).
struct WithEwc<'a> {
    inner: &'a mut dyn Task,
    ewc: Ewc,
    vars: BTreeMap<String, Var>,
}

impl Task for WithEwc<'_> {
    fn loss(&mut self, step: usize, micro: usize) -> Result<Tensor> {
        Ok((self.inner.loss(step, micro)? + self.ewc.penalty(&self.vars)?)?)
    }
    fn micro_batches(&self) -> usize {
        self.inner.micro_batches()
    }
    fn evaluate(&mut self, step: usize) -> Result<BTreeMap<String, f64>> {
        self.inner.evaluate(step)
    }
}

/// The EWC state of `[model.ewc]`: read from an earlier run's file, or
/// estimated now (before any step, so a resumed run estimates the same
/// Fisher at the same loaded weights) on the task's first batches.
fn ewc_state(
    section: &EwcSection,
    vars: &BTreeMap<String, Var>,
    task: &mut dyn Task,
) -> Result<(Ewc, BTreeMap<String, Var>)> {
    let key = |e: Error| match e {
        Error::Config { message, .. } => cfg_err("model.ewc.patterns", message),
        other => other,
    };
    let anchored = if section.patterns.is_empty() {
        vars.clone()
    } else {
        crate::strategy::select(vars, &section.patterns).map_err(key)?
    };
    let ewc = match &section.fisher {
        Some(path) => {
            let device = anchored
                .values()
                .next()
                .map(|v| v.device().clone())
                .unwrap_or(Device::Cpu);
            let loaded = Ewc::load(path, section.lambda, &device)?;
            // Only the entries the patterns name (a new head is not in an
            // earlier run's file, an old one may not be in this model).
            let keep = |n: &String| anchored.contains_key(n);
            let fisher: BTreeMap<String, Tensor> = loaded
                .fisher()
                .iter()
                .filter(|(n, _)| keep(n))
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect();
            if fisher.is_empty() {
                return Err(cfg_err(
                    "model.ewc.fisher",
                    format!(
                        "{} anchors none of the parameters `model.ewc.patterns` selects",
                        path.display()
                    ),
                ));
            }
            let anchors = loaded.anchor().clone();
            let mut ewc = Ewc::new(&anchored, fisher, section.lambda)?;
            ewc.set_anchors(&anchors)?;
            ewc
        }
        None => {
            let k = task.micro_batches().max(1);
            Ewc::from_task(
                &anchored,
                section.fisher_batches,
                |i| task.loss(i / k, i % k),
                section.lambda,
            )?
        }
    };
    Ok((ewc, anchored))
}

/// Runs `task`, through the EWC penalty when `[model.ewc]` is set.
fn run_task(
    cfg: &TrainConfig,
    vars: &BTreeMap<String, Var>,
    trainer: &mut Trainer,
    task: &mut dyn Task,
    resume: bool,
) -> Result<TrainSummary> {
    match &cfg.model.ewc {
        None => trainer.run(task, resume),
        Some(section) => {
            // Refuse an occupied run folder before the (slow) estimate.
            let latest = cfg.run.out_dir.join("checkpoints").join("latest");
            if !resume && latest.exists() {
                return Err(Error::InvalidInput {
                    what: "run.out_dir".into(),
                    message: format!(
                        "{} already holds a run; pass --resume to continue it or choose another folder",
                        cfg.run.out_dir.display()
                    ),
                });
            }
            let (ewc, anchored) = ewc_state(section, vars, task)?;
            let mut with = WithEwc {
                inner: task,
                ewc,
                vars: anchored.clone(),
            };
            let summary = trainer.run(&mut with, resume)?;
            // What the next task remembers: this task's Fisher at the
            // trained weights, anchored there (classic EWC).
            let k = task.micro_batches().max(1);
            let learned = Ewc::from_task(
                &anchored,
                section.fisher_batches,
                |i| task.loss(i / k, i % k),
                section.lambda,
            )?;
            learned.save(&cfg.run.out_dir.join("ewc.safetensors"))?;
            Ok(summary)
        }
    }
}
