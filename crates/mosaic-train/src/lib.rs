//! # mosaic-train
//!
//! Training for Mosaic models: objectives ([`loss`]) and optimisers
//! ([`optim`]) that work on any [`mosaic_models::nn::ParamStore`].
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use mosaic_models::nn::{Init, ParamStore};
//! use mosaic_train::{loss, optim::{AdamW, Optimizer}};
//!
//! # fn main() -> mosaic_train::Result<()> {
//! let p = ParamStore::new(0, DType::F32, &Device::Cpu);
//! let w = p.get("w", &[2, 3], Init::Normal(0.5))?;
//! let x = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &Device::Cpu)?;
//! let targets = Tensor::new(&[2u32, 0], &Device::Cpu)?;
//! let mut opt = AdamW::new(p.vars(), 0.1, 0.0);
//! let first = loss::cross_entropy(&x.matmul(&w)?, &targets, 0.0)?.to_scalar::<f32>()?;
//! for _ in 0..20 {
//!     let l = loss::cross_entropy(&x.matmul(&w)?, &targets, 0.0)?;
//!     opt.step(&l.backward()?)?;
//! }
//! let last = loss::cross_entropy(&x.matmul(&w)?, &targets, 0.0)?.to_scalar::<f32>()?;
//! assert!(last < first / 4.0);
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod error;
pub mod gradcache;
pub mod loss;
pub mod manifest;
pub mod optim;
pub mod plot;
pub mod quickstart;
pub mod schedule;
pub mod strategy;
pub mod trainer;

pub use error::{Error, Result};
pub use gradcache::{GradCacheOutput, contrastive_grad_cache, grad_cache};
pub use optim::{AdamW, Lion, Optimizer, ParamGroup, ParamGroupBuilder, Sgd};
pub use schedule::{Schedule, ScheduleKind};
