//! Learning-rate schedules: linear warm-up, then constant, linear decay or
//! cosine decay, with the semantics of Hugging Face transformers'
//! `get_constant_schedule_with_warmup`, `get_linear_schedule_with_warmup`,
//! `get_cosine_schedule_with_warmup` and
//! `get_cosine_with_min_lr_schedule_with_warmup` (parity fixtures in
//! `tests/fixtures/schedules.json`).
//!
//! `lr(step)` is the rate for the update that follows `step` earlier
//! updates (0-based, like a `LambdaLR` stepped once after each
//! `optimizer.step()`): call `opt.set_learning_rate(s.lr(step))` before the
//! update. With warm-up the first update therefore runs at rate 0, as in
//! transformers.
//!
//! ```
//! use mosaic_train::schedule::{Schedule, ScheduleKind};
//! let s = Schedule::new(ScheduleKind::Cosine { num_cycles: 0.5 }, 1e-3, 10, 110).unwrap();
//! assert_eq!(s.lr(0), 0.0);
//! assert!((s.lr(10) - 1e-3).abs() < 1e-15);
//! assert!((s.lr(60) - 0.5e-3).abs() < 1e-12);
//! assert!(s.lr(110).abs() < 1e-15);
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What follows the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleKind {
    /// The base rate (`get_constant_schedule_with_warmup`; with 0 warm-up
    /// steps, `get_constant_schedule`).
    Constant,
    /// Linear decay to 0 at `total_steps`.
    Linear,
    /// Cosine decay: `0.5·(1 + cos(π · 2·num_cycles · progress))`, clamped
    /// at 0 (0.5 cycles = one half-wave to 0 at `total_steps`).
    Cosine {
        /// Waves of the cosine (transformers' default 0.5).
        #[serde(default = "half")]
        num_cycles: f64,
    },
    /// Cosine decay to `min_lr_ratio ×` the base rate instead of 0.
    CosineWithMinLr {
        /// Waves of the cosine (default 0.5).
        #[serde(default = "half")]
        num_cycles: f64,
        /// Floor as a fraction of the base rate.
        min_lr_ratio: f64,
    },
}

fn half() -> f64 {
    0.5
}

/// A per-step learning rate: `base_lr ×` [`Schedule::factor`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The shape after warm-up.
    pub kind: ScheduleKind,
    /// The peak rate.
    pub base_lr: f64,
    /// Steps of linear warm-up from 0.
    pub warmup_steps: usize,
    /// Total optimiser steps of the run (decay reaches its end here).
    pub total_steps: usize,
}

fn bad(key: &str, message: String) -> Error {
    Error::Config {
        source_name: "schedule".into(),
        message: format!("key `{key}` {message}"),
    }
}

impl Schedule {
    /// A validated schedule: the rate must be finite and ≥ 0, decaying
    /// shapes need `total_steps ≥ 1`, cycles and floors must be finite and
    /// ≥ 0 (floor ≤ 1); errors name the key.
    pub fn new(
        kind: ScheduleKind,
        base_lr: f64,
        warmup_steps: usize,
        total_steps: usize,
    ) -> Result<Self> {
        let s = Schedule {
            kind,
            base_lr,
            warmup_steps,
            total_steps,
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks the values (see [`Schedule::new`]).
    pub fn validate(&self) -> Result<()> {
        if !self.base_lr.is_finite() || self.base_lr < 0.0 {
            return Err(bad(
                "lr",
                format!("must be a finite number ≥ 0, got {}", self.base_lr),
            ));
        }
        let cycles = |c: f64| {
            if !c.is_finite() || c < 0.0 {
                Err(bad(
                    "num_cycles",
                    format!("must be a finite number ≥ 0, got {c}"),
                ))
            } else {
                Ok(())
            }
        };
        match self.kind {
            ScheduleKind::Constant => {}
            ScheduleKind::Linear => {}
            ScheduleKind::Cosine { num_cycles } => cycles(num_cycles)?,
            ScheduleKind::CosineWithMinLr {
                num_cycles,
                min_lr_ratio,
            } => {
                cycles(num_cycles)?;
                if !(0.0..=1.0).contains(&min_lr_ratio) {
                    return Err(bad(
                        "min_lr_ratio",
                        format!("must be in [0, 1], got {min_lr_ratio}"),
                    ));
                }
            }
        }
        if !matches!(self.kind, ScheduleKind::Constant) && self.total_steps == 0 {
            return Err(bad(
                "total_steps",
                "must be at least 1 for a decaying schedule".into(),
            ));
        }
        Ok(())
    }

    /// The multiplier of the base rate at `step` (transformers' `lr_lambda`).
    pub fn factor(&self, step: usize) -> f64 {
        let (s, w, n) = (step as f64, self.warmup_steps, self.total_steps);
        if step < w {
            return s / w.max(1) as f64;
        }
        let progress = (s - w as f64) / (n.saturating_sub(w).max(1)) as f64;
        let cosine = |c: f64| 0.5 * (1.0 + (std::f64::consts::PI * c * 2.0 * progress).cos());
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => (n as f64 - s).max(0.0) / (n.saturating_sub(w).max(1)) as f64,
            ScheduleKind::Cosine { num_cycles } => cosine(num_cycles).max(0.0),
            ScheduleKind::CosineWithMinLr {
                num_cycles,
                min_lr_ratio,
            } => {
                let f = cosine(num_cycles);
                (f * (1.0 - min_lr_ratio) + min_lr_ratio).max(0.0)
            }
        }
    }

    /// The learning rate for the update after `step` earlier updates.
    pub fn lr(&self, step: usize) -> f64 {
        self.base_lr * self.factor(step)
    }
}
