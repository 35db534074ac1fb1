//! Multi-head self-attention and pre-norm transformer layers, from the
//! differentiable primitives.

use candle_core::{DType, Device, Tensor};

use super::ops::{Activation, LayerNorm, Linear, softmax_last_dim};
use crate::error::Result;
use crate::nn::ParamStore;

/// Multi-head self-attention with separate q/k/v/out projections.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    /// Query projection.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection.
    pub out: Linear,
    /// Head count.
    pub heads: usize,
}

impl SelfAttention {
    /// `x` `[B, T, H]`; `bias` is added to the `[B, heads, T, T]` scores
    /// (broadcast from `[B or 1, 1, T or 1, T]`): 0 to keep, a very
    /// negative value to mask.
    pub fn forward(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.forward_cross(x, x, bias)
    }

    /// Queries from `x` `[B, Tq, H]`, keys and values from `context`
    /// `[B, Tk, Hc]` (cross-attention; `Hc` may differ when the k/v
    /// projections map from it). `bias` broadcasts to `[B, heads, Tq, Tk]`.
    pub fn forward_cross(
        &self,
        x: &Tensor,
        context: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let ctx = scaled_dot_product(
            &self.q.forward(x)?,
            &self.k.forward(context)?,
            &self.v.forward(context)?,
            self.heads,
            bias,
        )?;
        self.out.forward(&ctx)
    }
}

/// Multi-head scaled dot-product attention over already projected
/// `q` `[B, Tq, H]`, `k`, `v` `[B, Tk, H]`: heads split `H`, scores scaled by
/// `1/sqrt(H/heads)`, `bias` added before the softmax; returns `[B, Tq, H]`.
/// One fused graph node on the CPU for f32/f64 ([`super::fused::attention`]).
pub fn scaled_dot_product(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    super::fused::attention(q, k, v, heads, bias)
}

/// [`scaled_dot_product`] from primitive ops: the path off the CPU, for
/// half precision or a trainable bias, and the fused node's reference.
pub fn scaled_dot_product_composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, tq, h) = q.dims3()?;
    let tk = k.dim(1)?;
    let hd = h / heads;
    let split = |y: &Tensor, t: usize| -> Result<Tensor> {
        Ok(y.reshape((b, t, heads, hd))?
            .transpose(1, 2)?
            .contiguous()?)
    };
    let (q, k, v) = (split(q, tq)?, split(k, tk)?, split(v, tk)?);
    let mut scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
    if let Some(bias) = bias {
        scores = scores.broadcast_add(bias)?;
    }
    Ok(softmax_last_dim(&scores)?
        .matmul(&v)?
        .transpose(1, 2)?
        .reshape((b, tq, h))?)
}

/// Weight names of one pre-norm layer, relative to its prefix.
#[derive(Debug, Clone, Copy)]
pub struct PreNormNames {
    /// First norm (before attention).
    pub norm1: &'static str,
    /// Query, key, value, output projections.
    pub qkvo: [&'static str; 4],
    /// Second norm (before the MLP).
    pub norm2: &'static str,
    /// MLP in and out.
    pub fc: [&'static str; 2],
}

/// CLIP/SigLIP naming.
pub const CLIP_NAMES: PreNormNames = PreNormNames {
    norm1: "layer_norm1",
    qkvo: [
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.out_proj",
    ],
    norm2: "layer_norm2",
    fc: ["mlp.fc1", "mlp.fc2"],
};

/// ViT naming.
pub const VIT_NAMES: PreNormNames = PreNormNames {
    norm1: "layernorm_before",
    qkvo: [
        "attention.attention.query",
        "attention.attention.key",
        "attention.attention.value",
        "attention.output.dense",
    ],
    norm2: "layernorm_after",
    fc: ["intermediate.dense", "output.dense"],
};

/// `x + attn(norm1(x))`, then `+ fc2(act(fc1(norm2(·))))`.
#[derive(Debug, Clone)]
pub struct PreNormLayer {
    /// First norm.
    pub norm1: LayerNorm,
    /// Attention.
    pub attn: SelfAttention,
    /// Second norm.
    pub norm2: LayerNorm,
    /// MLP in.
    pub fc1: Linear,
    /// MLP out.
    pub fc2: Linear,
    /// MLP activation.
    pub act: Activation,
}

impl PreNormLayer {
    /// Loads a layer under `prefix` with the given naming.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        w: &ParamStore,
        prefix: &str,
        names: &PreNormNames,
        hidden: usize,
        intermediate: usize,
        heads: usize,
        eps: f64,
        act: Activation,
    ) -> Result<Self> {
        let p = |n: &str| format!("{prefix}.{n}");
        Ok(PreNormLayer {
            norm1: LayerNorm::load(w, &p(names.norm1), hidden, eps)?,
            attn: SelfAttention {
                q: Linear::load(w, &p(names.qkvo[0]), hidden, hidden)?,
                k: Linear::load(w, &p(names.qkvo[1]), hidden, hidden)?,
                v: Linear::load(w, &p(names.qkvo[2]), hidden, hidden)?,
                out: Linear::load(w, &p(names.qkvo[3]), hidden, hidden)?,
                heads,
            },
            norm2: LayerNorm::load(w, &p(names.norm2), hidden, eps)?,
            fc1: Linear::load(w, &p(names.fc[0]), hidden, intermediate)?,
            fc2: Linear::load(w, &p(names.fc[1]), intermediate, hidden)?,
            act,
        })
    }

    /// Loads layers `{prefix}.0` … `{prefix}.{n-1}`.
    #[allow(clippy::too_many_arguments)]
    pub fn load_stack(
        w: &ParamStore,
        prefix: &str,
        n: usize,
        names: &PreNormNames,
        hidden: usize,
        intermediate: usize,
        heads: usize,
        eps: f64,
        act: Activation,
    ) -> Result<Vec<Self>> {
        (0..n)
            .map(|i| {
                Self::load(
                    w,
                    &format!("{prefix}.{i}"),
                    names,
                    hidden,
                    intermediate,
                    heads,
                    eps,
                    act,
                )
            })
            .collect()
    }

    /// Applies the layer.
    pub fn forward(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let h = (x + self.attn.forward(&self.norm1.forward(x)?, bias)?)?;
        let m = self.fc2.forward(
            &self
                .act
                .forward(&self.fc1.forward(&self.norm2.forward(&h)?)?)?,
        )?;
        Ok((h + m)?)
    }
}

/// `[B, 1, 1, T]` additive key-padding bias from a `[B, T]` 0/1 mask.
pub fn padding_bias(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (b, t) = mask.dims2()?;
    // In f32, then cast: 0 · f32::MIN is -0 there, 0 · -inf (what f32::MIN
    // rounds to in half precision) would be NaN.
    let m = mask.to_dtype(DType::F32)?;
    Ok(((m.ones_like()? - m)? * f32::MIN as f64)?
        .reshape((b, 1, 1, t))?
        .to_dtype(dtype)?)
}

/// `[1, 1, T, T]` causal bias (0 on and below the diagonal).
pub fn causal_bias(t: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let v: Vec<f32> = (0..t * t)
        .map(|i| if i % t > i / t { f32::MIN } else { 0.0 })
        .collect();
    Ok(Tensor::from_vec(v, (1, 1, t, t), device)?.to_dtype(dtype)?)
}

/// Splits `[B, C, S, S]` images into `[B, N, C·p·p]` patch rows in the
/// order of a `[H, C, p, p]` conv kernel flattened, patches row-major. A
/// patch embedding is then one matmul (≈3× faster to train than conv).
pub fn patchify(pixels: &Tensor, patch: usize) -> Result<Tensor> {
    let (b, c, hgt, wid) = pixels.dims4()?;
    let (gh, gw) = (hgt / patch, wid / patch);
    let x = pixels
        .reshape((b, c, gh, patch, gw, patch))?
        .permute((0, 2, 4, 1, 3, 5))?
        .contiguous()?;
    Ok(x.reshape((b, gh * gw, c * patch * patch))?)
}
