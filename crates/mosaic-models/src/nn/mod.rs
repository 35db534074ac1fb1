//! Building blocks written with candle-core's primitive ops only, so that
//! autograd reaches every input: candle-nn's `LayerNorm`, `RmsNorm` and
//! `softmax_last_dim` are fused kernels that pass no gradient (DESIGN §4).

pub mod attention;
pub mod ops;

pub use attention::{PreNormLayer, SelfAttention, causal_bias, padding_bias, patchify};
pub use ops::{
    Activation, LayerNorm, Linear, fold_batch_norm, gelu_erf, gelu_tanh, softmax_last_dim,
};
