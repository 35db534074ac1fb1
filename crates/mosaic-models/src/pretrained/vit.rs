//! ViT image encoders in the Hugging Face layout (`ViTModel`): patch
//! embedding, class token, learned positions, pre-norm layers, final
//! LayerNorm and a tanh pooler.

use std::path::Path;

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::attention::{PreNormLayer, VIT_NAMES, patchify};
use crate::nn::{Activation, LayerNorm, Linear};
use crate::nn::{CheckpointMode, Init, ParamStore};

/// The `config.json` keys ViT uses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct VitConfig {
    /// Hidden size.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Heads.
    pub num_attention_heads: usize,
    /// MLP size.
    pub intermediate_size: usize,
    /// Input side.
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Channels.
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Activation.
    #[serde(default = "gelu")]
    pub hidden_act: String,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
}

fn three() -> usize {
    3
}
fn gelu() -> String {
    "gelu".into()
}
fn eps() -> f64 {
    1e-12
}

/// A ViT encoder.
#[derive(Debug)]
pub struct VitModel {
    config: VitConfig,
    patch: Linear,
    cls: Tensor,
    pos: Tensor,
    layers: Vec<PreNormLayer>,
    norm: LayerNorm,
    pooler: Option<Linear>,
}

/// Outputs of [`VitModel::forward`].
#[derive(Debug, Clone)]
pub struct VitOutput {
    /// `[B, 1 + N, H]` after the final LayerNorm.
    pub last_hidden_state: Tensor,
    /// `[B, H]`: `tanh(W h_cls + b)` when the checkpoint has a pooler.
    pub pooler_output: Option<Tensor>,
}

impl VitModel {
    /// Loads `config.json` + `model.safetensors` (f32, CPU).
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        Self::load(dir, &super::inference_store(), CheckpointMode::Frozen)
    }

    /// Loads a folder's checkpoint into `store` (at its prefix, in its
    /// dtype and device), trainable or frozen.
    pub fn load(dir: &Path, store: &ParamStore, mode: CheckpointMode) -> Result<Self> {
        let config: VitConfig = crate::pretrained::read_config(dir)?;
        super::attach(dir, store, mode, &["vit."])?;
        let model = Self::new(config, store)?;
        store.check_unused(&["*position_ids"])?;
        Ok(model)
    }

    /// Builds from a config and weights.
    pub fn new(config: VitConfig, w: &ParamStore) -> Result<Self> {
        let h = config.hidden_size;
        if config.num_attention_heads == 0
            || h % config.num_attention_heads != 0
            || config.patch_size == 0
            || config.image_size % config.patch_size != 0
        {
            return Err(Error::Config {
                source_name: w.source().to_string(),
                message:
                    "hidden_size must divide by num_attention_heads and image_size by patch_size"
                        .into(),
            });
        }
        let act = Activation::from_name(&config.hidden_act, &w.source())?;
        let (c, p) = (config.num_channels, config.patch_size);
        let n = (config.image_size / p).pow(2);
        let conv_w = w.get(
            "embeddings.patch_embeddings.projection.weight",
            &[h, c, p, p],
            Init::Normal(0.02),
        )?;
        let patch = Linear::new(
            conv_w.reshape((h, c * p * p))?,
            Some(w.get(
                "embeddings.patch_embeddings.projection.bias",
                &[h],
                Init::Zeros,
            )?),
        );
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                PreNormLayer::load(
                    w,
                    &format!("encoder.layer.{i}"),
                    &VIT_NAMES,
                    h,
                    config.intermediate_size,
                    config.num_attention_heads,
                    config.layer_norm_eps,
                    act,
                )
            })
            .collect::<Result<_>>()?;
        let pooler = if w.contains("pooler.dense.weight") {
            Some(Linear::load(w, "pooler.dense", h, h)?)
        } else {
            None
        };
        Ok(VitModel {
            patch,
            cls: w.get("embeddings.cls_token", &[1, 1, h], Init::Normal(0.02))?,
            pos: w.get(
                "embeddings.position_embeddings",
                &[1, n + 1, h],
                Init::Normal(0.02),
            )?,
            layers,
            norm: LayerNorm::load(w, "layernorm", h, config.layer_norm_eps)?,
            pooler,
            config,
        })
    }

    /// The config.
    pub fn config(&self) -> &VitConfig {
        &self.config
    }

    /// Encodes `[B, C, S, S]` pixel values (S = `image_size`).
    pub fn forward(&self, pixels: &Tensor) -> Result<VitOutput> {
        let (b, c, s1, s2) = pixels.dims4().map_err(|_| Error::InvalidInput {
            what: "pixel_values".into(),
            message: format!("expected [B, C, H, W], got {:?}", pixels.dims()),
        })?;
        if c != self.config.num_channels
            || s1 != self.config.image_size
            || s2 != self.config.image_size
        {
            return Err(Error::InvalidInput {
                what: "pixel_values".into(),
                message: format!(
                    "got {:?}, the model takes [B, {}, {}, {}]",
                    pixels.dims(),
                    self.config.num_channels,
                    self.config.image_size,
                    self.config.image_size
                ),
            });
        }
        let h = self.config.hidden_size;
        let x = self
            .patch
            .forward(&patchify(pixels, self.config.patch_size)?)?;
        let cls = self.cls.broadcast_as((b, 1, h))?;
        let mut x = Tensor::cat(&[cls, x], 1)?.broadcast_add(&self.pos)?;
        for l in &self.layers {
            x = l.forward(&x, None)?;
        }
        let x = self.norm.forward(&x)?;
        let pooler_output = match &self.pooler {
            Some(p) => Some(p.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?.tanh()?),
            None => None,
        };
        Ok(VitOutput {
            last_hidden_state: x,
            pooler_output,
        })
    }
}
