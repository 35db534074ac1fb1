//! Llama-family causal language model (RMSNorm, rotary positions, grouped
//! query attention, SwiGLU MLP) with a KV cache, matching
//! `transformers.LlamaForCausalLM`; the language model of LLaVA.

use candle_core::{D, DType, Device, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::{Activation, Linear, RmsNorm, softmax_last_dim};
use crate::nn::{Init, ParamStore};

/// `rope_parameters` (transformers ≥ 5) / `rope_scaling`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RopeParameters {
    /// Base of the rotary frequencies.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Only `default` is supported.
    #[serde(default)]
    pub rope_type: Option<String>,
}

/// A Llama `config.json` (or LLaVA's `text_config`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP size.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Head size; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Longest sequence.
    #[serde(default = "max_pos")]
    pub max_position_embeddings: usize,
    /// RMSNorm epsilon.
    #[serde(default = "rms_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base (transformers < 5).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Rotary parameters (transformers ≥ 5).
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// Legacy rotary scaling; anything but null is refused.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// MLP activation.
    #[serde(default = "silu")]
    pub hidden_act: String,
    /// Whether the output head shares the input embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v/o.
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases in the MLP.
    #[serde(default)]
    pub mlp_bias: bool,
}

fn max_pos() -> usize {
    2048
}
fn rms_eps() -> f64 {
    1e-6
}
fn silu() -> String {
    "silu".into()
}

#[derive(Debug, Clone)]
struct Layer {
    norm1: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    norm2: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Keys and values of every layer for the tokens seen so far.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A Llama causal LM.
#[derive(Debug)]
pub struct LlamaModel {
    config: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Tensor,
    act: Activation,
    kv_heads: usize,
    head_dim: usize,
    inv_freq: Vec<f64>,
}

fn lin(w: &ParamStore, p: &str, i: usize, o: usize, bias: bool) -> Result<Linear> {
    w.linear(p, i, o, bias)
}

impl LlamaModel {
    /// Builds from weights: the decoder under `model_prefix` (e.g. `model`)
    /// and the output head at `lm_head` (ignored when tied).
    pub fn new(
        config: LlamaConfig,
        w: &ParamStore,
        model_prefix: &str,
        lm_head: &str,
    ) -> Result<Self> {
        let src = || w.source().to_string();
        let (h, nh) = (config.hidden_size, config.num_attention_heads);
        let kvh = config.num_key_value_heads.unwrap_or(nh);
        if nh == 0 || kvh == 0 || nh % kvh != 0 {
            return Err(Error::Config {
                source_name: src(),
                message: format!(
                    "key `num_key_value_heads`: {kvh} must divide num_attention_heads {nh}"
                ),
            });
        }
        let hd = config.head_dim.unwrap_or(h / nh);
        if hd == 0 || hd % 2 != 0 {
            return Err(Error::Config {
                source_name: src(),
                message: format!("key `head_dim`: {hd} must be even and non-zero"),
            });
        }
        if config.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(Error::Config {
                source_name: src(),
                message: "key `rope_scaling`: scaled rotary embeddings are not supported".into(),
            });
        }
        let rp = config.rope_parameters.clone();
        if let Some(t) = rp.as_ref().and_then(|r| r.rope_type.as_deref())
            && t != "default"
        {
            return Err(Error::Config {
                source_name: src(),
                message: format!(
                    "key `rope_parameters.rope_type`: `{t}` is not supported (only `default`)"
                ),
            });
        }
        let theta = rp
            .and_then(|r| r.rope_theta)
            .or(config.rope_theta)
            .unwrap_or(10000.0);
        let inv_freq = (0..hd / 2)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / hd as f64))
            .collect();
        let act = Activation::from_name(&config.hidden_act, &w.source())?;
        let rms = |p: String| -> Result<RmsNorm> { RmsNorm::load(w, &p, h, config.rms_norm_eps) };
        let (ab, mb, inter) = (
            config.attention_bias,
            config.mlp_bias,
            config.intermediate_size,
        );
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let p = format!("{model_prefix}.layers.{i}");
                Ok(Layer {
                    norm1: rms(format!("{p}.input_layernorm"))?,
                    q: lin(w, &format!("{p}.self_attn.q_proj"), h, nh * hd, ab)?,
                    k: lin(w, &format!("{p}.self_attn.k_proj"), h, kvh * hd, ab)?,
                    v: lin(w, &format!("{p}.self_attn.v_proj"), h, kvh * hd, ab)?,
                    o: lin(w, &format!("{p}.self_attn.o_proj"), nh * hd, h, ab)?,
                    norm2: rms(format!("{p}.post_attention_layernorm"))?,
                    gate: lin(w, &format!("{p}.mlp.gate_proj"), h, inter, mb)?,
                    up: lin(w, &format!("{p}.mlp.up_proj"), h, inter, mb)?,
                    down: lin(w, &format!("{p}.mlp.down_proj"), inter, h, mb)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = w.get(
            &format!("{model_prefix}.embed_tokens.weight"),
            &[config.vocab_size, h],
            Init::Normal(0.02),
        )?;
        let lm_head = if config.tie_word_embeddings {
            embed.clone()
        } else {
            w.get(
                &format!("{lm_head}.weight"),
                &[config.vocab_size, h],
                Init::Normal(0.02),
            )?
        };
        Ok(LlamaModel {
            norm: rms(format!("{model_prefix}.norm"))?,
            embed,
            layers,
            lm_head,
            act,
            kv_heads: kvh,
            head_dim: hd,
            inv_freq,
            config,
        })
    }

    /// The config.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Token embeddings `[B, T, H]`; ids outside the vocabulary are refused.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let ids = ids.to_dtype(DType::U32)?;
        let max = ids.max_all()?.to_scalar::<u32>()?;
        if max as usize >= self.config.vocab_size {
            return Err(Error::InvalidInput {
                what: "input_ids".into(),
                message: format!(
                    "token id {max} is outside the vocabulary of {}",
                    self.config.vocab_size
                ),
            });
        }
        Ok(self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((
            b,
            t,
            self.config.hidden_size,
        ))?)
    }

    /// `[T, head_dim]` cos and sin for positions `start..start+t`
    /// (frequencies repeated over both halves: the rotate-half convention).
    fn rope(&self, start: usize, t: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let hd = self.head_dim;
        let mut cos = Vec::with_capacity(t * hd);
        let mut sin = Vec::with_capacity(t * hd);
        for p in start..start + t {
            for _half in 0..2 {
                for f in &self.inv_freq {
                    // f32 like transformers: angle = f32(pos) · f32(inv_freq).
                    let a = p as f32 * *f as f32;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
        Ok((
            Tensor::from_vec(cos, (t, hd), device)?,
            Tensor::from_vec(sin, (t, hd), device)?,
        ))
    }

    /// Runs `embeds` `[B, T, H]` after the cached tokens; returns logits
    /// `[B, T, vocab]` and extends the cache.
    pub fn forward_embeds(&self, embeds: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (b, t, _) = embeds.dims3()?;
        let start = cache.len;
        if start + t > self.config.max_position_embeddings {
            return Err(Error::InvalidInput {
                what: "sequence".into(),
                message: format!(
                    "{} positions exceed max_position_embeddings {}",
                    start + t,
                    self.config.max_position_embeddings
                ),
            });
        }
        if cache.layers.is_empty() {
            cache.layers = vec![None; self.layers.len()];
        }
        let dev = embeds.device();
        let (cos, sin) = self.rope(start, t, dev)?;
        let (cos, sin) = (
            cos.reshape((1, 1, t, self.head_dim))?
                .to_dtype(embeds.dtype())?,
            sin.reshape((1, 1, t, self.head_dim))?
                .to_dtype(embeds.dtype())?,
        );
        let s = start + t;
        let mask: Vec<f32> = (0..t * s)
            .map(|i| {
                if i % s > start + i / s {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (1, 1, t, s), dev)?.to_dtype(embeds.dtype())?;
        let (nh, kvh, hd) = (
            self.config.num_attention_heads,
            self.kv_heads,
            self.head_dim,
        );
        let rep = nh / kvh;
        let mut x = embeds.clone();
        for (l, slot) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let hn = l.norm1.forward(&x)?;
            let split = |y: Tensor, heads: usize| -> Result<Tensor> {
                Ok(y.reshape((b, t, heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = rotate(&split(l.q.forward(&hn)?, nh)?, &cos, &sin)?;
            let k = rotate(&split(l.k.forward(&hn)?, kvh)?, &cos, &sin)?;
            let v = split(l.v.forward(&hn)?, kvh)?;
            let (k, v) = match slot.take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            *slot = Some((k.clone(), v.clone()));
            let expand = |y: &Tensor| -> Result<Tensor> {
                if rep == 1 {
                    return Ok(y.clone());
                }
                Ok(y.unsqueeze(2)?
                    .broadcast_as((b, kvh, rep, s, hd))?
                    .reshape((b, nh, s, hd))?)
            };
            let (k, v) = (expand(&k)?, expand(&v)?);
            let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?.broadcast_add(&mask)?;
            let ctx = softmax_last_dim(&scores)?
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, t, nh * hd))?;
            x = (x + l.o.forward(&ctx)?)?;
            let hn = l.norm2.forward(&x)?;
            let m = l
                .down
                .forward(&(self.act.forward(&l.gate.forward(&hn)?)? * l.up.forward(&hn)?)?)?;
            x = (x + m)?;
        }
        cache.len = s;
        let x = self.norm.forward(&x)?;
        Ok(x.broadcast_matmul(&self.lm_head.t()?)?)
    }

    /// Greedy decoding after a prompt given as embeddings `[1, T, H]`:
    /// up to `max_new` tokens, stopping at `eos` once `min_new` tokens are
    /// out (before that `eos` is banned, as transformers'
    /// `min_new_tokens`). Returns the new ids and each step's raw logits.
    pub fn generate_greedy(
        &self,
        prompt_embeds: &Tensor,
        max_new: usize,
        min_new: usize,
        eos: Option<u32>,
    ) -> Result<(Vec<u32>, Vec<Vec<f32>>)> {
        let mut cache = KvCache::default();
        let mut logits = self.forward_embeds(prompt_embeds, &mut cache)?;
        let mut ids = Vec::new();
        let mut steps = Vec::new();
        for step in 0..max_new {
            let t = logits.dim(1)?;
            let row: Vec<f32> = logits.get(0)?.get(t - 1)?.to_dtype(DType::F32)?.to_vec1()?;
            let mut best = (0usize, f32::NEG_INFINITY);
            for (i, &v) in row.iter().enumerate() {
                if step < min_new && Some(i as u32) == eos {
                    continue;
                }
                if v > best.1 {
                    best = (i, v);
                }
            }
            steps.push(row);
            let id = best.0 as u32;
            ids.push(id);
            if Some(id) == eos {
                break;
            }
            let next = self.embed(&Tensor::new(&[[id]], prompt_embeds.device())?)?;
            logits = self.forward_embeds(&next, &mut cache)?;
        }
        Ok((ids, steps))
    }
}

/// Rotary embedding, rotate-half convention: `x·cos + rotate_half(x)·sin`.
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let hd = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, hd / 2)?;
    let x2 = x.narrow(D::Minus1, hd / 2, hd / 2)?;
    let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(cos)? + rot.broadcast_mul(sin)?)?)
}
