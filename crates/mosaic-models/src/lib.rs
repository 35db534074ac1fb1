//! # mosaic-models
//!
//! Models for Mosaic: differentiable building blocks ([`nn`]) and loaders
//! for published checkpoints ([`pretrained`]) that match their reference
//! implementations — so far BERT-family encoders and sentence-transformers
//! models (all-MiniLM-L6-v2 embeddings equal sentence-transformers').
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use mosaic_models::nn::{LayerNorm, softmax_last_dim};
//!
//! # fn main() -> mosaic_models::Result<()> {
//! let x = Tensor::new(&[[1f32, 2.0, 3.0]], &Device::Cpu)?;
//! let p = softmax_last_dim(&x)?;
//! let s: f32 = p.sum_all()?.to_scalar()?;
//! assert!((s - 1.0).abs() < 1e-6);
//! let ln = LayerNorm { weight: Tensor::ones(3, candle_core::DType::F32, &Device::Cpu)?, bias: Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu)?, eps: 1e-5 };
//! let y: Vec<Vec<f32>> = ln.forward(&x)?.to_vec2()?;
//! assert!(y[0][1].abs() < 1e-6);
//! # Ok(())
//! # }
//! ```

pub mod arch;
pub mod encoder;
pub mod error;
pub mod nn;
pub mod pretrained;
pub mod weights;
pub mod zeroshot;

pub use encoder::{Encoder, Features};
pub use error::{Error, Result};
