//! Gradient caching (Gao et al. 2021, "Scaling Deep Contrastive Learning
//! Batch Size under Memory Limited Setup"): a contrastive loss over a
//! batch larger than fits in memory, with the exact full-batch gradient.
//!
//! 1. Embed each sub-batch and keep only the (detached) embeddings, so no
//!    encoder graph stays alive.
//! 2. Compute the loss on the full batch of embeddings with a graph on the
//!    embeddings only: this gives `∂L/∂e` for every embedding (and the
//!    gradient of parameters the loss itself uses, e.g. `logit_scale`).
//! 3. Re-embed each sub-batch with a graph and back-propagate the
//!    surrogate `Σ e · stopgrad(∂L/∂e)`, whose parameter gradient is that
//!    sub-batch's share of `∂L/∂θ`; the shares are summed.
//!
//! Memory is one sub-batch's activations plus the embeddings; compute is
//! one extra forward pass. The embedding function must give the same
//! values both times (no dropout or other randomness between the passes)
//! and treat samples independently (no batch statistics).

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use mosaic_core::{Batch, ModalityBatch};
use mosaic_models::arch::MultimodalModel;

use crate::error::{Error, Result};

/// What [`grad_cache`] returns.
#[derive(Debug)]
pub struct GradCacheOutput {
    /// The full-batch loss (detached scalar).
    pub loss: Tensor,
    /// The full-batch gradient of every parameter of `vars` the loss
    /// reaches, for [`crate::optim::Optimizer::step`].
    pub grads: GradStore,
}

fn add_into(total: &mut [Option<Tensor>], vars: &[Var], grads: &GradStore) -> Result<()> {
    for (v, t) in vars.iter().zip(total.iter_mut()) {
        if let Some(g) = grads.get(v.as_tensor()) {
            let g = g.detach();
            *t = Some(match t.take() {
                Some(acc) => (acc + g)?,
                None => g,
            });
        }
    }
    Ok(())
}

/// GradCache over `chunks` sub-batches. `embed(k)` returns sub-batch k's
/// embeddings, one `[n_k, ...]` tensor per view (e.g. `[image, text]`),
/// with the same views for every k; `loss` gets each view's full-batch
/// embeddings (sub-batches concatenated in order) and returns the scalar
/// loss. `vars` are the parameters to return gradients for.
pub fn grad_cache<E, L>(
    vars: &BTreeMap<String, Var>,
    chunks: usize,
    mut embed: E,
    loss: L,
) -> Result<GradCacheOutput>
where
    E: FnMut(usize) -> Result<Vec<Tensor>>,
    L: FnOnce(&[Tensor]) -> Result<Tensor>,
{
    if chunks == 0 {
        return Err(Error::InvalidInput {
            what: "gradient cache".into(),
            message: "needs at least one sub-batch".into(),
        });
    }
    // Pass 1: embeddings without keeping any graph.
    let mut cached: Vec<Vec<Tensor>> = Vec::with_capacity(chunks);
    for k in 0..chunks {
        let reps = embed(k)?;
        if let Some(first) = cached.first() {
            if reps.len() != first.len() {
                return Err(Error::InvalidInput {
                    what: format!("sub-batch {k}"),
                    message: format!("{} views, sub-batch 0 had {}", reps.len(), first.len()),
                });
            }
        }
        cached.push(reps.iter().map(|r| r.detach()).collect());
    }
    let views = cached[0].len();
    let sizes: Vec<usize> = cached
        .iter()
        .map(|c| c.first().map_or(Ok(0), |t| t.dim(0)))
        .collect::<std::result::Result<_, _>>()?;
    // The full batch of embeddings, as leaves of a small graph.
    let mut leaves = Vec::with_capacity(views);
    for v in 0..views {
        let parts: Vec<&Tensor> = cached.iter().map(|c| &c[v]).collect();
        leaves.push(Var::from_tensor(&Tensor::cat(&parts, 0)?)?);
    }
    let full: Vec<Tensor> = leaves.iter().map(|l| l.as_tensor().clone()).collect();
    let l = loss(&full)?;
    let g = l.backward()?;
    let emb_grads: Vec<Tensor> = leaves
        .iter()
        .map(|leaf| match g.get(leaf.as_tensor()) {
            Some(t) => Ok(t.detach()),
            None => Ok(leaf.as_tensor().zeros_like()?),
        })
        .collect::<Result<_>>()?;
    let var_list: Vec<Var> = vars.values().cloned().collect();
    let mut total: Vec<Option<Tensor>> = vec![None; var_list.len()];
    add_into(&mut total, &var_list, &g)?;
    drop(g);
    // Pass 2: re-embed with a graph, back-propagate the cached gradients.
    let mut offset = 0;
    for (k, (&n, old)) in sizes.iter().zip(&cached).enumerate() {
        let reps = embed(k)?;
        if reps.len() != views {
            return Err(Error::InvalidInput {
                what: format!("sub-batch {k}"),
                message: "the second pass returned a different number of views".into(),
            });
        }
        let mut surrogate: Option<Tensor> = None;
        for (v, r) in reps.iter().enumerate() {
            if r.dims() != old[v].dims() {
                return Err(Error::InvalidInput {
                    what: format!("sub-batch {k} view {v}"),
                    message: format!(
                        "shape {:?} on the second pass, {:?} on the first",
                        r.dims(),
                        old[v].dims()
                    ),
                });
            }
            let drift = (r.detach() - &old[v])?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            if drift > 1e-4 {
                tracing::warn!(
                    "gradient cache: sub-batch {k} view {v} embeds differently on the second pass \
                     (max diff {drift:e}); gradients are approximate"
                );
            }
            let gk = emb_grads[v].narrow(0, offset, n)?;
            let term = (r * gk)?.sum_all()?;
            surrogate = Some(match surrogate {
                Some(s) => (s + term)?,
                None => term,
            });
        }
        if let Some(s) = surrogate {
            let gk = s.backward()?;
            add_into(&mut total, &var_list, &gk)?;
        }
        offset += n;
    }
    let mut grads = GradStore::default();
    for (v, t) in var_list.iter().zip(total) {
        if let Some(t) = t {
            grads.insert(v.as_tensor(), t);
        }
    }
    Ok(GradCacheOutput {
        loss: l.detach(),
        grads,
    })
}

/// Splits a batch into consecutive sub-batches of at most `chunk_size`
/// samples (values, masks, presence and ids alike).
pub fn split_batch(batch: &Batch, chunk_size: usize) -> Result<Vec<Batch>> {
    if chunk_size == 0 {
        return Err(Error::Config {
            source_name: "gradient cache".into(),
            message: "key `chunk_size` must be at least 1".into(),
        });
    }
    let n = batch.len();
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let len = chunk_size.min(n - start);
        let mut b = Batch::new(batch.ids[start..start + len].to_vec());
        for (m, mb) in &batch.modalities {
            let values = mb.values.narrow(0, start, len)?;
            let mask = match &mb.mask {
                Some(mask) => Some(mask.narrow(0, start, len)?),
                None => None,
            };
            let present = mb.present[start..start + len].to_vec();
            b.insert(*m, ModalityBatch::new(values, mask, present)?)?;
        }
        out.push(b);
        start += len;
    }
    Ok(out)
}

/// The learnable log inverse temperature of contrastive head `head` of
/// `model` (the tensor sharing the `heads.<head>.logit_scale` `Var`).
pub fn logit_scale_of(model: &MultimodalModel, head: &str) -> Result<Tensor> {
    let name = format!("heads.{head}.logit_scale");
    model
        .params()
        .vars()
        .get(&name)
        .map(|v| v.as_tensor().clone())
        .ok_or_else(|| Error::InvalidInput {
            what: format!("head `{head}`"),
            message: format!("model has no `{name}` (not a contrastive head?)"),
        })
}

/// GradCache for a contrastive head of a [`MultimodalModel`]: the batch
/// is embedded `chunk_size` samples at a time, `loss(a, b)` gets the two
/// full-batch normalised embeddings of head `head` (e.g.
/// `|a, b| loss::clip_loss_embeddings(a, b, &logit_scale)`), and the
/// gradients of `vars` equal those of the loss on the whole batch at once.
pub fn contrastive_grad_cache(
    model: &MultimodalModel,
    batch: &Batch,
    head: &str,
    chunk_size: usize,
    vars: &BTreeMap<String, Var>,
    loss: impl FnOnce(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<GradCacheOutput> {
    let parts = split_batch(batch, chunk_size)?;
    grad_cache(
        vars,
        parts.len(),
        |k| {
            let out = model.forward(&parts[k])?;
            let (a, b) = out
                .embeddings
                .get(head)
                .ok_or_else(|| Error::InvalidInput {
                    what: format!("head `{head}`"),
                    message: "not a contrastive head of the model".into(),
                })?;
            Ok(vec![a.clone(), b.clone()])
        },
        |e| loss(&e[0], &e[1]),
    )
}
