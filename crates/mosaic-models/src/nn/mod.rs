//! Building blocks written with candle-core's primitive ops only, so that
//! autograd reaches every input: candle-nn's `LayerNorm`, `RmsNorm` and
//! `softmax_last_dim` are fused kernels that pass no gradient (DESIGN §4).

pub mod ops;

pub use ops::{Activation, LayerNorm, Linear, gelu_erf, gelu_tanh, softmax_last_dim};
