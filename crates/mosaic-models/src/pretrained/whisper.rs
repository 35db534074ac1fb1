//! Whisper speech recognition: the encoder–decoder network loaded from a
//! CTranslate2 `WhisperSpec` checkpoint (`model.bin`, as shipped for
//! faster-whisper) or from a Hugging Face `WhisperForConditionalGeneration`
//! folder (`config.json` + `model.safetensors`), run in f32 with a KV
//! cache; decoding as faster-whisper / CTranslate2 do it (greedy, beam
//! search, sampling with temperature fallback; [`decoding`]); and
//! long-form transcription in 30 s windows, optionally gated by Silero VAD
//! ([`transcribe`]).
//!
//! Network: log-mel → 2 convolutions (GELU) + learned positions + pre-norm
//! encoder layers; token embeddings + learned positions → pre-norm decoder
//! layers with causal self-attention and cross-attention; logits through
//! the tied embedding (or an untied `proj_out`).
//!
//! CTranslate2 names: `encoder/conv{1,2}`, `encoder/position_encodings`,
//! `encoder/layer_N/{self_attention,ffn}`, `decoder/embeddings`,
//! `decoder/layer_N/{self_attention,attention,ffn}`; self-attention q, k, v
//! are stacked in `linear_0`, cross-attention keys and values in `linear_1`.
//! Hugging Face names: `model.encoder.conv1.weight`,
//! `model.encoder.layers.N.self_attn.{q,k,v,out}_proj`,
//! `model.decoder.layers.N.encoder_attn.{q,k,v,out}_proj`, ... (keys have no
//! bias there; the loader stacks the projections into the same layout).

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::nn::{CheckpointMode, Init, ParamStore};
use crate::nn::{LayerNorm, Linear, StackedLinear, gelu_erf, softmax_last_dim};
use crate::weights::Weights;

pub mod decoding;
pub mod transcribe;
mod zlib;

pub use decoding::{
    Attempt, DecodeOptions, FallbackOptions, Generated, SampleRng, WhisperTokens, apply_rules,
    compression_ratio, generate_with_fallback,
};
pub use transcribe::{
    Segment, SpeechTimestampsMap, TextSegment, TranscribeOptions, Transcript, VadFilter,
    WhisperTranscriber, WindowResult, split_segments,
};

/// Greedy decoding settings: the former name of [`DecodeOptions`].
pub type GreedyOptions = DecodeOptions;

fn ct2_ln(w: &ParamStore, p: &str, d: usize) -> Result<LayerNorm> {
    // CTranslate2 stores LayerNorm as gamma/beta.
    Ok(LayerNorm {
        weight: w.get(&format!("{p}/gamma"), &[d], Init::Ones)?,
        bias: w.get(&format!("{p}/beta"), &[d], Init::Zeros)?,
        eps: 1e-5,
    })
}

fn ct2_lin(w: &ParamStore, p: &str, i: usize, o: usize) -> Result<Linear> {
    Ok(Linear::new(
        w.get(&format!("{p}/weight"), &[o, i], Init::Normal(0.02))?,
        Some(w.get(&format!("{p}/bias"), &[o], Init::Zeros)?),
    ))
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
    let scale = 1.0 / (hd as f64).sqrt();
    let mut s = q.matmul(&k.t()?)?;
    if let Some(b) = bias {
        // Masked entries are -inf: scaling after the mask changes nothing.
        s = s.broadcast_add(b)?;
    }
    // The single-pass kernel has no backward: only off autograd.
    let p = if s.device().is_cpu() && s.dtype() == DType::F32 && !s.track_op() {
        s.contiguous()?
            .apply_op1_no_bwd(&fused::ScaledSoftmax(scale as f32))?
    } else {
        softmax_last_dim(&(s * scale)?)?
    };
    Ok(p.matmul(v)?)
}

/// GELU (erf) in one pass. Under autograd Mosaic's fused op: candle's
/// backward uses 1/√(2π) rounded to 0.398942 (found by the family's
/// finite-difference check, relative error ~1e-5).
fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && !x.track_op() {
        Ok(x.gelu_erf()?)
    } else {
        gelu_erf(x)
    }
}

/// LayerNorm in one pass over each row (f64 statistics) off autograd; the
/// differentiable fused LayerNorm under it.
fn layer_norm(ln: &LayerNorm, x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu()
        || x.dtype() != DType::F32
        || x.track_op()
        || ln.weight.track_op()
        || ln.bias.track_op()
    {
        return ln.forward(x);
    }
    let op = fused::LayerNormOp {
        weight: ln.weight.to_vec1::<f32>()?,
        bias: ln.bias.to_vec1::<f32>()?,
        eps: ln.eps,
    };
    Ok(x.contiguous()?.apply_op1_no_bwd(&op)?)
}

/// Single-pass CPU kernels for inference (no backward: they report
/// `BackwardNotSupported` if a gradient is asked for, never a silent zero).
mod fused {
    use candle_core::{CpuStorage, CustomOp1, Layout, Shape};

    fn rows_f32<'a>(
        name: &str,
        s: &'a CpuStorage,
        l: &Layout,
    ) -> candle_core::Result<(&'a [f32], usize)> {
        let CpuStorage::F32(v) = s else {
            candle_core::bail!("{name}: f32 only");
        };
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("{name}: contiguous input only");
        };
        let d = *l.dims().last().unwrap_or(&1);
        Ok((&v[a..b], d.max(1)))
    }

    /// Applies `f` to every row of `x` (`d` values each) into a new buffer,
    /// on up to `get_num_threads()` threads for large inputs.
    fn par_rows(x: &[f32], d: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) -> Vec<f32> {
        let mut out = vec![0f32; x.len()];
        let rows = x.len() / d;
        let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
        if threads == 1 || x.len() < 1 << 15 {
            for (i, o) in x.chunks(d).zip(out.chunks_mut(d)) {
                f(i, o);
            }
            return out;
        }
        let per = rows.div_ceil(threads) * d;
        std::thread::scope(|sc| {
            for (xi, oi) in x.chunks(per).zip(out.chunks_mut(per)) {
                let f = &f;
                sc.spawn(move || {
                    for (i, o) in xi.chunks(d).zip(oi.chunks_mut(d)) {
                        f(i, o);
                    }
                });
            }
        });
        out
    }

    /// `softmax(scale · x)` over the last dimension.
    pub struct ScaledSoftmax(pub f32);

    impl CustomOp1 for ScaledSoftmax {
        fn name(&self) -> &'static str {
            "whisper-scaled-softmax"
        }

        fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            let (x, d) = rows_f32(self.name(), s, l)?;
            let scale = self.0;
            let out = par_rows(x, d, |r, o| {
                let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (v, y) in r.iter().zip(o.iter_mut()) {
                    *y = ((v - m) * scale).exp();
                    sum += *y;
                }
                let inv = 1.0 / sum;
                o.iter_mut().for_each(|y| *y *= inv);
            });
            Ok((CpuStorage::F32(out), l.shape().clone()))
        }
    }

    /// LayerNorm over the last dimension with weight and bias.
    pub struct LayerNormOp {
        pub weight: Vec<f32>,
        pub bias: Vec<f32>,
        pub eps: f64,
    }

    impl CustomOp1 for LayerNormOp {
        fn name(&self) -> &'static str {
            "whisper-layer-norm"
        }

        fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            let (x, d) = rows_f32(self.name(), s, l)?;
            if d != self.weight.len() || d != self.bias.len() {
                candle_core::bail!("layer norm of width {} on rows of {d}", self.weight.len());
            }
            let out = par_rows(x, d, |r, o| {
                let mean = r.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                let var = r.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                let inv = 1.0 / (var + self.eps).sqrt();
                for (i, (v, y)) in r.iter().zip(o.iter_mut()).enumerate() {
                    *y = (((*v as f64 - mean) * inv) as f32) * self.weight[i] + self.bias[i];
                }
            });
            Ok((CpuStorage::F32(out), l.shape().clone()))
        }
    }
}

/// Cross-attention of `q` `[B, h, n, hd]` over keys/values `[Bk, h, T, hd]`;
/// when one encoder output serves several rows (`Bk == 1 < B`: beams,
/// sampled hypotheses) the rows are folded into the query length, so the
/// encoder keys are neither copied nor multiplied once per row.
fn cross_attend(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (b, h, n, hd) = q.dims4()?;
    if k.dim(0)? == b {
        return attend(q, k, v, None);
    }
    let folded = q
        .transpose(0, 1)?
        .contiguous()?
        .reshape((1, h, b * n, hd))?;
    let out = attend(&folded, k, v, None)?;
    Ok(out.reshape((h, b, n, hd))?.transpose(0, 1)?.contiguous()?)
}

struct EncLayer {
    attn_ln: LayerNorm,
    qkv: StackedLinear,
    out: Linear,
    ffn_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

struct DecLayer {
    self_ln: LayerNorm,
    self_qkv: StackedLinear,
    self_out: Linear,
    cross_ln: LayerNorm,
    cross_q: Linear,
    cross_kv: StackedLinear,
    cross_out: Linear,
    ffn_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The Whisper network (encoder + decoder).
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
    /// Output projection when it is not tied to `embed`.
    proj: Option<Tensor>,
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
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

/// Per-decoding-run state: cross-attention keys/values (computed once from
/// the encoder output) and the self-attention KV cache, one row per
/// hypothesis.
pub struct DecoderState {
    cross: Vec<(Tensor, Tensor)>,
    cache: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl DecoderState {
    /// Positions fed so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows (hypotheses) in the self-attention cache (0 before the first step).
    pub fn rows(&self) -> usize {
        self.cache
            .first()
            .and_then(|c| c.as_ref())
            .and_then(|(k, _)| k.dim(0).ok())
            .unwrap_or(0)
    }

    /// Keeps, for row `i` of the next step, the cache of row `origins[i]`:
    /// replicates a single row into beams, reorders beams after a search
    /// step, or drops finished rows. The cross-attention keys stay shared.
    pub fn reorder(&mut self, origins: &[u32]) -> Result<()> {
        let rows = self.rows() as u32;
        if let Some(&bad) = origins.iter().find(|&&o| o >= rows) {
            return Err(Error::InvalidInput {
                what: "beam origins".into(),
                message: format!("row {bad} of a cache with {rows} rows"),
            });
        }
        let dev = self
            .cross
            .first()
            .map(|c| c.0.device().clone())
            .unwrap_or(Device::Cpu);
        let idx = Tensor::new(origins, &dev)?;
        for c in self.cache.iter_mut() {
            if let Some((k, v)) = c {
                *c = Some((k.index_select(&idx, 0)?, v.index_select(&idx, 0)?));
            }
        }
        Ok(())
    }
}

/// Sizes read from a Hugging Face Whisper `config.json` (transformers'
/// `WhisperConfig`; unknown keys are ignored because such configs carry
/// many generation and training settings this loader has no use for).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HfWhisperConfig {
    /// Width of the model (default 384).
    #[serde(default = "default_d_model")]
    pub d_model: usize,
    /// Encoder layers (default 4).
    #[serde(default = "default_layers")]
    pub encoder_layers: usize,
    /// Decoder layers (default 4).
    #[serde(default = "default_layers")]
    pub decoder_layers: usize,
    /// Encoder attention heads (default 6).
    #[serde(default = "default_heads")]
    pub encoder_attention_heads: usize,
    /// Decoder attention heads (default 6).
    #[serde(default = "default_heads")]
    pub decoder_attention_heads: usize,
    /// Encoder feed-forward width (default 1536).
    #[serde(default = "default_ffn")]
    pub encoder_ffn_dim: usize,
    /// Decoder feed-forward width (default 1536).
    #[serde(default = "default_ffn")]
    pub decoder_ffn_dim: usize,
    /// Mel bins (default 80).
    #[serde(default = "default_mels")]
    pub num_mel_bins: usize,
    /// Vocabulary size (default 51865).
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    /// Encoder positions (default 1500 = 3000 mel frames).
    #[serde(default = "default_source")]
    pub max_source_positions: usize,
    /// Decoder positions (default 448).
    #[serde(default = "default_target")]
    pub max_target_positions: usize,
    /// Activation; only `gelu` (erf) is supported (default `gelu`).
    #[serde(default = "default_act")]
    pub activation_function: String,
    /// Whether `proj_out` is the token embedding (default true).
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// `model_type` (must be `whisper` when present).
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_d_model() -> usize {
    384
}
fn default_layers() -> usize {
    4
}
fn default_heads() -> usize {
    6
}
fn default_ffn() -> usize {
    1536
}
fn default_mels() -> usize {
    80
}
fn default_vocab() -> usize {
    51865
}
fn default_source() -> usize {
    1500
}
fn default_target() -> usize {
    448
}
fn default_act() -> String {
    "gelu".into()
}
fn default_true() -> bool {
    true
}

impl WhisperModel {
    /// Loads a Whisper checkpoint from a folder in either layout: a
    /// CTranslate2 folder (`model.bin`) or a Hugging Face folder
    /// (`config.json` + `model.safetensors`); a file path is read as a
    /// CTranslate2 `model.bin`.
    pub fn load(path: &Path) -> Result<Self> {
        if path.is_dir() && !path.join("model.bin").exists() {
            Self::from_hf_dir(path)
        } else {
            Self::from_pretrained(path)
        }
    }

    /// Loads a CTranslate2 Whisper folder (`model.bin`) or file, in f32.
    pub fn from_pretrained(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("model.bin")
        } else {
            path.to_path_buf()
        };
        let w = ParamStore::from_checkpoint(
            Weights::load(&file, &Device::Cpu, DType::F32)?,
            CheckpointMode::Frozen,
            DType::F32,
            &Device::Cpu,
        )?;
        let count = |prefix: &str| {
            (0..)
                .take_while(|i| w.contains(&format!("{prefix}/layer_{i}/ffn/linear_0/weight")))
                .count()
        };
        let heads = |name: &str| -> Result<usize> {
            let t = w.get_unchecked(name)?;
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
        if conv1_shape.len() != 3 {
            return Err(Error::Weight {
                checkpoint: file.display().to_string(),
                name: "encoder/conv1/weight".into(),
                message: format!("shape {conv1_shape:?}, expected [d_model, n_mels, 3]"),
            });
        }
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
        check_heads(&file.display().to_string(), d, enc_heads, dec_heads)?;
        let enc_layers = (0..count("encoder"))
            .map(|i| {
                let p = format!("encoder/layer_{i}");
                Ok(EncLayer {
                    attn_ln: ct2_ln(&w, &format!("{p}/self_attention/layer_norm"), d)?,
                    qkv: StackedLinear::new(vec![ct2_lin(
                        &w,
                        &format!("{p}/self_attention/linear_0"),
                        d,
                        3 * d,
                    )?])?,
                    out: ct2_lin(&w, &format!("{p}/self_attention/linear_1"), d, d)?,
                    ffn_ln: ct2_ln(&w, &format!("{p}/ffn/layer_norm"), d)?,
                    fc1: ct2_lin(&w, &format!("{p}/ffn/linear_0"), d, ff)?,
                    fc2: ct2_lin(&w, &format!("{p}/ffn/linear_1"), ff, d)?,
                })
            })
            .collect::<Result<_>>()?;
        let dec_layers = (0..count("decoder"))
            .map(|i| {
                let p = format!("decoder/layer_{i}");
                Ok(DecLayer {
                    self_ln: ct2_ln(&w, &format!("{p}/self_attention/layer_norm"), d)?,
                    self_qkv: StackedLinear::new(vec![ct2_lin(
                        &w,
                        &format!("{p}/self_attention/linear_0"),
                        d,
                        3 * d,
                    )?])?,
                    self_out: ct2_lin(&w, &format!("{p}/self_attention/linear_1"), d, d)?,
                    cross_ln: ct2_ln(&w, &format!("{p}/attention/layer_norm"), d)?,
                    cross_q: ct2_lin(&w, &format!("{p}/attention/linear_0"), d, d)?,
                    cross_kv: StackedLinear::new(vec![ct2_lin(
                        &w,
                        &format!("{p}/attention/linear_1"),
                        d,
                        2 * d,
                    )?])?,
                    cross_out: ct2_lin(&w, &format!("{p}/attention/linear_2"), d, d)?,
                    ffn_ln: ct2_ln(&w, &format!("{p}/ffn/layer_norm"), d)?,
                    fc1: ct2_lin(&w, &format!("{p}/ffn/linear_0"), d, ff)?,
                    fc2: ct2_lin(&w, &format!("{p}/ffn/linear_1"), ff, d)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(WhisperModel {
            d,
            enc_heads,
            dec_heads,
            n_mels,
            conv1: (
                w.get("encoder/conv1/weight", &[d, n_mels, 3], Init::Normal(0.02))?,
                w.get("encoder/conv1/bias", &[d], Init::Zeros)?,
            ),
            conv2: (
                w.get("encoder/conv2/weight", &[d, d, 3], Init::Normal(0.02))?,
                w.get("encoder/conv2/bias", &[d], Init::Zeros)?,
            ),
            enc_pos: w.get(
                "encoder/position_encodings/encodings",
                &[enc_pos_len, d],
                Init::Normal(0.02),
            )?,
            enc_layers,
            enc_ln: ct2_ln(&w, "encoder/layer_norm", d)?,
            embed: w.get("decoder/embeddings/weight", &[vocab, d], Init::Normal(0.02))?,
            proj: None,
            dec_pos: w.get(
                "decoder/position_encodings/encodings",
                &[dec_pos_len, d],
                Init::Normal(0.02),
            )?,
            dec_layers,
            dec_ln: ct2_ln(&w, "decoder/layer_norm", d)?,
        })
    }

    /// Loads a Hugging Face `WhisperForConditionalGeneration` (or
    /// `WhisperModel`) folder: `config.json` ([`HfWhisperConfig`]) and
    /// `model.safetensors`, names as transformers writes them
    /// (`model.encoder.conv1.weight`, `model.decoder.layers.0.encoder_attn.k_proj.weight`, ...;
    /// a missing `model.` prefix is accepted). `proj_out.weight` is used
    /// when present and untied, the token embedding otherwise. Errors name
    /// the missing or mis-shaped tensor and the expected shape.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        Self::load_hf(dir, &super::inference_store(), CheckpointMode::Frozen)
    }

    /// Loads a folder's checkpoint into `store` (at its prefix, in its
    /// dtype and device), trainable or frozen.
    pub fn load_hf(dir: &Path, store: &ParamStore, mode: CheckpointMode) -> Result<Self> {
        let cfg: HfWhisperConfig = super::read_config(dir)?;
        let source = dir.join("config.json").display().to_string();
        if let Some(t) = &cfg.model_type
            && t != "whisper"
        {
            return Err(Error::Config {
                source_name: source,
                message: format!("key `model_type`: `{t}`, expected `whisper`"),
            });
        }
        if cfg.activation_function != "gelu" {
            return Err(Error::Config {
                source_name: source,
                message: format!(
                    "key `activation_function`: `{}` is not supported (only `gelu`)",
                    cfg.activation_function
                ),
            });
        }
        let d = cfg.d_model;
        check_heads(
            &source,
            d,
            cfg.encoder_attention_heads,
            cfg.decoder_attention_heads,
        )?;
        super::attach(dir, store, mode, &["model."])?;
        let lin = |p: &str, i: usize, o: usize| Linear::load(store, p, i, o);
        let ln = |p: &str| LayerNorm::load(store, p, d, 1e-5);
        // q (bias), k (no bias), v (bias) stacked into one projection.
        let stacked = |p: &str, names: &[&str]| -> Result<StackedLinear> {
            let parts = names
                .iter()
                .map(|n| store.linear(&format!("{p}.{n}_proj"), d, d, *n != "k"))
                .collect::<Result<Vec<_>>>()?;
            StackedLinear::new(parts)
        };
        let enc_layers = (0..cfg.encoder_layers)
            .map(|i| {
                let p = format!("encoder.layers.{i}");
                Ok(EncLayer {
                    attn_ln: ln(&format!("{p}.self_attn_layer_norm"))?,
                    qkv: stacked(&format!("{p}.self_attn"), &["q", "k", "v"])?,
                    out: lin(&format!("{p}.self_attn.out_proj"), d, d)?,
                    ffn_ln: ln(&format!("{p}.final_layer_norm"))?,
                    fc1: lin(&format!("{p}.fc1"), d, cfg.encoder_ffn_dim)?,
                    fc2: lin(&format!("{p}.fc2"), cfg.encoder_ffn_dim, d)?,
                })
            })
            .collect::<Result<_>>()?;
        let dec_layers = (0..cfg.decoder_layers)
            .map(|i| {
                let p = format!("decoder.layers.{i}");
                Ok(DecLayer {
                    self_ln: ln(&format!("{p}.self_attn_layer_norm"))?,
                    self_qkv: stacked(&format!("{p}.self_attn"), &["q", "k", "v"])?,
                    self_out: lin(&format!("{p}.self_attn.out_proj"), d, d)?,
                    cross_ln: ln(&format!("{p}.encoder_attn_layer_norm"))?,
                    cross_q: lin(&format!("{p}.encoder_attn.q_proj"), d, d)?,
                    cross_kv: stacked(&format!("{p}.encoder_attn"), &["k", "v"])?,
                    cross_out: lin(&format!("{p}.encoder_attn.out_proj"), d, d)?,
                    ffn_ln: ln(&format!("{p}.final_layer_norm"))?,
                    fc1: lin(&format!("{p}.fc1"), d, cfg.decoder_ffn_dim)?,
                    fc2: lin(&format!("{p}.fc2"), cfg.decoder_ffn_dim, d)?,
                })
            })
            .collect::<Result<_>>()?;
        let embed = store.get(
            "decoder.embed_tokens.weight",
            &[cfg.vocab_size, d],
            Init::Normal(0.02),
        )?;
        let proj = if !cfg.tie_word_embeddings && store.contains("proj_out.weight") {
            Some(store.get("proj_out.weight", &[cfg.vocab_size, d], Init::Normal(0.02))?)
        } else {
            None
        };
        let m = cfg.num_mel_bins;
        Ok(WhisperModel {
            d,
            enc_heads: cfg.encoder_attention_heads,
            dec_heads: cfg.decoder_attention_heads,
            n_mels: m,
            conv1: (
                store.get("encoder.conv1.weight", &[d, m, 3], Init::Normal(0.02))?,
                store.get("encoder.conv1.bias", &[d], Init::Zeros)?,
            ),
            conv2: (
                store.get("encoder.conv2.weight", &[d, d, 3], Init::Normal(0.02))?,
                store.get("encoder.conv2.bias", &[d], Init::Zeros)?,
            ),
            enc_pos: store.get(
                "encoder.embed_positions.weight",
                &[cfg.max_source_positions, d],
                Init::Normal(0.02),
            )?,
            enc_layers,
            enc_ln: ln("encoder.layer_norm")?,
            embed,
            proj,
            dec_pos: store.get(
                "decoder.embed_positions.weight",
                &[cfg.max_target_positions, d],
                Init::Normal(0.02),
            )?,
            dec_layers,
            dec_ln: ln("decoder.layer_norm")?,
        })
    }

    /// Writes the model as a Hugging Face `WhisperForConditionalGeneration`
    /// folder (`config.json` + `model.safetensors`, f32) that
    /// [`from_hf_dir`](Self::from_hf_dir) and transformers read: e.g. to
    /// convert a CTranslate2 checkpoint. Fails if a key projection has a
    /// bias, which that layout cannot hold.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        use std::collections::HashMap;
        let d = self.d;
        let mut t: HashMap<String, Tensor> = HashMap::new();
        let mut put = |k: String, v: &Tensor| -> Result<()> {
            t.insert(k, v.contiguous()?);
            Ok(())
        };
        let split = |l: &Linear,
                     names: &[&str],
                     p: &str,
                     put: &mut dyn FnMut(String, &Tensor) -> Result<()>|
         -> Result<()> {
            for (i, n) in names.iter().enumerate() {
                put(
                    format!("{p}.{n}_proj.weight"),
                    &l.weight.narrow(0, i * d, d)?,
                )?;
                if let Some(b) = &l.bias {
                    let b = b.narrow(0, i * d, d)?;
                    if *n == "k" {
                        let m = b.abs()?.max(0)?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                        if m != 0.0 {
                            return Err(Error::InvalidInput {
                                what: "model".into(),
                                message: format!(
                                    "{p}: the key projection has a bias (max |b| {m}); the Hugging Face layout has none"
                                ),
                            });
                        }
                    } else {
                        put(format!("{p}.{n}_proj.bias"), &b)?;
                    }
                }
            }
            Ok(())
        };
        let lin = |l: &Linear,
                   p: &str,
                   put: &mut dyn FnMut(String, &Tensor) -> Result<()>|
         -> Result<()> {
            // LoRA adapters folded in, as for the stacked projections.
            put(format!("{p}.weight"), &l.merged_weight()?)?;
            if let Some(b) = &l.bias {
                put(format!("{p}.bias"), b)?;
            }
            Ok(())
        };
        let ln = |l: &LayerNorm,
                  p: &str,
                  put: &mut dyn FnMut(String, &Tensor) -> Result<()>|
         -> Result<()> {
            put(format!("{p}.weight"), &l.weight)?;
            put(format!("{p}.bias"), &l.bias)
        };
        put("model.encoder.conv1.weight".into(), &self.conv1.0)?;
        put("model.encoder.conv1.bias".into(), &self.conv1.1)?;
        put("model.encoder.conv2.weight".into(), &self.conv2.0)?;
        put("model.encoder.conv2.bias".into(), &self.conv2.1)?;
        put("model.encoder.embed_positions.weight".into(), &self.enc_pos)?;
        for (i, l) in self.enc_layers.iter().enumerate() {
            let p = format!("model.encoder.layers.{i}");
            ln(&l.attn_ln, &format!("{p}.self_attn_layer_norm"), &mut put)?;
            split(
                &l.qkv.merged()?,
                &["q", "k", "v"],
                &format!("{p}.self_attn"),
                &mut put,
            )?;
            lin(&l.out, &format!("{p}.self_attn.out_proj"), &mut put)?;
            ln(&l.ffn_ln, &format!("{p}.final_layer_norm"), &mut put)?;
            lin(&l.fc1, &format!("{p}.fc1"), &mut put)?;
            lin(&l.fc2, &format!("{p}.fc2"), &mut put)?;
        }
        ln(&self.enc_ln, "model.encoder.layer_norm", &mut put)?;
        put("model.decoder.embed_tokens.weight".into(), &self.embed)?;
        put("model.decoder.embed_positions.weight".into(), &self.dec_pos)?;
        for (i, l) in self.dec_layers.iter().enumerate() {
            let p = format!("model.decoder.layers.{i}");
            ln(&l.self_ln, &format!("{p}.self_attn_layer_norm"), &mut put)?;
            split(
                &l.self_qkv.merged()?,
                &["q", "k", "v"],
                &format!("{p}.self_attn"),
                &mut put,
            )?;
            lin(&l.self_out, &format!("{p}.self_attn.out_proj"), &mut put)?;
            ln(
                &l.cross_ln,
                &format!("{p}.encoder_attn_layer_norm"),
                &mut put,
            )?;
            lin(&l.cross_q, &format!("{p}.encoder_attn.q_proj"), &mut put)?;
            split(
                &l.cross_kv.merged()?,
                &["k", "v"],
                &format!("{p}.encoder_attn"),
                &mut put,
            )?;
            lin(
                &l.cross_out,
                &format!("{p}.encoder_attn.out_proj"),
                &mut put,
            )?;
            ln(&l.ffn_ln, &format!("{p}.final_layer_norm"), &mut put)?;
            lin(&l.fc1, &format!("{p}.fc1"), &mut put)?;
            lin(&l.fc2, &format!("{p}.fc2"), &mut put)?;
        }
        ln(&self.dec_ln, "model.decoder.layer_norm", &mut put)?;
        if let Some(p) = &self.proj {
            put("proj_out.weight".into(), p)?;
        }
        let ffn = |l: Option<&Linear>| l.and_then(|l| l.weight.dim(0).ok()).unwrap_or(4 * d);
        let config = serde_json::json!({
            "architectures": ["WhisperForConditionalGeneration"],
            "model_type": "whisper",
            "d_model": d,
            "encoder_layers": self.enc_layers.len(),
            "decoder_layers": self.dec_layers.len(),
            "encoder_attention_heads": self.enc_heads,
            "decoder_attention_heads": self.dec_heads,
            "encoder_ffn_dim": ffn(self.enc_layers.first().map(|l| &l.fc1)),
            "decoder_ffn_dim": ffn(self.dec_layers.first().map(|l| &l.fc1)),
            "num_mel_bins": self.n_mels,
            "vocab_size": self.vocab_size(),
            "max_source_positions": self.max_source_positions(),
            "max_target_positions": self.max_target_positions(),
            "activation_function": "gelu",
            "scale_embedding": false,
            "tie_word_embeddings": self.proj.is_none(),
            "torch_dtype": "float32",
        });
        std::fs::create_dir_all(dir).map_err(|e| mosaic_core::Error::io(dir, e))?;
        let cfg_file = dir.join("config.json");
        let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Config {
            source_name: cfg_file.display().to_string(),
            message: e.to_string(),
        })?;
        std::fs::write(&cfg_file, text).map_err(|e| mosaic_core::Error::io(&cfg_file, e))?;
        candle_core::safetensors::save(&t, dir.join("model.safetensors"))?;
        Ok(())
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

    /// Encoder positions (mel frames / 2).
    pub fn max_source_positions(&self) -> usize {
        self.enc_pos.dim(0).unwrap_or(0)
    }

    /// Encodes log-mel features `[B, n_mels, frames]` (3000 frames for the
    /// released models) to `[B, frames / 2, d]`.
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
        let x = gelu(
            &mel.conv1d(&self.conv1.0, 1, 1, 1, 1)?
                .broadcast_add(&self.conv1.1.reshape((1, (), 1))?)?,
        )?;
        let x = gelu(
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
            let h = layer_norm(&l.attn_ln, &x)?;
            let qkv = l.qkv.forward(&h)?;
            let q = heads_split(&qkv.narrow(2, 0, self.d)?, self.enc_heads)?;
            let k = heads_split(&qkv.narrow(2, self.d, self.d)?, self.enc_heads)?;
            let v = heads_split(&qkv.narrow(2, 2 * self.d, self.d)?, self.enc_heads)?;
            x = (x + l.out.forward(&heads_merge(&attend(&q, &k, &v, None)?)?)?)?;
            let h = layer_norm(&l.ffn_ln, &x)?;
            x = (&x + l.fc2.forward(&gelu(&l.fc1.forward(&h)?)?)?)?;
        }
        layer_norm(&self.enc_ln, &x)
    }

    /// Starts a decoding run over `encoder_out` `[B, T_enc, d]`. With
    /// `B == 1` the run may later be widened to several hypotheses
    /// ([`DecoderState::reorder`]); they share the encoder keys.
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
        let h = self.decode_hidden(tokens, state)?;
        let n = h.dim(1)?;
        self.logits(&h.narrow(1, n - 1, 1)?.squeeze(1)?)
    }

    /// Feeds `tokens` `[B, n]` like [`decode`](Self::decode) and returns the
    /// logits of every position `[B, n, vocab]` (teacher forcing).
    pub fn decode_all(&self, tokens: &Tensor, state: &mut DecoderState) -> Result<Tensor> {
        let h = self.decode_hidden(tokens, state)?;
        self.logits(&h)
    }

    fn logits(&self, h: &Tensor) -> Result<Tensor> {
        let h = layer_norm(&self.dec_ln, h)?;
        let w = self.proj.as_ref().unwrap_or(&self.embed);
        Ok(h.broadcast_matmul(&w.t()?)?)
    }

    fn decode_hidden(&self, tokens: &Tensor, state: &mut DecoderState) -> Result<Tensor> {
        let (b, n) = tokens.dims2()?;
        let start = state.len;
        if n == 0 {
            return Err(Error::InvalidInput {
                what: "tokens".into(),
                message: "no tokens to decode".into(),
            });
        }
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
        let rows = state.rows();
        if start > 0 && rows != b {
            return Err(Error::InvalidInput {
                what: "tokens".into(),
                message: format!("{b} rows, the decoder cache holds {rows}"),
            });
        }
        let cross_rows = state.cross.first().map(|c| c.0.dim(0)).transpose()?;
        if let Some(c) = cross_rows
            && c != b
            && c != 1
        {
            return Err(Error::InvalidInput {
                what: "tokens".into(),
                message: format!("{b} rows for an encoder output of batch {c}"),
            });
        }
        let ids = tokens.to_dtype(DType::U32)?;
        let vocab = self.vocab_size() as u32;
        if let Some(&bad) = ids
            .flatten_all()?
            .to_vec1::<u32>()?
            .iter()
            .find(|&&t| t >= vocab)
        {
            return Err(Error::InvalidInput {
                what: "tokens".into(),
                message: format!("id {bad} outside the vocabulary of {vocab}"),
            });
        }
        let mut x = self
            .embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, n, self.d))?
            .broadcast_add(&self.dec_pos.narrow(0, start, n)?.unsqueeze(0)?)?;
        // Causal within the new tokens; every cached position is visible.
        let total = start + n;
        let bias = if n > 1 {
            let mask: Vec<f32> = (0..n * total)
                .map(|i| {
                    if i % total > start + i / total {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            Some(Tensor::from_vec(mask, (1, 1, n, total), x.device())?.to_dtype(x.dtype())?)
        } else {
            None
        };
        for (li, l) in self.dec_layers.iter().enumerate() {
            let h = layer_norm(&l.self_ln, &x)?;
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
                .forward(&heads_merge(&attend(&q, &k, &v, bias.as_ref())?)?)?)?;
            let h = layer_norm(&l.cross_ln, &x)?;
            let q = heads_split(&l.cross_q.forward(&h)?, self.dec_heads)?;
            let (ck, cv) = &state.cross[li];
            x = (x + l
                .cross_out
                .forward(&heads_merge(&cross_attend(&q, ck, cv)?)?)?)?;
            let h = layer_norm(&l.ffn_ln, &x)?;
            x = (&x + l.fc2.forward(&gelu(&l.fc1.forward(&h)?)?)?)?;
        }
        state.len = total;
        Ok(x)
    }
}

fn check_heads(source: &str, d: usize, enc: usize, dec: usize) -> Result<()> {
    if enc == 0 || d % enc != 0 || dec == 0 || d % dec != 0 {
        return Err(Error::Config {
            source_name: source.to_string(),
            message: format!("{enc}/{dec} heads do not divide d_model {d}"),
        });
    }
    Ok(())
}
