//! Text: Hugging Face `tokenizer.json` tokenizers (BPE, WordPiece, Unigram,
//! via the `tokenizers` crate) with truncation, padding and attention masks.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::error::{Error, Result};

/// How sequences of a batch are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding: every sequence keeps its length (batching needs equal lengths).
    None,
    /// Pad to the longest sequence of the batch.
    #[default]
    Longest,
    /// Pad to exactly this length (CLIP's context length, 77).
    Fixed(usize),
}

/// Tokenizer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextConfig {
    /// Truncate to at most this many tokens (special tokens included).
    pub max_length: Option<usize>,
    /// Padding strategy.
    pub padding: Padding,
    /// Add the model's special tokens (`[CLS]`/`[SEP]`, `<|startoftext|>`, ...).
    pub add_special_tokens: bool,
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            max_length: Some(512),
            padding: Padding::Longest,
            add_special_tokens: true,
        }
    }
}

impl TextConfig {
    /// CLIP-style: truncate and pad to a fixed context length.
    pub fn clip(context_length: usize) -> Self {
        TextConfig {
            max_length: Some(context_length),
            padding: Padding::Fixed(context_length),
            add_special_tokens: true,
        }
    }
}

/// A tokenized batch: `[B, T]` ids, attention mask (1 real / 0 pad) and
/// token type ids, all u32.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Token ids.
    pub ids: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor,
    /// Segment ids (zeros for single sentences).
    pub type_ids: Tensor,
    /// The unpadded lengths.
    pub lengths: Vec<usize>,
}

/// One encoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Attention mask.
    pub attention_mask: Vec<u32>,
    /// Token type ids.
    pub type_ids: Vec<u32>,
    /// Byte offsets of each token in the input (`(0, 0)` for special tokens).
    pub offsets: Vec<(usize, usize)>,
}

/// A configured tokenizer.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    config: TextConfig,
    source: String,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("source", &self.source)
            .field("config", &self.config)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` (or a folder holding it).
    pub fn from_file(path: &Path, config: TextConfig) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        Self::from_bytes(&bytes, &file.display().to_string(), config)
    }

    /// Parses a `tokenizer.json` held in memory; `source` names it in errors.
    pub fn from_bytes(bytes: &[u8], source: &str, config: TextConfig) -> Result<Self> {
        let inner = Tokenizer::from_bytes(bytes)
            .map_err(|e| Error::decode(source, "tokenizer.json", e.to_string()))?;
        let mut t = TextTokenizer {
            inner,
            config: config.clone(),
            source: source.to_string(),
        };
        t.set_config(config)?;
        Ok(t)
    }

    /// Replaces the truncation/padding settings.
    pub fn set_config(&mut self, config: TextConfig) -> Result<()> {
        let trunc = config.max_length.map(|max_length| TruncationParams {
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        });
        self.inner
            .with_truncation(trunc)
            .map_err(|e| Error::invalid("max_length", e.to_string()))?;
        let pad = match config.padding {
            Padding::None => None,
            Padding::Longest | Padding::Fixed(_) => {
                let (pad_id, pad_token) = self.pad_token();
                Some(PaddingParams {
                    strategy: match config.padding {
                        Padding::Fixed(n) => PaddingStrategy::Fixed(n),
                        _ => PaddingStrategy::BatchLongest,
                    },
                    direction: PaddingDirection::Right,
                    pad_to_multiple_of: None,
                    pad_id,
                    pad_type_id: 0,
                    pad_token,
                })
            }
        };
        self.inner.with_padding(pad);
        self.config = config;
        Ok(())
    }

    /// The pad token: the file's own padding settings if it has them, else
    /// `[PAD]`, `<pad>`, `<|endoftext|>` (CLIP, GPT-2), else id 0.
    fn pad_token(&self) -> (u32, String) {
        if let Some(p) = self.inner.get_padding() {
            return (p.pad_id, p.pad_token.clone());
        }
        for tok in ["[PAD]", "<pad>", "<|endoftext|>"] {
            if let Some(id) = self.inner.token_to_id(tok) {
                return (id, tok.to_string());
            }
        }
        (0, String::new())
    }

    /// The settings in use.
    pub fn config(&self) -> &TextConfig {
        &self.config
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes one text (truncated and, with `Padding::Fixed`, padded).
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let enc = self
            .inner
            .encode(text, self.config.add_special_tokens)
            .map_err(|e| Error::decode(&self.source, "text", e.to_string()))?;
        let mut out = Encoded {
            ids: enc.get_ids().to_vec(),
            attention_mask: enc.get_attention_mask().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            offsets: enc.get_offsets().to_vec(),
        };
        if let Padding::Fixed(n) = self.config.padding {
            let (pad_id, _) = self.pad_token();
            while out.ids.len() < n {
                out.ids.push(pad_id);
                out.attention_mask.push(0);
                out.type_ids.push(0);
                out.offsets.push((0, 0));
            }
        }
        Ok(out)
    }

    /// Encodes a batch into `[B, T]` tensors.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<TokenBatch> {
        if texts.is_empty() {
            return Err(Error::invalid("text batch", "no texts to encode"));
        }
        let inputs: Vec<&str> = texts.iter().map(|s| s.as_ref()).collect();
        let encs = self
            .inner
            .encode_batch(inputs, self.config.add_special_tokens)
            .map_err(|e| Error::decode(&self.source, "text batch", e.to_string()))?;
        let t = encs.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        if encs.iter().any(|e| e.get_ids().len() != t) {
            return Err(Error::invalid(
                "text batch",
                "sequences have different lengths and padding is off",
            ));
        }
        let b = encs.len();
        let mut ids = Vec::with_capacity(b * t);
        let mut mask = Vec::with_capacity(b * t);
        let mut types = Vec::with_capacity(b * t);
        let mut lengths = Vec::with_capacity(b);
        for e in &encs {
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
            types.extend_from_slice(e.get_type_ids());
            lengths.push(e.get_attention_mask().iter().filter(|&&m| m == 1).count());
        }
        Ok(TokenBatch {
            ids: Tensor::from_vec(ids, (b, t), &Device::Cpu)?,
            attention_mask: Tensor::from_vec(mask, (b, t), &Device::Cpu)?,
            type_ids: Tensor::from_vec(types, (b, t), &Device::Cpu)?,
            lengths,
        })
    }

    /// Decodes ids back to text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::decode(&self.source, "token ids", e.to_string()))
    }

    /// Decodes a batch of id sequences.
    pub fn decode_batch(&self, ids: &[Vec<u32>], skip_special_tokens: bool) -> Result<Vec<String>> {
        ids.iter()
            .map(|s| self.decode(s, skip_special_tokens))
            .collect()
    }
}
