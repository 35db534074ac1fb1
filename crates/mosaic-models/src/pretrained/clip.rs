//! CLIP (and OpenCLIP in the Hugging Face layout): text and vision towers,
//! projections and the learned temperature, matching `transformers.CLIPModel`.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::attention::{CLIP_NAMES, PreNormLayer, causal_bias, padding_bias, patchify};
use crate::nn::{Activation, LayerNorm, Linear};
use crate::pretrained::bert::l2_normalize;
use crate::weights::Weights;

/// `text_config` of a CLIP `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClipTextConfig {
    /// Vocabulary.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// MLP size.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// Context length.
    pub max_position_embeddings: usize,
    /// Activation.
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// End-of-text id; 2 means "the largest id" (original CLIP checkpoints).
    #[serde(default = "two")]
    pub eos_token_id: u32,
}

/// `vision_config` of a CLIP `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClipVisionConfig {
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
    /// Channels.
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Activation.
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
}

/// A CLIP `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ClipConfig {
    /// Text tower.
    pub text_config: ClipTextConfig,
    /// Vision tower.
    pub vision_config: ClipVisionConfig,
    /// Joint embedding size.
    #[serde(default = "proj")]
    pub projection_dim: usize,
}

fn quick_gelu() -> String {
    "quick_gelu".into()
}
fn eps() -> f64 {
    1e-5
}
fn two() -> u32 {
    2
}
fn three() -> usize {
    3
}
fn proj() -> usize {
    512
}

/// A CLIP model.
#[derive(Debug)]
pub struct ClipModel {
    config: ClipConfig,
    tok: Tensor,
    tpos: Tensor,
    tlayers: Vec<PreNormLayer>,
    tnorm: LayerNorm,
    patch: Linear,
    cls: Tensor,
    vpos: Tensor,
    pre_norm: LayerNorm,
    vlayers: Vec<PreNormLayer>,
    post_norm: LayerNorm,
    text_proj: Linear,
    visual_proj: Linear,
    logit_scale: f64,
}

impl ClipModel {
    /// Loads `config.json` + `model.safetensors` (f32, CPU).
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        let file = dir.join("config.json");
        let text = std::fs::read_to_string(&file).map_err(|e| mosaic_core::Error::io(&file, e))?;
        let config: ClipConfig = serde_json::from_str(&text).map_err(|e| Error::Config {
            source_name: file.display().to_string(),
            message: e.to_string(),
        })?;
        let w = Weights::load(dir, &Device::Cpu, DType::F32)?;
        let model = Self::new(config, &w)?;
        w.check_unused(&["*position_ids"])?;
        Ok(model)
    }

    /// Builds from a config and weights.
    pub fn new(config: ClipConfig, w: &Weights) -> Result<Self> {
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
        let tact = Activation::from_name(&tc.hidden_act, w.source())?;
        let vact = Activation::from_name(&vc.hidden_act, w.source())?;
        let th = tc.hidden_size;
        let vh = vc.hidden_size;
        let (c, p) = (vc.num_channels, vc.patch_size);
        let n = (vc.image_size / p).pow(2);
        let conv = w.get(
            "vision_model.embeddings.patch_embedding.weight",
            &[vh, c, p, p],
        )?;
        let tlayers = PreNormLayer::load_stack(
            w,
            "text_model.encoder.layers",
            tc.num_hidden_layers,
            &CLIP_NAMES,
            th,
            tc.intermediate_size,
            tc.num_attention_heads,
            tc.layer_norm_eps,
            tact,
        )?;
        let vlayers = PreNormLayer::load_stack(
            w,
            "vision_model.encoder.layers",
            vc.num_hidden_layers,
            &CLIP_NAMES,
            vh,
            vc.intermediate_size,
            vc.num_attention_heads,
            vc.layer_norm_eps,
            vact,
        )?;
        let logit_scale = w
            .get("logit_scale", &[])?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        Ok(ClipModel {
            tok: w.get(
                "text_model.embeddings.token_embedding.weight",
                &[tc.vocab_size, th],
            )?,
            tpos: w.get(
                "text_model.embeddings.position_embedding.weight",
                &[tc.max_position_embeddings, th],
            )?,
            tlayers,
            tnorm: LayerNorm::load(w, "text_model.final_layer_norm", th, tc.layer_norm_eps)?,
            patch: Linear {
                weight: conv.reshape((vh, c * p * p))?,
                bias: None,
            },
            cls: w.get("vision_model.embeddings.class_embedding", &[vh])?,
            vpos: w.get(
                "vision_model.embeddings.position_embedding.weight",
                &[n + 1, vh],
            )?,
            // Sic: the checkpoint spells it "pre_layrnorm".
            pre_norm: LayerNorm::load(w, "vision_model.pre_layrnorm", vh, vc.layer_norm_eps)?,
            vlayers,
            post_norm: LayerNorm::load(w, "vision_model.post_layernorm", vh, vc.layer_norm_eps)?,
            text_proj: Linear {
                weight: w.get("text_projection.weight", &[config.projection_dim, th])?,
                bias: None,
            },
            visual_proj: Linear {
                weight: w.get("visual_projection.weight", &[config.projection_dim, vh])?,
                bias: None,
            },
            logit_scale,
            config,
        })
    }

    /// The config.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Text tower: `(last_hidden_state [B,T,H], pooled [B,H])`. The pooled
    /// token is the end-of-text token: the first `eos_token_id`, or (legacy
    /// `eos_token_id == 2`) the position of the largest id.
    pub fn text_features(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let (b, t) = input_ids.dims2()?;
        let tc = &self.config.text_config;
        if t > tc.max_position_embeddings {
            return Err(Error::InvalidInput {
                what: "input_ids".into(),
                message: format!(
                    "{t} tokens exceeds the context length {}",
                    tc.max_position_embeddings
                ),
            });
        }
        let ids = input_ids.to_dtype(DType::U32)?;
        let idv: Vec<Vec<u32>> = ids.to_vec2()?;
        if let Some(bad) = idv.iter().flatten().find(|&&i| i as usize >= tc.vocab_size) {
            return Err(Error::InvalidInput {
                what: "input_ids".into(),
                message: format!(
                    "token id {bad} is outside the vocabulary of {}",
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
        let mut bias = causal_bias(t, x.device())?;
        if let Some(m) = attention_mask {
            bias = bias.broadcast_add(&padding_bias(m)?)?;
        }
        for l in &self.tlayers {
            x = l.forward(&x, Some(&bias))?;
        }
        let x = self.tnorm.forward(&x)?;
        let mut rows = Vec::with_capacity(b);
        for (i, row) in idv.iter().enumerate() {
            let pos = if tc.eos_token_id == 2 {
                row.iter()
                    .enumerate()
                    .max_by_key(|(j, v)| (**v, std::cmp::Reverse(*j)))
                    .map(|(j, _)| j)
                    .unwrap_or(0)
            } else {
                row.iter()
                    .position(|&v| v == tc.eos_token_id)
                    .ok_or_else(|| Error::InvalidInput {
                        what: "input_ids".into(),
                        message: format!("row {i} has no end-of-text token {}", tc.eos_token_id),
                    })?
            };
            rows.push(x.get(i)?.get(pos)?);
        }
        Ok((x, Tensor::stack(&rows, 0)?))
    }

    /// Vision tower: `(last_hidden_state [B,1+N,H], pooled [B,H])`.
    pub fn vision_features(&self, pixels: &Tensor) -> Result<(Tensor, Tensor)> {
        let vc = &self.config.vision_config;
        let (b, c, s1, s2) = pixels.dims4()?;
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
        let h = vc.hidden_size;
        let patches = self.patch.forward(&patchify(pixels, vc.patch_size)?)?;
        let cls = self.cls.reshape((1, 1, h))?.broadcast_as((b, 1, h))?;
        let x = Tensor::cat(&[cls, patches], 1)?.broadcast_add(&self.vpos.unsqueeze(0)?)?;
        let mut x = self.pre_norm.forward(&x)?;
        for l in &self.vlayers {
            x = l.forward(&x, None)?;
        }
        let pooled = self.post_norm.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?;
        Ok((x, pooled))
    }

    /// Projected text embeddings `[B, P]` (not normalised).
    pub fn text_embeds(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.text_proj
            .forward(&self.text_features(input_ids, attention_mask)?.1)
    }

    /// Projected image embeddings `[B, P]` (not normalised).
    pub fn image_embeds(&self, pixels: &Tensor) -> Result<Tensor> {
        self.visual_proj.forward(&self.vision_features(pixels)?.1)
    }

    /// `logits_per_image [B_img, B_txt]` = exp(logit_scale) · cos.
    pub fn logits_per_image(&self, image_embeds: &Tensor, text_embeds: &Tensor) -> Result<Tensor> {
        let i = l2_normalize(image_embeds)?;
        let t = l2_normalize(text_embeds)?;
        Ok((i.matmul(&t.t()?)? * self.logit_scale.exp())?)
    }

    /// The learned log temperature.
    pub fn logit_scale(&self) -> f64 {
        self.logit_scale
    }
}
