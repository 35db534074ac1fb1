//! BERT-family text encoders (BERT, MiniLM, ...) in the Hugging Face layout,
//! matching `transformers.BertModel`: absolute positions, post-norm layers,
//! key-padding mask, erf or tanh GELU, tanh pooler.

use std::path::Path;

use candle_core::{D, DType, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::{
    Activation, CheckpointMode, Init, LayerNorm, Linear, ParamStore, softmax_last_dim,
};

/// The `config.json` keys BERT uses (others are ignored: HF configs carry
/// many training-only keys).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward size.
    pub intermediate_size: usize,
    /// Activation name.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Largest position.
    #[serde(default = "default_pos")]
    pub max_position_embeddings: usize,
    /// Token-type vocabulary.
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Only `absolute` is supported.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_pos() -> usize {
    512
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

impl BertConfig {
    /// Reads `config.json` (a file or the folder holding it).
    pub fn load(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|e| mosaic_core::Error::io(&file, e))?;
        let cfg: BertConfig = serde_json::from_str(&text).map_err(|e| Error::Config {
            source_name: file.display().to_string(),
            message: e.to_string(),
        })?;
        cfg.validate(&file.display().to_string())?;
        Ok(cfg)
    }

    fn validate(&self, source: &str) -> Result<()> {
        let err = |m: String| Error::Config {
            source_name: source.to_string(),
            message: m,
        };
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return Err(err(format!(
                "key `num_attention_heads`: {} does not divide hidden_size {}",
                self.num_attention_heads, self.hidden_size
            )));
        }
        if let Some(p) = &self.position_embedding_type
            && p != "absolute"
        {
            return Err(err(format!(
                "key `position_embedding_type`: `{p}` is not supported (only absolute)"
            )));
        }
        Activation::from_name(&self.hidden_act, source)?;
        Ok(())
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// A BERT encoder with its weights.
pub struct BertModel {
    config: BertConfig,
    act: Activation,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    pooler: Option<Linear>,
}

impl std::fmt::Debug for BertModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertModel")
            .field("config", &self.config)
            .finish()
    }
}

/// Outputs of [`BertModel::forward`].
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// `[B, T, H]`.
    pub last_hidden_state: Tensor,
    /// `[B, H]`: `tanh(W h_0 + b)`, when the checkpoint has a pooler.
    pub pooler_output: Option<Tensor>,
}

impl BertModel {
    /// Loads `config.json` + `model.safetensors` from a folder (f32, CPU,
    /// frozen: inference).
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        Self::load(dir, &super::inference_store(), CheckpointMode::Frozen)
    }

    /// Loads a folder's checkpoint into `store` (at its prefix, in its
    /// dtype and device), trainable or frozen.
    pub fn load(dir: &Path, store: &ParamStore, mode: CheckpointMode) -> Result<Self> {
        let config = BertConfig::load(dir)?;
        super::attach(dir, store, mode, &["bert."])?;
        let model = Self::new(config, store)?;
        // `cls.*`: the pre-training heads of BertForPreTraining / MaskedLM
        // checkpoints, which the encoder (like transformers' BertModel) drops.
        store.check_unused(&["*position_ids", "cls.*"])?;
        Ok(model)
    }

    /// Builds from a config and parameters named as in `BertModel` (a
    /// checkpoint's, or fresh ones initialised as transformers does).
    pub fn new(config: BertConfig, w: &ParamStore) -> Result<Self> {
        let emb = Init::Normal(0.02);
        let h = config.hidden_size;
        let eps = config.layer_norm_eps;
        let act = Activation::from_name(&config.hidden_act, &w.source())?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                q: Linear::load(w, &format!("{p}.attention.self.query"), h, h)?,
                k: Linear::load(w, &format!("{p}.attention.self.key"), h, h)?,
                v: Linear::load(w, &format!("{p}.attention.self.value"), h, h)?,
                attn_out: Linear::load(w, &format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: LayerNorm::load(w, &format!("{p}.attention.output.LayerNorm"), h, eps)?,
                inter: Linear::load(
                    w,
                    &format!("{p}.intermediate.dense"),
                    h,
                    config.intermediate_size,
                )?,
                out: Linear::load(w, &format!("{p}.output.dense"), config.intermediate_size, h)?,
                out_norm: LayerNorm::load(w, &format!("{p}.output.LayerNorm"), h, eps)?,
            });
        }
        let pooler = if w.contains("pooler.dense.weight") {
            Some(Linear::load(w, "pooler.dense", h, h)?)
        } else {
            None
        };
        Ok(BertModel {
            word: w.get(
                "embeddings.word_embeddings.weight",
                &[config.vocab_size, h],
                emb,
            )?,
            position: w.get(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, h],
                emb,
            )?,
            token_type: w.get(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, h],
                emb,
            )?,
            emb_norm: LayerNorm::load(w, "embeddings.LayerNorm", h, eps)?,
            layers,
            pooler,
            act,
            config,
        })
    }

    /// The config.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Runs the encoder. `input_ids`, `token_type_ids` and `attention_mask`
    /// are `[B, T]` integer tensors (u32 or i64); a missing type tensor
    /// means zeros, a missing mask means all ones.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
    ) -> Result<BertOutput> {
        let (b, t) = input_ids.dims2().map_err(|_| Error::InvalidInput {
            what: "input_ids".into(),
            message: format!("expected [B, T], got {:?}", input_ids.dims()),
        })?;
        if t > self.config.max_position_embeddings {
            return Err(Error::InvalidInput {
                what: "input_ids".into(),
                message: format!(
                    "{t} tokens exceeds max_position_embeddings {}",
                    self.config.max_position_embeddings
                ),
            });
        }
        let ids = input_ids.to_dtype(DType::U32)?;
        let max_id = ids.max_all()?.to_scalar::<u32>()? as usize;
        if max_id >= self.config.vocab_size {
            return Err(Error::InvalidInput {
                what: "input_ids".into(),
                message: format!(
                    "token id {max_id} is outside the vocabulary of {}",
                    self.config.vocab_size
                ),
            });
        }
        let h = self.config.hidden_size;
        let word = self
            .word
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, h))?;
        let types = match token_type_ids {
            Some(tt) => {
                let tt = tt.to_dtype(DType::U32)?;
                self.token_type
                    .index_select(&tt.flatten_all()?, 0)?
                    .reshape((b, t, h))?
            }
            None => self
                .token_type
                .get(0)?
                .reshape((1, 1, h))?
                .broadcast_as((b, t, h))?,
        };
        let pos = self.position.narrow(0, 0, t)?.unsqueeze(0)?;
        let mut x = self
            .emb_norm
            .forward(&word.add(&types)?.broadcast_add(&pos)?)?;
        // Additive key mask: 0 for real keys, the most negative f32 for padding.
        let bias = match attention_mask {
            Some(m) => {
                // Built in f32 (f32::MIN is -inf in half precision, and
                // 0 · -inf would be NaN), then cast.
                let m = m.to_dtype(DType::F32)?;
                Some(
                    ((m.ones_like()? - m)? * f32::MIN as f64)?
                        .reshape((b, 1, 1, t))?
                        .to_dtype(self.word.dtype())?,
                )
            }
            None => None,
        };
        let heads = self.config.num_attention_heads;
        let hd = h / heads;
        let scale = 1.0 / (hd as f64).sqrt();
        for l in &self.layers {
            let split = |y: Tensor| -> Result<Tensor> {
                Ok(y.reshape((b, t, heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let q = split(l.q.forward(&x)?)?;
            let k = split(l.k.forward(&x)?)?;
            let v = split(l.v.forward(&x)?)?;
            let mut scores = (q.matmul(&k.t()?)? * scale)?;
            if let Some(bias) = &bias {
                scores = scores.broadcast_add(bias)?;
            }
            let probs = softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
            let a = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
            let f = l.out.forward(&self.act.forward(&l.inter.forward(&a)?)?)?;
            x = l.out_norm.forward(&(f + a)?)?;
        }
        let pooler_output = match &self.pooler {
            Some(p) => Some(p.forward(&x.narrow(1, 0, 1)?.squeeze(1)?)?.tanh()?),
            None => None,
        };
        Ok(BertOutput {
            last_hidden_state: x,
            pooler_output,
        })
    }
}

/// Mean of `[B, T, H]` over positions where `mask` (`[B, T]`) is 1.
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
    let sum = hidden.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
    Ok(sum.broadcast_div(&count)?)
}

/// Divides each row by its L2 norm (at least 1e-12).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let n = x
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    Ok(x.broadcast_div(&n)?)
}
