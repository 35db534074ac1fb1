//! Whisper encoder–decoder from a CTranslate2 `WhisperSpec` checkpoint
//! (`model.bin`, as shipped for faster-whisper), run in f32 with a KV
//! cache: log-mel → 2 convolutions + pre-norm encoder layers; token
//! embeddings + learned positions → pre-norm decoder layers with causal
//! self-attention and cross-attention; logits through the tied embedding.
//!
//! CTranslate2 names: `encoder/conv{1,2}`, `encoder/position_encodings`,
//! `encoder/layer_N/{self_attention,ffn}`, `decoder/embeddings`,
//! `decoder/layer_N/{self_attention,attention,ffn}`; self-attention q, k, v
//! are stacked in `linear_0`, cross-attention keys and values in `linear_1`.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::nn::{LayerNorm, Linear, gelu_erf, softmax_last_dim};
use crate::weights::Weights;

fn ln(w: &Weights, p: &str, d: usize) -> Result<LayerNorm> {
    // CTranslate2 stores LayerNorm as gamma/beta.
    Ok(LayerNorm {
        weight: w.get(&format!("{p}/gamma"), &[d])?,
        bias: w.get(&format!("{p}/beta"), &[d])?,
        eps: 1e-5,
    })
}

fn lin(w: &Weights, p: &str, i: usize, o: usize) -> Result<Linear> {
    Ok(Linear {
        weight: w.get(&format!("{p}/weight"), &[o, i])?,
        bias: Some(w.get(&format!("{p}/bias"), &[o])?),
    })
}

fn heads_split(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    Ok(x.reshape((b, t, heads, d / heads))?
        .transpose(1, 2)?
        .contiguous()?)
}

fn heads_merge(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, hd) = x.dims4()?;
    Ok(x.transpose(1, 2)?.reshape((b, t, h * hd))?)
}

fn attend(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let hd = q.dim(3)?;
    let mut s = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
    if let Some(b) = bias {
        s = s.broadcast_add(b)?;
    }
    Ok(softmax_last_dim(&s)?.matmul(v)?)
}

struct EncLayer {
    attn_ln: LayerNorm,
    qkv: Linear,
    out: Linear,
    ffn_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

struct DecLayer {
    self_ln: LayerNorm,
    self_qkv: Linear,
    self_out: Linear,
    cross_ln: LayerNorm,
    cross_q: Linear,
    cross_kv: Linear,
    cross_out: Linear,
    ffn_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The Whisper model.
pub struct WhisperModel {
    d: usize,
    enc_heads: usize,
    dec_heads: usize,
    n_mels: usize,
    conv1: (Tensor, Tensor),
    conv2: (Tensor, Tensor),
    enc_pos: Tensor,
    enc_layers: Vec<EncLayer>,
    enc_ln: LayerNorm,
    embed: Tensor,
    dec_pos: Tensor,
    dec_layers: Vec<DecLayer>,
    dec_ln: LayerNorm,
}

impl std::fmt::Debug for WhisperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperModel")
            .field("d_model", &self.d)
            .field("encoder_layers", &self.enc_layers.len())
            .field("decoder_layers", &self.dec_layers.len())
            .finish()
    }
}

/// Per-decoding-run state: cross-attention keys/values and the self-attention cache.
pub struct DecoderState {
    cross: Vec<(Tensor, Tensor)>,
    cache: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl WhisperModel {
    /// Loads a CTranslate2 Whisper folder (`model.bin`) or file, in f32.
    pub fn from_pretrained(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("model.bin")
        } else {
            path.to_path_buf()
        };
        let w = Weights::load(&file, &Device::Cpu, DType::F32)?;
        let count = |prefix: &str| {
            (0..)
                .take_while(|i| w.contains(&format!("{prefix}/layer_{i}/ffn/linear_0/weight")))
                .count()
        };
        let heads = |name: &str| -> Result<usize> {
            let t = w.get(name, &[])?;
            Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()? as usize)
        };
        let (enc_heads, dec_heads) = (heads("encoder/num_heads")?, heads("decoder/num_heads")?);
        // Sizes from the tensors themselves.
        let probe = mosaic_core::formats::read_tensor_infos(&file)?.1;
        let shape_of = |n: &str| probe.iter().find(|i| i.name == n).map(|i| i.shape.clone());
        let conv1_shape = shape_of("encoder/conv1/weight").ok_or_else(|| Error::Weight {
            checkpoint: file.display().to_string(),
            name: "encoder/conv1/weight".into(),
            message: "missing".into(),
        })?;
        let (d, n_mels) = (conv1_shape[0], conv1_shape[1]);
        let vocab = shape_of("decoder/embeddings/weight")
            .map(|s| s[0])
            .unwrap_or(0);
        let ff = shape_of("encoder/layer_0/ffn/linear_0/weight")
            .map(|s| s[0])
            .unwrap_or(4 * d);
        let enc_pos_len = shape_of("encoder/position_encodings/encodings")
            .map(|s| s[0])
            .unwrap_or(1500);
        let dec_pos_len = shape_of("decoder/position_encodings/encodings")
            .map(|s| s[0])
            .unwrap_or(448);
        if enc_heads == 0 || d % enc_heads != 0 || dec_heads == 0 || d % dec_heads != 0 {
            return Err(Error::Config {
                source_name: file.display().to_string(),
                message: format!("{enc_heads}/{dec_heads} heads do not divide d_model {d}"),
            });
        }
        let enc_layers = (0..count("encoder"))
            .map(|i| {
                let p = format!("encoder/layer_{i}");
                Ok(EncLayer {
                    attn_ln: ln(&w, &format!("{p}/self_attention/layer_norm"), d)?,
                    qkv: lin(&w, &format!("{p}/self_attention/linear_0"), d, 3 * d)?,
                    out: lin(&w, &format!("{p}/self_attention/linear_1"), d, d)?,
                    ffn_ln: ln(&w, &format!("{p}/ffn/layer_norm"), d)?,
                    fc1: lin(&w, &format!("{p}/ffn/linear_0"), d, ff)?,
                    fc2: lin(&w, &format!("{p}/ffn/linear_1"), ff, d)?,
                })
            })
            .collect::<Result<_>>()?;
        let dec_layers = (0..count("decoder"))
            .map(|i| {
                let p = format!("decoder/layer_{i}");
                Ok(DecLayer {
                    self_ln: ln(&w, &format!("{p}/self_attention/layer_norm"), d)?,
                    self_qkv: lin(&w, &format!("{p}/self_attention/linear_0"), d, 3 * d)?,
                    self_out: lin(&w, &format!("{p}/self_attention/linear_1"), d, d)?,
                    cross_ln: ln(&w, &format!("{p}/attention/layer_norm"), d)?,
                    cross_q: lin(&w, &format!("{p}/attention/linear_0"), d, d)?,
                    cross_kv: lin(&w, &format!("{p}/attention/linear_1"), d, 2 * d)?,
                    cross_out: lin(&w, &format!("{p}/attention/linear_2"), d, d)?,
                    ffn_ln: ln(&w, &format!("{p}/ffn/layer_norm"), d)?,
                    fc1: lin(&w, &format!("{p}/ffn/linear_0"), d, ff)?,
                    fc2: lin(&w, &format!("{p}/ffn/linear_1"), ff, d)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(WhisperModel {
            d,
            enc_heads,
            dec_heads,
            n_mels,
            conv1: (
                w.get("encoder/conv1/weight", &[d, n_mels, 3])?,
                w.get("encoder/conv1/bias", &[d])?,
            ),
            conv2: (
                w.get("encoder/conv2/weight", &[d, d, 3])?,
                w.get("encoder/conv2/bias", &[d])?,
            ),
            enc_pos: w.get("encoder/position_encodings/encodings", &[enc_pos_len, d])?,
            enc_layers,
            enc_ln: ln(&w, "encoder/layer_norm", d)?,
            embed: w.get("decoder/embeddings/weight", &[vocab, d])?,
            dec_pos: w.get("decoder/position_encodings/encodings", &[dec_pos_len, d])?,
            dec_layers,
            dec_ln: ln(&w, "decoder/layer_norm", d)?,
        })
    }

    /// Mel bins the model takes.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.embed.dim(0).unwrap_or(0)
    }

    /// Longest decoder sequence.
    pub fn max_target_positions(&self) -> usize {
        self.dec_pos.dim(0).unwrap_or(0)
    }

    /// Encodes log-mel features `[B, n_mels, 3000]` to `[B, 1500, d]`.
    pub fn encode(&self, mel: &Tensor) -> Result<Tensor> {
        let (_, m, _) = mel.dims3().map_err(|_| Error::InvalidInput {
            what: "mel".into(),
            message: format!("expected [B, n_mels, frames], got {:?}", mel.dims()),
        })?;
        if m != self.n_mels {
            return Err(Error::InvalidInput {
                what: "mel".into(),
                message: format!("{m} mel bins, the model takes {}", self.n_mels),
            });
        }
        let x = gelu_erf(
            &mel.conv1d(&self.conv1.0, 1, 1, 1, 1)?
                .broadcast_add(&self.conv1.1.reshape((1, (), 1))?)?,
        )?;
        let x = gelu_erf(
            &x.conv1d(&self.conv2.0, 1, 2, 1, 1)?
                .broadcast_add(&self.conv2.1.reshape((1, (), 1))?)?,
        )?;
        let x = x.transpose(1, 2)?;
        let t = x.dim(1)?;
        if t > self.enc_pos.dim(0)? {
            return Err(Error::InvalidInput {
                what: "mel".into(),
                message: format!("{t} encoder frames exceed {}", self.enc_pos.dim(0)?),
            });
        }
        let mut x = x.broadcast_add(&self.enc_pos.narrow(0, 0, t)?.unsqueeze(0)?)?;
        for l in &self.enc_layers {
            let h = l.attn_ln.forward(&x)?;
            let qkv = l.qkv.forward(&h)?;
            let q = heads_split(&qkv.narrow(2, 0, self.d)?, self.enc_heads)?;
            let k = heads_split(&qkv.narrow(2, self.d, self.d)?, self.enc_heads)?;
            let v = heads_split(&qkv.narrow(2, 2 * self.d, self.d)?, self.enc_heads)?;
            x = (x + l.out.forward(&heads_merge(&attend(&q, &k, &v, None)?)?)?)?;
            let h = l.ffn_ln.forward(&x)?;
            x = (&x + l.fc2.forward(&gelu_erf(&l.fc1.forward(&h)?)?)?)?;
        }
        self.enc_ln.forward(&x)
    }

    /// Starts a decoding run over `encoder_out` `[B, T_enc, d]`.
    pub fn start(&self, encoder_out: &Tensor) -> Result<DecoderState> {
        let cross = self
            .dec_layers
            .iter()
            .map(|l| {
                let kv = l.cross_kv.forward(encoder_out)?;
                Ok((
                    heads_split(&kv.narrow(2, 0, self.d)?, self.dec_heads)?,
                    heads_split(&kv.narrow(2, self.d, self.d)?, self.dec_heads)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(DecoderState {
            cross,
            cache: vec![None; self.dec_layers.len()],
            len: 0,
        })
    }

    /// Feeds `tokens` `[B, n]` (continuing after what the state has seen)
    /// and returns the logits of the last position `[B, vocab]`.
    pub fn decode(&self, tokens: &Tensor, state: &mut DecoderState) -> Result<Tensor> {
        let (b, n) = tokens.dims2()?;
        let start = state.len;
        if start + n > self.max_target_positions() {
            return Err(Error::InvalidInput {
                what: "tokens".into(),
                message: format!(
                    "{} positions exceed the decoder's {}",
                    start + n,
                    self.max_target_positions()
                ),
            });
        }
        let ids = tokens.to_dtype(DType::U32)?;
        let mut x = self
            .embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, n, self.d))?
            .broadcast_add(&self.dec_pos.narrow(0, start, n)?.unsqueeze(0)?)?;
        // Causal within the new tokens; every cached position is visible.
        let total = start + n;
        let mask: Vec<f32> = (0..n * total)
            .map(|i| {
                if i % total > start + i / total {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let bias = Tensor::from_vec(mask, (1, 1, n, total), x.device())?;
        for (li, l) in self.dec_layers.iter().enumerate() {
            let h = l.self_ln.forward(&x)?;
            let qkv = l.self_qkv.forward(&h)?;
            let q = heads_split(&qkv.narrow(2, 0, self.d)?, self.dec_heads)?;
            let mut k = heads_split(&qkv.narrow(2, self.d, self.d)?, self.dec_heads)?;
            let mut v = heads_split(&qkv.narrow(2, 2 * self.d, self.d)?, self.dec_heads)?;
            if let Some((ck, cv)) = &state.cache[li] {
                k = Tensor::cat(&[ck, &k], 2)?;
                v = Tensor::cat(&[cv, &v], 2)?;
            }
            state.cache[li] = Some((k.clone(), v.clone()));
            x = (x + l
                .self_out
                .forward(&heads_merge(&attend(&q, &k, &v, Some(&bias))?)?)?)?;
            let h = l.cross_ln.forward(&x)?;
            let q = heads_split(&l.cross_q.forward(&h)?, self.dec_heads)?;
            let (ck, cv) = &state.cross[li];
            x = (x + l
                .cross_out
                .forward(&heads_merge(&attend(&q, ck, cv, None)?)?)?)?;
            let h = l.ffn_ln.forward(&x)?;
            x = (&x + l.fc2.forward(&gelu_erf(&l.fc1.forward(&h)?)?)?)?;
        }
        state.len = total;
        let last = self.dec_ln.forward(&x.narrow(1, n - 1, 1)?.squeeze(1)?)?;
        Ok(last.matmul(&self.embed.t()?)?)
    }
}

/// Special token ids of an English-only Whisper vocabulary (tiny.en …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhisperTokens {
    /// `<|endoftext|>`.
    pub eot: u32,
    /// `<|startoftranscript|>`.
    pub sot: u32,
    /// `<|notimestamps|>`.
    pub no_timestamps: u32,
    /// `<|0.00|>`; timestamps go up by 0.02 s per id.
    pub timestamp_begin: u32,
}

impl WhisperTokens {
    /// The English-only layout (51864 ids).
    pub const ENGLISH: WhisperTokens = WhisperTokens {
        eot: 50256,
        sot: 50257,
        no_timestamps: 50362,
        timestamp_begin: 50363,
    };
}

/// Greedy decoding settings (faster-whisper's defaults for temperature 0).
#[derive(Debug, Clone)]
pub struct GreedyOptions {
    /// Ids never generated (the model config's `suppress_ids`).
    pub suppress: Vec<u32>,
    /// Ids not generated as the first token (`suppress_ids_begin`).
    pub suppress_begin: Vec<u32>,
    /// Produce timestamp tokens (with Whisper's timestamp rules).
    pub timestamps: bool,
    /// Largest first timestamp, in seconds.
    pub max_initial_timestamp: f64,
    /// Most generated tokens.
    pub max_new_tokens: usize,
}

impl GreedyOptions {
    /// Reads `suppress_ids` / `suppress_ids_begin` from the CTranslate2
    /// folder's `config.json`.
    pub fn from_config(dir: &Path) -> Result<Self> {
        let file = dir.join("config.json");
        let text = std::fs::read_to_string(&file).map_err(|e| mosaic_core::Error::io(&file, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
            source_name: file.display().to_string(),
            message: e.to_string(),
        })?;
        let ids = |k: &str| -> Vec<u32> {
            v[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_u64().map(|n| n as u32))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(GreedyOptions {
            suppress: ids("suppress_ids"),
            suppress_begin: ids("suppress_ids_begin"),
            timestamps: true,
            max_initial_timestamp: 1.0,
            max_new_tokens: 224,
        })
    }
}

impl WhisperModel {
    /// Greedy decoding of one 30 s window: returns the generated ids (after
    /// the prompt, without the final end-of-text).
    pub fn generate_greedy(
        &self,
        encoder_out: &Tensor,
        prompt: &[u32],
        tokens: WhisperTokens,
        opts: &GreedyOptions,
    ) -> Result<Vec<u32>> {
        Ok(self
            .generate_greedy_scored(encoder_out, prompt, tokens, opts)?
            .ids)
    }

    /// Greedy decoding with the statistics faster-whisper's no-speech filter
    /// uses.
    pub fn generate_greedy_scored(
        &self,
        encoder_out: &Tensor,
        prompt: &[u32],
        tokens: WhisperTokens,
        opts: &GreedyOptions,
    ) -> Result<Generated> {
        let mut state = self.start(encoder_out)?;
        let mut sum_logprob = 0f64;
        let mut steps = 0usize;
        let mut no_speech_prob = 0f64;
        let vocab = self.vocab_size();
        let mut seq: Vec<u32> = Vec::new();
        let mut input = Tensor::new(prompt, encoder_out.device())?.unsqueeze(0)?;
        let ts = tokens.timestamp_begin as usize;
        for _ in 0..opts.max_new_tokens {
            if prompt.len() + seq.len() >= self.max_target_positions() {
                break;
            }
            let mut logits: Vec<f32> = self.decode(&input, &mut state)?.squeeze(0)?.to_vec1()?;
            let neg = f32::NEG_INFINITY;
            if seq.is_empty() {
                // P(<|nocaptions|>) (the id before <|notimestamps|>) from the raw first-step logits.
                let m = logits.iter().copied().fold(neg, f32::max) as f64;
                let z: f64 = logits.iter().map(|&v| (v as f64 - m).exp()).sum();
                no_speech_prob = (logits[tokens.no_timestamps as usize - 1] as f64 - m).exp() / z;
            }
            for &s in &opts.suppress {
                if (s as usize) < vocab {
                    logits[s as usize] = neg;
                }
            }
            if seq.is_empty() {
                for &s in &opts.suppress_begin {
                    if (s as usize) < vocab {
                        logits[s as usize] = neg;
                    }
                }
            }
            if opts.timestamps {
                logits[tokens.no_timestamps as usize] = neg;
                let last_ts = seq.last().is_some_and(|&t| t >= tokens.timestamp_begin);
                let penult_ts = seq.len() < 2 || seq[seq.len() - 2] >= tokens.timestamp_begin;
                if last_ts {
                    if penult_ts {
                        logits[ts..].iter_mut().for_each(|l| *l = neg);
                    } else {
                        logits[..tokens.eot as usize]
                            .iter_mut()
                            .for_each(|l| *l = neg);
                    }
                }
                if let Some(&last) = seq.iter().rev().find(|&&t| t >= tokens.timestamp_begin) {
                    // Timestamps never decrease (and a closing one moves on).
                    let floor = if last_ts && !penult_ts {
                        last
                    } else {
                        last + 1
                    };
                    logits[ts..(floor as usize).min(vocab)]
                        .iter_mut()
                        .for_each(|l| *l = neg);
                }
                if seq.is_empty() {
                    logits[..ts].iter_mut().for_each(|l| *l = neg);
                    let max_initial = ts + (opts.max_initial_timestamp / 0.02).round() as usize;
                    if max_initial + 1 < vocab {
                        logits[max_initial + 1..].iter_mut().for_each(|l| *l = neg);
                    }
                }
                // If the timestamps together are likelier than any text token, emit a timestamp.
                let max = logits.iter().copied().fold(neg, f32::max);
                let lse = |s: &[f32]| -> f64 {
                    let m = s.iter().copied().fold(neg, f32::max) as f64;
                    if m == f64::NEG_INFINITY {
                        m
                    } else {
                        m + s.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
                    }
                };
                let total = lse(&logits);
                let ts_lp = lse(&logits[ts..]) - total;
                let text_max = logits[..ts].iter().copied().fold(neg, f32::max) as f64 - total;
                if ts_lp > text_max {
                    logits[..ts].iter_mut().for_each(|l| *l = neg);
                }
                let _ = max;
            }
            let next = logits
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                .map(|(i, _)| i as u32)
                .unwrap_or(tokens.eot);
            // Log-probability of the choice under the masked distribution.
            let m = logits.iter().copied().fold(neg, f32::max) as f64;
            let lse = logits
                .iter()
                .map(|&v| (v as f64 - m).exp())
                .sum::<f64>()
                .ln()
                + m;
            sum_logprob += logits[next as usize] as f64 - lse;
            steps += 1;
            if next == tokens.eot {
                break;
            }
            seq.push(next);
            input = Tensor::new(&[next], encoder_out.device())?.unsqueeze(0)?;
        }
        let avg_logprob = if steps > 0 {
            sum_logprob / steps as f64
        } else {
            0.0
        };
        Ok(Generated {
            ids: seq,
            avg_logprob,
            no_speech_prob,
        })
    }
}

/// Output of [`WhisperModel::generate_greedy_scored`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Generated ids (no prompt, no end-of-text).
    pub ids: Vec<u32>,
    /// Mean log-probability per step, the end-of-text step included.
    pub avg_logprob: f64,
    /// Probability of `<|nocaptions|>` at the first step (raw logits).
    pub no_speech_prob: f64,
}

/// A transcribed segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start in seconds.
    pub start: f64,
    /// End in seconds.
    pub end: f64,
    /// Text token ids.
    pub tokens: Vec<u32>,
}

/// Splits generated ids into segments at timestamp pairs, as Whisper does
/// for one window starting at `offset` seconds lasting `duration`.
pub fn split_segments(
    seq: &[u32],
    tokens: WhisperTokens,
    offset: f64,
    duration: f64,
) -> Vec<Segment> {
    let is_ts = |t: u32| t >= tokens.timestamp_begin;
    let time = |t: u32| offset + (t - tokens.timestamp_begin) as f64 * 0.02;
    let mut out = Vec::new();
    let consecutive: Vec<usize> = (1..seq.len())
        .filter(|&i| is_ts(seq[i]) && is_ts(seq[i - 1]))
        .collect();
    if !consecutive.is_empty() {
        let mut last = 0;
        for &i in &consecutive {
            let slice = &seq[last..i];
            if let (Some(&a), Some(&b)) = (slice.first(), slice.last()) {
                let text: Vec<u32> = slice.iter().copied().filter(|&t| t < tokens.eot).collect();
                out.push(Segment {
                    start: time(a),
                    end: time(b),
                    tokens: text,
                });
            }
            last = i;
        }
        let rest = &seq[last..];
        if rest.len() > 1 {
            let text: Vec<u32> = rest.iter().copied().filter(|&t| t < tokens.eot).collect();
            if !text.is_empty() {
                let end = rest
                    .iter()
                    .rev()
                    .find(|&&t| is_ts(t))
                    .map(|&t| time(t))
                    .filter(|&e| e > time(rest[0]))
                    .unwrap_or(offset + duration);
                out.push(Segment {
                    start: time(rest[0]),
                    end,
                    tokens: text,
                });
            }
        }
    } else {
        let stamps: Vec<u32> = seq.iter().copied().filter(|&t| is_ts(t)).collect();
        let end = match stamps.last() {
            Some(&t) if t != tokens.timestamp_begin => time(t),
            _ => offset + duration,
        };
        let text: Vec<u32> = seq.iter().copied().filter(|&t| t < tokens.eot).collect();
        out.push(Segment {
            start: offset,
            end,
            tokens: text,
        });
    }
    out
}

/// A ready-to-use speech recogniser: features, model, tokenizer, decoding.
#[derive(Debug)]
pub struct WhisperTranscriber {
    model: WhisperModel,
    tokenizer: mosaic_data::text::TextTokenizer,
    features: mosaic_data::audio::WhisperFeatureExtractor,
    /// Decoding settings.
    pub options: GreedyOptions,
    tokens: WhisperTokens,
}

/// A transcribed segment with its text.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TextSegment {
    /// Start in seconds.
    pub start: f64,
    /// End in seconds.
    pub end: f64,
    /// Text.
    pub text: String,
    /// Token ids.
    pub tokens: Vec<u32>,
}

impl WhisperTranscriber {
    /// Loads a CTranslate2 Whisper folder (`model.bin`, `config.json`,
    /// `tokenizer.json`). Only English-only vocabularies are supported so far.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        let model = WhisperModel::from_pretrained(dir)?;
        if model.vocab_size() != 51864 {
            return Err(Error::Config {
                source_name: dir.display().to_string(),
                message: format!(
                    "vocabulary of {} ids: only English-only Whisper models (51864) are supported so far",
                    model.vocab_size()
                ),
            });
        }
        let tokenizer = mosaic_data::text::TextTokenizer::from_file(
            &dir.join("tokenizer.json"),
            mosaic_data::text::TextConfig {
                max_length: None,
                padding: mosaic_data::text::Padding::None,
                add_special_tokens: false,
            },
        )?;
        let features = mosaic_data::audio::WhisperFeatureExtractor::new(
            mosaic_data::audio::WhisperFeatureConfig {
                n_mels: model.n_mels(),
                ..Default::default()
            },
        )?;
        Ok(WhisperTranscriber {
            model,
            tokenizer,
            features,
            options: GreedyOptions::from_config(dir)?,
            tokens: WhisperTokens::ENGLISH,
        })
    }

    /// The model.
    pub fn model(&self) -> &WhisperModel {
        &self.model
    }

    /// Transcribes 16 kHz mono audio of any length the way faster-whisper
    /// does (greedy, temperature 0): features of the whole recording, 30 s
    /// windows padded with 0.0, and after each window a seek to the last
    /// closing timestamp (or past the window when it ended on one timestamp).
    pub fn transcribe(&self, audio_16k: &[f32]) -> Result<Vec<TextSegment>> {
        Ok(self
            .transcribe_windows(audio_16k)?
            .into_iter()
            .flat_map(|w| w.1)
            .collect())
    }

    /// Like [`transcribe`](Self::transcribe), also returning each window's
    /// generated ids.
    pub fn transcribe_windows(
        &self,
        audio_16k: &[f32],
    ) -> Result<Vec<(Vec<u32>, Vec<TextSegment>)>> {
        const N_FRAMES: usize = 3000;
        if audio_16k.is_empty() {
            return Err(Error::InvalidInput {
                what: "audio".into(),
                message: "no samples".into(),
            });
        }
        let n_mels = self.model.n_mels();
        let (feats, frames) = self.features.extract_full(audio_16k)?;
        let content = frames.saturating_sub(1);
        let mut out = Vec::new();
        let mut seek = 0usize; // in frames (10 ms)
        while seek < content {
            let size = (content - seek).min(N_FRAMES);
            let mut window = vec![0f32; n_mels * N_FRAMES];
            for m in 0..n_mels {
                window[m * N_FRAMES..m * N_FRAMES + size]
                    .copy_from_slice(&feats[m * frames + seek..m * frames + seek + size]);
            }
            let mel = Tensor::from_vec(window, (1, n_mels, N_FRAMES), &Device::Cpu)?;
            let enc = self.model.encode(&mel)?;
            let g = self.model.generate_greedy_scored(
                &enc,
                &[self.tokens.sot],
                self.tokens,
                &self.options,
            )?;
            // faster-whisper's no-speech filter: drop the window, move past it.
            if g.no_speech_prob > 0.6 && g.avg_logprob <= -1.0 {
                seek += size;
                continue;
            }
            let ids = g.ids;
            let offset = seek as f64 * 0.01;
            let duration = size as f64 * 0.01;
            let mut segs = Vec::new();
            for s in split_segments(&ids, self.tokens, offset, duration) {
                let text = self.tokenizer.decode(&s.tokens, true)?;
                if !text.trim().is_empty() {
                    segs.push(TextSegment {
                        start: s.start,
                        end: s.end,
                        text,
                        tokens: s.tokens,
                    });
                }
            }
            let ts = self.tokens.timestamp_begin;
            let n = ids.len();
            let single_ending = n >= 2 && ids[n - 2] < ts && ids[n - 1] >= ts;
            let has_pairs = (1..n).any(|i| ids[i] >= ts && ids[i - 1] >= ts);
            let advance = if has_pairs && !single_ending {
                // Resume from the last timestamp that closed a segment (2 frames per 0.02 s).
                let last = (1..n)
                    .rev()
                    .find(|&i| ids[i] >= ts && ids[i - 1] >= ts)
                    .map(|i| ids[i - 1])
                    .unwrap_or(ts);
                ((last - ts) as usize * 2).max(1)
            } else {
                size
            };
            seek += advance.min(size.max(1));
            out.push((ids, segs));
        }
        Ok(out)
    }
}
