//! Building blocks written with candle-core's primitive ops and Mosaic's
//! own fused kernels ([`fused`]: GELU, softmax, LayerNorm, each with a
//! checked backward), so that autograd reaches every input: candle-nn's
//! `LayerNorm`, `RmsNorm` and `softmax_last_dim` are fused kernels that pass
//! no gradient (DESIGN §4).

pub mod attention;
pub mod blocks;
pub mod fused;
pub mod gradcheck;
pub mod ops;
pub mod params;

pub use attention::{PreNormLayer, SelfAttention, causal_bias, padding_bias, patchify};
pub use blocks::{
    AttentionPool, BlockSpec, Embedding, Mlp, MultiHeadAttention, Norm, PromptTokens, Rope,
    Transformer, TransformerBlock,
};
pub use ops::{
    Activation, ConvBatchNorm, LayerNorm, Linear, Lora, RmsNorm, StackedLinear, conv1d, gelu_erf,
    gelu_tanh, matmul_last_dim, softmax_last_dim,
};
pub use params::{CheckpointMode, Init, LoraSpec, ParamStore};
