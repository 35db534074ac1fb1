//! Trainable blocks built from a [`ParamStore`]: multi-head attention
//! (self, cross, causal; masks; rotary positions; KV cache), MLP, pre/post-norm
//! transformer blocks (optionally cross-attending), attention pooling,
//! learnable prompt tokens and embeddings. Everything runs on Mosaic's own
//! differentiable ops.

use candle_core::{D, DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::nn::attention::scaled_dot_product;
use crate::nn::params::{Dense, Init, ParamStore};
use crate::nn::{Activation, LayerNorm};

/// A LayerNorm with trainable scale and shift.
pub fn layer_norm(p: &ParamStore, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
    let s = p.sub(name);
    Ok(LayerNorm {
        weight: s.get("weight", &[dim], Init::Ones)?,
        bias: s.get("bias", &[dim], Init::Zeros)?,
        eps,
    })
}

/// Rotary position embedding (rotate-half convention, as Llama / GPT-NeoX).
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f64>,
}

impl Rope {
    /// Frequencies `theta^(-2i/head_dim)`.
    pub fn new(head_dim: usize, theta: f64) -> Result<Self> {
        if head_dim % 2 != 0 {
            return Err(Error::Config {
                source_name: "attention".into(),
                message: format!("rotary positions need an even head size, got {head_dim}"),
            });
        }
        Ok(Rope {
            inv_freq: (0..head_dim / 2)
                .map(|i| theta.powf(-2.0 * i as f64 / head_dim as f64))
                .collect(),
        })
    }

    /// Rotates `x` `[B, heads, T, hd]` for positions `start..start+T`.
    pub fn apply(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let (_, _, t, hd) = x.dims4()?;
        let mut cos = Vec::with_capacity(t * hd);
        let mut sin = Vec::with_capacity(t * hd);
        for p in start..start + t {
            for _half in 0..2 {
                for f in &self.inv_freq {
                    let a = p as f64 * f;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
        let cos = Tensor::from_vec(cos, (1, 1, t, hd), x.device())?.to_dtype(x.dtype())?;
        let sin = Tensor::from_vec(sin, (1, 1, t, hd), x.device())?.to_dtype(x.dtype())?;
        let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
        let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
        let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        Ok((x.broadcast_mul(&cos)? + rot.broadcast_mul(&sin)?)?)
    }
}

/// Cached keys and values of one attention layer (decoding).
#[derive(Debug, Clone, Default)]
pub struct AttnCache {
    kv: Option<(Tensor, Tensor)>,
}

impl AttnCache {
    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dim(1).unwrap_or(0))
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Multi-head attention with separate q/k/v/out projections.
#[derive(Debug, Clone)]
pub struct MultiHeadAttention {
    /// Query projection.
    pub q: Dense,
    /// Key projection.
    pub k: Dense,
    /// Value projection.
    pub v: Dense,
    /// Output projection.
    pub o: Dense,
    /// Heads.
    pub heads: usize,
    /// Rotary positions on q and k (self-attention only).
    pub rope: Option<Rope>,
}

impl MultiHeadAttention {
    /// Builds `name.{q,k,v,o}`; keys/values read `kv_dim`-wide inputs
    /// (`dim` for self-attention).
    pub fn new(
        p: &ParamStore,
        name: &str,
        dim: usize,
        kv_dim: usize,
        heads: usize,
        rotary: bool,
    ) -> Result<Self> {
        if heads == 0 || dim % heads != 0 {
            return Err(Error::Config {
                source_name: p.full(name),
                message: format!("key `heads`: {heads} does not divide the width {dim}"),
            });
        }
        let s = p.sub(name);
        Ok(MultiHeadAttention {
            q: s.linear("q", dim, dim, true)?,
            k: s.linear("k", kv_dim, dim, true)?,
            v: s.linear("v", kv_dim, dim, true)?,
            o: s.linear("o", dim, dim, true)?,
            heads,
            rope: if rotary {
                Some(Rope::new(dim / heads, 10000.0)?)
            } else {
                None
            },
        })
    }

    fn split(&self, y: &Tensor) -> Result<Tensor> {
        let (b, t, h) = y.dims3()?;
        Ok(y.reshape((b, t, self.heads, h / self.heads))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    fn merge(&self, y: &Tensor) -> Result<Tensor> {
        let (b, _, t, hd) = y.dims4()?;
        Ok(y.transpose(1, 2)?.reshape((b, t, self.heads * hd))?)
    }

    /// Attention of `x` `[B, T, D]` over `context` (itself when `None`);
    /// `bias` broadcasts to `[B, heads, T, S]` (0 keep, very negative mask).
    pub fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        match (&self.rope, context) {
            (None, _) | (Some(_), Some(_)) => {
                let ctx = context.unwrap_or(x);
                let y = scaled_dot_product(
                    &self.q.forward(x)?,
                    &self.k.forward(ctx)?,
                    &self.v.forward(ctx)?,
                    self.heads,
                    bias,
                )?;
                self.o.forward(&y)
            }
            (Some(_), None) => {
                let mut cache = AttnCache::default();
                self.forward_cached(x, bias, &mut cache)
            }
        }
    }

    /// Causal self-attention step(s) after the cached tokens: `x`
    /// `[B, T, D]` are the new tokens; `bias` covers `[.., T, cached + T]`.
    pub fn forward_cached(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        cache: &mut AttnCache,
    ) -> Result<Tensor> {
        let start = cache.len();
        let mut q = self.split(&self.q.forward(x)?)?;
        let mut k = self.split(&self.k.forward(x)?)?;
        let v = self.split(&self.v.forward(x)?)?;
        if let Some(r) = &self.rope {
            q = r.apply(&q, start)?;
            k = r.apply(&k, start)?;
        }
        // Cache in [B, S, D] layout (cheap concatenation on dim 1).
        let (k, v) = (self.merge(&k)?, self.merge(&v)?);
        let (k, v) = match cache.kv.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 1)?, Tensor::cat(&[&pv, &v], 1)?),
            None => (k, v),
        };
        cache.kv = Some((k.clone(), v.clone()));
        let q = self.merge(&q)?;
        let y = scaled_dot_product(&q, &k, &v, self.heads, bias)?;
        self.o.forward(&y)
    }
}

/// `fc2(act(fc1(x)))`.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// In.
    pub fc1: Dense,
    /// Out.
    pub fc2: Dense,
    /// Activation.
    pub act: Activation,
}

impl Mlp {
    /// Builds `name.{fc1,fc2}`.
    pub fn new(
        p: &ParamStore,
        name: &str,
        dim: usize,
        hidden: usize,
        out: usize,
        act: Activation,
    ) -> Result<Self> {
        let s = p.sub(name);
        Ok(Mlp {
            fc1: s.linear("fc1", dim, hidden, true)?,
            fc2: s.linear("fc2", hidden, out, true)?,
            act,
        })
    }

    /// Applies the MLP.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.act.forward(&self.fc1.forward(x)?)?)
    }
}

/// Settings of a transformer block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockSpec {
    /// Width.
    pub dim: usize,
    /// Heads.
    pub heads: usize,
    /// MLP hidden width = `mlp_ratio · dim`.
    pub mlp_ratio: usize,
    /// Norm before (true) or after (false) each sub-layer.
    pub pre_norm: bool,
    /// Rotary positions in self-attention.
    pub rotary: bool,
    /// Width of cross-attended tokens, when the block cross-attends.
    pub cross_dim: Option<usize>,
}

impl BlockSpec {
    /// Pre-norm, MLP ×4, no rotary, no cross-attention.
    pub fn new(dim: usize, heads: usize) -> Self {
        BlockSpec {
            dim,
            heads,
            mlp_ratio: 4,
            pre_norm: true,
            rotary: false,
            cross_dim: None,
        }
    }
}

/// Self-attention (+ cross-attention) + MLP with residuals.
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    spec: BlockSpec,
    norm1: LayerNorm,
    attn: MultiHeadAttention,
    cross: Option<(LayerNorm, MultiHeadAttention)>,
    norm2: LayerNorm,
    mlp: Mlp,
}

/// Per-block decoding cache.
#[derive(Debug, Clone, Default)]
pub struct BlockCache {
    /// Self-attention keys/values.
    pub attn: AttnCache,
}

impl TransformerBlock {
    /// Builds block `name`.
    pub fn new(p: &ParamStore, name: &str, spec: BlockSpec) -> Result<Self> {
        let s = p.sub(name);
        let d = spec.dim;
        Ok(TransformerBlock {
            norm1: layer_norm(&s, "norm1", d, 1e-5)?,
            attn: MultiHeadAttention::new(&s, "attn", d, d, spec.heads, spec.rotary)?,
            cross: match spec.cross_dim {
                Some(cd) => Some((
                    layer_norm(&s, "norm_cross", d, 1e-5)?,
                    MultiHeadAttention::new(&s, "cross", d, cd, spec.heads, false)?,
                )),
                None => None,
            },
            norm2: layer_norm(&s, "norm2", d, 1e-5)?,
            mlp: Mlp::new(&s, "mlp", d, d * spec.mlp_ratio, d, Activation::Gelu)?,
            spec,
        })
    }

    /// The block's settings.
    pub fn spec(&self) -> BlockSpec {
        self.spec
    }

    fn sub_layer(
        &self,
        x: &Tensor,
        norm: &LayerNorm,
        f: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if self.spec.pre_norm {
            Ok((x + f(&norm.forward(x)?)?)?)
        } else {
            norm.forward(&(x + f(x)?)?)
        }
    }

    /// `x` `[B, T, D]`; `bias` masks self-attention; `context` (+ its
    /// `context_bias`) feeds cross-attention.
    pub fn forward(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        context: Option<(&Tensor, Option<&Tensor>)>,
    ) -> Result<Tensor> {
        let mut x = self.sub_layer(x, &self.norm1, |h| self.attn.forward(h, None, bias))?;
        if let (Some((norm, cross)), Some((ctx, cb))) = (&self.cross, context) {
            x = self.sub_layer(&x, norm, |h| cross.forward(h, Some(ctx), cb))?;
        }
        self.sub_layer(&x, &self.norm2, |h| self.mlp.forward(h))
    }

    /// Decoding step(s) with a self-attention cache.
    pub fn forward_cached(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        context: Option<(&Tensor, Option<&Tensor>)>,
        cache: &mut BlockCache,
    ) -> Result<Tensor> {
        let mut x = self.sub_layer(x, &self.norm1, |h| {
            self.attn.forward_cached(h, bias, &mut cache.attn)
        })?;
        if let (Some((norm, cross)), Some((ctx, cb))) = (&self.cross, context) {
            x = self.sub_layer(&x, norm, |h| cross.forward(h, Some(ctx), cb))?;
        }
        self.sub_layer(&x, &self.norm2, |h| self.mlp.forward(h))
    }
}

/// A stack of transformer blocks with a final norm (pre-norm stacks).
#[derive(Debug, Clone)]
pub struct Transformer {
    /// The blocks.
    pub blocks: Vec<TransformerBlock>,
    /// Final norm (pre-norm stacks only).
    pub norm: Option<LayerNorm>,
}

impl Transformer {
    /// `layers` blocks `name.blocks.{i}`.
    pub fn new(p: &ParamStore, name: &str, layers: usize, spec: BlockSpec) -> Result<Self> {
        let s = p.sub(name);
        let blocks = (0..layers)
            .map(|i| TransformerBlock::new(&s, &format!("blocks.{i}"), spec))
            .collect::<Result<_>>()?;
        Ok(Transformer {
            blocks,
            norm: if spec.pre_norm {
                Some(layer_norm(&s, "norm", spec.dim, 1e-5)?)
            } else {
                None
            },
        })
    }

    /// Runs every block.
    pub fn forward(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        context: Option<(&Tensor, Option<&Tensor>)>,
    ) -> Result<Tensor> {
        let mut x = x.clone();
        for b in &self.blocks {
            x = b.forward(&x, bias, context)?;
        }
        match &self.norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }

    /// Runs every block with per-block caches (decoding).
    pub fn forward_cached(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        context: Option<(&Tensor, Option<&Tensor>)>,
        caches: &mut Vec<BlockCache>,
    ) -> Result<Tensor> {
        if caches.len() != self.blocks.len() {
            *caches = vec![BlockCache::default(); self.blocks.len()];
        }
        let mut x = x.clone();
        for (b, c) in self.blocks.iter().zip(caches.iter_mut()) {
            x = b.forward_cached(&x, bias, context, c)?;
        }
        match &self.norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }
}

/// Learned-query attention pooling: `[B, T, D]` → `[B, D]`.
#[derive(Debug, Clone)]
pub struct AttentionPool {
    query: Tensor,
    attn: MultiHeadAttention,
}

impl AttentionPool {
    /// Builds pool `name`.
    pub fn new(p: &ParamStore, name: &str, dim: usize, heads: usize) -> Result<Self> {
        let s = p.sub(name);
        Ok(AttentionPool {
            query: s.get("query", &[1, 1, dim], Init::Normal(0.02))?,
            attn: MultiHeadAttention::new(&s, "attn", dim, dim, heads, false)?,
        })
    }

    /// Pools `x` with an optional `[B, T]` key mask.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, _, d) = x.dims3()?;
        let q = self.query.broadcast_as((b, 1, d))?;
        let bias = mask.map(|m| key_bias(m, x.dtype())).transpose()?;
        Ok(self.attn.forward(&q, Some(x), bias.as_ref())?.squeeze(1)?)
    }
}

/// Learnable prompt tokens prepended to a sequence (prompt tuning).
#[derive(Debug, Clone)]
pub struct PromptTokens {
    /// `[n, D]`.
    pub tokens: Tensor,
}

impl PromptTokens {
    /// `n` tokens of width `dim`.
    pub fn new(p: &ParamStore, name: &str, n: usize, dim: usize) -> Result<Self> {
        Ok(PromptTokens {
            tokens: p.sub(name).get("tokens", &[n, dim], Init::Normal(0.02))?,
        })
    }

    /// `[B, T, D]` → `[B, n + T, D]`, and the mask `[B, T]` → `[B, n + T]`.
    pub fn prepend(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        let (b, _, d) = x.dims3()?;
        let n = self.tokens.dim(0)?;
        let p = self.tokens.unsqueeze(0)?.broadcast_as((b, n, d))?;
        let x = Tensor::cat(&[&p, x], 1)?;
        let mask = match mask {
            Some(m) => Some(Tensor::cat(
                &[&Tensor::ones((b, n), m.dtype(), m.device())?, m],
                1,
            )?),
            None => None,
        };
        Ok((x, mask))
    }
}

/// A lookup table `[n, D]`.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// The table.
    pub table: Tensor,
}

impl Embedding {
    /// `n` rows of width `dim`, Normal(0, 0.02).
    pub fn new(p: &ParamStore, name: &str, n: usize, dim: usize) -> Result<Self> {
        Ok(Embedding {
            table: p.sub(name).get("weight", &[n, dim], Init::Normal(0.02))?,
        })
    }

    /// Rows for `[B, T]` ids (refusing ids out of range).
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let (n, d) = self.table.dims2()?;
        let ids = ids.to_dtype(DType::U32)?;
        if b * t > 0 {
            let max = ids.max_all()?.to_scalar::<u32>()?;
            if max as usize >= n {
                return Err(Error::InvalidInput {
                    what: "token ids".into(),
                    message: format!("id {max} is outside the table of {n}"),
                });
            }
        }
        Ok(self
            .table
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, d))?)
    }
}

/// `[B, 1, 1, S]` additive bias from a `[B, S]` 1/0 key mask, in `dtype`.
pub fn key_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, s) = mask.dims2()?;
    let m = mask.to_dtype(dtype)?;
    Ok(((m.ones_like()? - m)? * -1e9)?.reshape((b, 1, 1, s))?)
}

/// `[1, 1, T, start + T]` causal bias for `T` new tokens after `start`.
pub fn causal_bias_after(start: usize, t: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let s = start + t;
    let v: Vec<f32> = (0..t * s)
        .map(|i| if i % s > start + i / s { -1e9 } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(v, (1, 1, t, s), device)?.to_dtype(dtype)?)
}
