//! The seven fusion paradigms over per-modality [`Features`].

use std::collections::BTreeMap;

use candle_core::{D, DType, Tensor};
use mosaic_core::Modality;

use crate::arch::config::{ArchConfig, FusionConfig, Positions, Projector};
use crate::encoder::Features;
use crate::error::{Error, Result};
use crate::nn::Linear;
use crate::nn::blocks::{
    AttentionPool, BlockCache, BlockSpec, Embedding, Transformer, causal_bias_after, key_bias,
};
use crate::nn::params::{Init, ParamStore};
use crate::nn::{Activation, softmax_last_dim};

/// What fusion hands to the heads.
#[derive(Debug, Clone)]
pub struct Fused {
    /// `[B, dim]` joint vector (all paradigms but late and generative).
    pub pooled: Option<Tensor>,
    /// `[B, T, dim]` joint tokens where the paradigm has them.
    pub tokens: Option<Tensor>,
    /// Per-modality pooled features projected to `dim` (late, gated).
    pub per_modality: BTreeMap<Modality, Tensor>,
    /// Gated fusion's per-sample weights `[B, M]` (modalities in key order).
    pub gates: Option<Tensor>,
}

/// A built fusion module.
#[derive(Debug, Clone)]
pub enum Fusion {
    /// Feature-level early fusion.
    Early {
        /// The shared MLP (ReLU between layers).
        layers: Vec<Linear>,
    },
    /// Independent towers.
    Late {
        /// Projection of each modality's pooled vector to `dim`.
        proj: BTreeMap<Modality, Linear>,
    },
    /// Query stream cross-attends to a context stream.
    CrossAttention {
        /// Attending modality.
        query: Modality,
        /// Attended modality.
        context: Modality,
        /// Blocks with cross-attention.
        body: Transformer,
        /// Unimodal (retrieval) projections of the query's self-attention-only
        /// first token and the context's pooled vector (empty when off).
        unimodal: BTreeMap<Modality, Linear>,
    },
    /// One transformer over all tokens.
    SingleStream {
        /// Per-modality token projections to `dim` (empty: none).
        proj: BTreeMap<Modality, Linear>,
        /// Modality order in the sequence; row `i` of `types` is `order[i]`'s.
        order: Vec<Modality>,
        /// Modality-type embeddings `[M, dim]`.
        types: Tensor,
        /// Class token `[1, 1, dim]`, when the fusion has its own.
        cls: Option<Tensor>,
        /// The transformer.
        body: Transformer,
        /// `tanh(pooler(first token))` as the pooled vector, when set.
        pooler: Option<Linear>,
    },
    /// Towers then a shared transformer.
    MultiStream {
        /// Per-modality token projections to `dim`.
        proj: BTreeMap<Modality, Linear>,
        /// Modality-type embeddings.
        types: Tensor,
        /// The fusion transformer.
        body: Transformer,
    },
    /// Softmax gates over present modalities.
    Gated {
        /// Projections to `dim`.
        proj: BTreeMap<Modality, Linear>,
        /// Gate logits from the concatenated projected vectors.
        gate: Linear,
    },
    /// Prefix tokens + causal decoder.
    Generative(Box<GenerativeDecoder>),
}

impl Fusion {
    /// Builds the paradigm `cfg.fusion` under `fusion.`.
    pub fn build(p: &ParamStore, cfg: &ArchConfig) -> Result<Self> {
        let p = p.sub("fusion");
        let d = cfg.dim;
        let projections = |p: &ParamStore| -> Result<BTreeMap<Modality, Linear>> {
            cfg.encoders
                .iter()
                .map(|(m, e)| Ok((*m, p.linear(&format!("proj.{m}"), e.dim(), d, true)?)))
                .collect()
        };
        Ok(match &cfg.fusion {
            FusionConfig::Early { hidden, layers } => {
                let input: usize = cfg.encoders.values().map(|e| e.dim()).sum();
                let mut ls = Vec::new();
                let mut cin = input;
                for i in 0..*layers {
                    ls.push(p.linear(&format!("mlp.{i}"), cin, *hidden, true)?);
                    cin = *hidden;
                }
                ls.push(p.linear(&format!("mlp.{layers}"), cin, d, true)?);
                Fusion::Early { layers: ls }
            }
            FusionConfig::Late {} => Fusion::Late {
                proj: projections(&p)?,
            },
            FusionConfig::CrossAttention {
                query,
                context,
                layers,
                heads,
                block,
                unimodal,
            } => {
                let mut spec = block.spec(d, *heads, 4);
                let cd = cfg.encoders[context].dim();
                spec.cross_dim = Some(cd);
                let mut uni = BTreeMap::new();
                if let Some(w) = unimodal {
                    uni.insert(*query, p.linear(&format!("unimodal.{query}"), d, *w, true)?);
                    uni.insert(
                        *context,
                        p.linear(&format!("unimodal.{context}"), cd, *w, true)?,
                    );
                }
                Fusion::CrossAttention {
                    query: *query,
                    context: *context,
                    body: Transformer::new(&p, "body", *layers, spec)?,
                    unimodal: uni,
                }
            }
            FusionConfig::SingleStream {
                layers,
                heads,
                block,
                project,
                class_token,
                order,
                pooler,
            } => Fusion::SingleStream {
                proj: if *project {
                    projections(&p)?
                } else {
                    BTreeMap::new()
                },
                order: if order.is_empty() {
                    cfg.encoders.keys().copied().collect()
                } else {
                    order.clone()
                },
                types: p.get("types", &[cfg.encoders.len(), d], Init::Normal(0.02))?,
                cls: if *class_token {
                    Some(p.get("cls", &[1, 1, d], Init::Normal(0.02))?)
                } else {
                    None
                },
                body: Transformer::new(&p, "body", *layers, block.spec(d, *heads, 4))?,
                pooler: if *pooler {
                    Some(p.linear("pooler", d, d, true)?)
                } else {
                    None
                },
            },
            FusionConfig::MultiStream { layers, heads } => Fusion::MultiStream {
                proj: projections(&p)?,
                types: p.get("types", &[cfg.encoders.len(), d], Init::Normal(0.02))?,
                body: Transformer::new(&p, "body", *layers, BlockSpec::new(d, *heads))?,
            },
            FusionConfig::Gated {} => Fusion::Gated {
                proj: projections(&p)?,
                gate: p.linear("gate", d * cfg.encoders.len(), cfg.encoders.len(), true)?,
            },
            FusionConfig::Generative {
                prefix,
                prefix_tokens,
                vocab_size,
                max_len,
                layers,
                heads,
                block,
                positions,
                projector,
                projector_act,
                image_token,
            } => {
                let mut pools = BTreeMap::new();
                let mut projs = BTreeMap::new();
                let mut projs2 = BTreeMap::new();
                for m in prefix {
                    let ed = cfg.encoders[m].dim();
                    projs.insert(*m, p.linear(&format!("prefix.{m}.proj"), ed, d, true)?);
                    match projector {
                        Projector::AttentionPool => {
                            pools.insert(
                                *m,
                                (0..*prefix_tokens)
                                    .map(|i| {
                                        AttentionPool::new(
                                            &p,
                                            &format!("prefix.{m}.pool{i}"),
                                            d,
                                            *heads,
                                        )
                                    })
                                    .collect::<Result<Vec<_>>>()?,
                            );
                        }
                        Projector::Mlp => {
                            projs2.insert(*m, p.linear(&format!("prefix.{m}.proj2"), d, d, true)?);
                        }
                    }
                }
                let mut spec = block.spec(d, *heads, 4);
                spec.rotary = *positions == Positions::Rotary;
                Fusion::Generative(Box::new(GenerativeDecoder {
                    prefix: prefix.clone(),
                    projs,
                    pools,
                    projs2,
                    projector_act: projector_act.activation(),
                    prefix_tokens: *prefix_tokens,
                    embed: Embedding::new(&p, "embed", *vocab_size, d)?,
                    pos: match positions {
                        Positions::Learned => {
                            Some(p.get("pos", &[*max_len, d], Init::Normal(0.02))?)
                        }
                        Positions::Rotary => None,
                    },
                    body: Transformer::new(&p, "body", *layers, spec)?,
                    lm_head: p.linear("lm_head", d, *vocab_size, false)?,
                    max_len: *max_len,
                    vocab_size: *vocab_size,
                    image_token: *image_token,
                }))
            }
        })
    }

    /// Fuses encoder outputs. `present[m][b]` says whether sample b has
    /// modality m (only gated fusion accepts absent modalities).
    pub fn forward(
        &self,
        feats: &BTreeMap<Modality, Features>,
        present: &BTreeMap<Modality, Vec<bool>>,
    ) -> Result<Fused> {
        let mut out = Fused {
            pooled: None,
            tokens: None,
            per_modality: BTreeMap::new(),
            gates: None,
        };
        let get = |m: &Modality| -> Result<&Features> {
            feats.get(m).ok_or_else(|| Error::InvalidInput {
                what: "batch".into(),
                message: format!(
                    "modality `{m}` is missing from the batch, and this fusion needs it"
                ),
            })
        };
        match self {
            Fusion::Early { layers } => {
                let want = layers[0].weight.dim(1)?;
                let have: usize = feats.values().map(|f| f.pooled.dim(1).unwrap_or(0)).sum();
                if have != want {
                    return Err(Error::InvalidInput {
                        what: "batch".into(),
                        message: format!(
                            "early fusion needs every modality it was built for ({want} features), the batch gives {have}"
                        ),
                    });
                }
                let parts = feats.values().map(|f| f.pooled.clone()).collect::<Vec<_>>();
                let mut x = Tensor::cat(&parts, D::Minus1)?;
                for (i, l) in layers.iter().enumerate() {
                    x = l.forward(&x)?;
                    if i + 1 < layers.len() {
                        x = x.relu()?;
                    }
                }
                out.pooled = Some(x);
            }
            Fusion::Late { proj } => {
                for (m, f) in feats {
                    out.per_modality.insert(*m, proj[m].forward(&f.pooled)?);
                }
                let v: Vec<Tensor> = out.per_modality.values().cloned().collect();
                out.pooled = Some(Tensor::stack(&v, 0)?.mean(0)?);
            }
            Fusion::CrossAttention {
                query,
                context,
                body,
                unimodal,
            } => {
                let (q, c) = (get(query)?, get(context)?);
                let qb = q
                    .mask
                    .as_ref()
                    .map(|m| key_bias(m, q.tokens.dtype()))
                    .transpose()?;
                let cb = c
                    .mask
                    .as_ref()
                    .map(|m| key_bias(m, c.tokens.dtype()))
                    .transpose()?;
                let x = body.forward(&q.tokens, qb.as_ref(), Some((&c.tokens, cb.as_ref())))?;
                out.pooled = Some(x.narrow(1, 0, 1)?.squeeze(1)?);
                out.tokens = Some(x);
                if let (Some(pq), Some(pc)) = (unimodal.get(query), unimodal.get(context)) {
                    let u = body.forward_self_only(&q.tokens, qb.as_ref())?;
                    out.per_modality
                        .insert(*query, pq.forward(&u.narrow(1, 0, 1)?.squeeze(1)?)?);
                    out.per_modality.insert(*context, pc.forward(&c.pooled)?);
                }
            }
            Fusion::SingleStream {
                proj,
                order,
                types,
                cls,
                body,
                pooler,
            } => {
                let (y, mask) = one_stream(
                    feats,
                    proj,
                    order,
                    types,
                    cls.as_ref(),
                    body,
                    "single-stream",
                )?;
                out.pooled = Some(match (pooler, cls) {
                    (Some(pl), _) => pl.forward(&y.narrow(1, 0, 1)?.squeeze(1)?)?.tanh()?,
                    (None, Some(_)) => y.narrow(1, 0, 1)?.squeeze(1)?,
                    (None, None) => crate::arch::encoders::masked_mean(&y, Some(&mask))?,
                });
                out.tokens = Some(y);
            }
            Fusion::MultiStream { proj, types, body } => {
                let order: Vec<Modality> = proj.keys().copied().collect();
                let (y, mask) = one_stream(feats, proj, &order, types, None, body, "multi-stream")?;
                out.pooled = Some(crate::arch::encoders::masked_mean(&y, Some(&mask))?);
                out.tokens = Some(y);
            }
            Fusion::Gated { proj, gate } => {
                // Absent modalities: zero vectors, excluded from the softmax.
                let mut vs = Vec::new();
                let mut avail = Vec::new();
                let any = feats.values().next().ok_or_else(|| Error::InvalidInput {
                    what: "batch".into(),
                    message: "no modalities".into(),
                })?;
                let b = any.pooled.dim(0)?;
                let dtype = any.pooled.dtype();
                let dev = any.pooled.device().clone();
                for (m, pr) in proj {
                    let (v, a) = match feats.get(m) {
                        Some(f) => {
                            let pres = present.get(m).cloned().unwrap_or_else(|| vec![true; b]);
                            let a = Tensor::from_vec(
                                pres.iter()
                                    .map(|&p| if p { 1f32 } else { 0.0 })
                                    .collect::<Vec<_>>(),
                                (b, 1),
                                &dev,
                            )?
                            .to_dtype(dtype)?;
                            (pr.forward(&f.pooled)?.broadcast_mul(&a)?, a)
                        }
                        None => {
                            let d = pr.weight.dim(0)?;
                            (
                                Tensor::zeros((b, d), dtype, &dev)?,
                                Tensor::zeros((b, 1), dtype, &dev)?,
                            )
                        }
                    };
                    out.per_modality.insert(*m, v.clone());
                    vs.push(v);
                    avail.push(a);
                }
                let avail = Tensor::cat(&avail, 1)?;
                let n_avail: Vec<f32> = avail.to_dtype(DType::F32)?.sum(1)?.to_vec1()?;
                if let Some(i) = n_avail.iter().position(|&n| n == 0.0) {
                    return Err(Error::InvalidInput {
                        what: "batch".into(),
                        message: format!("sample {i} has none of the gated modalities"),
                    });
                }
                let logits = gate.forward(&Tensor::cat(&vs, 1)?)?;
                let logits = logits.broadcast_add(&((avail.ones_like()? - &avail)? * -1e9)?)?;
                let g = softmax_last_dim(&logits)?;
                let stacked = Tensor::stack(&vs, 1)?; // [B, M, d]
                out.pooled = Some(stacked.broadcast_mul(&g.unsqueeze(2)?)?.sum(1)?);
                out.gates = Some(g);
            }
            Fusion::Generative(g) => {
                out.tokens = Some(g.prefix_tokens(feats)?);
            }
        }
        Ok(out)
    }
}

/// Concatenates the (projected) tokens of `order`'s modalities, each plus its
/// modality-type row, after an optional class token, and runs `body` with
/// padding masked; returns the tokens and the `[B, T]` u8 mask.
fn one_stream(
    feats: &BTreeMap<Modality, Features>,
    proj: &BTreeMap<Modality, Linear>,
    order: &[Modality],
    types: &Tensor,
    cls: Option<&Tensor>,
    body: &Transformer,
    what: &str,
) -> Result<(Tensor, Tensor)> {
    let first = feats.values().next().ok_or_else(|| Error::InvalidInput {
        what: "batch".into(),
        message: "no modalities".into(),
    })?;
    let b = first.tokens.dim(0)?;
    let dev = first.tokens.device().clone();
    let mut toks = Vec::new();
    let mut masks = Vec::new();
    if let Some(c) = cls {
        let d = c.dim(2)?;
        toks.push(c.broadcast_as((b, 1, d))?.contiguous()?);
        masks.push(Tensor::ones((b, 1), DType::U8, &dev)?);
    }
    for (i, m) in order.iter().enumerate() {
        let f = feats.get(m).ok_or_else(|| Error::InvalidInput {
            what: "batch".into(),
            message: format!(
                "modality `{m}` is missing from the batch, and {what} fusion needs it"
            ),
        })?;
        let t = f.tokens.dim(1)?;
        let x = match proj.get(m) {
            Some(pr) => pr.forward(&f.tokens)?,
            None => f.tokens.clone(),
        };
        toks.push(x.broadcast_add(&types.get(i)?)?);
        masks.push(match &f.mask {
            Some(mk) => mk.to_dtype(DType::U8)?,
            None => Tensor::ones((b, t), DType::U8, &dev)?,
        });
    }
    let x = Tensor::cat(&toks, 1)?;
    let mask = Tensor::cat(&masks, 1)?;
    let bias = key_bias(&mask, x.dtype())?;
    Ok((body.forward(&x, Some(&bias), None)?, mask))
}

/// LLaVA-style generative fusion: each prefix modality's tokens are
/// projected and attention-pooled into `prefix_tokens` tokens that precede
/// the text in a causal decoder.
#[derive(Debug, Clone)]
pub struct GenerativeDecoder {
    prefix: Vec<Modality>,
    projs: BTreeMap<Modality, Linear>,
    pools: BTreeMap<Modality, Vec<AttentionPool>>,
    /// Second linears of `mlp` projectors.
    projs2: BTreeMap<Modality, Linear>,
    projector_act: Activation,
    prefix_tokens: usize,
    embed: Embedding,
    /// Learned positions (`None`: rotary attention).
    pos: Option<Tensor>,
    body: Transformer,
    lm_head: Linear,
    max_len: usize,
    vocab_size: usize,
    image_token: Option<u32>,
}

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// Argmax.
    Greedy,
    /// Sample from the `k` most likely (seeded).
    TopK {
        /// k.
        k: usize,
        /// Softmax temperature.
        temperature: f64,
        /// RNG seed.
        seed: u64,
    },
    /// Sample from the smallest set with probability ≥ p (seeded).
    TopP {
        /// p.
        p: f64,
        /// Softmax temperature.
        temperature: f64,
        /// RNG seed.
        seed: u64,
    },
    /// Beam search (length-normalised log-probability).
    Beam {
        /// Beams.
        beams: usize,
    },
}

impl GenerativeDecoder {
    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The placeholder id whose positions take the prefix tokens (LLaVA),
    /// if the decoder works that way rather than prepending them.
    pub fn image_token(&self) -> Option<u32> {
        self.image_token
    }

    /// Prefix tokens `[B, P, dim]`.
    pub fn prefix_tokens(&self, feats: &BTreeMap<Modality, Features>) -> Result<Tensor> {
        let mut parts = Vec::new();
        for m in &self.prefix {
            let f = feats.get(m).ok_or_else(|| Error::InvalidInput {
                what: "batch".into(),
                message: format!("prefix modality `{m}` is missing from the batch"),
            })?;
            let t = self.projs[m].forward(&f.tokens)?;
            if let Some(p2) = self.projs2.get(m) {
                if t.dim(1)? != self.prefix_tokens {
                    return Err(Error::InvalidInput {
                        what: format!("{m} features"),
                        message: format!(
                            "{} tokens, the decoder was configured for prefix_tokens = {}",
                            t.dim(1)?,
                            self.prefix_tokens
                        ),
                    });
                }
                parts.push(p2.forward(&self.projector_act.forward(&t)?)?);
            }
            for pool in self.pools.get(m).into_iter().flatten() {
                parts.push(pool.forward(&t, f.mask.as_ref())?.unsqueeze(1)?);
            }
        }
        Ok(Tensor::cat(&parts, 1)?)
    }

    /// `x` `[B, T, dim]` at positions `start..start+T`, plus the learned
    /// positions if the decoder has them (rotary ones act in attention).
    fn add_pos(&self, x: &Tensor, start: usize) -> Result<Tensor> {
        let t = x.dim(1)?;
        if start + t > self.max_len {
            return Err(Error::InvalidInput {
                what: "sequence".into(),
                message: format!(
                    "{} positions exceed the decoder's max_len {}",
                    start + t,
                    self.max_len
                ),
            });
        }
        match &self.pos {
            Some(pos) => Ok(x.broadcast_add(&pos.narrow(0, start, t)?.unsqueeze(0)?)?),
            None => Ok(x.clone()),
        }
    }

    fn embed_at(&self, ids: &Tensor, start: usize) -> Result<Tensor> {
        self.add_pos(&self.embed.forward(ids)?, start)
    }

    /// Decoder input for `prefix` `[B, P, dim]` and text `ids` `[B, T]`, and
    /// the index of the first text position: the prefix then the text, or
    /// (with an image token) the text with its placeholders replaced, in
    /// order, by the prefix rows.
    fn input(&self, prefix: &Tensor, ids: &Tensor) -> Result<(Tensor, usize)> {
        let Some(image_token) = self.image_token else {
            let p = prefix.dim(1)?;
            let x = Tensor::cat(&[&self.add_pos(prefix, 0)?, &self.embed_at(ids, p)?], 1)?;
            return Ok((x, p));
        };
        let b = ids.dims2()?.0;
        let (pb, p, _) = prefix.dims3()?;
        if pb != b {
            return Err(Error::InvalidInput {
                what: "batch".into(),
                message: format!("{pb} prefixes for {b} texts"),
            });
        }
        let e = self.embed.forward(ids)?;
        let rows: Vec<Vec<u32>> = ids.to_dtype(DType::U32)?.to_vec2()?;
        let mut merged = Vec::with_capacity(b);
        for (i, row) in rows.iter().enumerate() {
            let n = row.iter().filter(|&&id| id == image_token).count();
            if n != p {
                return Err(Error::InvalidInput {
                    what: "token ids".into(),
                    message: format!(
                        "row {i} has {n} image tokens (id {image_token}) for {p} prefix tokens; expand each image to {p} placeholders"
                    ),
                });
            }
            // Which prefix row each position takes (0 where text stays).
            let mut k = 0u32;
            let idx: Vec<u32> = row
                .iter()
                .map(|&id| {
                    if id == image_token {
                        k += 1;
                        k - 1
                    } else {
                        0
                    }
                })
                .collect();
            let keep: Vec<u8> = row.iter().map(|&id| u8::from(id == image_token)).collect();
            let dev = ids.device();
            let from_prefix = prefix.get(i)?.index_select(&Tensor::new(idx, dev)?, 0)?;
            let sel = Tensor::new(keep, dev)?
                .unsqueeze(1)?
                .broadcast_as(from_prefix.dims())?;
            merged.push(sel.where_cond(&from_prefix, &e.get(i)?)?);
        }
        let x = Tensor::stack(&merged, 0)?;
        Ok((self.add_pos(&x, 0)?, 0))
    }

    /// Teacher-forced next-token logits `[B, T, vocab]` for text `ids`
    /// `[B, T]` (one row per text position; with an image token the
    /// placeholders are positions too).
    pub fn logits(&self, prefix: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let t = ids.dim(1)?;
        let (x, off) = self.input(prefix, ids)?;
        let bias = causal_bias_after(0, x.dim(1)?, x.dtype(), x.device())?;
        let y = self.body.forward(&x, Some(&bias), None)?;
        self.lm_head.forward(&y.narrow(1, off, t)?)
    }

    /// Runs new tokens after the cache; returns logits `[B, T, vocab]`.
    fn step(&self, x: &Tensor, caches: &mut Vec<BlockCache>, start: usize) -> Result<Tensor> {
        let t = x.dim(1)?;
        let bias = causal_bias_after(start, t, x.dtype(), x.device())?;
        let y = self.body.forward_cached(x, Some(&bias), None, caches)?;
        self.lm_head.forward(&y)
    }

    /// Decodes up to `max_new` tokens after `prefix` `[1, P, dim]` and the
    /// prompt `ids` (may be empty; with an image token it must hold the
    /// placeholders), stopping at `eos`. With `Greedy` the result equals
    /// repeated full recomputation (KV cache test).
    pub fn generate(
        &self,
        prefix: &Tensor,
        prompt: &[u32],
        max_new: usize,
        eos: Option<u32>,
        how: Decoding,
    ) -> Result<Vec<u32>> {
        if prefix.dim(0)? != 1 {
            return Err(Error::InvalidInput {
                what: "prefix".into(),
                message: "generate decodes one sample at a time".into(),
            });
        }
        if self.image_token.is_some() && prompt.is_empty() {
            return Err(Error::InvalidInput {
                what: "prompt".into(),
                message: "this decoder places the prefix at image-token placeholders; the prompt must hold them".into(),
            });
        }
        if let Decoding::Beam { beams } = how {
            return self.beam(prefix, prompt, max_new, eos, beams.max(1));
        }
        let dev = prefix.device();
        let mut caches = Vec::new();
        let x = if prompt.is_empty() {
            self.add_pos(prefix, 0)?
        } else {
            let ids = Tensor::new(prompt, dev)?.unsqueeze(0)?;
            self.input(prefix, &ids)?.0
        };
        let mut logits = self.step(&x, &mut caches, 0)?;
        let start = x.dim(1)?;
        let mut out = Vec::new();
        let mut rng = match how {
            Decoding::TopK { seed, .. } | Decoding::TopP { seed, .. } => seed,
            _ => 0,
        };
        for len in start..start + max_new {
            let row: Vec<f64> = logits
                .get(0)?
                .get(logits.dim(1)? - 1)?
                .to_dtype(DType::F64)?
                .to_vec1()?;
            let id = pick(&row, how, &mut rng)?;
            out.push(id);
            if Some(id) == eos || len + 1 > self.max_len {
                break;
            }
            let ids = Tensor::new(&[[id]], dev)?;
            logits = self.step(&self.embed_at(&ids, len)?, &mut caches, len)?;
        }
        Ok(out)
    }

    /// Largest absolute difference between the logits of `tokens` (after
    /// the prefix) computed one token at a time through the KV cache and in
    /// one full pass (prepended prefixes only).
    pub fn max_cache_logit_diff(&self, prefix: &Tensor, tokens: &[u32]) -> Result<f64> {
        if self.image_token.is_some() {
            return Err(Error::InvalidInput {
                what: "decoder".into(),
                message: "the cache check runs on decoders that prepend their prefix".into(),
            });
        }
        let full = self.recompute_logits(prefix, tokens)?;
        let p = prefix.dim(1)?;
        let mut caches = Vec::new();
        let x = self.add_pos(prefix, 0)?;
        self.step(&x, &mut caches, 0)?;
        let mut worst = 0f64;
        for (i, &t) in tokens.iter().enumerate() {
            let ids = Tensor::new(&[[t]], prefix.device())?;
            let l = self.step(&self.embed_at(&ids, p + i)?, &mut caches, p + i)?;
            let d = (l.squeeze(0)?.squeeze(0)? - full.get(0)?.get(i)?)?
                .abs()?
                .max_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            worst = worst.max(d);
        }
        Ok(worst)
    }

    /// Full recomputation of the logits for every step (the reference the
    /// KV cache is tested against): last-position logits after
    /// `prefix + prompt + generated[..i]`.
    pub fn recompute_logits(&self, prefix: &Tensor, tokens: &[u32]) -> Result<Tensor> {
        let ids = Tensor::new(tokens, prefix.device())?.unsqueeze(0)?;
        self.logits(prefix, &ids)
    }

    fn beam(
        &self,
        prefix: &Tensor,
        prompt: &[u32],
        max_new: usize,
        eos: Option<u32>,
        beams: usize,
    ) -> Result<Vec<u32>> {
        // Each hypothesis: (tokens, sum log-prob, finished). Recomputes each
        // step from scratch per beam: simple and exact, fine at decoder sizes
        // Mosaic's heads use.
        let mut hyps: Vec<(Vec<u32>, f64, bool)> = vec![(Vec::new(), 0.0, false)];
        // Placeholders already count among the prompt's positions.
        let p = if self.image_token.is_some() {
            0
        } else {
            prefix.dim(1)?
        };
        for _ in 0..max_new {
            if hyps.iter().all(|h| h.2) {
                break;
            }
            let mut cand = Vec::new();
            for (toks, score, done) in &hyps {
                if *done || p + prompt.len() + toks.len() >= self.max_len {
                    cand.push((toks.clone(), *score, true));
                    continue;
                }
                let all: Vec<u32> = prompt.iter().chain(toks.iter()).copied().collect();
                let row: Vec<f64> = if all.is_empty() {
                    let x = self.add_pos(prefix, 0)?;
                    let bias = causal_bias_after(0, p, x.dtype(), x.device())?;
                    let y = self.body.forward(&x, Some(&bias), None)?;
                    self.lm_head
                        .forward(&y.narrow(1, p - 1, 1)?)?
                        .flatten_all()?
                        .to_dtype(DType::F64)?
                        .to_vec1()?
                } else {
                    let l = self.recompute_logits(prefix, &all)?;
                    l.get(0)?
                        .get(all.len() - 1)?
                        .to_dtype(DType::F64)?
                        .to_vec1()?
                };
                let lp = log_softmax(&row);
                let mut idx: Vec<usize> = (0..lp.len()).collect();
                idx.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]).then(a.cmp(&b)));
                for &i in idx.iter().take(beams) {
                    let mut t = toks.clone();
                    t.push(i as u32);
                    cand.push((t, score + lp[i], Some(i as u32) == eos));
                }
            }
            cand.sort_by(|a, b| {
                (b.1 / b.0.len().max(1) as f64)
                    .total_cmp(&(a.1 / a.0.len().max(1) as f64))
                    .then(a.0.cmp(&b.0))
            });
            cand.truncate(beams);
            hyps = cand;
        }
        Ok(hyps.into_iter().next().map(|h| h.0).unwrap_or_default())
    }
}

fn log_softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    row.iter().map(|v| v - lse).collect()
}

/// SplitMix64 step: a tiny seeded generator for sampling.
fn next_f64(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E3779B97F4A7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

fn pick(row: &[f64], how: Decoding, rng: &mut u64) -> Result<u32> {
    let argmax = || {
        row.iter()
            .enumerate()
            .fold((0usize, f64::NEG_INFINITY), |a, (i, &v)| {
                if v > a.1 { (i, v) } else { a }
            })
            .0 as u32
    };
    // How many of the probability-sorted tokens stay candidates.
    type Keep = Box<dyn Fn(&[(usize, f64)]) -> usize>;
    let (keep, temperature): (Keep, f64) = match how {
        Decoding::Greedy | Decoding::Beam { .. } => return Ok(argmax()),
        Decoding::TopK { k, temperature, .. } => (Box::new(move |_| k.max(1)), temperature),
        Decoding::TopP { p, temperature, .. } => (
            Box::new(move |sorted: &[(usize, f64)]| {
                let mut acc = 0.0;
                for (i, (_, pr)) in sorted.iter().enumerate() {
                    acc += pr;
                    if acc >= p {
                        return i + 1;
                    }
                }
                sorted.len()
            }),
            temperature,
        ),
    };
    if temperature <= 0.0 {
        return Err(Error::InvalidInput {
            what: "temperature".into(),
            message: format!("{temperature} must be positive"),
        });
    }
    let scaled: Vec<f64> = row.iter().map(|v| v / temperature).collect();
    let probs: Vec<f64> = log_softmax(&scaled).into_iter().map(f64::exp).collect();
    let mut sorted: Vec<(usize, f64)> = probs.into_iter().enumerate().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let n = keep(&sorted).min(sorted.len());
    let total: f64 = sorted[..n].iter().map(|x| x.1).sum();
    let mut u = next_f64(rng) * total;
    for (i, pr) in &sorted[..n] {
        if u < *pr {
            return Ok(*i as u32);
        }
        u -= pr;
    }
    Ok(sorted[n - 1].0 as u32)
}
