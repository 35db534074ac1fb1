//! CLIP (and OpenCLIP in the Hugging Face layout): text and vision towers,
//! projections and the learned temperature, matching `transformers.CLIPModel`.

use std::path::Path;

use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::attention::{CLIP_NAMES, PreNormLayer, causal_bias, padding_bias, patchify};
use crate::nn::{Activation, LayerNorm, Linear};
use crate::nn::{CheckpointMode, Init, ParamStore};
use crate::pretrained::bert::l2_normalize;

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
    vision: ClipVisionTransformer,
    text_proj: Linear,
    visual_proj: Linear,
    logit_scale: Tensor,
}

impl ClipModel {
    /// Loads `config.json` + `model.safetensors` (f32, CPU).
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        Self::load(dir, &super::inference_store(), CheckpointMode::Frozen)
    }

    /// Loads a folder's checkpoint into `store` (at its prefix, in its
    /// dtype and device), trainable or frozen.
    pub fn load(dir: &Path, store: &ParamStore, mode: CheckpointMode) -> Result<Self> {
        let config: ClipConfig = crate::pretrained::read_config(dir)?;
        super::attach(dir, store, mode, &[])?;
        let model = Self::new(config, store)?;
        store.check_unused(&["*position_ids"])?;
        Ok(model)
    }

    /// Builds from a config and weights.
    pub fn new(config: ClipConfig, w: &ParamStore) -> Result<Self> {
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
        let tact = Activation::from_name(&tc.hidden_act, &w.source())?;
        let th = tc.hidden_size;
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
        // transformers' initial value: log(1 / 0.07).
        let logit_scale = w.get("logit_scale", &[], Init::Constant(2.6592))?;
        Ok(ClipModel {
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
            tlayers,
            tnorm: LayerNorm::load(w, "text_model.final_layer_norm", th, tc.layer_norm_eps)?,
            vision: {
                // The full model pools through the post-LayerNorm: required
                // here (read first, so the tower finds it).
                LayerNorm::load(
                    w,
                    "vision_model.post_layernorm",
                    vc.hidden_size,
                    vc.layer_norm_eps,
                )?;
                ClipVisionTransformer::load(w, "vision_model", vc)?
            },
            text_proj: w.linear("text_projection", th, config.projection_dim, false)?,
            visual_proj: w.linear(
                "visual_projection",
                vc.hidden_size,
                config.projection_dim,
                false,
            )?,
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
        let mut bias = causal_bias(t, x.dtype(), x.device())?;
        if let Some(m) = attention_mask {
            bias = bias.broadcast_add(&padding_bias(m, x.dtype())?)?;
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
        self.vision.forward(pixels)
    }

    /// The vision transformer alone.
    pub fn vision(&self) -> &ClipVisionTransformer {
        &self.vision
    }

    /// The text tower in the joint embedding space, from one forward:
    /// `(tokens [B,T,P], embeds [B,P])`, every final-LayerNormed token
    /// through `text_projection`; `embeds` (the end-of-text token's row)
    /// is [`ClipModel::text_embeds`].
    pub fn text_joint(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
    ) -> Result<(Tensor, Tensor)> {
        let (tokens, pooled) = self.text_features(input_ids, attention_mask)?;
        Ok((
            self.text_proj.forward(&tokens)?,
            self.text_proj.forward(&pooled)?,
        ))
    }

    /// The vision tower in the joint embedding space, from one forward:
    /// `(tokens [B,1+N,P], embeds [B,P])`, every token through the
    /// post-LayerNorm and `visual_projection`, so token 0 is
    /// [`ClipModel::image_embeds`].
    pub fn vision_joint(&self, pixels: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = self.vision.hidden_state(pixels, self.vision.layers.len())?;
        let norm = self
            .vision
            .post_norm
            .as_ref()
            .ok_or_else(|| Error::Weight {
                checkpoint: "vision tower".into(),
                name: "post_layernorm.weight".into(),
                message: "missing; the projected tokens need it".into(),
            })?;
        let tokens = self.visual_proj.forward(&norm.forward(&x)?)?;
        let embeds = tokens.narrow(1, 0, 1)?.squeeze(1)?;
        Ok((tokens, embeds))
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
        Ok(i.matmul(&t.t()?)?
            .broadcast_mul(&self.logit_scale.exp()?.reshape((1, 1))?)?)
    }

    /// The learned log temperature.
    pub fn logit_scale(&self) -> Result<f64> {
        Ok(self.logit_scale.to_dtype(DType::F64)?.to_scalar::<f64>()?)
    }
}

/// CLIP's vision transformer (`CLIPVisionTransformer`): patch embedding with
/// a class token, pre-LayerNorm, encoder layers, post-LayerNorm on the class
/// token. Also the vision tower of LLaVA-style models.
#[derive(Debug, Clone)]
pub struct ClipVisionTransformer {
    config: ClipVisionConfig,
    patch: Linear,
    cls: Tensor,
    pos: Tensor,
    pre_norm: LayerNorm,
    layers: Vec<PreNormLayer>,
    post_norm: Option<LayerNorm>,
}

impl ClipVisionTransformer {
    /// Loads the tower under `prefix` (e.g. `vision_model`).
    pub fn load(w: &ParamStore, prefix: &str, vc: &ClipVisionConfig) -> Result<Self> {
        if vc.num_attention_heads == 0 || vc.hidden_size % vc.num_attention_heads != 0 {
            return Err(Error::Config {
                source_name: w.source().to_string(),
                message: format!(
                    "key `vision_config.num_attention_heads`: {} does not divide hidden_size {}",
                    vc.num_attention_heads, vc.hidden_size
                ),
            });
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
        let act = Activation::from_name(&vc.hidden_act, &w.source())?;
        let h = vc.hidden_size;
        let (c, p) = (vc.num_channels, vc.patch_size);
        let n = (vc.image_size / p).pow(2);
        let conv = w.get(
            &format!("{prefix}.embeddings.patch_embedding.weight"),
            &[h, c, p, p],
            Init::Normal(0.02),
        )?;
        let post = format!("{prefix}.post_layernorm");
        Ok(ClipVisionTransformer {
            patch: Linear::new(conv.reshape((h, c * p * p))?, None),
            cls: w.get(
                &format!("{prefix}.embeddings.class_embedding"),
                &[h],
                Init::Normal(0.02),
            )?,
            pos: w.get(
                &format!("{prefix}.embeddings.position_embedding.weight"),
                &[n + 1, h],
                Init::Normal(0.02),
            )?,
            // Sic: the checkpoint spells it "pre_layrnorm".
            pre_norm: LayerNorm::load(w, &format!("{prefix}.pre_layrnorm"), h, vc.layer_norm_eps)?,
            layers: PreNormLayer::load_stack(
                w,
                &format!("{prefix}.encoder.layers"),
                vc.num_hidden_layers,
                &CLIP_NAMES,
                h,
                vc.intermediate_size,
                vc.num_attention_heads,
                vc.layer_norm_eps,
                act,
            )?,
            // LLaVA checkpoints may omit the (unused) post-LayerNorm.
            post_norm: if w.contains(&format!("{post}.weight")) {
                Some(LayerNorm::load(w, &post, h, vc.layer_norm_eps)?)
            } else {
                None
            },
            config: vc.clone(),
        })
    }

    /// The config.
    pub fn config(&self) -> &ClipVisionConfig {
        &self.config
    }

    /// Patches in one image (class token excluded).
    pub fn num_patches(&self) -> usize {
        (self.config.image_size / self.config.patch_size).pow(2)
    }

    /// Hidden states `[B, 1+N, H]` after `layers` encoder layers
    /// (`hidden_states[layers]` in transformers: 0 = the pre-LayerNormed
    /// embeddings, `num_hidden_layers` = the last layer's output).
    pub fn hidden_state(&self, pixels: &Tensor, layers: usize) -> Result<Tensor> {
        let vc = &self.config;
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
        if layers > self.layers.len() {
            return Err(Error::InvalidInput {
                what: "vision layer".into(),
                message: format!("{layers} > {} layers", self.layers.len()),
            });
        }
        let h = vc.hidden_size;
        let patches = self.patch.forward(&patchify(pixels, vc.patch_size)?)?;
        let cls = self.cls.reshape((1, 1, h))?.broadcast_as((b, 1, h))?;
        let x = Tensor::cat(&[cls, patches], 1)?.broadcast_add(&self.pos.unsqueeze(0)?)?;
        let mut x = self.pre_norm.forward(&x)?;
        for l in &self.layers[..layers] {
            x = l.forward(&x, None)?;
        }
        Ok(x)
    }

    /// `(last_hidden_state [B,1+N,H], pooled [B,H])`: pooled is the
    /// post-LayerNormed class token.
    pub fn forward(&self, pixels: &Tensor) -> Result<(Tensor, Tensor)> {
        let x = self.hidden_state(pixels, self.layers.len())?;
        let cls = x.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = match &self.post_norm {
            Some(n) => n.forward(&cls)?,
            None => {
                return Err(Error::Weight {
                    checkpoint: "vision tower".into(),
                    name: "post_layernorm.weight".into(),
                    message: "missing; the pooled output needs it".into(),
                });
            }
        };
        Ok((x, pooled))
    }
}
