//! The training loop: deterministic batches by step, optimiser + schedule,
//! gradient clipping, periodic evaluation, atomic checkpoints every N steps
//! (model + optimiser state + trainer state), exact resume, best-checkpoint
//! tracking, metrics as JSONL, a progress bar and a loss-curve PNG.
//!
//! Exactness of `--resume`: the batch of step `s` is a pure function of
//! `(seed, s)` (the [`Task`] contract), parameters are stored bit-exactly,
//! optimiser moments in f64, and the schedule is a function of the step, so
//! a resumed run repeats the uninterrupted run's losses exactly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use mosaic_models::nn::ParamStore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::{Optimizer, clip_grad_norm};
use crate::schedule::Schedule;

/// What the trainer trains.
pub trait Task {
    /// The loss of micro-batch `micro` of step `step`. The batch must depend
    /// only on `(step, micro)` (and the task's own fixed seed), so that
    /// resuming is exact.
    fn loss(&mut self, step: usize, micro: usize) -> Result<Tensor>;
    /// Micro-batches per step; their gradients are averaged (gradient
    /// accumulation: one backward pass per micro-batch, so memory is that of
    /// one micro-batch).
    fn micro_batches(&self) -> usize {
        1
    }
    /// Evaluation metrics (higher is better for the one named by
    /// [`TrainerOptions::best_metric`]).
    fn evaluate(&mut self, step: usize) -> Result<BTreeMap<String, f64>> {
        let _ = step;
        Ok(BTreeMap::new())
    }
}

/// Trainer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerOptions {
    /// Run folder (checkpoints, metrics.jsonl, loss.png).
    pub out_dir: PathBuf,
    /// Optimiser steps.
    pub steps: usize,
    /// Log (metrics.jsonl, progress) every N steps.
    #[serde(default = "ten")]
    pub log_every: usize,
    /// Evaluate every N steps (0: only at the end).
    #[serde(default)]
    pub eval_every: usize,
    /// Also evaluate before the first step of a fresh run (step 0 in
    /// metrics.jsonl, [`TrainSummary::initial_eval`]): the baseline a
    /// fine-tune improves on.
    #[serde(default)]
    pub eval_at_start: bool,
    /// Checkpoint every N steps (0: only at the end).
    #[serde(default)]
    pub checkpoint_every: usize,
    /// Clip gradients to this global L2 norm.
    #[serde(default)]
    pub grad_clip: Option<f64>,
    /// Metric whose highest value marks the best checkpoint.
    #[serde(default)]
    pub best_metric: Option<String>,
    /// Checkpoints kept (older ones are deleted; the best is always kept).
    #[serde(default = "three")]
    pub keep_checkpoints: usize,
    /// Show a progress bar.
    #[serde(default = "yes")]
    pub progress: bool,
}

fn ten() -> usize {
    10
}
fn three() -> usize {
    3
}
fn yes() -> bool {
    true
}

impl TrainerOptions {
    /// Checks the values; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, msg: String| {
            Err(Error::Config {
                source_name: "trainer".into(),
                message: format!("key `{key}`: {msg}"),
            })
        };
        if self.steps == 0 {
            return bad("steps", "must be at least 1".into());
        }
        if self.log_every == 0 {
            return bad("log_every", "must be at least 1".into());
        }
        if let Some(c) = self.grad_clip
            && !(c > 0.0 && c.is_finite())
        {
            return bad("grad_clip", format!("{c} must be a positive number"));
        }
        if self.keep_checkpoints == 0 {
            return bad("keep_checkpoints", "must be at least 1".into());
        }
        Ok(())
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// Step (1-based: after this many updates).
    pub step: usize,
    /// Training loss of this step (train records).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub loss: Option<f64>,
    /// Learning rate used.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lr: Option<f64>,
    /// Pre-clip gradient norm.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norm: Option<f64>,
    /// Samples per second since the previous record.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub steps_per_sec: Option<f64>,
    /// Evaluation metrics (eval records).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub eval: BTreeMap<String, f64>,
}

/// What survives in a checkpoint besides tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Updates done.
    pub step: usize,
    /// Loss of every step so far (exact f32 values as f64).
    pub losses: Vec<f64>,
    /// Best value of the best metric, and its step.
    pub best: Option<(f64, usize)>,
}

/// The outcome of [`Trainer::run`].
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Loss per step (whole run, resumed steps included).
    pub losses: Vec<f64>,
    /// Evaluation before the first step (`eval_at_start` on a fresh run).
    pub initial_eval: BTreeMap<String, f64>,
    /// Last evaluation.
    pub last_eval: BTreeMap<String, f64>,
    /// Best metric value and step.
    pub best: Option<(f64, usize)>,
    /// Final checkpoint folder.
    pub final_checkpoint: PathBuf,
    /// Wall time of this invocation.
    pub seconds: f64,
}

/// Runs a [`Task`] with an optimiser over a parameter store.
pub struct Trainer {
    params: ParamStore,
    optimizer: Box<dyn Optimizer>,
    schedule: Option<Schedule>,
    options: TrainerOptions,
    checkpoint_files: Vec<(String, Vec<u8>)>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Core(Box::new(mosaic_core::Error::io(path, e)))
}

impl Trainer {
    /// A trainer over `params` (what is saved and resumed) updated by
    /// `optimizer` (which may cover a subset: frozen parameters are simply
    /// not in it).
    pub fn new(
        params: ParamStore,
        optimizer: Box<dyn Optimizer>,
        schedule: Option<Schedule>,
        options: TrainerOptions,
    ) -> Result<Self> {
        options.validate()?;
        Ok(Trainer {
            params,
            optimizer,
            schedule,
            options,
            checkpoint_files: Vec::new(),
        })
    }

    /// Writes `bytes` as `name` into every checkpoint folder, e.g. the
    /// model's `config.json`, so that a checkpoint is a model folder that
    /// loads on its own (`MultimodalModel::load`).
    pub fn with_checkpoint_file(mut self, name: &str, bytes: Vec<u8>) -> Self {
        self.checkpoint_files.push((name.to_string(), bytes));
        self
    }

    /// The checkpoint folder of `step`.
    pub fn checkpoint_dir(&self, step: usize) -> PathBuf {
        self.options
            .out_dir
            .join("checkpoints")
            .join(format!("step-{step:08}"))
    }

    fn latest_file(&self) -> PathBuf {
        self.options.out_dir.join("checkpoints").join("latest")
    }

    /// Writes a checkpoint: everything into `step-N.tmp/`, then one rename,
    /// then the `latest` pointer (atomically). A crash at any point leaves
    /// the previous checkpoint intact and `latest` pointing at a complete one.
    fn save_checkpoint(&self, state: &TrainerState) -> Result<PathBuf> {
        let dir = self.checkpoint_dir(state.step);
        let tmp = dir.with_extension("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        self.params.save(&tmp.join("model.safetensors"))?;
        for (name, bytes) in &self.checkpoint_files {
            mosaic_core::atomic::write_bytes_atomic(&tmp.join(name), bytes)?;
        }
        let opt: std::collections::HashMap<String, Tensor> =
            self.optimizer.state()?.into_iter().collect();
        mosaic_core::checkpoint::save_safetensors(&tmp.join("optimizer.safetensors"), &opt)?;
        let json = serde_json::to_vec_pretty(state).map_err(|e| Error::InvalidInput {
            what: "trainer state".into(),
            message: e.to_string(),
        })?;
        mosaic_core::atomic::write_bytes_atomic(&tmp.join("state.json"), &json)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        mosaic_core::atomic::write_bytes_atomic(&self.latest_file(), name.as_bytes())?;
        self.prune(state)?;
        Ok(dir)
    }

    /// Keeps the newest `keep_checkpoints` and the best.
    fn prune(&self, state: &TrainerState) -> Result<()> {
        let root = self.options.out_dir.join("checkpoints");
        let mut steps: Vec<usize> = std::fs::read_dir(&root)
            .map_err(io(&root))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
            .collect();
        steps.sort_unstable();
        let best = state.best.map(|b| b.1);
        let n = steps.len();
        for &s in steps
            .iter()
            .take(n.saturating_sub(self.options.keep_checkpoints))
        {
            if Some(s) != best {
                let d = self.checkpoint_dir(s);
                std::fs::remove_dir_all(&d).map_err(io(&d))?;
            }
        }
        Ok(())
    }

    /// Loads the checkpoint `latest` points at, if any.
    fn load_latest(&mut self) -> Result<Option<TrainerState>> {
        let latest = self.latest_file();
        if !latest.exists() {
            return Ok(None);
        }
        let name = std::fs::read_to_string(&latest).map_err(io(&latest))?;
        let dir = self.options.out_dir.join("checkpoints").join(name.trim());
        let state_file = dir.join("state.json");
        let text = std::fs::read_to_string(&state_file).map_err(io(&state_file))?;
        let state: TrainerState = serde_json::from_str(&text).map_err(|e| Error::InvalidInput {
            what: state_file.display().to_string(),
            message: e.to_string(),
        })?;
        self.params.load(&dir.join("model.safetensors"))?;
        let opt: BTreeMap<String, Tensor> = mosaic_core::formats::load_tensors(
            &dir.join("optimizer.safetensors"),
            &candle_core::Device::Cpu,
        )?
        .into_iter()
        .collect();
        self.optimizer.load_state(&opt)?;
        Ok(Some(state))
    }

    /// Trains to `options.steps`. With `resume`, continues from the latest
    /// checkpoint in `out_dir` (none: starts fresh). A non-finite loss stops
    /// the run with an error naming the step; the last good checkpoint
    /// stays.
    pub fn run(&mut self, task: &mut dyn Task, resume: bool) -> Result<TrainSummary> {
        let t0 = std::time::Instant::now();
        let out = self.options.out_dir.clone();
        std::fs::create_dir_all(out.join("checkpoints")).map_err(io(&out))?;
        let mut state = match resume {
            true => self.load_latest()?,
            false => None,
        }
        .unwrap_or(TrainerState {
            step: 0,
            losses: Vec::new(),
            best: None,
        });
        if !resume && self.latest_file().exists() {
            return Err(Error::InvalidInput {
                what: "out_dir".into(),
                message: format!(
                    "{} already holds a run; pass --resume to continue it or choose another folder",
                    out.display()
                ),
            });
        }
        // metrics.jsonl: keep the records up to the resumed step.
        let metrics_path = out.join("metrics.jsonl");
        let mut kept = String::new();
        if resume && metrics_path.exists() {
            let text = std::fs::read_to_string(&metrics_path).map_err(io(&metrics_path))?;
            for line in text.lines() {
                // Resumed from step 0 (no checkpoint yet): nothing to keep,
                // the step-0 evaluation runs again.
                if let Ok(r) = serde_json::from_str::<MetricRecord>(line)
                    && r.step <= state.step
                    && state.step > 0
                {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
        }
        mosaic_core::atomic::write_bytes_atomic(&metrics_path, kept.as_bytes())?;
        let mut metrics = std::fs::OpenOptions::new()
            .append(true)
            .open(&metrics_path)
            .map_err(io(&metrics_path))?;
        let mut write_record = |r: &MetricRecord| -> Result<()> {
            let line = serde_json::to_string(r).map_err(|e| Error::InvalidInput {
                what: "metrics".into(),
                message: e.to_string(),
            })?;
            writeln!(metrics, "{line}").map_err(io(&metrics_path))
        };
        let bar = if self.options.progress {
            let b = indicatif::ProgressBar::new(self.options.steps as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_position(state.step as u64);
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut last_eval = BTreeMap::new();
        let mut initial_eval = BTreeMap::new();
        if self.options.eval_at_start && state.step == 0 {
            initial_eval = task.evaluate(0)?;
            if !initial_eval.is_empty() {
                write_record(&MetricRecord {
                    step: 0,
                    loss: None,
                    lr: None,
                    grad_norm: None,
                    steps_per_sec: None,
                    eval: initial_eval.clone(),
                })?;
            }
        }
        let mut last_log = std::time::Instant::now();
        let mut last_log_step = state.step;
        let mut final_dir = self.checkpoint_dir(state.step);
        while state.step < self.options.steps {
            let step = state.step;
            let lr = match &self.schedule {
                Some(s) => s.lr(step),
                None => self.optimizer.learning_rate(),
            };
            self.optimizer.set_learning_rate(lr);
            let k = task.micro_batches().max(1);
            let mut acc = crate::optim::GradAccumulator::new(&self.params.vars());
            let mut lv = 0.0;
            let mut single = None;
            for micro in 0..k {
                let loss = task.loss(step, micro)?;
                let v = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
                lv += v / k as f64;
                if !v.is_finite() {
                    break;
                }
                let g = loss.backward()?;
                if k == 1 {
                    single = Some(g);
                } else {
                    acc.add(&g)?;
                }
            }
            if !lv.is_finite() {
                bar.abandon();
                return Err(Error::InvalidInput {
                    what: "loss".into(),
                    message: format!(
                        "non-finite loss {lv} at step {}; stopped, the last good checkpoint is kept in {}",
                        step + 1,
                        out.join("checkpoints").display()
                    ),
                });
            }
            let mut grads = match single {
                Some(g) => g,
                None => acc.finish()?,
            };
            let grad_norm = match self.options.grad_clip {
                Some(max) => Some(clip_grad_norm(&mut grads, &self.params.vars(), max)?),
                None => None,
            };
            self.optimizer.step(&grads)?;
            state.step += 1;
            state.losses.push(lv);
            bar.set_position(state.step as u64);
            if state.step % self.options.log_every == 0 || state.step == self.options.steps {
                let dt = last_log.elapsed().as_secs_f64();
                let sps = (state.step - last_log_step) as f64 / dt.max(1e-9);
                last_log = std::time::Instant::now();
                last_log_step = state.step;
                bar.set_message(format!("loss {lv:.4} lr {lr:.2e} {sps:.1} it/s"));
                write_record(&MetricRecord {
                    step: state.step,
                    loss: Some(lv),
                    lr: Some(lr),
                    grad_norm,
                    steps_per_sec: Some(sps),
                    eval: BTreeMap::new(),
                })?;
            }
            let at_end = state.step == self.options.steps;
            let eval_now = at_end
                || (self.options.eval_every > 0 && state.step % self.options.eval_every == 0);
            if eval_now {
                last_eval = task.evaluate(state.step)?;
                if !last_eval.is_empty() {
                    write_record(&MetricRecord {
                        step: state.step,
                        loss: None,
                        lr: None,
                        grad_norm: None,
                        steps_per_sec: None,
                        eval: last_eval.clone(),
                    })?;
                }
                if let Some(key) = &self.options.best_metric {
                    let v = *last_eval.get(key).ok_or_else(|| Error::Config {
                        source_name: "trainer".into(),
                        message: format!(
                            "key `best_metric`: the evaluation has no metric `{key}` (it has: {})",
                            last_eval.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    })?;
                    if state.best.is_none_or(|(b, _)| v > b) {
                        state.best = Some((v, state.step));
                    }
                }
            }
            let ckpt_now = at_end
                || (self.options.checkpoint_every > 0
                    && state.step % self.options.checkpoint_every == 0);
            if ckpt_now {
                final_dir = self.save_checkpoint(&state)?;
                if let Some((_, s)) = state.best {
                    let best = self.checkpoint_dir(s);
                    if best.exists() {
                        mosaic_core::atomic::write_bytes_atomic(
                            &out.join("checkpoints").join("best"),
                            format!("step-{s:08}").as_bytes(),
                        )?;
                    }
                }
            }
        }
        bar.finish();
        crate::plot::loss_curve(&out.join("loss.png"), &state.losses)?;
        Ok(TrainSummary {
            initial_eval,
            losses: state.losses,
            last_eval,
            best: state.best,
            final_checkpoint: final_dir,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }
}
