//! Trainable blocks built from a [`ParamStore`]: multi-head attention
//! (self, cross, causal; masks; rotary positions; KV cache), MLP, pre/post-norm
//! transformer blocks (optionally cross-attending), attention pooling,
//! learnable prompt tokens and embeddings. Everything runs on Mosaic's own
//! differentiable ops.

use candle_core::{D, DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::nn::Linear;
use crate::nn::attention::scaled_dot_product;
use crate::nn::params::{Init, ParamStore};
use crate::nn::{Activation, LayerNorm, RmsNorm};

/// A LayerNorm with trainable scale and shift.
pub fn layer_norm(p: &ParamStore, name: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
    let s = p.sub(name);
    Ok(LayerNorm {
        weight: s.get("weight", &[dim], Init::Ones)?,
        bias: s.get("bias", &[dim], Init::Zeros)?,
        eps,
    })
}

/// A LayerNorm or an RMSNorm.
#[derive(Debug, Clone)]
pub enum Norm {
    /// Scale and shift (`weight`, `bias`).
    Layer(LayerNorm),
    /// Scale only (`weight`).
    Rms(RmsNorm),
}

impl Norm {
    /// Builds `name.weight` (+ `name.bias` for a LayerNorm).
    pub fn new(p: &ParamStore, name: &str, dim: usize, eps: f64, rms: bool) -> Result<Self> {
        Ok(if rms {
            Norm::Rms(RmsNorm::load(p, name, dim, eps)?)
        } else {
            Norm::Layer(layer_norm(p, name, dim, eps)?)
        })
    }

    /// Normalises `[..., dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Layer(n) => n.forward(x),
            Norm::Rms(n) => n.forward(x),
        }
    }
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
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub o: Linear,
    /// Heads.
    pub heads: usize,
    /// Key/value heads (`heads` unless grouped-query attention): query head
    /// `h` reads key/value head `h / (heads / kv_heads)`.
    pub kv_heads: usize,
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
        Self::with_options(
            p,
            name,
            dim,
            kv_dim,
            heads,
            heads,
            true,
            if rotary { Some(10000.0) } else { None },
        )
    }

    /// [`MultiHeadAttention::new`] with grouped-query attention (`kv_heads`
    /// key/value heads), biases on or off, and rotary positions with base
    /// `rope_theta` when given.
    #[allow(clippy::too_many_arguments)]
    pub fn with_options(
        p: &ParamStore,
        name: &str,
        dim: usize,
        kv_dim: usize,
        heads: usize,
        kv_heads: usize,
        bias: bool,
        rope_theta: Option<f64>,
    ) -> Result<Self> {
        if heads == 0 || dim % heads != 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(Error::Config {
                source_name: p.full(name),
                message: format!(
                    "key `heads`: {heads} heads ({kv_heads} key/value heads) do not divide the width {dim}"
                ),
            });
        }
        let s = p.sub(name);
        let kv_out = dim / heads * kv_heads;
        Ok(MultiHeadAttention {
            q: s.linear("q", dim, dim, bias)?,
            k: s.linear("k", kv_dim, kv_out, bias)?,
            v: s.linear("v", kv_dim, kv_out, bias)?,
            o: s.linear("o", dim, dim, bias)?,
            heads,
            kv_heads,
            rope: match rope_theta {
                Some(theta) => Some(Rope::new(dim / heads, theta)?),
                None => None,
            },
        })
    }

    fn split_n(y: &Tensor, n: usize) -> Result<Tensor> {
        let (b, t, h) = y.dims3()?;
        Ok(y.reshape((b, t, n, h / n))?.transpose(1, 2)?.contiguous()?)
    }

    fn split(&self, y: &Tensor) -> Result<Tensor> {
        Self::split_n(y, self.heads)
    }

    fn merge(&self, y: &Tensor) -> Result<Tensor> {
        let (b, n, t, hd) = y.dims4()?;
        Ok(y.transpose(1, 2)?.reshape((b, t, n * hd))?)
    }

    /// `[B, S, kv_heads·hd]` keys or values → `[B, S, heads·hd]`, each
    /// key/value head repeated for its group of query heads.
    fn repeat_kv(&self, y: &Tensor) -> Result<Tensor> {
        if self.kv_heads == self.heads {
            return Ok(y.clone());
        }
        let (b, s, w) = y.dims3()?;
        let (kvh, rep) = (self.kv_heads, self.heads / self.kv_heads);
        let hd = w / kvh;
        Ok(y.reshape((b, s, kvh, 1, hd))?
            .broadcast_as((b, s, kvh, rep, hd))?
            .contiguous()?
            .reshape((b, s, kvh * rep * hd))?)
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
                    &self.repeat_kv(&self.k.forward(ctx)?)?,
                    &self.repeat_kv(&self.v.forward(ctx)?)?,
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
        let mut k = Self::split_n(&self.k.forward(x)?, self.kv_heads)?;
        let v = self.v.forward(x)?;
        if let Some(r) = &self.rope {
            q = r.apply(&q, start)?;
            k = r.apply(&k, start)?;
        }
        // Cache in [B, S, kv width] layout (cheap concatenation on dim 1;
        // grouped heads are repeated only for the product).
        let k = self.merge(&k)?;
        let (k, v) = match cache.kv.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 1)?, Tensor::cat(&[&pv, &v], 1)?),
            None => (k, v),
        };
        cache.kv = Some((k.clone(), v.clone()));
        let q = self.merge(&q)?;
        let y = scaled_dot_product(
            &q,
            &self.repeat_kv(&k)?,
            &self.repeat_kv(&v)?,
            self.heads,
            bias,
        )?;
        self.o.forward(&y)
    }
}

/// `fc2(act(fc1(x)))`, or gated `fc2(act(gate(x)) · fc1(x))` (SwiGLU).
#[derive(Debug, Clone)]
pub struct Mlp {
    /// In.
    pub fc1: Linear,
    /// Out.
    pub fc2: Linear,
    /// Activation.
    pub act: Activation,
    /// The gate of a gated MLP (Llama's `gate_proj`; `fc1` is `up_proj`).
    pub gate: Option<Linear>,
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
        Self::with_options(p, name, dim, hidden, out, act, true, false)
    }

    /// Builds `name.{fc1,fc2}` (+ `name.gate` when `gated`), with or
    /// without biases.
    #[allow(clippy::too_many_arguments)]
    pub fn with_options(
        p: &ParamStore,
        name: &str,
        dim: usize,
        hidden: usize,
        out: usize,
        act: Activation,
        bias: bool,
        gated: bool,
    ) -> Result<Self> {
        let s = p.sub(name);
        Ok(Mlp {
            fc1: s.linear("fc1", dim, hidden, bias)?,
            fc2: s.linear("fc2", hidden, out, bias)?,
            act,
            gate: if gated {
                Some(s.linear("gate", dim, hidden, bias)?)
            } else {
                None
            },
        })
    }

    /// Applies the MLP.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = match &self.gate {
            Some(g) => (self.act.forward(&g.forward(x)?)? * self.fc1.forward(x)?)?,
            None => self.act.forward(&self.fc1.forward(x)?)?,
        };
        self.fc2.forward(&h)
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
    /// MLP hidden width; overrides `mlp_ratio` when set.
    pub mlp_dim: Option<usize>,
    /// Norm epsilon.
    pub eps: f64,
    /// RMSNorm instead of LayerNorm.
    pub rms_norm: bool,
    /// MLP activation.
    pub act: Activation,
    /// Gated (SwiGLU-style) MLP.
    pub gated_mlp: bool,
    /// Biases on the attention and MLP linears.
    pub bias: bool,
    /// Key/value heads (grouped-query attention); `None` = `heads`.
    pub kv_heads: Option<usize>,
    /// Base of the rotary frequencies.
    pub rope_theta: f64,
}

impl BlockSpec {
    /// Pre-norm LayerNorm (eps 1e-5), exact-GELU MLP ×4 with biases, no
    /// rotary, no cross-attention.
    pub fn new(dim: usize, heads: usize) -> Self {
        BlockSpec {
            dim,
            heads,
            mlp_ratio: 4,
            pre_norm: true,
            rotary: false,
            cross_dim: None,
            mlp_dim: None,
            eps: 1e-5,
            rms_norm: false,
            act: Activation::Gelu,
            gated_mlp: false,
            bias: true,
            kv_heads: None,
            rope_theta: 10000.0,
        }
    }

    /// The MLP hidden width.
    pub fn hidden(&self) -> usize {
        self.mlp_dim.unwrap_or(self.dim * self.mlp_ratio)
    }
}

/// Self-attention (+ cross-attention) + MLP with residuals.
#[derive(Debug, Clone)]
pub struct TransformerBlock {
    spec: BlockSpec,
    norm1: Norm,
    attn: MultiHeadAttention,
    cross: Option<(Norm, MultiHeadAttention)>,
    norm2: Norm,
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
        let norm = |n: &str| Norm::new(&s, n, d, spec.eps, spec.rms_norm);
        Ok(TransformerBlock {
            norm1: norm("norm1")?,
            attn: MultiHeadAttention::with_options(
                &s,
                "attn",
                d,
                d,
                spec.heads,
                spec.kv_heads.unwrap_or(spec.heads),
                spec.bias,
                if spec.rotary {
                    Some(spec.rope_theta)
                } else {
                    None
                },
            )?,
            cross: match spec.cross_dim {
                Some(cd) => Some((
                    norm("norm_cross")?,
                    MultiHeadAttention::with_options(
                        &s, "cross", d, cd, spec.heads, spec.heads, spec.bias, None,
                    )?,
                )),
                None => None,
            },
            norm2: norm("norm2")?,
            mlp: Mlp::with_options(
                &s,
                "mlp",
                d,
                spec.hidden(),
                d,
                spec.act,
                spec.bias,
                spec.gated_mlp,
            )?,
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
        norm: &Norm,
        f: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if self.spec.pre_norm {
            Ok((x + f(&norm.forward(x)?)?)?)
        } else {
            norm.forward(&(x + f(x)?)?)
        }
    }

    /// The block without its cross-attention sub-layer (BLIP's text
    /// encoder in retrieval mode runs the same layers that way).
    pub fn forward_self_only(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let x = self.sub_layer(x, &self.norm1, |h| self.attn.forward(h, None, bias))?;
        self.sub_layer(&x, &self.norm2, |h| self.mlp.forward(h))
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
    pub norm: Option<Norm>,
}

impl Transformer {
    /// `layers` blocks `name.blocks.{i}`, and the final norm `name.norm`
    /// of a pre-norm stack.
    pub fn new(p: &ParamStore, name: &str, layers: usize, spec: BlockSpec) -> Result<Self> {
        Self::with_final_norm(p, name, layers, spec, spec.pre_norm)
    }

    /// [`Transformer::new`] choosing whether there is a final norm.
    pub fn with_final_norm(
        p: &ParamStore,
        name: &str,
        layers: usize,
        spec: BlockSpec,
        final_norm: bool,
    ) -> Result<Self> {
        let s = p.sub(name);
        let blocks = (0..layers)
            .map(|i| TransformerBlock::new(&s, &format!("blocks.{i}"), spec))
            .collect::<Result<_>>()?;
        Ok(Transformer {
            blocks,
            norm: if final_norm {
                Some(Norm::new(&s, "norm", spec.dim, spec.eps, spec.rms_norm)?)
            } else {
                None
            },
        })
    }

    /// Runs every block without cross-attention (see
    /// [`TransformerBlock::forward_self_only`]), then the final norm.
    pub fn forward_self_only(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let mut x = x.clone();
        for b in &self.blocks {
            x = b.forward_self_only(&x, bias)?;
        }
        match &self.norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
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
