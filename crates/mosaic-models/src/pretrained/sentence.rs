//! sentence-transformers models (`modules.json`: Transformer → Pooling →
//! optional Normalize) on a BERT-family encoder, e.g. all-MiniLM-L6-v2.

use std::path::{Path, PathBuf};

use candle_core::{D, Device, Tensor};
use mosaic_data::text::{Padding, TextConfig, TextTokenizer};
use serde_json::Value;

use super::bert::{BertModel, l2_normalize, mean_pool};
use crate::error::{Error, Result};
use crate::nn::{CheckpointMode, ParamStore};

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over real tokens.
    Mean,
    /// The first token (`[CLS]`).
    Cls,
    /// Element-wise max over real tokens.
    Max,
    /// Sum over real tokens divided by √length.
    MeanSqrtLen,
}

/// A sentence encoder: tokenizer, BERT, pooling, optional L2 normalisation.
#[derive(Debug)]
pub struct SentenceEncoder {
    tokenizer: TextTokenizer,
    model: BertModel,
    pooling: Pooling,
    normalize: bool,
    dir: PathBuf,
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| mosaic_core::Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        source_name: path.display().to_string(),
        message: e.to_string(),
    })
}

impl SentenceEncoder {
    /// Loads a sentence-transformers folder (or a plain Hugging Face BERT
    /// folder, which gets mean pooling and no normalisation).
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        Self::load(dir, &super::inference_store(), CheckpointMode::Frozen)
    }

    /// Loads the folder's BERT into `store` (at its prefix, in its dtype and
    /// device), trainable or frozen, with its tokenizer and pooling.
    pub fn load(dir: &Path, store: &ParamStore, mode: CheckpointMode) -> Result<Self> {
        let model = BertModel::load(dir, store, mode)?;
        // sentence-transformers truncates at `max_seq_length` and pads to
        // the longest sequence of the batch, whatever tokenizer.json says.
        let max_len = match dir.join("sentence_bert_config.json") {
            p if p.is_file() => read_json(&p)?["max_seq_length"]
                .as_u64()
                .map(|v| v as usize),
            _ => None,
        }
        .unwrap_or(model.config().max_position_embeddings)
        .min(model.config().max_position_embeddings);
        let tokenizer = TextTokenizer::from_file(
            &dir.join("tokenizer.json"),
            TextConfig {
                max_length: Some(max_len),
                padding: Padding::Longest,
                add_special_tokens: true,
            },
        )?;
        let (mut pooling, mut normalize) = (Pooling::Mean, false);
        let modules = dir.join("modules.json");
        if modules.is_file() {
            let list = read_json(&modules)?;
            for m in list.as_array().into_iter().flatten() {
                let ty = m["type"].as_str().unwrap_or("");
                if ty.ends_with("Pooling") {
                    let cfg_path = dir
                        .join(m["path"].as_str().unwrap_or("1_Pooling"))
                        .join("config.json");
                    let cfg = read_json(&cfg_path)?;
                    let on = |k: &str| cfg[k].as_bool().unwrap_or(false);
                    pooling = match (on("pooling_mode_cls_token"), on("pooling_mode_mean_tokens"), on("pooling_mode_max_tokens"), on("pooling_mode_mean_sqrt_len_tokens")) {
                        (true, false, false, false) => Pooling::Cls,
                        (false, true, false, false) => Pooling::Mean,
                        (false, false, true, false) => Pooling::Max,
                        (false, false, false, true) => Pooling::MeanSqrtLen,
                        _ => return Err(Error::Config { source_name: cfg_path.display().to_string(), message: "exactly one pooling_mode_* must be true (combined modes are not supported)".into() }),
                    };
                } else if ty.ends_with("Normalize") {
                    normalize = true;
                } else if !ty.ends_with("Transformer") {
                    return Err(Error::Config {
                        source_name: modules.display().to_string(),
                        message: format!("unsupported module type `{ty}`"),
                    });
                }
            }
        }
        Ok(SentenceEncoder {
            tokenizer,
            model,
            pooling,
            normalize,
            dir: dir.to_path_buf(),
        })
    }

    /// The encoder's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Embedding size.
    pub fn dim(&self) -> usize {
        self.model.config().hidden_size
    }

    /// Whether outputs are L2-normalised.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// The underlying BERT.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    /// Runs BERT on tokenized `[B, T]` ids and pools (and normalises, when
    /// the model does): `(last_hidden_state [B,T,H], embeddings [B,dim])`.
    pub fn embed_tokens(
        &self,
        ids: &Tensor,
        type_ids: Option<&Tensor>,
        mask: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let o = self.model.forward(ids, type_ids, Some(mask))?;
        let h = o.last_hidden_state;
        let pooled = match self.pooling {
            Pooling::Mean => mean_pool(&h, mask)?,
            Pooling::Cls => h.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Max => {
                let m = mask.to_dtype(h.dtype())?.unsqueeze(D::Minus1)?;
                // Padding gets -1e9 so it never wins the max.
                let masked = h
                    .broadcast_mul(&m)?
                    .broadcast_add(&((m.ones_like()? - &m)? * -1e9)?)?;
                masked.max(1)?
            }
            Pooling::MeanSqrtLen => {
                let m = mask.to_dtype(h.dtype())?.unsqueeze(D::Minus1)?;
                let sum = h.broadcast_mul(&m)?.sum(1)?;
                sum.broadcast_div(&m.sum(1)?.clamp(1e-9, f64::INFINITY)?.sqrt()?)?
            }
        };
        let pooled = if self.normalize {
            l2_normalize(&pooled)?
        } else {
            pooled
        };
        Ok((h, pooled))
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &mosaic_data::text::TextTokenizer {
        &self.tokenizer
    }

    /// Embeds texts in batches of `batch_size`, returning `[N, dim]` f32.
    pub fn encode<S: AsRef<str>>(&self, texts: &[S], batch_size: usize) -> Result<Tensor> {
        if texts.is_empty() {
            return Err(Error::InvalidInput {
                what: "texts".into(),
                message: "nothing to embed".into(),
            });
        }
        let mut out = Vec::new();
        for chunk in texts.chunks(batch_size.max(1)) {
            let tb = self.tokenizer.encode_batch(chunk)?;
            out.push(
                self.embed_tokens(&tb.ids, Some(&tb.type_ids), &tb.attention_mask)?
                    .1,
            );
        }
        Ok(Tensor::cat(&out, 0)?.to_device(&Device::Cpu)?)
    }
}
