//! Fused CPU kernels, each with its own backward, for the ops a
//! transformer runs most: linear layers, multi-head attention, exact GELU,
//! softmax over the last dimension and LayerNorm; and the depthwise
//! convolution of MobileNet-style networks.
//!
//! Composed from candle primitives, each of these is 5–10 graph nodes. For
//! every node input, candle's backward allocates a zero tensor and adds the
//! gradient into it, so a composed GELU makes ~20 full passes over its
//! activations in backward. A fused node makes one pass forward and one
//! backward. No crate provides differentiable fused CPU kernels for candle,
//! hence these.
//!
//! They run for f32 and f64 on the CPU; other dtypes and devices use the
//! composed ops (`*_composed` in [`crate::nn::ops`]). Unit tests check them
//! against those ops and against finite differences.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel task of elementwise kernels: large enough that
/// scheduling is negligible.
const CHUNK: usize = 1 << 14;

/// The float types the kernels run on.
trait Real: Copy + Send + Sync + 'static + std::ops::Mul<Output = Self> + std::ops::AddAssign {
    fn to_f64(self) -> f64;
    fn of(v: f64) -> Self;
    /// `0.5 (1 + erf(x / √2))`, the normal CDF.
    fn phi(self) -> Self;
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    fn storage(v: Vec<Self>) -> CpuStorage;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn of(v: f64) -> Self {
        v as f32
    }
    fn phi(self) -> Self {
        0.5 * (1.0 + libm::erff(self * std::f32::consts::FRAC_1_SQRT_2))
    }
    fn slice(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F32(v)
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn of(v: f64) -> Self {
        v
    }
    fn phi(self) -> Self {
        0.5 * (1.0 + libm::erf(self * std::f64::consts::FRAC_1_SQRT_2))
    }
    fn slice(s: &CpuStorage) -> Option<&[Self]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn storage(v: Vec<Self>) -> CpuStorage {
        CpuStorage::F64(v)
    }
}

/// Whether `t` can take the fused path.
fn fusable(t: &Tensor) -> bool {
    t.device().is_cpu() && matches!(t.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
}

/// The contiguous elements of `s` under `l`.
fn view<'a, T: Real>(op: &str, s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input is not contiguous")))?;
    let v = T::slice(s)
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: mixed or unsupported dtypes")))?;
    Ok(&v[start..end])
}

/// Runs `$body` with `$t` bound to f32 or f64, by the storage's dtype.
macro_rules! by_dtype {
    ($op:expr, $s:expr, $t:ident => $body:expr) => {
        match $s {
            CpuStorage::F32(_) => {
                type $t = f32;
                $body
            }
            CpuStorage::F64(_) => {
                type $t = f64;
                $body
            }
            _ => Err(candle_core::Error::Msg(format!(
                "{}: only f32 and f64 are fused",
                $op
            ))),
        }
    };
}

// ---------------------------------------------------------------- GELU

/// Exact GELU `x Φ(x)`, fused. Falls back to the composed op off the CPU
/// or for half-precision dtypes.
pub fn gelu_erf(x: &Tensor) -> crate::error::Result<Tensor> {
    if !fusable(x) {
        return super::ops::gelu_erf_composed(x);
    }
    Ok(x.contiguous()?.apply_op1(GeluErf)?)
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "mosaic-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        by_dtype!(self.name(), s, T => {
            let x = view::<T>(self.name(), s, l)?;
            let mut y = vec![T::of(0.0); x.len()];
            y.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(y, x)| {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = T::of(x.to_f64() * x.phi().to_f64());
                    }
                });
            Ok((T::storage(y), l.shape().clone()))
        })
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            arg.apply_op2_no_bwd(&grad.contiguous()?, &GeluErfGrad)?,
        ))
    }
}

/// `grad · (Φ(x) + x φ(x))`.
struct GeluErfGrad;

impl CustomOp2 for GeluErfGrad {
    fn name(&self) -> &'static str {
        "mosaic-gelu-erf-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let inv_sqrt_2pi = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
        by_dtype!(self.name(), s1, T => {
            let x = view::<T>(self.name(), s1, l1)?;
            let g = view::<T>(self.name(), s2, l2)?;
            let mut dx = vec![T::of(0.0); x.len()];
            dx.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
                .for_each(|(dx, (x, g))| {
                    for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
                        let xf = x.to_f64();
                        let pdf = T::of(-0.5 * xf * xf).exp().to_f64() * inv_sqrt_2pi;
                        *dx = T::of(g.to_f64() * (x.phi().to_f64() + xf * pdf));
                    }
                });
            Ok((T::storage(dx), l1.shape().clone()))
        })
    }
}

// ------------------------------------------------------------- softmax

/// Softmax over the last dimension (max-subtracted), fused. Falls back to
/// the composed op off the CPU or for half-precision dtypes.
pub fn softmax_last_dim(x: &Tensor) -> crate::error::Result<Tensor> {
    if !fusable(x) || x.rank() == 0 {
        return super::ops::softmax_last_dim_composed(x);
    }
    Ok(x.contiguous()?.apply_op1(Softmax)?)
}

/// Rows per parallel task for a row width `dim`.
fn rows_per_task(dim: usize) -> usize {
    (CHUNK / dim.max(1)).max(1)
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "mosaic-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dim = l.dims().last().copied().unwrap_or(1);
        by_dtype!(self.name(), s, T => {
            let x = view::<T>(self.name(), s, l)?;
            let mut y = vec![T::of(0.0); x.len()];
            if dim > 0 {
                let task = rows_per_task(dim) * dim;
                y.par_chunks_mut(task)
                    .zip(x.par_chunks(task))
                    .for_each(|(y, x)| {
                        for (y, x) in y.chunks_mut(dim).zip(x.chunks(dim)) {
                            let max = x.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.to_f64()));
                            let max = T::of(max);
                            let mut sum = 0.0f64;
                            for (y, &x) in y.iter_mut().zip(x) {
                                let e = T::of(x.to_f64() - max.to_f64()).exp();
                                sum += e.to_f64();
                                *y = e;
                            }
                            let inv = 1.0 / sum;
                            for y in y.iter_mut() {
                                *y = T::of(y.to_f64() * inv);
                            }
                        }
                    });
            }
            Ok((T::storage(y), l.shape().clone()))
        })
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad)?,
        ))
    }
}

/// `y · (g − Σ g y)` per row.
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "mosaic-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dim = l1.dims().last().copied().unwrap_or(1);
        by_dtype!(self.name(), s1, T => {
            let y = view::<T>(self.name(), s1, l1)?;
            let g = view::<T>(self.name(), s2, l2)?;
            let mut dx = vec![T::of(0.0); y.len()];
            if dim > 0 {
                let task = rows_per_task(dim) * dim;
                dx.par_chunks_mut(task)
                    .zip(y.par_chunks(task).zip(g.par_chunks(task)))
                    .for_each(|(dx, (y, g))| {
                        for ((dx, y), g) in dx.chunks_mut(dim).zip(y.chunks(dim)).zip(g.chunks(dim)) {
                            let dot: f64 = y.iter().zip(g).map(|(y, g)| y.to_f64() * g.to_f64()).sum();
                            for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(g) {
                                *dx = T::of(y.to_f64() * (g.to_f64() - dot));
                            }
                        }
                    });
            }
            Ok((T::storage(dx), l1.shape().clone()))
        })
    }
}

// ----------------------------------------------------------- LayerNorm

/// LayerNorm over the last dimension (biased variance) with scale `weight`
/// and shift `bias` `[dim]`, fused; gradients reach all three. Falls back
/// to the composed op off the CPU, for half-precision dtypes or when the
/// parameters' dtype differs from the input's.
pub fn layer_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> crate::error::Result<Tensor> {
    let dim = x.dims().last().copied().unwrap_or(0);
    let same = weight.dtype() == x.dtype() && bias.dtype() == x.dtype();
    if !fusable(x) || !same || x.rank() == 0 || weight.dims() != [dim] || bias.dims() != [dim] {
        return super::ops::layer_norm_composed(x, weight, bias, eps);
    }
    Ok(x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias.contiguous()?,
        LayerNormOp { eps },
    )?)
}

struct LayerNormOp {
    eps: f64,
}

/// Mean and `1/sqrt(var + eps)` of one row.
fn moments<T: Real>(x: &[T], eps: f64) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().map(|v| v.to_f64()).sum::<f64>() / n;
    let var = x.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "mosaic-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dim = l1.dims().last().copied().unwrap_or(1);
        let eps = self.eps;
        by_dtype!(self.name(), s1, T => {
            let x = view::<T>(self.name(), s1, l1)?;
            let w = view::<T>(self.name(), s2, l2)?;
            let b = view::<T>(self.name(), s3, l3)?;
            let mut y = vec![T::of(0.0); x.len()];
            if dim > 0 {
                let task = rows_per_task(dim) * dim;
                y.par_chunks_mut(task)
                    .zip(x.par_chunks(task))
                    .for_each(|(y, x)| {
                        for (y, x) in y.chunks_mut(dim).zip(x.chunks(dim)) {
                            let (mean, rstd) = moments(x, eps);
                            for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
                                *y = T::of((x.to_f64() - mean) * rstd * w.to_f64() + b.to_f64());
                            }
                        }
                    });
            }
            Ok((T::storage(y), l1.shape().clone()))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dim = weight.dim(0)?;
        let rows = x.elem_count() / dim.max(1);
        let packed = x.apply_op3_no_bwd(
            weight,
            &grad.contiguous()?,
            &LayerNormGrad { eps: self.eps },
        )?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = packed.narrow(0, rows, 1)?.reshape(dim)?;
        let db = packed.narrow(0, rows + 1, 1)?.reshape(dim)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// LayerNorm's gradients from `x`, `weight` and the output gradient,
/// packed as `[rows + 2, dim]`: the input gradient's rows, then the
/// weight's and the bias's gradients (one op, one pass over `x`).
struct LayerNormGrad {
    eps: f64,
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "mosaic-layer-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dim = l1.dims().last().copied().unwrap_or(1).max(1);
        let eps = self.eps;
        by_dtype!(self.name(), s1, T => {
            let x = view::<T>(self.name(), s1, l1)?;
            let w = view::<T>(self.name(), s2, l2)?;
            let g = view::<T>(self.name(), s3, l3)?;
            let rows = x.len() / dim;
            let mut out = vec![T::of(0.0); (rows + 2) * dim];
            let (dx, params) = out.split_at_mut(rows * dim);
            let task = rows_per_task(dim) * dim;
            let partial: Vec<(Vec<f64>, Vec<f64>)> = dx
                .par_chunks_mut(task)
                .zip(x.par_chunks(task).zip(g.par_chunks(task)))
                .map(|(dx, (x, g))| {
                    let mut dw = vec![0.0f64; dim];
                    let mut db = vec![0.0f64; dim];
                    let mut gw = vec![0.0f64; dim];
                    for ((dx, x), g) in dx.chunks_mut(dim).zip(x.chunks(dim)).zip(g.chunks(dim)) {
                        let (mean, rstd) = moments(x, eps);
                        // dx = rstd (g·w − mean(g·w) − x̂ mean(g·w·x̂)).
                        let (mut sum_gw, mut sum_gwx) = (0.0, 0.0);
                        for i in 0..dim {
                            let xhat = (x[i].to_f64() - mean) * rstd;
                            let gi = g[i].to_f64();
                            dw[i] += gi * xhat;
                            db[i] += gi;
                            gw[i] = gi * w[i].to_f64();
                            sum_gw += gw[i];
                            sum_gwx += gw[i] * xhat;
                        }
                        let (m1, m2) = (sum_gw / dim as f64, sum_gwx / dim as f64);
                        for i in 0..dim {
                            let xhat = (x[i].to_f64() - mean) * rstd;
                            dx[i] = T::of(rstd * (gw[i] - m1 - xhat * m2));
                        }
                    }
                    (dw, db)
                })
                .collect();
            let (dw_out, db_out) = params.split_at_mut(dim);
            for i in 0..dim {
                dw_out[i] = T::of(partial.iter().map(|(dw, _)| dw[i]).sum());
                db_out[i] = T::of(partial.iter().map(|(_, db)| db[i]).sum());
            }
            Ok((T::storage(out), Shape::from((rows + 2, dim))))
        })
    }
}

// -------------------------------------------------------------- Linear

/// `x Wᵀ + b` over the last dimension of `x` `[..., in]`, with `weight`
/// `[out, in]` and `bias` `[out]`, as one graph node.
///
/// The forward is candle's matmul on all leading rows at once. The backward
/// writes the weight gradient as `gᵀ x`, already `[out, in]`. Composed
/// (`x.matmul(w.t())`), it would arrive through the transpose as a strided
/// view, and candle's accumulation adds such views element by element: that
/// add, with the bias's broadcast reduction, was half of a ViT-B backward.
/// Falls back to the composed op off the CPU, for half precision or mixed
/// dtypes.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> crate::error::Result<Tensor> {
    let same = weight.dtype() == x.dtype() && bias.is_none_or(|b| b.dtype() == x.dtype());
    if !fusable(x) || !same || x.rank() < 2 || weight.rank() != 2 {
        return super::ops::linear_composed(x, weight, bias);
    }
    let dims = x.dims();
    let (lead, inner) = dims.split_at(dims.len() - 1);
    let rows: usize = lead.iter().product();
    let (out, inp) = weight.dims2()?;
    if inner[0] != inp || bias.is_some_and(|b| b.dims() != [out]) {
        return super::ops::linear_composed(x, weight, bias);
    }
    let w = weight.contiguous()?;
    // The product on detached inputs; the node below carries it into the
    // graph with this op's backward. The node takes `x` in its own shape:
    // reshape nodes would cost candle's backward two more passes each.
    let mut y = x.detach().reshape((rows, inp))?.matmul(&w.detach().t()?)?;
    if let Some(b) = bias {
        y = y.broadcast_add(&b.detach())?;
    }
    let mut out_dims = lead.to_vec();
    out_dims.push(out);
    let node = LinearNode {
        product: std::sync::Mutex::new(Some(y.reshape(out_dims)?)),
    };
    Ok(match bias {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, node)?,
        None => x.apply_op2(&w, node)?,
    })
}

/// The graph node of [`linear`]: its forward hands over the product
/// computed beforehand (a copy of its storage, since a custom op must
/// return fresh storage).
struct LinearNode {
    product: std::sync::Mutex<Option<Tensor>>,
}

impl LinearNode {
    fn take(&self) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = self
            .product
            .lock()
            .map_err(|_| candle_core::Error::Msg("linear: poisoned".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("linear: forward ran twice".into()))?;
        copy_out(&y)
    }

    /// Input, weight and bias gradients from the output gradient `grad`
    /// `[..., out]`.
    fn grads(
        x: &Tensor,
        w: &Tensor,
        grad: &Tensor,
        bias: bool,
    ) -> candle_core::Result<(Tensor, Tensor, Option<Tensor>)> {
        let (out, inp) = w.dims2()?;
        let rows = x.elem_count() / inp.max(1);
        let g = grad.contiguous()?.reshape((rows, out))?;
        let x2 = x.reshape((rows, inp))?;
        let dx = g.matmul(w)?.reshape(x.shape())?;
        let dw = g.t()?.matmul(&x2)?;
        // The bias gradient sums the rows: as a product with a row of ones
        // (candle's sum over a leading dimension is a strided loop).
        let db = if bias {
            let ones = Tensor::ones((1, g.dim(0)?), g.dtype(), g.device())?;
            Some(ones.matmul(&g)?.reshape(g.dim(1)?)?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for LinearNode {
    fn name(&self) -> &'static str {
        "mosaic-linear"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.take()
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = Self::grads(x, w, grad, false)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for LinearNode {
    fn name(&self) -> &'static str {
        "mosaic-linear"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.take()
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = Self::grads(x, w, grad, true)?;
        Ok((Some(dx), Some(dw), db))
    }
}

// ----------------------------------------------------------- attention

/// Multi-head scaled dot-product attention as one graph node: `q`
/// `[B, Tq, H]`, `k`, `v` `[B, Tk, H]` (already projected), `heads` split
/// `H`, scores scaled by `1/sqrt(H/heads)`, `bias` (a constant mask,
/// broadcasting to `[B, heads, Tq, Tk]`) added before the softmax; returns
/// `[B, Tq, H]`. Composed, the head split, transposes, scaling, softmax and
/// merge are a dozen nodes, each costing candle's backward a zero tensor
/// and an add. The backward here keeps the softmax probabilities from the
/// forward. Falls back to the composed op off the CPU, for half precision,
/// mixed dtypes or a bias that needs a gradient.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    bias: Option<&Tensor>,
) -> crate::error::Result<Tensor> {
    let dt = q.dtype();
    let ok = fusable(q)
        && k.dtype() == dt
        && v.dtype() == dt
        && q.rank() == 3
        && k.rank() == 3
        && v.rank() == 3
        && bias.is_none_or(|b| b.dtype() == dt && !b.track_op());
    if !ok {
        return super::attention::scaled_dot_product_composed(q, k, v, heads, bias);
    }
    let (b, _, h) = q.dims3()?;
    let tk = k.dim(1)?;
    if heads == 0 || h % heads != 0 || k.dims() != [b, tk, h] || v.dims() != [b, tk, h] {
        return super::attention::scaled_dot_product_composed(q, k, v, heads, bias);
    }
    let node = AttentionNode {
        heads,
        scale: 1.0 / ((h / heads) as f64).sqrt(),
        product: std::sync::Mutex::new(None),
        probs: std::sync::Mutex::new(None),
    };
    let (qh, kh, vh) = (
        node.split(&q.detach())?,
        node.split(&k.detach())?,
        node.split(&v.detach())?,
    );
    let mut scores = (qh.matmul(&kh.t()?)? * node.scale)?;
    if let Some(bias) = bias {
        scores = scores.broadcast_add(bias)?;
    }
    let probs = softmax_last_dim(&scores)?;
    let out = node.merge(&probs.matmul(&vh)?)?;
    *node.product.lock().map_err(|_| lock_error())? = Some(out);
    *node.probs.lock().map_err(|_| lock_error())? = Some(probs);
    Ok(q.apply_op3(k, v, node)?)
}

fn lock_error() -> candle_core::Error {
    candle_core::Error::Msg("attention: poisoned".into())
}

/// The graph node of [`attention`].
struct AttentionNode {
    heads: usize,
    scale: f64,
    /// The output, handed over by the forward.
    product: std::sync::Mutex<Option<Tensor>>,
    /// Softmax probabilities `[B, heads, Tq, Tk]`, for the backward.
    probs: std::sync::Mutex<Option<Tensor>>,
}

impl AttentionNode {
    /// `[B, T, H]` → `[B, heads, T, H/heads]`, contiguous.
    fn split(&self, y: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h) = y.dims3()?;
        y.reshape((b, t, self.heads, h / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `[B, heads, T, hd]` → `[B, T, heads·hd]`, contiguous.
    fn merge(&self, y: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, t, hd) = y.dims4()?;
        y.transpose(1, 2)?.reshape((b, t, n * hd))
    }
}

impl CustomOp3 for AttentionNode {
    fn name(&self) -> &'static str {
        "mosaic-attention"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = self
            .product
            .lock()
            .map_err(|_| lock_error())?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("attention: forward ran twice".into()))?;
        copy_out(&y)
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let p = self
            .probs
            .lock()
            .map_err(|_| lock_error())?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg("attention: no forward".into()))?;
        let (qh, kh, vh) = (self.split(q)?, self.split(k)?, self.split(v)?);
        let d_out = self.split(grad)?;
        let dp = d_out.matmul(&vh.t()?)?;
        let dv = p.t()?.matmul(&d_out)?;
        // dS = P ⊙ (dP − Σ dP ⊙ P), then the score scale.
        let ds = (p.apply_op2_no_bwd(&dp.contiguous()?, &SoftmaxGrad)? * self.scale)?;
        let dq = ds.matmul(&kh)?;
        let dk = ds.t()?.matmul(&qh)?;
        Ok((
            Some(self.merge(&dq)?),
            Some(self.merge(&dk)?),
            Some(self.merge(&dv)?),
        ))
    }
}

/// A fresh copy of a contiguous f32/f64 CPU tensor's storage (a custom
/// op's forward must return storage of its own).
fn copy_out(y: &Tensor) -> candle_core::Result<(CpuStorage, Shape)> {
    let (storage, layout) = y.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("fused op: product is not on the CPU")
    };
    let data = match (cpu, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => CpuStorage::F32(v[a..b].to_vec()),
        (CpuStorage::F64(v), Some((a, b))) => CpuStorage::F64(v[a..b].to_vec()),
        _ => candle_core::bail!("fused op: product is not a contiguous f32/f64 tensor"),
    };
    Ok((data, layout.shape().clone()))
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor, Var};

    use super::*;
    use crate::nn::gradcheck::check_gradients;
    use crate::nn::ops;

    fn randn(shape: &[usize], seed: u64) -> Tensor {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|_| rand_distr::StandardNormal.sample(&mut rng))
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// Value and gradients of `sum(f(vars) * r)` under a fused and a
    /// composed implementation agree to `tol`, in f64 and in f32.
    fn agree(
        name: &str,
        inputs: &[Tensor],
        fused: impl Fn(&[Tensor]) -> crate::error::Result<Tensor>,
        composed: impl Fn(&[Tensor]) -> crate::error::Result<Tensor>,
    ) {
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 2e-5)] {
            let vars: Vec<Var> = inputs
                .iter()
                .map(|t| Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap())
                .collect();
            let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let yf = fused(&ts).unwrap();
            let yc = composed(&ts).unwrap();
            assert!(max_diff(&yf, &yc) < tol, "{name} {dtype:?}: outputs differ");
            let r = randn(yf.dims(), 99).to_dtype(dtype).unwrap();
            let gf = (yf * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gc = (yc * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (i, t) in ts.iter().enumerate() {
                let (a, c) = (gf.get(t).unwrap(), gc.get(t).unwrap());
                // Relative to the largest entry: parameter gradients sum
                // over hundreds of rows.
                let scale = max_diff(c, &c.zeros_like().unwrap()).max(1.0);
                let d = max_diff(a, c) / scale;
                assert!(
                    d < tol,
                    "{name} {dtype:?}: gradient {i} differs by {d} (relative)"
                );
            }
        }
    }

    #[test]
    fn fused_ops_match_the_composed_ops() {
        let x = (randn(&[3, 4, 37], 1) * 2.0).unwrap();
        agree(
            "gelu",
            std::slice::from_ref(&x),
            |t| gelu_erf(&t[0]),
            |t| ops::gelu_erf_composed(&t[0]),
        );
        agree(
            "softmax",
            std::slice::from_ref(&x),
            |t| softmax_last_dim(&t[0]),
            |t| ops::softmax_last_dim_composed(&t[0]),
        );
        let w = randn(&[37], 2).affine(0.2, 1.0).unwrap();
        let b = (randn(&[37], 3) * 0.2).unwrap();
        agree(
            "layer norm",
            &[x.clone(), w, b],
            |t| layer_norm(&t[0], &t[1], &t[2], 1e-5),
            |t| ops::layer_norm_composed(&t[0], &t[1], &t[2], 1e-5),
        );
        let w = randn(&[5, 37], 12);
        let b = randn(&[5], 13);
        agree(
            "linear",
            &[x.clone(), w.clone(), b],
            |t| linear(&t[0], &t[1], Some(&t[2])),
            |t| ops::linear_composed(&t[0], &t[1], Some(&t[2])),
        );
        agree(
            "linear without bias",
            &[x.clone(), w],
            |t| linear(&t[0], &t[1], None),
            |t| ops::linear_composed(&t[0], &t[1], None),
        );
        let q = randn(&[2, 5, 12], 16);
        let kv = randn(&[2, 7, 12], 17);
        let v = randn(&[2, 7, 12], 18);
        let mask = Tensor::from_vec(
            vec![
                0.0, 0.0, 0.0, -1e9, 0.0, 0.0, 0.0, 0.0, 0.0, -1e9, -1e9, -1e9, 0.0, 0.0,
            ],
            (2, 1, 1, 7),
            &Device::Cpu,
        )
        .unwrap();
        for bias in [None, Some(mask)] {
            let b2 = bias.clone();
            agree(
                "attention",
                &[q.clone(), kv.clone(), v.clone()],
                move |t| {
                    attention(
                        &t[0],
                        &t[1],
                        &t[2],
                        3,
                        bias.as_ref()
                            .map(|m| m.to_dtype(t[0].dtype()).unwrap())
                            .as_ref(),
                    )
                },
                move |t| {
                    crate::nn::attention::scaled_dot_product_composed(
                        &t[0],
                        &t[1],
                        &t[2],
                        3,
                        b2.as_ref()
                            .map(|m| m.to_dtype(t[0].dtype()).unwrap())
                            .as_ref(),
                    )
                },
            );
        }
        // Many rows, so the parallel reduction of the parameter gradients
        // spans several tasks.
        let big = randn(&[600, 64], 4);
        let w = randn(&[64], 5).affine(0.2, 1.0).unwrap();
        let b = randn(&[64], 6);
        agree(
            "layer norm, 600 rows",
            &[big, w, b],
            |t| layer_norm(&t[0], &t[1], &t[2], 1e-6),
            |t| ops::layer_norm_composed(&t[0], &t[1], &t[2], 1e-6),
        );
    }

    #[test]
    fn fused_gradients_match_finite_differences() {
        let x = Var::from_tensor(&randn(&[2, 3, 9], 7)).unwrap();
        let w = Var::from_tensor(&randn(&[9], 8).affine(0.3, 1.0).unwrap()).unwrap();
        let b = Var::from_tensor(&randn(&[9], 9)).unwrap();
        let r = randn(&[2, 3, 9], 10);
        let lw = Var::from_tensor(&randn(&[9, 9], 14)).unwrap();
        let lb = Var::from_tensor(&randn(&[9], 15)).unwrap();
        let vars = vec![
            ("x".to_string(), x.clone()),
            ("w".into(), w.clone()),
            ("b".into(), b.clone()),
            ("linear.w".into(), lw.clone()),
            ("linear.b".into(), lb.clone()),
        ];
        let loss = || -> crate::error::Result<Tensor> {
            let h = linear(x.as_tensor(), lw.as_tensor(), Some(lb.as_tensor()))?;
            let h = layer_norm(&h, w.as_tensor(), b.as_tensor(), 1e-5)?;
            let h = attention(&h, &h, &h, 3, None)?;
            let h = softmax_last_dim(&gelu_erf(&h)?)?;
            Ok((h * &r)?.sum_all()?)
        };
        let report = check_gradients(&vars, loss, 54, 1e-6, 1e-6).unwrap();
        assert!(report.checked >= 54 + 9 + 9 + 54 + 9, "{report:?}");
    }

    #[test]
    fn other_dtypes_and_strided_inputs_take_a_working_path() {
        let x = randn(&[4, 6], 11);
        // A transposed (non-contiguous) input.
        let xt = x.t().unwrap();
        let d = max_diff(
            &softmax_last_dim(&xt).unwrap(),
            &ops::softmax_last_dim_composed(&xt).unwrap(),
        );
        assert!(d < 1e-12);
        // bf16 goes through the composed op.
        let xb = x.to_dtype(DType::BF16).unwrap();
        let y = gelu_erf(&xb).unwrap().to_dtype(DType::F64).unwrap();
        assert!(max_diff(&y, &ops::gelu_erf_composed(&x).unwrap()) < 0.05);
    }
}

// ------------------------------------------------------- depthwise conv

/// Geometry of a depthwise convolution.
#[derive(Debug, Clone, Copy)]
struct DepthwiseDims {
    batch: usize,
    channels: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    /// Zero padding at the top and left.
    pad: (usize, usize),
    /// Output height and width.
    out: (usize, usize),
}

impl DepthwiseDims {
    /// Calls `f(plane, channel, out_index, in_index, kernel_index)` for every
    /// product term of the convolution, plane by plane.
    fn for_each_term(&self, plane: usize, mut f: impl FnMut(usize, usize, usize)) {
        let (oh, ow) = self.out;
        let ch = plane % self.channels;
        let (h, w, k) = (self.h, self.w, self.k);
        for oy in 0..oh {
            for ky in 0..k {
                let iy = (oy * self.stride + ky) as isize - self.pad.0 as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                for ox in 0..ow {
                    for kx in 0..k {
                        let ix = (ox * self.stride + kx) as isize - self.pad.1 as isize;
                        if ix >= 0 && (ix as usize) < w {
                            f(
                                oy * ow + ox,
                                iy as usize * w + ix as usize,
                                ch * k * k + ky * k + kx,
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Depthwise `k×k` convolution of `x` `[B, C, H, W]` with `w` `[C, 1, k, k]`
/// (one filter per channel): zero padding `pad` (top, left), output size
/// `out` (the bottom/right padding follows from it), `stride`. Why our own:
/// candle's grouped convolution runs one convolution per group, ~100×
/// slower for depthwise layers with hundreds of channels. Differentiable in
/// both arguments; f32 and f64 on the CPU (other dtypes and devices use
/// candle's grouped convolution).
pub fn depthwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    pad: (usize, usize),
    out: (usize, usize),
) -> crate::error::Result<Tensor> {
    let (batch, channels, h, wd) = x.dims4()?;
    let (wc, one, k, k2) = w.dims4()?;
    if wc != channels || one != 1 || k != k2 || stride == 0 {
        return Err(crate::error::Error::InvalidInput {
            what: "depthwise_conv2d".into(),
            message: format!(
                "kernel {:?} does not fit input {:?} (expected [{channels}, 1, k, k], stride ≥ 1)",
                w.dims(),
                x.dims()
            ),
        });
    }
    let dims = DepthwiseDims {
        batch,
        channels,
        h,
        w: wd,
        k,
        stride,
        pad,
        out,
    };
    if !fusable(x) || x.dtype() != w.dtype() {
        let (bottom, right) = (
            ((out.0 - 1) * stride + k).saturating_sub(h + pad.0),
            ((out.1 - 1) * stride + k).saturating_sub(wd + pad.1),
        );
        let xp = x
            .pad_with_zeros(2, pad.0, bottom)?
            .pad_with_zeros(3, pad.1, right)?;
        return Ok(xp.conv2d(w, 0, stride, 1, channels)?);
    }
    Ok(x.contiguous()?
        .apply_op2(&w.contiguous()?, DepthwiseConv(dims))?)
}

struct DepthwiseConv(DepthwiseDims);

impl CustomOp2 for DepthwiseConv {
    fn name(&self) -> &'static str {
        "mosaic-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = self.0;
        let (oh, ow) = d.out;
        by_dtype!(self.name(), s1, T => {
            let x = view::<T>(self.name(), s1, l1)?;
            let w = view::<T>(self.name(), s2, l2)?;
            let mut y = vec![T::of(0.0); d.batch * d.channels * oh * ow];
            y.par_chunks_mut(oh * ow).enumerate().for_each(|(plane, y)| {
                let x = &x[plane * d.h * d.w..(plane + 1) * d.h * d.w];
                d.for_each_term(plane, |o, i, j| y[o] += x[i] * w[j]);
            });
            Ok((T::storage(y), Shape::from((d.batch, d.channels, oh, ow))))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = w.apply_op2_no_bwd(&grad, &DepthwiseGradInput(self.0))?;
        let dw = x.apply_op2_no_bwd(&grad, &DepthwiseGradKernel(self.0))?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `∂L/∂x` from the kernel and the output gradient.
struct DepthwiseGradInput(DepthwiseDims);

impl CustomOp2 for DepthwiseGradInput {
    fn name(&self) -> &'static str {
        "mosaic-depthwise-conv2d-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = self.0;
        let (oh, ow) = d.out;
        by_dtype!(self.name(), s1, T => {
            let w = view::<T>(self.name(), s1, l1)?;
            let g = view::<T>(self.name(), s2, l2)?;
            let mut dx = vec![T::of(0.0); d.batch * d.channels * d.h * d.w];
            dx.par_chunks_mut(d.h * d.w).enumerate().for_each(|(plane, dx)| {
                let g = &g[plane * oh * ow..(plane + 1) * oh * ow];
                d.for_each_term(plane, |o, i, j| dx[i] += g[o] * w[j]);
            });
            Ok((T::storage(dx), Shape::from((d.batch, d.channels, d.h, d.w))))
        })
    }
}

/// `∂L/∂w` from the input and the output gradient.
struct DepthwiseGradKernel(DepthwiseDims);

impl CustomOp2 for DepthwiseGradKernel {
    fn name(&self) -> &'static str {
        "mosaic-depthwise-conv2d-grad-kernel"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = self.0;
        let (oh, ow) = d.out;
        let kk = d.k * d.k;
        by_dtype!(self.name(), s1, T => {
            let x = view::<T>(self.name(), s1, l1)?;
            let g = view::<T>(self.name(), s2, l2)?;
            // Per channel, summed over the batch (planes of one channel are
            // `channels` apart).
            let mut dw = vec![T::of(0.0); d.channels * kk];
            dw.par_chunks_mut(kk).enumerate().for_each(|(ch, dw)| {
                for b in 0..d.batch {
                    let plane = b * d.channels + ch;
                    let x = &x[plane * d.h * d.w..(plane + 1) * d.h * d.w];
                    let g = &g[plane * oh * ow..(plane + 1) * oh * ow];
                    d.for_each_term(plane, |o, i, j| dw[j - ch * kk] += g[o] * x[i]);
                }
            });
            Ok((T::storage(dw), Shape::from((d.channels, 1, d.k, d.k))))
        })
    }
}
