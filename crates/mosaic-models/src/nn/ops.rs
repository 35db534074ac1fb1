//! Differentiable primitives: linear, layer norm, softmax, GELU.

use candle_core::{D, Tensor};

use crate::error::{Error, Result};
use crate::nn::params::{Init, ParamStore};

/// `y = x Wᵀ + b (+ scale · x Aᵀ Bᵀ)` over the last dimension: the one
/// linear layer of every family and every config-built block, so LoRA (and
/// later quantization) applies to all of them by name.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Tensor>,
    /// A LoRA adapter, when the store's [`crate::nn::LoraSpec`] targets
    /// this layer's name.
    pub lora: Option<Lora>,
}

/// A low-rank update `scale · B A`.
#[derive(Debug, Clone)]
pub struct Lora {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
    /// `alpha / r`.
    pub scale: f64,
}

impl Linear {
    /// A layer from its tensors, without an adapter.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear {
            weight,
            bias,
            lora: None,
        }
    }

    /// `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]` from the
    /// store (a checkpoint's tensors, or fresh ones with PyTorch's init),
    /// with LoRA where the store's spec targets `prefix`.
    pub fn load(p: &ParamStore, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Self> {
        p.linear(prefix, in_dim, out_dim, true)
    }

    /// Applies the layer to `[..., in]` (one fused graph node on the CPU
    /// for f32/f64).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = super::fused::linear(x, &self.weight, self.bias.as_ref())?;
        match &self.lora {
            Some(l) => {
                let u = matmul_last_dim(&matmul_last_dim(x, &l.a.t()?)?, &l.b.t()?)?;
                Ok((y + (u * l.scale)?)?)
            }
            None => Ok(y),
        }
    }

    /// The weight with the adapter folded in (`W + scale · B A`), for export.
    pub fn merged_weight(&self) -> Result<Tensor> {
        match &self.lora {
            Some(l) => Ok((self.weight.detach() + (l.b.matmul(&l.a)? * l.scale)?)?),
            None => Ok(self.weight.detach()),
        }
    }
}

/// Root-mean-square normalisation over the last dimension (Llama), from
/// primitive ops so gradients reach the input.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// Scale.
    pub weight: Tensor,
    /// Added to the mean square.
    pub eps: f64,
}

impl RmsNorm {
    /// `{prefix}.weight` `[dim]` from the store (fresh: ones, as in
    /// transformers).
    pub fn load(p: &ParamStore, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        Ok(RmsNorm {
            weight: p.get(&format!("{prefix}.weight"), &[dim], Init::Ones)?,
            eps,
        })
    }

    /// `x · rsqrt(mean(x²) + eps) · weight`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        Ok(x.broadcast_div(&(ms + self.eps)?.sqrt()?)?
            .broadcast_mul(&self.weight)?)
    }
}

/// Projections of one input stacked along the output (a fused QKV, or a
/// cross-attention's keys and values) from separate checkpoint tensors.
/// Frozen parts without adapters run as one matmul of weights concatenated
/// once at load; trainable or adapted parts run one by one and their
/// outputs are concatenated, so that every forward reads the current
/// parameters (a concatenation cached at load would go stale after an
/// optimiser step) and each part keeps its own LoRA.
#[derive(Debug, Clone)]
pub struct StackedLinear {
    parts: Vec<Linear>,
    fused: Option<Linear>,
}

impl StackedLinear {
    /// Stacks `parts` (same input size; a part without a bias counts as
    /// zero bias).
    pub fn new(parts: Vec<Linear>) -> Result<Self> {
        // `track_op`, not `is_variable`: a view of a Var is trainable too.
        let live = parts.iter().any(|l| {
            l.lora.is_some() || l.weight.track_op() || l.bias.as_ref().is_some_and(|b| b.track_op())
        });
        let mut s = StackedLinear { parts, fused: None };
        if !live {
            s.fused = Some(s.merged()?);
        }
        Ok(s)
    }

    /// The parts, in output order.
    pub fn parts(&self) -> &[Linear] {
        &self.parts
    }

    /// One layer with the parts' weights (adapters folded in) and biases
    /// concatenated, for export or a fused forward.
    pub fn merged(&self) -> Result<Linear> {
        let mut ws = Vec::with_capacity(self.parts.len());
        let mut bs = Vec::with_capacity(self.parts.len());
        for l in &self.parts {
            let w = l.merged_weight()?;
            bs.push(match &l.bias {
                Some(b) => b.detach(),
                None => Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?,
            });
            ws.push(w);
        }
        Ok(Linear::new(
            Tensor::cat(&ws, 0)?,
            Some(Tensor::cat(&bs, 0)?),
        ))
    }

    /// Applies every part to `[..., in]`; outputs concatenated on the last
    /// dimension.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(f) = &self.fused {
            return f.forward(x);
        }
        let ys = self
            .parts
            .iter()
            .map(|l| l.forward(x))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&ys, x.rank() - 1)?)
    }
}

/// `x Wᵀ + b` from primitive ops: the path off the CPU and for half
/// precision, and the fused node's reference.
pub fn linear_composed(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = matmul_last_dim(x, &weight.t()?)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// `x` `[..., in]` times a 2-D `w` `[in, out]` → `[..., out]`, as one 2-D
/// product over all leading rows. `broadcast_matmul` would run one small
/// product per leading index and, in backward, build a `[B, in, out]`
/// weight gradient per batch element before summing it (75 MB for one
/// ViT-B MLP layer at batch 8): the flat product trains ~2x faster.
pub fn matmul_last_dim(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.rank() <= 2 {
        return Ok(x.matmul(w)?);
    }
    let dims = x.dims();
    let (lead, inner) = dims.split_at(dims.len() - 1);
    let rows: usize = lead.iter().product();
    let y = x.reshape((rows, inner[0]))?.matmul(w)?;
    let mut out = lead.to_vec();
    out.push(w.dim(1)?);
    Ok(y.reshape(out)?)
}

/// Layer normalisation over the last dimension (biased variance).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// Scale.
    pub weight: Tensor,
    /// Shift.
    pub bias: Tensor,
    /// Added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// `{prefix}.weight` / `{prefix}.bias` of size `dim` (fresh: ones and
    /// zeros).
    pub fn load(p: &ParamStore, prefix: &str, dim: usize, eps: f64) -> Result<Self> {
        let s = p.sub(prefix);
        Ok(LayerNorm {
            weight: s.get("weight", &[dim], Init::Ones)?,
            bias: s.get("bias", &[dim], Init::Zeros)?,
            eps,
        })
    }

    /// Normalises `[..., dim]` (fused on the CPU for f32/f64).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::fused::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// LayerNorm from primitive ops: the path off the CPU and for half
/// precision, and the reference the fused kernel is tested against.
pub fn layer_norm_composed(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(weight)?.broadcast_add(bias)?)
}

/// A convolution weight followed by an inference-mode BatchNorm
/// (`{bn}.weight/bias` trainable, `{bn}.running_mean/running_var` buffers),
/// folded into one weight and bias: `w · γ/√(var+ε)` and `β − mean·γ/√(var+ε)`.
/// When nothing is trainable the fold is computed once at load; otherwise
/// on every forward, so that an optimiser's update of the convolution or
/// the BatchNorm scale is seen (a fold cached at load would go stale).
#[derive(Debug, Clone)]
pub struct ConvBatchNorm {
    conv: Tensor,
    gamma: Tensor,
    beta: Tensor,
    mean: Tensor,
    var: Tensor,
    eps: f64,
    folded: Option<(Tensor, Tensor)>,
}

impl ConvBatchNorm {
    /// Reads `{conv}` (shape `conv_shape`, `[C_out, ...]`; fresh: Kaiming
    /// uniform) and the BatchNorm under `bn` (fresh: γ 1, β 0, mean 0,
    /// var 1).
    pub fn load(
        p: &ParamStore,
        conv: &str,
        conv_shape: &[usize],
        bn: &str,
        eps: f64,
    ) -> Result<Self> {
        let out_c = conv_shape[0];
        let fan_in: usize = conv_shape[1..].iter().product();
        let conv = p.get(
            conv,
            conv_shape,
            Init::Uniform(1.0 / (fan_in.max(1) as f64).sqrt()),
        )?;
        let b = p.sub(bn);
        let mut cb = ConvBatchNorm {
            conv,
            gamma: b.get("weight", &[out_c], Init::Ones)?,
            beta: b.get("bias", &[out_c], Init::Zeros)?,
            mean: b.buffer("running_mean", &[out_c], Init::Zeros)?,
            var: b.buffer("running_var", &[out_c], Init::Ones)?,
            eps,
            folded: None,
        };
        if !(cb.conv.track_op() || cb.gamma.track_op() || cb.beta.track_op()) {
            cb.folded = Some(cb.fold()?);
        }
        Ok(cb)
    }

    fn fold(&self) -> Result<(Tensor, Tensor)> {
        let out_c = self.conv.dim(0)?;
        let scale = self.gamma.broadcast_div(&(&self.var + self.eps)?.sqrt()?)?;
        let mut shape = vec![1usize; self.conv.rank()];
        shape[0] = out_c;
        Ok((
            self.conv.broadcast_mul(&scale.reshape(shape)?)?,
            (&self.beta - self.mean.mul(&scale)?)?,
        ))
    }

    /// The folded `(weight, bias)`.
    pub fn weight_bias(&self) -> Result<(Tensor, Tensor)> {
        match &self.folded {
            Some((w, b)) => Ok((w.clone(), b.clone())),
            None => self.fold(),
        }
    }

    /// The convolution's `[C_out, ...]` shape.
    pub fn conv_dims(&self) -> &[usize] {
        self.conv.dims()
    }
}

/// 1-D convolution `[B, C, T]` * `[O, C, K]` → `[B, O, T']` (zero
/// `padding` on both ends, `stride`), computed as a height-1 2-D
/// convolution: candle 0.11's `conv1d` returns wrong kernel gradients
/// (found by this crate's finite-difference checks), its `conv2d` is right.
pub fn conv1d(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
) -> Result<Tensor> {
    let (b, c, t) = x.dims3()?;
    let (o, wc, k) = w.dims3()?;
    if wc != c {
        return Err(Error::InvalidInput {
            what: "conv1d".into(),
            message: format!("input has {c} channels, the kernel expects {wc}"),
        });
    }
    let x = x.reshape((b, c, 1, t))?;
    let x = if padding > 0 {
        x.pad_with_zeros(3, padding, padding)?
    } else {
        x
    };
    let padded = t + 2 * padding;
    if padded < k || stride == 0 {
        return Err(Error::InvalidInput {
            what: "conv1d".into(),
            message: format!(
                "length {t} (+{padding} padding each side) is shorter than the kernel {k}, or stride is 0"
            ),
        });
    }
    // Drop trailing columns no output reads: candle's conv backward returns
    // a gradient only as wide as the columns used.
    let used = (padded - k) / stride * stride + k;
    let x = if used < padded {
        x.narrow(3, 0, used)?
    } else {
        x
    };
    let y = x
        .conv2d(&w.reshape((o, c, 1, k))?, 0, stride, 1, 1)?
        .squeeze(2)?;
    Ok(match bias {
        Some(bias) => y.broadcast_add(&bias.reshape((1, o, 1))?)?,
        None => y,
    })
}

/// Softmax over the last dimension (max-subtracted; fused on the CPU for
/// f32/f64).
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    super::fused::softmax_last_dim(x)
}

/// Softmax over the last dimension from primitive ops: the path off the
/// CPU and for half precision, and the fused kernel's reference.
pub fn softmax_last_dim_composed(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// Exact GELU, `0.5 x (1 + erf(x / √2))` (fused on the CPU for f32/f64).
/// Not candle's `gelu_erf`: its backward uses 6-digit constants (0.398942
/// for 1/√(2π)), a ~1e-6 relative gradient error.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    super::fused::gelu_erf(x)
}

/// Exact GELU from primitive ops (`erf`'s own backward is exact): the path
/// off the CPU and for half precision, and the fused kernel's reference.
pub fn gelu_erf_composed(x: &Tensor) -> Result<Tensor> {
    let cdf = ((x * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)?;
    Ok((x * cdf)?.affine(0.5, 0.0)?)
}

/// The tanh approximation of GELU (`gelu_new`, `gelu_pytorch_tanh`):
/// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`, from primitive ops.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let cube = x.mul(x)?.mul(x)?;
    let inner = ((x + (cube * 0.044715)?)? * c)?.tanh()?;
    Ok((x * (inner + 1.0)?)?.affine(0.5, 0.0)?)
}

/// Activation functions named as in Hugging Face configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu` (erf).
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh` / `gelu_fast`.
    GeluTanh,
    /// `relu`.
    Relu,
    /// `silu` / `swish`.
    Silu,
    /// `quick_gelu` (CLIP): `x σ(1.702 x)`.
    QuickGelu,
}

impl Activation {
    /// Parses a config's `hidden_act`.
    pub fn from_name(name: &str, source: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "quick_gelu" => Activation::QuickGelu,
            other => {
                return Err(Error::Config {
                    source_name: source.to_string(),
                    message: format!("key `hidden_act`: unsupported activation `{other}`"),
                });
            }
        })
    }

    /// Applies the activation.
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Gelu => gelu_erf(x)?,
            Activation::GeluTanh => gelu_tanh(x)?,
            Activation::Relu => x.relu()?,
            Activation::Silu => x.silu()?,
            Activation::QuickGelu => (x * candle_nn_free_sigmoid(&(x * 1.702)?)?)?,
        })
    }
}

/// σ(x) = 1 / (1 + e^{-x}) from primitive ops.
fn candle_nn_free_sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok((x.neg()?.exp()? + 1.0)?.recip()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Finite-difference check of d(sum(f(x) * r))/dx against autograd, f64.
    fn grad_check(name: &str, f: impl Fn(&Tensor) -> Result<Tensor>, shape: &[usize]) {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, shape, &dev).unwrap()).unwrap();
        let out_shape = f(x.as_tensor()).unwrap().dims().to_vec();
        let r = Tensor::randn(0f64, 1.0, out_shape, &dev).unwrap();
        let loss = |t: &Tensor| -> f64 {
            (f(t).unwrap() * &r)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        let y = (f(x.as_tensor()).unwrap() * &r).unwrap().sum_all().unwrap();
        let grads = y.backward().unwrap();
        let g: Vec<f64> = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let base: Vec<f64> = x.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-6;
        for i in 0..base.len() {
            let mut p = base.clone();
            p[i] += eps;
            let mut m = base.clone();
            m[i] -= eps;
            let tp = Tensor::from_vec(p, shape, &dev).unwrap();
            let tm = Tensor::from_vec(m, shape, &dev).unwrap();
            let fd = (loss(&tp) - loss(&tm)) / (2.0 * eps);
            let rel = (fd - g[i]).abs() / fd.abs().max(g[i].abs()).max(1e-8);
            assert!(
                rel < 1e-6 || (fd - g[i]).abs() < 1e-9,
                "{name} element {i}: finite difference {fd} vs autograd {}",
                g[i]
            );
        }
        let _ = DType::F64;
    }

    #[test]
    fn gradients_reach_the_input() {
        let dev = Device::Cpu;
        let ln = LayerNorm {
            weight: Tensor::randn(1f64, 0.1, 6, &dev).unwrap(),
            bias: Tensor::randn(0f64, 0.1, 6, &dev).unwrap(),
            eps: 1e-5,
        };
        grad_check("layer norm", |x| ln.forward(x), &[3, 6]);
        grad_check("softmax", softmax_last_dim, &[2, 5]);
        grad_check("gelu_erf", gelu_erf, &[7]);
        grad_check("quick_gelu", |x| Activation::QuickGelu.forward(x), &[7]);
        grad_check("gelu_tanh", gelu_tanh, &[7]);
        let lin = Linear::new(
            Tensor::randn(0f64, 1.0, (4, 6), &dev).unwrap(),
            Some(Tensor::randn(0f64, 1.0, 4, &dev).unwrap()),
        );
        grad_check("linear", |x| lin.forward(x), &[2, 6]);
    }
}
