//! BLIP: image–text matching / retrieval (`BlipForImageTextRetrieval`) and
//! captioning (`BlipForConditionalGeneration`), matching transformers 5.
//! A ViT without a pre-LayerNorm (fused qkv), and a BERT-style text model
//! whose layers cross-attend to the image tokens.

use std::path::Path;

use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::attention::{
    PreNormLayer, SelfAttention, padding_bias, patchify, scaled_dot_product,
};
use crate::nn::{Activation, LayerNorm, Linear};
use crate::nn::{CheckpointMode, Init, ParamStore};
use crate::pretrained::bert::l2_normalize;
use crate::pretrained::read_config;

/// `vision_config` of a BLIP `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BlipVisionConfig {
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP size.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// Input side.
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Activation.
    #[serde(default = "gelu")]
    pub hidden_act: String,
    /// LayerNorm epsilon.
    #[serde(default = "eps_v")]
    pub layer_norm_eps: f64,
}

/// `text_config` of a BLIP `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BlipTextConfig {
    /// Vocabulary.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Width of the image tokens cross-attended to.
    pub encoder_hidden_size: usize,
    /// MLP size.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// Longest text.
    pub max_position_embeddings: usize,
    /// Activation.
    #[serde(default = "gelu")]
    pub hidden_act: String,
    /// LayerNorm epsilon.
    #[serde(default = "eps_t")]
    pub layer_norm_eps: f64,
    /// Decoder start (`[DEC]`).
    #[serde(default = "bos")]
    pub bos_token_id: u32,
    /// `[SEP]`: the end of a caption.
    #[serde(default = "sep")]
    pub sep_token_id: u32,
    /// Padding id.
    #[serde(default)]
    pub pad_token_id: u32,
}

/// A BLIP `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BlipConfig {
    /// Vision tower.
    pub vision_config: BlipVisionConfig,
    /// Text model.
    pub text_config: BlipTextConfig,
    /// Joint (retrieval) embedding size.
    #[serde(default = "proj")]
    pub image_text_hidden_size: usize,
}

fn gelu() -> String {
    "gelu".into()
}
fn eps_v() -> f64 {
    1e-5
}
fn eps_t() -> f64 {
    1e-12
}
fn bos() -> u32 {
    30522
}
fn sep() -> u32 {
    102
}
fn proj() -> usize {
    256
}

/// BLIP's vision transformer.
#[derive(Debug, Clone)]
pub struct BlipVision {
    config: BlipVisionConfig,
    patch: Linear,
    cls: Tensor,
    pos: Tensor,
    layers: Vec<PreNormLayer>,
    post_norm: LayerNorm,
}

impl BlipVision {
    fn load(w: &ParamStore, p: &str, c: &BlipVisionConfig) -> Result<Self> {
        let h = c.hidden_size;
        if c.num_attention_heads == 0
            || h % c.num_attention_heads != 0
            || c.patch_size == 0
            || c.image_size % c.patch_size != 0
        {
            return Err(Error::Config {
                source_name: w.source().to_string(),
                message: "key `vision_config`: hidden_size must divide by num_attention_heads and image_size by patch_size".into(),
            });
        }
        let act = Activation::from_name(&c.hidden_act, &w.source())?;
        let ps = c.patch_size;
        let n = (c.image_size / ps).pow(2);
        let conv = w.get(
            &format!("{p}.embeddings.patch_embedding.weight"),
            &[h, 3, ps, ps],
            Init::Normal(0.02),
        )?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = format!("{p}.encoder.layers.{i}");
                let qkv_w = w.get(
                    &format!("{l}.self_attn.qkv.weight"),
                    &[3 * h, h],
                    Init::Normal(0.02),
                )?;
                let qkv_b = w.get(&format!("{l}.self_attn.qkv.bias"), &[3 * h], Init::Zeros)?;
                // Fused rows: q, k, v.
                let part = |j: usize| -> Result<Linear> {
                    Ok(Linear::new(
                        qkv_w.narrow(0, j * h, h)?,
                        Some(qkv_b.narrow(0, j * h, h)?),
                    ))
                };
                Ok(PreNormLayer {
                    norm1: LayerNorm::load(w, &format!("{l}.layer_norm1"), h, c.layer_norm_eps)?,
                    attn: SelfAttention {
                        q: part(0)?,
                        k: part(1)?,
                        v: part(2)?,
                        out: Linear::load(w, &format!("{l}.self_attn.projection"), h, h)?,
                        heads: c.num_attention_heads,
                    },
                    norm2: LayerNorm::load(w, &format!("{l}.layer_norm2"), h, c.layer_norm_eps)?,
                    fc1: Linear::load(w, &format!("{l}.mlp.fc1"), h, c.intermediate_size)?,
                    fc2: Linear::load(w, &format!("{l}.mlp.fc2"), c.intermediate_size, h)?,
                    act,
                })
            })
            .collect::<Result<_>>()?;
        Ok(BlipVision {
            patch: Linear::new(
                conv.reshape((h, 3 * ps * ps))?,
                Some(w.get(
                    &format!("{p}.embeddings.patch_embedding.bias"),
                    &[h],
                    Init::Zeros,
                )?),
            ),
            cls: w.get(
                &format!("{p}.embeddings.class_embedding"),
                &[1, 1, h],
                Init::Normal(0.02),
            )?,
            pos: w.get(
                &format!("{p}.embeddings.position_embedding"),
                &[1, n + 1, h],
                Init::Normal(0.02),
            )?,
            layers,
            post_norm: LayerNorm::load(w, &format!("{p}.post_layernorm"), h, c.layer_norm_eps)?,
            config: c.clone(),
        })
    }

    /// `[B, 1+N, H]`: post-LayerNormed tokens (the class token first).
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (b, ch, s1, s2) = pixels.dims4()?;
        if ch != 3 || s1 != c.image_size || s2 != c.image_size {
            return Err(Error::InvalidInput {
                what: "pixel_values".into(),
                message: format!(
                    "got {:?}, the model takes [B, 3, {}, {}]",
                    pixels.dims(),
                    c.image_size,
                    c.image_size
                ),
            });
        }
        let h = c.hidden_size;
        let patches = self.patch.forward(&patchify(pixels, c.patch_size)?)?;
        let cls = self.cls.broadcast_as((b, 1, h))?;
        let mut x = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.pos)?;
        for l in &self.layers {
            x = l.forward(&x, None)?;
        }
        self.post_norm.forward(&x)
    }
}

#[derive(Debug, Clone)]
struct PostNormAttention {
    attn: SelfAttention,
    norm: LayerNorm,
}

#[derive(Debug, Clone)]
struct TextLayer {
    self_attn: PostNormAttention,
    cross: PostNormAttention,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// Per-layer cached self-attention keys/values and cross-attention
/// keys/values (computed once from the image).
#[derive(Debug, Clone, Default)]
pub struct BlipDecoderCache {
    self_kv: Vec<Option<(Tensor, Tensor)>>,
    cross_kv: Vec<(Tensor, Tensor)>,
    len: usize,
}

/// BLIP's BERT-style text model with cross-attention.
#[derive(Debug, Clone)]
pub struct BlipText {
    config: BlipTextConfig,
    word: Tensor,
    pos: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<TextLayer>,
    act: Activation,
}

impl BlipText {
    fn load(w: &ParamStore, p: &str, c: &BlipTextConfig) -> Result<Self> {
        let h = c.hidden_size;
        if c.num_attention_heads == 0 || h % c.num_attention_heads != 0 {
            return Err(Error::Config {
                source_name: w.source().to_string(),
                message: format!(
                    "key `text_config.num_attention_heads`: {} does not divide hidden_size {h}",
                    c.num_attention_heads
                ),
            });
        }
        let eps = c.layer_norm_eps;
        let att = |l: &str, kv_in: usize| -> Result<PostNormAttention> {
            Ok(PostNormAttention {
                attn: SelfAttention {
                    q: Linear::load(w, &format!("{l}.self.query"), h, h)?,
                    k: Linear::load(w, &format!("{l}.self.key"), kv_in, h)?,
                    v: Linear::load(w, &format!("{l}.self.value"), kv_in, h)?,
                    out: Linear::load(w, &format!("{l}.output.dense"), h, h)?,
                    heads: c.num_attention_heads,
                },
                norm: LayerNorm::load(w, &format!("{l}.output.LayerNorm"), h, eps)?,
            })
        };
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = format!("{p}.encoder.layer.{i}");
                Ok(TextLayer {
                    self_attn: att(&format!("{l}.attention"), h)?,
                    cross: att(&format!("{l}.crossattention"), c.encoder_hidden_size)?,
                    inter: Linear::load(
                        w,
                        &format!("{l}.intermediate.dense"),
                        h,
                        c.intermediate_size,
                    )?,
                    out: Linear::load(w, &format!("{l}.output.dense"), c.intermediate_size, h)?,
                    out_norm: LayerNorm::load(w, &format!("{l}.output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(BlipText {
            word: w.get(
                &format!("{p}.embeddings.word_embeddings.weight"),
                &[c.vocab_size, h],
                Init::Normal(0.02),
            )?,
            pos: w.get(
                &format!("{p}.embeddings.position_embeddings.weight"),
                &[c.max_position_embeddings, h],
                Init::Normal(0.02),
            )?,
            emb_norm: LayerNorm::load(w, &format!("{p}.embeddings.LayerNorm"), h, eps)?,
            layers,
            act: Activation::from_name(&c.hidden_act, &w.source())?,
            config: c.clone(),
        })
    }

    fn embed(&self, ids: &Tensor, start: usize) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let c = &self.config;
        if start + t > c.max_position_embeddings {
            return Err(Error::InvalidInput {
                what: "input_ids".into(),
                message: format!(
                    "{} positions exceed max_position_embeddings {}",
                    start + t,
                    c.max_position_embeddings
                ),
            });
        }
        let ids = ids.to_dtype(DType::U32)?;
        let max = ids.max_all()?.to_scalar::<u32>()?;
        if max as usize >= c.vocab_size {
            return Err(Error::InvalidInput {
                what: "input_ids".into(),
                message: format!(
                    "token id {max} is outside the vocabulary of {}",
                    c.vocab_size
                ),
            });
        }
        let x = self
            .word
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, c.hidden_size))?
            .broadcast_add(&self.pos.narrow(0, start, t)?.unsqueeze(0)?)?;
        self.emb_norm.forward(&x)
    }

    fn mlp(&self, l: &TextLayer, x: &Tensor) -> Result<Tensor> {
        let m = l.out.forward(&self.act.forward(&l.inter.forward(x)?)?)?;
        l.out_norm.forward(&(m + x)?)
    }

    /// Bidirectional encoding `[B, T, H]` with a key-padding `mask`; with
    /// `image` `[B, N, Hv]` every layer also cross-attends to it.
    pub fn encode(
        &self,
        ids: &Tensor,
        mask: Option<&Tensor>,
        image: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut x = self.embed(ids, 0)?;
        let bias = mask.map(|m| padding_bias(m, x.dtype())).transpose()?;
        for l in &self.layers {
            let a = l.self_attn.attn.forward(&x, bias.as_ref())?;
            x = l.self_attn.norm.forward(&(a + &x)?)?;
            if let Some(img) = image {
                let a = l.cross.attn.forward_cross(&x, img, None)?;
                x = l.cross.norm.forward(&(a + &x)?)?;
            }
            x = self.mlp(l, &x)?;
        }
        Ok(x)
    }

    /// Causal decoding of `ids` `[B, T]` after the cached tokens, cross-
    /// attending to `image`; returns hidden states `[B, T, H]`.
    pub fn decode(
        &self,
        ids: &Tensor,
        image: &Tensor,
        cache: &mut BlipDecoderCache,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let start = cache.len;
        let mut x = self.embed(ids, start)?;
        if cache.cross_kv.is_empty() {
            for l in &self.layers {
                cache.cross_kv.push((
                    l.cross.attn.k.forward(image)?,
                    l.cross.attn.v.forward(image)?,
                ));
            }
            cache.self_kv = vec![None; self.layers.len()];
        }
        let s = start + t;
        let mask: Vec<f32> = (0..t * s)
            .map(|i| if i % s > start + i / s { f32::MIN } else { 0.0 })
            .collect();
        let causal = Tensor::from_vec(mask, (1, 1, t, s), ids.device())?.to_dtype(x.dtype())?;
        let heads = self.config.num_attention_heads;
        for (i, l) in self.layers.iter().enumerate() {
            let sa = &l.self_attn.attn;
            let (k, v) = (sa.k.forward(&x)?, sa.v.forward(&x)?);
            let (k, v) = match cache.self_kv[i].take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 1)?, Tensor::cat(&[&pv, &v], 1)?),
                None => (k, v),
            };
            let ctx = scaled_dot_product(&sa.q.forward(&x)?, &k, &v, heads, Some(&causal))?;
            cache.self_kv[i] = Some((k, v));
            x = l.self_attn.norm.forward(&(sa.out.forward(&ctx)? + &x)?)?;
            let ca = &l.cross.attn;
            let (ck, cv) = &cache.cross_kv[i];
            let ctx = scaled_dot_product(&ca.q.forward(&x)?, ck, cv, heads, None)?;
            x = l.cross.norm.forward(&(ca.out.forward(&ctx)? + &x)?)?;
            x = self.mlp(l, &x)?;
        }
        let _ = b;
        cache.len = s;
        Ok(x)
    }
}

#[derive(Debug, Clone)]
struct ItmHeads {
    vision_proj: Linear,
    text_proj: Linear,
    itm: Linear,
}

#[derive(Debug, Clone)]
struct LmHead {
    dense: Linear,
    norm: LayerNorm,
    decoder: Tensor,
    bias: Tensor,
}

/// A BLIP model: retrieval/ITM heads, a captioning head, or both.
#[derive(Debug)]
pub struct BlipModel {
    config: BlipConfig,
    vision: BlipVision,
    text: BlipText,
    itm: Option<ItmHeads>,
    lm: Option<LmHead>,
}

impl BlipModel {
    /// Loads `config.json` + weights of a `BlipForImageTextRetrieval`
    /// (`text_encoder.*`) or `BlipForConditionalGeneration`
    /// (`text_decoder.*`) folder (f32, CPU).
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        Self::load(dir, &super::inference_store(), CheckpointMode::Frozen)
    }

    /// Loads a folder's checkpoint into `store` (at its prefix, in its
    /// dtype and device), trainable or frozen.
    pub fn load(dir: &Path, store: &ParamStore, mode: CheckpointMode) -> Result<Self> {
        let config: BlipConfig = read_config(dir)?;
        super::attach(dir, store, mode, &[])?;
        let model = Self::new(config, store)?;
        store.check_unused(&["*position_ids"])?;
        Ok(model)
    }

    /// Builds from a config and weights.
    pub fn new(config: BlipConfig, w: &ParamStore) -> Result<Self> {
        let vision = BlipVision::load(w, "vision_model", &config.vision_config)?;
        let tc = &config.text_config;
        let (h, vh, p) = (
            tc.hidden_size,
            config.vision_config.hidden_size,
            config.image_text_hidden_size,
        );
        let (text, itm, lm) = if w.contains("text_encoder.embeddings.word_embeddings.weight") {
            let text = BlipText::load(w, "text_encoder", tc)?;
            let itm = ItmHeads {
                vision_proj: Linear::load(w, "vision_proj", vh, p)?,
                text_proj: Linear::load(w, "text_proj", h, p)?,
                itm: Linear::load(w, "itm_head", h, 2)?,
            };
            (text, Some(itm), None)
        } else if w.contains("text_decoder.bert.embeddings.word_embeddings.weight") {
            let text = BlipText::load(w, "text_decoder.bert", tc)?;
            let c = "text_decoder.cls.predictions";
            let bias = w.get(&format!("{c}.bias"), &[tc.vocab_size], Init::Zeros)?;
            // Tied to the word embeddings (and `bias`); save_pretrained
            // usually omits the copies. When present they are read as used
            // but not made parameters: one tensor, so fine-tuning keeps
            // them tied.
            for copy in ["decoder.weight", "decoder.bias"] {
                if w.contains(&format!("{c}.{copy}")) {
                    w.get_unchecked(&format!("{c}.{copy}"))?;
                }
            }
            let decoder = text.word.clone();
            let lm = LmHead {
                dense: Linear::load(w, &format!("{c}.transform.dense"), h, h)?,
                norm: LayerNorm::load(
                    w,
                    &format!("{c}.transform.LayerNorm"),
                    h,
                    tc.layer_norm_eps,
                )?,
                decoder,
                bias,
            };
            (text, None, Some(lm))
        } else {
            return Err(Error::Weight {
                checkpoint: w.source().to_string(),
                name: "text_encoder.* / text_decoder.bert.*".into(),
                message: "missing: neither a retrieval (text_encoder) nor a captioning (text_decoder) text model".into(),
            });
        };
        Ok(BlipModel {
            config,
            vision,
            text,
            itm,
            lm,
        })
    }

    /// The config.
    pub fn config(&self) -> &BlipConfig {
        &self.config
    }

    /// Vision tokens `[B, 1+N, Hv]`.
    pub fn image_tokens(&self, pixels: &Tensor) -> Result<Tensor> {
        self.vision.forward(pixels)
    }

    fn itm_heads(&self) -> Result<&ItmHeads> {
        self.itm.as_ref().ok_or_else(|| Error::InvalidInput {
            what: "model".into(),
            message: "this BLIP checkpoint has no retrieval / ITM heads (it is a captioning model)"
                .into(),
        })
    }

    /// Image–text matching logits `[B, 2]` (no match, match) for pairs
    /// (image b, text b). `input_ids` are used as given (the processor's
    /// `[CLS]` first).
    pub fn itm_logits(&self, input_ids: &Tensor, mask: &Tensor, pixels: &Tensor) -> Result<Tensor> {
        let heads = self.itm_heads()?;
        let img = self.image_tokens(pixels)?;
        let x = self.text.encode(input_ids, Some(mask), Some(&img))?;
        heads.itm.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)
    }

    /// Normalised retrieval embeddings of images `[B, P]`.
    pub fn image_embeds(&self, pixels: &Tensor) -> Result<Tensor> {
        let heads = self.itm_heads()?;
        let img = self.image_tokens(pixels)?;
        l2_normalize(
            &heads
                .vision_proj
                .forward(&img.narrow(1, 0, 1)?.squeeze(1)?)?,
        )
    }

    /// Normalised retrieval embeddings of texts `[B, P]` (text encoder
    /// without cross-attention, `[CLS]` row).
    pub fn text_embeds(&self, input_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let heads = self.itm_heads()?;
        let x = self.text.encode(input_ids, Some(mask), None)?;
        l2_normalize(&heads.text_proj.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?)
    }

    fn lm_head(&self) -> Result<&LmHead> {
        self.lm.as_ref().ok_or_else(|| Error::InvalidInput {
            what: "model".into(),
            message: "this BLIP checkpoint has no captioning head (it is a retrieval model)".into(),
        })
    }

    fn logits(&self, lm: &LmHead, x: &Tensor) -> Result<Tensor> {
        let h = lm
            .norm
            .forward(&self.text.act.forward(&lm.dense.forward(x)?)?)?;
        Ok(h.broadcast_matmul(&lm.decoder.t()?)?
            .broadcast_add(&lm.bias)?)
    }

    /// Teacher-forced caption logits `[B, T, vocab]` (ids as given).
    pub fn caption_logits(&self, input_ids: &Tensor, pixels: &Tensor) -> Result<Tensor> {
        let lm = self.lm_head()?;
        let img = self.image_tokens(pixels)?;
        let x = self
            .text
            .decode(input_ids, &img, &mut BlipDecoderCache::default())?;
        self.logits(lm, &x)
    }

    /// Greedy captions, as transformers' `generate`: the prompt's first id
    /// becomes `[DEC]` (bos) and its last (the tokenizer's `[SEP]`) is
    /// dropped; no prompt starts from `[DEC]` alone. Decoding stops at
    /// `[SEP]` once `min_new` tokens are out (before that `[SEP]` is banned)
    /// or after `max_new`. Returns per image the prefix fed plus the new ids.
    pub fn generate_greedy(
        &self,
        pixels: &Tensor,
        prompt: Option<&Tensor>,
        max_new: usize,
        min_new: usize,
    ) -> Result<Vec<Vec<u32>>> {
        let lm = self.lm_head()?;
        let tc = &self.config.text_config;
        let img = self.image_tokens(pixels)?;
        let b = img.dim(0)?;
        let prefixes: Vec<Vec<u32>> = match prompt {
            Some(p) => {
                let rows: Vec<Vec<u32>> = p.to_dtype(DType::U32)?.to_vec2()?;
                if rows.len() != b || rows.iter().any(|r| r.len() < 2) {
                    return Err(Error::InvalidInput {
                        what: "prompt".into(),
                        message: format!(
                            "need one prompt of ≥ 2 tokens per image ([CLS] … [SEP]); got {:?} for {b} images",
                            p.dims()
                        ),
                    });
                }
                rows.into_iter()
                    .map(|mut r| {
                        r[0] = tc.bos_token_id;
                        r.pop();
                        r
                    })
                    .collect()
            }
            None => vec![vec![tc.bos_token_id]; b],
        };
        let mut out = Vec::with_capacity(b);
        for (i, prefix) in prefixes.into_iter().enumerate() {
            let image = img.narrow(0, i, 1)?;
            let mut cache = BlipDecoderCache::default();
            let mut seq = prefix.clone();
            let mut next = Tensor::new(prefix.as_slice(), img.device())?.unsqueeze(0)?;
            for step in 0..max_new {
                let x = self.text.decode(&next, &image, &mut cache)?;
                let t = x.dim(1)?;
                let row: Vec<f32> = self
                    .logits(lm, &x.narrow(1, t - 1, 1)?)?
                    .flatten_all()?
                    .to_vec1()?;
                let mut best = (0usize, f32::NEG_INFINITY);
                for (j, &v) in row.iter().enumerate() {
                    if step < min_new && j as u32 == tc.sep_token_id {
                        continue;
                    }
                    if v > best.1 {
                        best = (j, v);
                    }
                }
                let id = best.0 as u32;
                seq.push(id);
                if id == tc.sep_token_id {
                    break;
                }
                next = Tensor::new(&[[id]], img.device())?;
            }
            out.push(seq);
        }
        Ok(out)
    }
}
