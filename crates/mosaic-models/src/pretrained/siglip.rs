//! SigLIP: text and vision towers trained with the sigmoid loss, matching
//! `transformers.SiglipModel` (bidirectional text encoder pooled at the last
//! position, vision tower without a class token pooled by a multi-head
//! attention probe, learned temperature and bias).

use std::path::Path;

use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::attention::{CLIP_NAMES, PreNormLayer, patchify, scaled_dot_product};
use crate::nn::{Activation, LayerNorm, Linear};
use crate::nn::{CheckpointMode, Init, ParamStore};
use crate::pretrained::bert::l2_normalize;
use crate::pretrained::read_config;

/// `text_config` of a SigLIP `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SiglipTextConfig {
    /// Vocabulary.
    #[serde(default = "vocab")]
    pub vocab_size: usize,
    /// Hidden size.
    #[serde(default = "hidden")]
    pub hidden_size: usize,
    /// MLP size.
    #[serde(default = "inter")]
    pub intermediate_size: usize,
    /// Layers.
    #[serde(default = "layers")]
    pub num_hidden_layers: usize,
    /// Heads.
    #[serde(default = "layers")]
    pub num_attention_heads: usize,
    /// Context length (texts are padded to it).
    #[serde(default = "context")]
    pub max_position_embeddings: usize,
    /// Activation.
    #[serde(default = "act")]
    pub hidden_act: String,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// Output size of the text head (defaults to `hidden_size`).
    #[serde(default)]
    pub projection_size: Option<usize>,
}

/// `vision_config` of a SigLIP `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SiglipVisionConfig {
    /// Hidden size.
    #[serde(default = "hidden")]
    pub hidden_size: usize,
    /// MLP size.
    #[serde(default = "inter")]
    pub intermediate_size: usize,
    /// Layers.
    #[serde(default = "layers")]
    pub num_hidden_layers: usize,
    /// Heads.
    #[serde(default = "layers")]
    pub num_attention_heads: usize,
    /// Channels.
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Input side.
    #[serde(default = "image")]
    pub image_size: usize,
    /// Patch side.
    #[serde(default = "patch")]
    pub patch_size: usize,
    /// Activation.
    #[serde(default = "act")]
    pub hidden_act: String,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// Whether the attention-pooling head exists.
    #[serde(default = "yes")]
    pub vision_use_head: bool,
}

/// A SigLIP `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SiglipConfig {
    /// Text tower.
    pub text_config: SiglipTextConfig,
    /// Vision tower.
    pub vision_config: SiglipVisionConfig,
}

fn vocab() -> usize {
    32000
}
fn hidden() -> usize {
    768
}
fn inter() -> usize {
    3072
}
fn layers() -> usize {
    12
}
fn context() -> usize {
    64
}
fn act() -> String {
    "gelu_pytorch_tanh".into()
}
fn eps() -> f64 {
    1e-6
}
fn three() -> usize {
    3
}
fn image() -> usize {
    224
}
fn patch() -> usize {
    16
}
fn yes() -> bool {
    true
}

/// The multi-head attention pooling head: a learned probe attends over the
/// patches (`torch.nn.MultiheadAttention` with packed in-projections), then
/// a residual MLP.
#[derive(Debug, Clone)]
struct AttentionPool {
    probe: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl AttentionPool {
    fn load(w: &ParamStore, p: &str, c: &SiglipVisionConfig, act: Activation) -> Result<Self> {
        let h = c.hidden_size;
        let in_w = w.get(
            &format!("{p}.attention.in_proj_weight"),
            &[3 * h, h],
            Init::Normal(0.02),
        )?;
        let in_b = w.get(
            &format!("{p}.attention.in_proj_bias"),
            &[3 * h],
            Init::Zeros,
        )?;
        let part = |i: usize| -> Result<Linear> {
            Ok(Linear::new(
                in_w.narrow(0, i * h, h)?,
                Some(in_b.narrow(0, i * h, h)?),
            ))
        };
        Ok(AttentionPool {
            probe: w.get(&format!("{p}.probe"), &[1, 1, h], Init::Normal(0.02))?,
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            out: Linear::load(w, &format!("{p}.attention.out_proj"), h, h)?,
            heads: c.num_attention_heads,
            norm: LayerNorm::load(w, &format!("{p}.layernorm"), h, c.layer_norm_eps)?,
            fc1: Linear::load(w, &format!("{p}.mlp.fc1"), h, c.intermediate_size)?,
            fc2: Linear::load(w, &format!("{p}.mlp.fc2"), c.intermediate_size, h)?,
            act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h) = x.dims3()?;
        let probe = self.probe.broadcast_as((b, 1, h))?;
        let ctx = scaled_dot_product(
            &self.q.forward(&probe)?,
            &self.k.forward(x)?,
            &self.v.forward(x)?,
            self.heads,
            None,
        )?;
        let y = self.out.forward(&ctx)?;
        let m = self.fc2.forward(
            &self
                .act
                .forward(&self.fc1.forward(&self.norm.forward(&y)?)?)?,
        )?;
        Ok((y + m)?.squeeze(1)?)
    }
}

/// A SigLIP model.
#[derive(Debug)]
pub struct SiglipModel {
    config: SiglipConfig,
    tok: Tensor,
    tpos: Tensor,
    tlayers: Vec<PreNormLayer>,
    tnorm: LayerNorm,
    thead: Linear,
    patch: Linear,
    vpos: Tensor,
    vlayers: Vec<PreNormLayer>,
    post_norm: LayerNorm,
    vhead: Option<AttentionPool>,
    logit_scale: Tensor,
    logit_bias: Tensor,
}

/// Outputs of [`SiglipModel::vision_features`].
#[derive(Debug, Clone)]
pub struct SiglipVisionOutput {
    /// `[B, N, H]` after the post-LayerNorm.
    pub last_hidden_state: Tensor,
    /// `[B, H]` from the attention-pooling head, when the model has one.
    pub pooler_output: Option<Tensor>,
}

impl SiglipModel {
    /// Loads `config.json` + weights (f32, CPU).
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        Self::load(dir, &super::inference_store(), CheckpointMode::Frozen)
    }

    /// Loads a folder's checkpoint into `store` (at its prefix, in its
    /// dtype and device), trainable or frozen.
    pub fn load(dir: &Path, store: &ParamStore, mode: CheckpointMode) -> Result<Self> {
        let config: SiglipConfig = read_config(dir)?;
        super::attach(dir, store, mode, &[])?;
        let model = Self::new(config, store)?;
        store.check_unused(&["*position_ids"])?;
        Ok(model)
    }

    /// Builds from a config and weights named as in `SiglipModel`.
    pub fn new(config: SiglipConfig, w: &ParamStore) -> Result<Self> {
        let (tc, vc) = (&config.text_config, &config.vision_config);
        for (name, h, heads) in [
            ("text_config", tc.hidden_size, tc.num_attention_heads),
            ("vision_config", vc.hidden_size, vc.num_attention_heads),
        ] {
            if heads == 0 || h % heads != 0 {
                return Err(Error::Config {
                    source_name: w.source().to_string(),
                    message: format!(
                        "key `{name}.num_attention_heads`: {heads} does not divide hidden_size {h}"
                    ),
                });
            }
        }
        if vc.patch_size == 0 || vc.image_size % vc.patch_size != 0 {
            return Err(Error::Config {
                source_name: w.source().to_string(),
                message: format!(
                    "key `vision_config.patch_size`: {} does not divide image_size {}",
                    vc.patch_size, vc.image_size
                ),
            });
        }
        let tact = Activation::from_name(&tc.hidden_act, &w.source())?;
        let vact = Activation::from_name(&vc.hidden_act, &w.source())?;
        let (th, vh) = (tc.hidden_size, vc.hidden_size);
        let (c, p) = (vc.num_channels, vc.patch_size);
        let n = (vc.image_size / p).pow(2);
        let conv = w.get(
            "vision_model.embeddings.patch_embedding.weight",
            &[vh, c, p, p],
            Init::Normal(0.02),
        )?;

        Ok(SiglipModel {
            tok: w.get(
                "text_model.embeddings.token_embedding.weight",
                &[tc.vocab_size, th],
                Init::Normal(0.02),
            )?,
            tpos: w.get(
                "text_model.embeddings.position_embedding.weight",
                &[tc.max_position_embeddings, th],
                Init::Normal(0.02),
            )?,
            tlayers: PreNormLayer::load_stack(
                w,
                "text_model.encoder.layers",
                tc.num_hidden_layers,
                &CLIP_NAMES,
                th,
                tc.intermediate_size,
                tc.num_attention_heads,
                tc.layer_norm_eps,
                tact,
            )?,
            tnorm: LayerNorm::load(w, "text_model.final_layer_norm", th, tc.layer_norm_eps)?,
            thead: Linear::load(w, "text_model.head", th, tc.projection_size.unwrap_or(th))?,
            patch: Linear::new(
                conv.reshape((vh, c * p * p))?,
                Some(w.get(
                    "vision_model.embeddings.patch_embedding.bias",
                    &[vh],
                    Init::Zeros,
                )?),
            ),
            vpos: w.get(
                "vision_model.embeddings.position_embedding.weight",
                &[n, vh],
                Init::Normal(0.02),
            )?,
            vlayers: PreNormLayer::load_stack(
                w,
                "vision_model.encoder.layers",
                vc.num_hidden_layers,
                &CLIP_NAMES,
                vh,
                vc.intermediate_size,
                vc.num_attention_heads,
                vc.layer_norm_eps,
                vact,
            )?,
            post_norm: LayerNorm::load(w, "vision_model.post_layernorm", vh, vc.layer_norm_eps)?,
            vhead: if vc.vision_use_head {
                Some(AttentionPool::load(w, "vision_model.head", vc, vact)?)
            } else {
                None
            },
            // transformers' initial values: log 10 and -10.
            logit_scale: w.get("logit_scale", &[1], Init::Constant(10f64.ln()))?,
            logit_bias: w.get("logit_bias", &[1], Init::Constant(-10.0))?,
            config,
        })
    }

    /// The config.
    pub fn config(&self) -> &SiglipConfig {
        &self.config
    }

    /// The learned log temperature.
    pub fn logit_scale(&self) -> Result<f64> {
        Ok(self
            .logit_scale
            .to_dtype(DType::F64)?
            .flatten_all()?
            .get(0)?
            .to_scalar::<f64>()?)
    }

    /// The learned logit bias.
    pub fn logit_bias(&self) -> Result<f64> {
        Ok(self
            .logit_bias
            .to_dtype(DType::F64)?
            .flatten_all()?
            .get(0)?
            .to_scalar::<f64>()?)
    }

    /// Text tower: `(last_hidden_state [B,T,H], pooled [B,P])`; pooled is the
    /// head applied to the last position (SigLIP pads every text to the
    /// context length and attends without a mask).
    pub fn text_features(&self, input_ids: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t) = input_ids.dims2()?;
        let tc = &self.config.text_config;
        if t == 0 || t > tc.max_position_embeddings {
            return Err(Error::InvalidInput {
                what: "input_ids".into(),
                message: format!(
                    "{t} tokens; the model takes 1 to {}",
                    tc.max_position_embeddings
                ),
            });
        }
        let ids = input_ids.to_dtype(DType::U32)?;
        let max = ids.max_all()?.to_scalar::<u32>()?;
        if max as usize >= tc.vocab_size {
            return Err(Error::InvalidInput {
                what: "input_ids".into(),
                message: format!(
                    "token id {max} is outside the vocabulary of {}",
                    tc.vocab_size
                ),
            });
        }
        let h = tc.hidden_size;
        let mut x = self
            .tok
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, h))?
            .broadcast_add(&self.tpos.narrow(0, 0, t)?.unsqueeze(0)?)?;
        for l in &self.tlayers {
            x = l.forward(&x, None)?;
        }
        let x = self.tnorm.forward(&x)?;
        let pooled = self.thead.forward(&x.narrow(1, t - 1, 1)?.squeeze(1)?)?;
        Ok((x, pooled))
    }

    /// Vision tower.
    pub fn vision_features(&self, pixels: &Tensor) -> Result<SiglipVisionOutput> {
        let vc = &self.config.vision_config;
        let (_, c, s1, s2) = pixels.dims4()?;
        if c != vc.num_channels || s1 != vc.image_size || s2 != vc.image_size {
            return Err(Error::InvalidInput {
                what: "pixel_values".into(),
                message: format!(
                    "got {:?}, the model takes [B, {}, {}, {}]",
                    pixels.dims(),
                    vc.num_channels,
                    vc.image_size,
                    vc.image_size
                ),
            });
        }
        let mut x = self
            .patch
            .forward(&patchify(pixels, vc.patch_size)?)?
            .broadcast_add(&self.vpos.unsqueeze(0)?)?;
        for l in &self.vlayers {
            x = l.forward(&x, None)?;
        }
        let x = self.post_norm.forward(&x)?;
        let pooled = match &self.vhead {
            Some(head) => Some(head.forward(&x)?),
            None => None,
        };
        Ok(SiglipVisionOutput {
            last_hidden_state: x,
            pooler_output: pooled,
        })
    }

    /// Text embeddings `[B, P]` (not normalised).
    pub fn text_embeds(&self, input_ids: &Tensor) -> Result<Tensor> {
        Ok(self.text_features(input_ids)?.1)
    }

    /// Image embeddings `[B, H]` (not normalised): the pooling head's output.
    pub fn image_embeds(&self, pixels: &Tensor) -> Result<Tensor> {
        self.vision_features(pixels)?
            .pooler_output
            .ok_or_else(|| Error::InvalidInput {
                what: "model".into(),
                message: "this SigLIP vision tower has no pooling head (vision_use_head = false)"
                    .into(),
            })
    }

    /// `logits_per_image [B_img, B_txt]` = exp(logit_scale) · cos + logit_bias.
    pub fn logits_per_image(&self, image_embeds: &Tensor, text_embeds: &Tensor) -> Result<Tensor> {
        let i = l2_normalize(image_embeds)?;
        let t = l2_normalize(text_embeds)?;
        Ok(i.matmul(&t.t()?)?
            .broadcast_mul(&self.logit_scale.exp()?.reshape((1, 1))?)?
            .broadcast_add(&self.logit_bias.reshape((1, 1))?)?)
    }
}
