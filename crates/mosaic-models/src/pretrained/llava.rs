//! LLaVA: a CLIP vision tower, an MLP projector and a Llama language model,
//! matching `transformers.LlavaForConditionalGeneration`. Image features
//! replace the `image_token_index` placeholders of the (already expanded)
//! prompt, in order.

use std::path::Path;

use candle_core::{DType, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::{Activation, Linear};
use crate::nn::{CheckpointMode, ParamStore};
use crate::pretrained::clip::{ClipVisionConfig, ClipVisionTransformer};
use crate::pretrained::llama::{LlamaConfig, LlamaModel};
use crate::pretrained::read_config;

/// A LLaVA `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LlavaConfig {
    /// The CLIP vision tower.
    pub vision_config: ClipVisionConfig,
    /// The Llama language model.
    pub text_config: LlamaConfig,
    /// Placeholder id, one per image feature in the prompt.
    #[serde(default = "image_token")]
    pub image_token_index: u32,
    /// Projector activation.
    #[serde(default = "gelu")]
    pub projector_hidden_act: String,
    /// Vision layer whose hidden states feed the projector (negative:
    /// counted from the end of `hidden_states`).
    #[serde(default = "minus_two")]
    pub vision_feature_layer: serde_json::Value,
    /// `default` (drop the class token) or `full`.
    #[serde(default = "default_strategy")]
    pub vision_feature_select_strategy: String,
    /// Whether the projector linears have biases.
    #[serde(default = "yes")]
    pub multimodal_projector_bias: bool,
}

fn image_token() -> u32 {
    32000
}
fn gelu() -> String {
    "gelu".into()
}
fn minus_two() -> serde_json::Value {
    serde_json::json!(-2)
}
fn default_strategy() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}

/// A LLaVA model.
#[derive(Debug)]
pub struct LlavaModel {
    config: LlavaConfig,
    vision: ClipVisionTransformer,
    /// Index into transformers' `hidden_states` (0 = embeddings).
    feature_layer: usize,
    drop_cls: bool,
    proj1: Linear,
    proj2: Linear,
    act: Activation,
    lm: LlamaModel,
}

/// The first prefix under which `probe` exists.
fn find_prefix<'a>(w: &ParamStore, candidates: &[&'a str], probe: &str) -> Option<&'a str> {
    candidates
        .iter()
        .copied()
        .find(|p| w.contains(&format!("{p}.{probe}")))
}

impl LlavaModel {
    /// Loads `config.json` + weights (f32, CPU). Accepts the layouts
    /// transformers 5 writes (`vision_tower.*`, `language_model.model.*`),
    /// the llava-hf hub layout (`vision_tower.vision_model.*`) and the
    /// in-memory one (`model.vision_tower.*`, `model.language_model.*`,
    /// `lm_head`).
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        Self::load(dir, &super::inference_store(), CheckpointMode::Frozen)
    }

    /// Loads a folder's checkpoint into `store` (at its prefix, in its
    /// dtype and device), trainable or frozen.
    pub fn load(dir: &Path, store: &ParamStore, mode: CheckpointMode) -> Result<Self> {
        let config: LlavaConfig = read_config(dir)?;
        super::attach(dir, store, mode, &[])?;
        let model = Self::new(config, store)?;
        store.check_unused(&["*position_ids"])?;
        Ok(model)
    }

    /// Builds from a config and weights.
    pub fn new(config: LlavaConfig, w: &ParamStore) -> Result<Self> {
        let src = || w.source().to_string();
        let missing = |what: &str, tried: &[&str]| Error::Weight {
            checkpoint: src(),
            name: format!("{}.*", tried[0]),
            message: format!("missing {what} (looked under {})", tried.join(", ")),
        };
        const VISION: [&str; 4] = [
            "vision_tower.vision_model",
            "vision_tower",
            "model.vision_tower.vision_model",
            "model.vision_tower",
        ];
        const LM: [&str; 2] = ["language_model.model", "model.language_model"];
        const HEAD: [&str; 2] = ["language_model.lm_head", "lm_head"];
        const PROJ: [&str; 2] = ["multi_modal_projector", "model.multi_modal_projector"];
        let vp = find_prefix(w, &VISION, "embeddings.class_embedding")
            .ok_or_else(|| missing("vision tower", &VISION))?;
        let lp = find_prefix(w, &LM, "embed_tokens.weight")
            .ok_or_else(|| missing("language model", &LM))?;
        let hp = find_prefix(w, &HEAD, "weight").unwrap_or(HEAD[0]);
        let pp =
            find_prefix(w, &PROJ, "linear_1.weight").ok_or_else(|| missing("projector", &PROJ))?;
        let vision = ClipVisionTransformer::load(w, vp, &config.vision_config)?;
        let n = config.vision_config.num_hidden_layers as i64;
        let feature_layer = match config.vision_feature_layer.as_i64() {
            Some(l) if l < 0 && l >= -(n + 1) => (n + 1 + l) as usize,
            Some(l) if l >= 0 && l <= n => l as usize,
            _ => {
                return Err(Error::Config {
                    source_name: src(),
                    message: format!(
                        "key `vision_feature_layer`: {} is not a layer index in -{}..={n} (lists of layers are not supported)",
                        config.vision_feature_layer,
                        n + 1
                    ),
                });
            }
        };
        let drop_cls = match config.vision_feature_select_strategy.as_str() {
            "default" => true,
            "full" => false,
            other => {
                return Err(Error::Config {
                    source_name: src(),
                    message: format!(
                        "key `vision_feature_select_strategy`: `{other}` is not `default` or `full`"
                    ),
                });
            }
        };
        let (vh, th) = (
            config.vision_config.hidden_size,
            config.text_config.hidden_size,
        );
        let bias = config.multimodal_projector_bias;
        let lin = |name: &str, i: usize, o: usize| -> Result<Linear> {
            w.linear(&format!("{pp}.{name}"), i, o, bias)
        };
        let (proj1, proj2) = (lin("linear_1", vh, th)?, lin("linear_2", th, th)?);
        let act = Activation::from_name(&config.projector_hidden_act, &w.source())?;
        let lm = LlamaModel::new(config.text_config.clone(), w, lp, hp)?;
        if config.image_token_index as usize >= config.text_config.vocab_size {
            return Err(Error::Config {
                source_name: src(),
                message: format!(
                    "key `image_token_index`: {} is outside the vocabulary of {}",
                    config.image_token_index, config.text_config.vocab_size
                ),
            });
        }
        Ok(LlavaModel {
            config,
            vision,
            feature_layer,
            drop_cls,
            proj1,
            proj2,
            act,
            lm,
        })
    }

    /// The config.
    pub fn config(&self) -> &LlavaConfig {
        &self.config
    }

    /// The language model.
    pub fn language_model(&self) -> &LlamaModel {
        &self.lm
    }

    /// Image placeholders one image takes in a prompt.
    pub fn tokens_per_image(&self) -> usize {
        self.vision.num_patches() + usize::from(!self.drop_cls)
    }

    /// Projected image features `[B, N, H_text]`.
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let x = self.vision.hidden_state(pixels, self.feature_layer)?;
        let x = if self.drop_cls {
            x.narrow(1, 1, x.dim(1)? - 1)?
        } else {
            x
        };
        self.proj2
            .forward(&self.act.forward(&self.proj1.forward(&x)?)?)
    }

    /// Prompt embeddings `[1, T, H]`: token embeddings with the image
    /// placeholders replaced, in order, by the rows of `features` `[B, N, H]`.
    pub fn merge(&self, input_ids: &Tensor, features: &Tensor) -> Result<Tensor> {
        let (b, t) = input_ids.dims2()?;
        let h = self.config.text_config.hidden_size;
        let ids: Vec<u32> = input_ids.to_dtype(DType::U32)?.flatten_all()?.to_vec1()?;
        let feats = features.reshape(((), h))?;
        let placeholders = ids
            .iter()
            .filter(|&&i| i == self.config.image_token_index)
            .count();
        if placeholders != feats.dim(0)? {
            return Err(Error::InvalidInput {
                what: "input_ids".into(),
                message: format!(
                    "{placeholders} image tokens (id {}) but {} image features; expand each image to {} tokens",
                    self.config.image_token_index,
                    feats.dim(0)?,
                    self.tokens_per_image()
                ),
            });
        }
        let emb = self.lm.embed(input_ids)?.reshape((b * t, h))?;
        let mut rows = Vec::with_capacity(b * t);
        let mut next = 0;
        for (i, &id) in ids.iter().enumerate() {
            if id == self.config.image_token_index {
                rows.push(feats.get(next)?);
                next += 1;
            } else {
                rows.push(emb.get(i)?);
            }
        }
        Ok(Tensor::stack(&rows, 0)?.reshape((b, t, h))?)
    }

    /// Teacher-forced logits `[B, T, vocab]`.
    pub fn forward(&self, input_ids: &Tensor, pixels: &Tensor) -> Result<Tensor> {
        let e = self.merge(input_ids, &self.image_features(pixels)?)?;
        self.lm
            .forward_embeds(&e, &mut crate::pretrained::llama::KvCache::default())
    }

    /// Greedy continuation of a `[1, T]` prompt (see
    /// [`LlamaModel::generate_greedy`]); returns new ids and step logits.
    pub fn generate_greedy(
        &self,
        input_ids: &Tensor,
        pixels: &Tensor,
        max_new: usize,
        min_new: usize,
        eos: Option<u32>,
    ) -> Result<(Vec<u32>, Vec<Vec<f32>>)> {
        let e = self.merge(input_ids, &self.image_features(pixels)?)?;
        self.lm.generate_greedy(&e, max_new, min_new, eos)
    }
}
