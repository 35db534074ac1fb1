//! Trainable encoders for the six modalities, built from an
//! [`EncoderConfig`]. Each implements [`Encoder`]: padding (tokens, frames,
//! points, steps) is masked out of attention and pooling, so it never
//! changes the outputs at real positions.

use candle_core::{D, DType, Tensor};
use mosaic_core::{Modality, ModalityBatch};

use crate::arch::config::{
    BlockOptions, EncoderConfig, Positions, VideoAttention, four, is_default, is_false, is_true,
    yes,
};
use crate::encoder::{Encoder, Features};
use crate::error::{Error, Result};
use crate::nn::CheckpointMode;
use crate::nn::Linear;
use crate::nn::attention::patchify;
use crate::nn::blocks::{BlockSpec, Embedding, PromptTokens, Transformer, key_bias, layer_norm};
use crate::nn::params::{Init, ParamStore};
use crate::nn::{Activation, LayerNorm, MultiHeadAttention, TransformerBlock, conv1d};
use serde::{Deserialize, Serialize};

// ---- The config of each encoder kind (`[encoders.<modality>]`, by `kind`). ----

fn three() -> usize {
    3
}
fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// A pretrained checkpoint's tower ([`crate::pretrained::tower`]),
/// loaded into the model's parameter store: trainable (fine-tuning,
/// LoRA by name) or frozen (LiT). Tokens and pooled vector are the
/// tower's own (a sentence-transformers model pools as it was trained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainedConfig {
    /// A catalog asset (`minilm-l6-v2`, fetched on first use), a
    /// checkpoint folder, or a hub id `org/name`. Also `checkpoint`.
    #[serde(alias = "checkpoint")]
    pub pretrained: String,
    /// The tower of a two-tower checkpoint, `text` or `vision`
    /// (default: the one the modality key names; must agree with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tower: Option<String>,
    /// Load without gradients (a locked tower, as in LiT).
    #[serde(default)]
    pub freeze: bool,
    /// Width of tokens and pooled vector: read from the checkpoint
    /// ([`ArchConfig::resolve_pretrained`]); a value given must match.
    #[serde(default)]
    pub dim: usize,
    /// Longest text (text towers; default: the checkpoint's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
}

/// Token embedding + positions + transformer; pooled = mean over real tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextTransformerConfig {
    /// Vocabulary.
    pub vocab_size: usize,
    /// Longest input.
    pub max_len: usize,
    /// Width.
    pub dim: usize,
    /// Layers.
    pub layers: usize,
    /// Heads.
    pub heads: usize,
    /// Learned or rotary positions.
    #[serde(default)]
    pub positions: Positions,
    /// MLP width factor.
    #[serde(default = "four")]
    pub mlp_ratio: usize,
    /// Pre-norm (true) or post-norm blocks.
    #[serde(default = "yes")]
    pub pre_norm: bool,
}

/// Mean of token embeddings over real tokens (tokens = the embeddings).
/// With the optional keys it is BERT's embedding layer, `LayerNorm(word +
/// type + position)`: the text side of models whose fusion owns the text
/// layers (ViLT's single stream, BLIP's cross-attending text layers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BagOfWordsConfig {
    /// Vocabulary.
    pub vocab_size: usize,
    /// Width.
    pub dim: usize,
    /// Learned positions for inputs up to this length (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_len: Option<usize>,
    /// Rows of a token-type table; row 0 is added to every token
    /// (Mosaic batches carry no segment ids). 0 = no table.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub type_vocab_size: usize,
    /// Epsilon of a LayerNorm over the embeddings (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm_eps: Option<f64>,
}

/// Vision transformer: patches + class token + learned positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Input side.
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Input channels.
    pub channels: usize,
    /// Width.
    pub dim: usize,
    /// Layers.
    pub layers: usize,
    /// Heads.
    pub heads: usize,
    /// MLP width factor.
    #[serde(default = "four")]
    pub mlp_ratio: usize,
    /// Block settings (eps, activation, ...).
    #[serde(default, skip_serializing_if = "is_default")]
    pub block: BlockOptions,
    /// Bias on the patch projection (CLIP has none).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub patch_bias: bool,
    /// A LayerNorm on the embeddings before the first block (CLIP's
    /// `pre_layrnorm`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub embed_norm: bool,
    /// The closing norm of the pre-norm stack (BLIP's `post_layernorm`);
    /// off for a patch embedder (ViLT) or an intermediate layer's
    /// features (LLaVA).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub final_norm: bool,
    /// Tokens are the patches only (LLaVA's `default` feature select);
    /// the pooled vector stays the class token.
    #[serde(default, skip_serializing_if = "is_false")]
    pub drop_class_token: bool,
}

/// Convolutions (3×3, stride 2, ReLU) then a linear map of each position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnnConfig {
    /// Input side (square images).
    pub image_size: usize,
    /// Input channels.
    pub channels: usize,
    /// Output channels per conv layer.
    pub widths: Vec<usize>,
    /// Token width.
    pub dim: usize,
}

/// Log-mel spectrogram `[B, T, n_mels]`: two 1-D convolutions (the
/// second with stride 2, GELU), learned positions, transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioConfig {
    /// Mel bins.
    pub n_mels: usize,
    /// Longest input in frames.
    pub max_frames: usize,
    /// Width.
    pub dim: usize,
    /// Layers.
    pub layers: usize,
    /// Heads.
    pub heads: usize,
}

/// Frames `[B, F, C, H, W]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoConfig {
    /// Frames per clip.
    pub frames: usize,
    /// Frame side.
    pub image_size: usize,
    /// Patch side.
    pub patch_size: usize,
    /// Channels.
    pub channels: usize,
    /// Width.
    pub dim: usize,
    /// Spatial (factorized) or space–time (divided) layers.
    pub layers: usize,
    /// Temporal layers (factorized only).
    #[serde(default)]
    pub temporal_layers: usize,
    /// Heads.
    pub heads: usize,
    /// Attention layout.
    #[serde(default)]
    pub attention: VideoAttention,
}

/// PointNet: a shared per-point MLP, max-pooled (masked) over points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointnetConfig {
    /// Features per point (3 = xyz, 6 = xyz + normals/colours).
    pub in_features: usize,
    /// Hidden widths of the shared MLP.
    pub widths: Vec<usize>,
    /// Output width.
    pub dim: usize,
}

/// Point groups (farthest-point centres, k nearest points), a mini
/// PointNet per group, then a transformer over the groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointTransformerConfig {
    /// Features per point.
    pub in_features: usize,
    /// Groups.
    pub groups: usize,
    /// Points per group.
    pub group_size: usize,
    /// Width.
    pub dim: usize,
    /// Layers.
    pub layers: usize,
    /// Heads.
    pub heads: usize,
}

/// Time series `[B, T, C]`: a 1-D convolution over time, sinusoidal
/// time encodings, transformer; pooled = mean over real steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// Channels.
    pub channels: usize,
    /// Longest series.
    pub max_len: usize,
    /// Width.
    pub dim: usize,
    /// Layers.
    pub layers: usize,
    /// Heads.
    pub heads: usize,
    /// Convolution width (odd).
    #[serde(default = "three")]
    pub kernel: usize,
}

/// Mean over positions with mask 1: `[B, T, D]`, `[B, T]` → `[B, D]`.
pub fn masked_mean(x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        None => Ok(x.mean(1)?),
        Some(m) => {
            let m = m.to_dtype(x.dtype())?.unsqueeze(D::Minus1)?;
            let n = m.sum(1)?.clamp(1.0, f64::INFINITY)?;
            Ok(x.broadcast_mul(&m)?.sum(1)?.broadcast_div(&n)?)
        }
    }
}

fn conv_weight(p: &ParamStore, name: &str, shape: &[usize]) -> Result<(Tensor, Tensor)> {
    let fan_in: usize = shape[1..].iter().product();
    let b = 1.0 / (fan_in.max(1) as f64).sqrt();
    let s = p.sub(name);
    Ok((
        s.get("weight", shape, Init::Uniform(b))?,
        s.get("bias", &[shape[0]], Init::Uniform(b))?,
    ))
}

fn input_err(modality: Modality, expected: &str, got: &Tensor) -> Error {
    Error::InvalidInput {
        what: format!("{modality} batch"),
        message: format!(
            "expected {expected}, got {:?} {:?}",
            got.dims(),
            got.dtype()
        ),
    }
}

fn float_input(
    batch: &ModalityBatch,
    m: Modality,
    rank: usize,
    expected: &str,
    dtype: DType,
) -> Result<Tensor> {
    let v = &batch.values;
    if v.rank() != rank || !v.dtype().is_float() {
        return Err(input_err(m, expected, v));
    }
    Ok(v.to_dtype(dtype)?)
}

/// Sinusoidal encodings `[T, D]` (Vaswani et al.).
pub fn sinusoidal(
    t: usize,
    d: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mut v = Vec::with_capacity(t * d);
    for pos in 0..t {
        for i in 0..d {
            let f = (pos as f64) / 10000f64.powf((2 * (i / 2)) as f64 / d as f64);
            v.push(if i % 2 == 0 { f.sin() } else { f.cos() });
        }
    }
    Ok(Tensor::from_vec(v, (t, d), device)?.to_dtype(dtype)?)
}

/// A built encoder (any kind).
#[derive(Debug, Clone)]
pub enum ArchEncoder {
    /// Text transformer.
    Text(TextEncoder),
    /// Bag of words.
    Bag(BagEncoder),
    /// ViT.
    Vit(VitEncoder),
    /// CNN.
    Cnn(CnnEncoder),
    /// Audio.
    Audio(AudioEncoder),
    /// Video.
    Video(VideoEncoder),
    /// PointNet.
    PointNet(PointNetEncoder),
    /// Point-group transformer.
    PointTransformer(PointTransformerEncoder),
    /// Sensor.
    Sensor(SensorEncoder),
    /// A pretrained checkpoint's tower.
    Pretrained(PretrainedEncoder),
}

/// A pretrained checkpoint's tower inside a config-built model: its
/// parameters live in the model's store under `encoders.{modality}.`, with
/// the checkpoint's own names below that.
#[derive(Clone)]
pub struct PretrainedEncoder {
    inner: std::sync::Arc<dyn Encoder>,
    source: String,
}

impl PretrainedEncoder {
    /// The checkpoint reference it was loaded from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl std::fmt::Debug for PretrainedEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PretrainedEncoder")
            .field("source", &self.source)
            .field("modality", &self.inner.modality())
            .field("dim", &self.inner.pooled_dim())
            .finish()
    }
}

impl ArchEncoder {
    /// Builds the encoder of `modality` under `p`.
    pub fn build(p: &ParamStore, modality: Modality, cfg: &EncoderConfig) -> Result<Self> {
        let p = p.sub(&format!("encoders.{modality}"));
        Ok(match cfg {
            EncoderConfig::TextTransformer(c) => ArchEncoder::Text(TextEncoder::new(&p, c)?),
            EncoderConfig::BagOfWords(BagOfWordsConfig {
                vocab_size,
                dim,
                max_len,
                type_vocab_size,
                norm_eps,
            }) => ArchEncoder::Bag(BagEncoder {
                emb: Embedding::new(&p, "embed", *vocab_size, *dim)?,
                pos: match max_len {
                    Some(n) => Some(p.get("pos", &[*n, *dim], Init::Normal(0.02))?),
                    None => None,
                },
                types: if *type_vocab_size > 0 {
                    Some(Embedding::new(&p, "types", *type_vocab_size, *dim)?)
                } else {
                    None
                },
                norm: match norm_eps {
                    Some(eps) => Some(layer_norm(&p, "norm", *dim, *eps)?),
                    None => None,
                },
                dim: *dim,
            }),
            EncoderConfig::Vit(c) => ArchEncoder::Vit(VitEncoder::new(&p, c)?),
            EncoderConfig::Cnn(c) => ArchEncoder::Cnn(CnnEncoder::new(&p, c)?),
            EncoderConfig::Audio(c) => ArchEncoder::Audio(AudioEncoder::new(&p, c)?),
            EncoderConfig::Video(c) => ArchEncoder::Video(VideoEncoder::new(&p, c)?),
            EncoderConfig::Pointnet(c) => ArchEncoder::PointNet(PointNetEncoder::new(&p, c)?),
            EncoderConfig::PointTransformer(c) => {
                ArchEncoder::PointTransformer(PointTransformerEncoder::new(&p, c)?)
            }
            EncoderConfig::Sensor(c) => ArchEncoder::Sensor(SensorEncoder::new(&p, c)?),
            EncoderConfig::Pretrained(PretrainedConfig {
                pretrained, freeze, ..
            }) => {
                let dir = crate::pretrained::resolve_tower(pretrained)?;
                let mode = if *freeze {
                    CheckpointMode::Frozen
                } else {
                    CheckpointMode::Trainable
                };
                let inner = crate::pretrained::load_tower(&dir, modality, &p, mode)?;
                if inner.pooled_dim() != cfg.dim() && cfg.dim() != 0 {
                    return Err(Error::Config {
                        source_name: pretrained.clone(),
                        message: format!(
                            "key `encoders.{modality}.dim`: {}, but the tower gives {}",
                            cfg.dim(),
                            inner.pooled_dim()
                        ),
                    });
                }
                ArchEncoder::Pretrained(PretrainedEncoder {
                    inner,
                    source: pretrained.clone(),
                })
            }
        })
    }

    fn inner(&self) -> &dyn Encoder {
        match self {
            ArchEncoder::Text(e) => e,
            ArchEncoder::Bag(e) => e,
            ArchEncoder::Vit(e) => e,
            ArchEncoder::Cnn(e) => e,
            ArchEncoder::Audio(e) => e,
            ArchEncoder::Video(e) => e,
            ArchEncoder::PointNet(e) => e,
            ArchEncoder::PointTransformer(e) => e,
            ArchEncoder::Sensor(e) => e,
            ArchEncoder::Pretrained(e) => e.inner.as_ref(),
        }
    }
}

impl Encoder for ArchEncoder {
    fn modality(&self) -> Modality {
        self.inner().modality()
    }
    fn token_dim(&self) -> usize {
        self.inner().token_dim()
    }
    fn pooled_dim(&self) -> usize {
        self.inner().pooled_dim()
    }
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        self.inner().encode(batch)
    }
}

/// Token embedding + learned or rotary positions + transformer.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    emb: Embedding,
    pos: Option<Tensor>,
    body: Transformer,
    max_len: usize,
    dim: usize,
}

impl TextEncoder {
    fn new(p: &ParamStore, cfg: &TextTransformerConfig) -> Result<Self> {
        let TextTransformerConfig {
            vocab_size,
            max_len,
            dim,
            layers,
            heads,
            positions,
            mlp_ratio,
            pre_norm,
        } = cfg;
        let spec = BlockSpec {
            dim: *dim,
            heads: *heads,
            mlp_ratio: *mlp_ratio,
            pre_norm: *pre_norm,
            rotary: *positions == Positions::Rotary,
            cross_dim: None,
            ..BlockSpec::new(*dim, *heads)
        };
        Ok(TextEncoder {
            emb: Embedding::new(p, "embed", *vocab_size, *dim)?,
            pos: match positions {
                Positions::Learned => Some(p.get("pos", &[*max_len, *dim], Init::Normal(0.02))?),
                Positions::Rotary => None,
            },
            body: Transformer::new(p, "body", *layers, spec)?,
            max_len: *max_len,
            dim: *dim,
        })
    }
}

fn text_ids(batch: &ModalityBatch, max_len: Option<usize>) -> Result<(Tensor, Option<Tensor>)> {
    let ids = &batch.values;
    if ids.rank() != 2 || ids.dtype().is_float() {
        return Err(input_err(Modality::Text, "[B, T] integer token ids", ids));
    }
    if let Some(n) = max_len
        && ids.dim(1)? > n
    {
        return Err(Error::InvalidInput {
            what: "text batch".into(),
            message: format!("{} tokens exceed max_len {n}", ids.dim(1)?),
        });
    }
    Ok((ids.clone(), batch.mask.clone()))
}

impl Encoder for TextEncoder {
    fn modality(&self) -> Modality {
        Modality::Text
    }
    fn token_dim(&self) -> usize {
        self.dim
    }
    fn pooled_dim(&self) -> usize {
        self.dim
    }
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        self.encode_prompted(batch, None)
    }
}

impl TextEncoder {
    /// [`Encoder::encode`] with learnable context tokens (prompt tuning,
    /// CoOp) placed before the token embeddings (after their positions are
    /// added); the pooled vector averages prompts and real tokens.
    pub fn encode_prompted(
        &self,
        batch: &ModalityBatch,
        prompts: Option<&PromptTokens>,
    ) -> Result<Features> {
        let (ids, mask) = text_ids(batch, Some(self.max_len))?;
        let mut x = self.emb.forward(&ids)?;
        if let Some(pos) = &self.pos {
            x = x.broadcast_add(&pos.narrow(0, 0, ids.dim(1)?)?.unsqueeze(0)?)?;
        }
        let (x, mask) = match prompts {
            Some(p) => p.prepend(&x, mask.as_ref())?,
            None => (x, mask),
        };
        let bias = mask.as_ref().map(|m| key_bias(m, x.dtype())).transpose()?;
        let tokens = self.body.forward(&x, bias.as_ref(), None)?;
        let pooled = masked_mean(&tokens, mask.as_ref())?;
        Ok(Features {
            tokens,
            mask,
            pooled,
        })
    }
}

/// Mean of word embeddings; optionally BERT's embedding layer
/// (`LayerNorm(word + type 0 + position)`).
#[derive(Debug, Clone)]
pub struct BagEncoder {
    emb: Embedding,
    pos: Option<Tensor>,
    types: Option<Embedding>,
    norm: Option<LayerNorm>,
    dim: usize,
}

impl Encoder for BagEncoder {
    fn modality(&self) -> Modality {
        Modality::Text
    }
    fn token_dim(&self) -> usize {
        self.dim
    }
    fn pooled_dim(&self) -> usize {
        self.dim
    }
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let max_len = self.pos.as_ref().map(|p| p.dim(0)).transpose()?;
        let (ids, mask) = text_ids(batch, max_len)?;
        let mut tokens = self.emb.forward(&ids)?;
        if let Some(types) = &self.types {
            // Segment 0 for every token: batches carry no segment ids.
            tokens = tokens.broadcast_add(&types.table.get(0)?)?;
        }
        if let Some(pos) = &self.pos {
            tokens = tokens.broadcast_add(&pos.narrow(0, 0, ids.dim(1)?)?.unsqueeze(0)?)?;
        }
        if let Some(n) = &self.norm {
            tokens = n.forward(&tokens)?;
        }
        let pooled = masked_mean(&tokens, mask.as_ref())?;
        Ok(Features {
            tokens,
            mask,
            pooled,
        })
    }
}

/// Patch embedding + class token + learned positions + transformer.
#[derive(Debug, Clone)]
pub struct VitEncoder {
    patch: Linear,
    cls: Tensor,
    pos: Tensor,
    embed_norm: Option<crate::nn::Norm>,
    body: Transformer,
    drop_class_token: bool,
    image_size: usize,
    patch_size: usize,
    channels: usize,
    dim: usize,
}

/// The [`VitEncoder`] settings beyond the sizes (see `EncoderConfig::Vit`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitOptions {
    /// Block settings.
    pub block: BlockOptions,
    /// Bias on the patch projection.
    pub patch_bias: bool,
    /// Norm on the embeddings before the first block.
    pub embed_norm: bool,
    /// Closing norm of the stack.
    pub final_norm: bool,
    /// Tokens without the class token.
    pub drop_class_token: bool,
}

impl Default for VitOptions {
    fn default() -> Self {
        VitOptions {
            block: BlockOptions::default(),
            patch_bias: true,
            embed_norm: false,
            final_norm: true,
            drop_class_token: false,
        }
    }
}

impl VitEncoder {
    fn new(p: &ParamStore, cfg: &VitConfig) -> Result<Self> {
        let VitConfig {
            image_size,
            patch_size,
            channels,
            dim,
            layers,
            heads,
            mlp_ratio,
            block,
            patch_bias,
            embed_norm,
            final_norm,
            drop_class_token,
        } = cfg;
        Self::build_with(
            p,
            [
                *image_size,
                *patch_size,
                *channels,
                *dim,
                *layers,
                *heads,
                *mlp_ratio,
            ],
            VitOptions {
                block: *block,
                patch_bias: *patch_bias,
                embed_norm: *embed_norm,
                final_norm: *final_norm,
                drop_class_token: *drop_class_token,
            },
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        p: &ParamStore,
        image_size: usize,
        patch_size: usize,
        channels: usize,
        dim: usize,
        layers: usize,
        heads: usize,
        mlp_ratio: usize,
    ) -> Result<Self> {
        Self::build_with(
            p,
            [
                image_size, patch_size, channels, dim, layers, heads, mlp_ratio,
            ],
            VitOptions::default(),
        )
    }

    /// `sizes` = image size, patch size, channels, width, layers, heads,
    /// MLP ratio.
    fn build_with(p: &ParamStore, sizes: [usize; 7], o: VitOptions) -> Result<Self> {
        let [
            image_size,
            patch_size,
            channels,
            dim,
            layers,
            heads,
            mlp_ratio,
        ] = sizes;
        let n = (image_size / patch_size).pow(2);
        let spec = o.block.spec(dim, heads, mlp_ratio);
        Ok(VitEncoder {
            patch: p.linear(
                "patch",
                channels * patch_size * patch_size,
                dim,
                o.patch_bias,
            )?,
            cls: p.get("cls", &[1, 1, dim], Init::Normal(0.02))?,
            pos: p.get("pos", &[1, n + 1, dim], Init::Normal(0.02))?,
            embed_norm: if o.embed_norm {
                Some(crate::nn::Norm::new(
                    p,
                    "embed_norm",
                    dim,
                    spec.eps,
                    spec.rms_norm,
                )?)
            } else {
                None
            },
            body: Transformer::with_final_norm(
                p,
                "body",
                layers,
                spec,
                spec.pre_norm && o.final_norm,
            )?,
            drop_class_token: o.drop_class_token,
            image_size,
            patch_size,
            channels,
            dim,
        })
    }

    fn check(&self, px: &Tensor) -> Result<()> {
        let (_, c, h, w) = px.dims4()?;
        if c != self.channels || h != self.image_size || w != self.image_size {
            return Err(Error::InvalidInput {
                what: "image batch".into(),
                message: format!(
                    "got {:?}, the encoder takes [B, {}, {}, {}]",
                    px.dims(),
                    self.channels,
                    self.image_size,
                    self.image_size
                ),
            });
        }
        Ok(())
    }

    /// Tokens `[B, 1 + N, D]` of pixels `[B, C, S, S]`.
    pub fn tokens(&self, px: &Tensor) -> Result<Tensor> {
        self.check(px)?;
        let b = px.dim(0)?;
        let patches = self.patch.forward(&patchify(px, self.patch_size)?)?;
        let cls = self.cls.broadcast_as((b, 1, self.dim))?;
        let mut x = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.pos)?;
        if let Some(n) = &self.embed_norm {
            x = n.forward(&x)?;
        }
        self.body.forward(&x, None, None)
    }
}

impl Encoder for VitEncoder {
    fn modality(&self) -> Modality {
        Modality::Image
    }
    fn token_dim(&self) -> usize {
        self.dim
    }
    fn pooled_dim(&self) -> usize {
        self.dim
    }
    /// Pooled = the class token.
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let px = float_input(
            batch,
            Modality::Image,
            4,
            "[B, C, H, W] float pixels",
            self.cls.dtype(),
        )?;
        let tokens = self.tokens(&px)?;
        let pooled = tokens.narrow(1, 0, 1)?.squeeze(1)?;
        let tokens = if self.drop_class_token {
            tokens.narrow(1, 1, tokens.dim(1)? - 1)?
        } else {
            tokens
        };
        Ok(Features {
            tokens,
            mask: None,
            pooled,
        })
    }
}

/// 3×3 stride-2 convolutions with ReLU, then a per-position linear map.
#[derive(Debug, Clone)]
pub struct CnnEncoder {
    convs: Vec<(Tensor, Tensor)>,
    proj: Linear,
    image_size: usize,
    channels: usize,
    dim: usize,
}

impl CnnEncoder {
    fn new(p: &ParamStore, cfg: &CnnConfig) -> Result<Self> {
        let CnnConfig {
            image_size,
            channels,
            widths,
            dim,
        } = cfg;
        let mut convs = Vec::new();
        let mut cin = *channels;
        for (i, &w) in widths.iter().enumerate() {
            convs.push(conv_weight(p, &format!("conv{i}"), &[w, cin, 3, 3])?);
            cin = w;
        }
        Ok(CnnEncoder {
            convs,
            proj: p.linear("proj", cin, *dim, true)?,
            image_size: *image_size,
            channels: *channels,
            dim: *dim,
        })
    }
}

impl Encoder for CnnEncoder {
    fn modality(&self) -> Modality {
        Modality::Image
    }
    fn token_dim(&self) -> usize {
        self.dim
    }
    fn pooled_dim(&self) -> usize {
        self.dim
    }
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let dtype = self.convs[0].0.dtype();
        let mut x = float_input(
            batch,
            Modality::Image,
            4,
            "[B, C, H, W] float pixels",
            dtype,
        )?;
        let (_, c, h, w) = x.dims4()?;
        if c != self.channels || h != self.image_size || w != self.image_size {
            let s = self.image_size;
            return Err(input_err(
                Modality::Image,
                &format!("[B, {}, {s}, {s}]", self.channels),
                &x,
            ));
        }
        for (w, b) in &self.convs {
            x = x
                .conv2d(w, 1, 2, 1, 1)?
                .broadcast_add(&b.reshape((1, (), 1, 1))?)?
                .relu()?;
        }
        let (bsz, c, h, w) = x.dims4()?;
        let tokens = self
            .proj
            .forward(&x.reshape((bsz, c, h * w))?.transpose(1, 2)?)?;
        let pooled = tokens.mean(1)?;
        Ok(Features {
            tokens,
            mask: None,
            pooled,
        })
    }
}

/// Log-mel → two 1-D convolutions → learned positions → transformer.
#[derive(Debug, Clone)]
pub struct AudioEncoder {
    conv1: (Tensor, Tensor),
    conv2: (Tensor, Tensor),
    pos: Tensor,
    body: Transformer,
    n_mels: usize,
    max_frames: usize,
    dim: usize,
}

impl AudioEncoder {
    fn new(p: &ParamStore, cfg: &AudioConfig) -> Result<Self> {
        let AudioConfig {
            n_mels,
            max_frames,
            dim,
            layers,
            heads,
        } = cfg;
        Ok(AudioEncoder {
            conv1: conv_weight(p, "conv1", &[*dim, *n_mels, 3])?,
            conv2: conv_weight(p, "conv2", &[*dim, *dim, 3])?,
            pos: p.get("pos", &[max_frames.div_ceil(2), *dim], Init::Normal(0.02))?,
            body: Transformer::new(p, "body", *layers, BlockSpec::new(*dim, *heads))?,
            n_mels: *n_mels,
            max_frames: *max_frames,
            dim: *dim,
        })
    }
}

impl Encoder for AudioEncoder {
    fn modality(&self) -> Modality {
        Modality::Audio
    }
    fn token_dim(&self) -> usize {
        self.dim
    }
    fn pooled_dim(&self) -> usize {
        self.dim
    }
    /// Input `[B, T, n_mels]` (frame-major, as the collator pads) with an
    /// optional `[B, T]` frame mask; tokens are every second frame (the
    /// mask is subsampled alike).
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let x = float_input(
            batch,
            Modality::Audio,
            3,
            "[B, T, n_mels] float log-mel",
            self.pos.dtype(),
        )?;
        let (_, t, m) = x.dims3()?;
        if m != self.n_mels || t > self.max_frames || t == 0 {
            return Err(input_err(
                Modality::Audio,
                &format!("[B, 1..={}, {}]", self.max_frames, self.n_mels),
                &x,
            ));
        }
        let x = x.transpose(1, 2)?;
        // Padded frames are zeroed first so they cannot leak into real
        // frames through the convolutions' receptive field.
        let x = match &batch.mask {
            Some(mk) => x.broadcast_mul(&mk.to_dtype(x.dtype())?.unsqueeze(1)?)?,
            None => x,
        };
        let act = Activation::Gelu;
        let y = act.forward(&conv1d(&x, &self.conv1.0, Some(&self.conv1.1), 1, 1)?)?;
        let y = match &batch.mask {
            Some(mk) => y.broadcast_mul(&mk.to_dtype(y.dtype())?.unsqueeze(1)?)?,
            None => y,
        };
        let y = act.forward(&conv1d(&y, &self.conv2.0, Some(&self.conv2.1), 1, 2)?)?;
        let y = y.transpose(1, 2)?;
        let n = y.dim(1)?;
        let y = y.broadcast_add(&self.pos.narrow(0, 0, n)?.unsqueeze(0)?)?;
        let mask = match &batch.mask {
            Some(mk) => {
                // Frame 2i of the input is the centre of output i.
                let idx = Tensor::arange_step(0u32, (2 * n) as u32, 2, mk.device())?;
                Some(mk.to_dtype(DType::U8)?.index_select(&idx, 1)?)
            }
            None => None,
        };
        let bias = mask.as_ref().map(|m| key_bias(m, y.dtype())).transpose()?;
        let tokens = self.body.forward(&y, bias.as_ref(), None)?;
        let pooled = masked_mean(&tokens, mask.as_ref())?;
        Ok(Features {
            tokens,
            mask,
            pooled,
        })
    }
}

/// Frames through a shared ViT, then time (factorized), or divided
/// space–time attention.
#[derive(Debug, Clone)]
pub struct VideoEncoder {
    frames: usize,
    dim: usize,
    attention: VideoAttention,
    frame: VitEncoder,
    time_pos: Tensor,
    temporal: Option<Transformer>,
    divided: Vec<(LayerNorm, MultiHeadAttention, TransformerBlock)>,
}

impl VideoEncoder {
    fn new(p: &ParamStore, cfg: &VideoConfig) -> Result<Self> {
        let VideoConfig {
            frames,
            image_size,
            patch_size,
            channels,
            dim,
            layers,
            temporal_layers,
            heads,
            attention,
        } = cfg;
        let factorized = *attention == VideoAttention::Factorized;
        let frame = VitEncoder::build(
            &p.sub("frame"),
            *image_size,
            *patch_size,
            *channels,
            *dim,
            if factorized { *layers } else { 0 },
            *heads,
            4,
        )?;
        let mut divided = Vec::new();
        if !factorized {
            for i in 0..*layers {
                let s = p.sub(&format!("divided.{i}"));
                divided.push((
                    layer_norm(&s, "norm_time", *dim, 1e-5)?,
                    MultiHeadAttention::new(&s, "time", *dim, *dim, *heads, false)?,
                    TransformerBlock::new(&s, "space", BlockSpec::new(*dim, *heads))?,
                ));
            }
        }
        Ok(VideoEncoder {
            frames: *frames,
            dim: *dim,
            attention: *attention,
            frame,
            time_pos: p.get("time_pos", &[1, *frames, *dim], Init::Normal(0.02))?,
            temporal: if factorized {
                Some(Transformer::new(
                    p,
                    "temporal",
                    *temporal_layers,
                    BlockSpec::new(*dim, *heads),
                )?)
            } else {
                None
            },
            divided,
        })
    }
}

impl Encoder for VideoEncoder {
    fn modality(&self) -> Modality {
        Modality::Video
    }
    fn token_dim(&self) -> usize {
        self.dim
    }
    fn pooled_dim(&self) -> usize {
        self.dim
    }
    /// Input `[B, F, C, H, W]`. Factorized: tokens are the F frame
    /// vectors; divided: the F·N patch tokens. Pooled: their mean.
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let v = float_input(
            batch,
            Modality::Video,
            5,
            "[B, F, C, H, W] float frames",
            self.time_pos.dtype(),
        )?;
        let (b, f, c, h, w) = v.dims5()?;
        if f != self.frames {
            return Err(input_err(
                Modality::Video,
                &format!("[B, {}, C, H, W]", self.frames),
                &v,
            ));
        }
        let flat = v.reshape((b * f, c, h, w))?;
        let d = self.dim;
        match self.attention {
            VideoAttention::Factorized => {
                let cls = self
                    .frame
                    .tokens(&flat)?
                    .narrow(1, 0, 1)?
                    .reshape((b, f, d))?;
                let x = cls.broadcast_add(&self.time_pos)?;
                let tokens = match &self.temporal {
                    Some(t) => t.forward(&x, None, None)?,
                    None => x,
                };
                let pooled = tokens.mean(1)?;
                Ok(Features {
                    tokens,
                    mask: None,
                    pooled,
                })
            }
            VideoAttention::Divided => {
                // Patch tokens without the class token, + space and time positions.
                let x = self.frame.tokens(&flat)?;
                let n = x.dim(1)? - 1;
                let mut x = x
                    .narrow(1, 1, n)?
                    .reshape((b, f, n, d))?
                    .broadcast_add(&self.time_pos.unsqueeze(2)?)?;
                for (norm, time, space) in &self.divided {
                    // Time: each patch position attends over the frames.
                    let xt = x.transpose(1, 2)?.contiguous()?.reshape((b * n, f, d))?;
                    let yt = (xt.clone() + time.forward(&norm.forward(&xt)?, None, None)?)?;
                    let xs = yt
                        .reshape((b, n, f, d))?
                        .transpose(1, 2)?
                        .contiguous()?
                        .reshape((b * f, n, d))?;
                    // Space: each frame's patches attend to each other.
                    x = space.forward(&xs, None, None)?.reshape((b, f, n, d))?;
                }
                let tokens = x.reshape((b, f * n, d))?;
                let pooled = tokens.mean(1)?;
                Ok(Features {
                    tokens,
                    mask: None,
                    pooled,
                })
            }
        }
    }
}

/// Points `[B, N, F]` + `[B, N]` mask.
fn point_input(
    batch: &ModalityBatch,
    in_features: usize,
    dtype: DType,
) -> Result<(Tensor, Option<Tensor>)> {
    let x = float_input(
        batch,
        Modality::PointCloud,
        3,
        "[B, N, F] float points",
        dtype,
    )?;
    if x.dim(2)? != in_features {
        return Err(input_err(
            Modality::PointCloud,
            &format!("[B, N, {in_features}]"),
            &x,
        ));
    }
    Ok((x, batch.mask.clone()))
}

/// Max over axis 1 with masked positions excluded: `[B, N, D]` → `[B, D]`.
fn masked_max(x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        None => Ok(x.max(1)?),
        Some(m) => {
            let m = m.to_dtype(x.dtype())?.unsqueeze(D::Minus1)?;
            let shifted = x.broadcast_add(&((m.ones_like()? - &m)? * -1e9)?)?;
            Ok(shifted.max(1)?)
        }
    }
}

/// A shared per-point MLP (ReLU), max-pooled over real points.
#[derive(Debug, Clone)]
pub struct PointNetEncoder {
    layers: Vec<Linear>,
    in_features: usize,
    dim: usize,
}

impl PointNetEncoder {
    fn new(p: &ParamStore, cfg: &PointnetConfig) -> Result<Self> {
        let PointnetConfig {
            in_features,
            widths,
            dim,
        } = cfg;
        let mut layers = Vec::new();
        let mut cin = *in_features;
        for (i, &w) in widths.iter().chain(std::iter::once(dim)).enumerate() {
            layers.push(p.linear(&format!("mlp.{i}"), cin, w, true)?);
            cin = w;
        }
        Ok(PointNetEncoder {
            layers,
            in_features: *in_features,
            dim: *dim,
        })
    }

    fn point_features(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            y = l.forward(&y)?;
            if i + 1 < self.layers.len() {
                y = y.relu()?;
            }
        }
        Ok(y)
    }
}

impl Encoder for PointNetEncoder {
    fn modality(&self) -> Modality {
        Modality::PointCloud
    }
    fn token_dim(&self) -> usize {
        self.dim
    }
    fn pooled_dim(&self) -> usize {
        self.dim
    }
    /// Tokens: per-point features; pooled: their max over real points.
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let (x, mask) = point_input(batch, self.in_features, self.layers[0].weight.dtype())?;
        let tokens = self.point_features(&x)?;
        let pooled = masked_max(&tokens, mask.as_ref())?;
        Ok(Features {
            tokens,
            mask,
            pooled,
        })
    }
}

/// Farthest-point sampling then k-nearest grouping, on real points only.
/// Returns per sample `groups` centre indices and `groups × k` member
/// indices (padded by repeating when a cloud has fewer points).
pub fn group_points(
    xyz: &[Vec<[f64; 3]>],
    groups: usize,
    k: usize,
) -> Vec<(Vec<usize>, Vec<usize>)> {
    xyz.iter()
        .map(|pts| {
            let n = pts.len();
            if n == 0 {
                return (vec![0; groups], vec![0; groups * k]);
            }
            let d2 =
                |a: &[f64; 3], b: &[f64; 3]| (0..3).map(|i| (a[i] - b[i]).powi(2)).sum::<f64>();
            // Deterministic: start from point 0.
            let mut centres = vec![0usize];
            let mut best: Vec<f64> = pts.iter().map(|p| d2(p, &pts[0])).collect();
            while centres.len() < groups {
                let (far, _) =
                    best.iter().enumerate().fold(
                        (0, -1.0),
                        |acc, (i, &d)| if d > acc.1 { (i, d) } else { acc },
                    );
                centres.push(far);
                for (i, p) in pts.iter().enumerate() {
                    best[i] = best[i].min(d2(p, &pts[far]));
                }
            }
            let mut members = Vec::with_capacity(groups * k);
            for &c in &centres {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| {
                    d2(&pts[a], &pts[c])
                        .total_cmp(&d2(&pts[b], &pts[c]))
                        .then(a.cmp(&b))
                });
                for j in 0..k {
                    members.push(order[j % n]);
                }
            }
            (centres, members)
        })
        .collect()
}

/// Point groups → mini PointNet → transformer over groups.
#[derive(Debug, Clone)]
pub struct PointTransformerEncoder {
    local: Vec<Linear>,
    centre_pos: crate::nn::Mlp,
    body: Transformer,
    in_features: usize,
    groups: usize,
    group_size: usize,
    dim: usize,
}

impl PointTransformerEncoder {
    fn new(p: &ParamStore, cfg: &PointTransformerConfig) -> Result<Self> {
        let PointTransformerConfig {
            in_features,
            groups,
            group_size,
            dim,
            layers,
            heads,
        } = cfg;
        if *in_features < 3 || *groups == 0 || *group_size == 0 {
            return Err(Error::Config {
                source_name: p.full(""),
                message: "point_transformer needs in_features ≥ 3 (xyz first), groups ≥ 1, group_size ≥ 1".into(),
            });
        }
        Ok(PointTransformerEncoder {
            local: vec![
                p.linear("local.0", *in_features, *dim, true)?,
                p.linear("local.1", *dim, *dim, true)?,
            ],
            centre_pos: crate::nn::Mlp::new(p, "centre_pos", 3, *dim, *dim, Activation::Gelu)?,
            body: Transformer::new(p, "body", *layers, BlockSpec::new(*dim, *heads))?,
            in_features: *in_features,
            groups: *groups,
            group_size: *group_size,
            dim: *dim,
        })
    }
}

impl Encoder for PointTransformerEncoder {
    fn modality(&self) -> Modality {
        Modality::PointCloud
    }
    fn token_dim(&self) -> usize {
        self.dim
    }
    fn pooled_dim(&self) -> usize {
        self.dim
    }
    /// Tokens: one per group; pooled: their mean. Groups are formed from
    /// the real points only (xyz = the first three features), with member
    /// coordinates taken relative to their centre.
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let (x, mask) = point_input(batch, self.in_features, self.local[0].weight.dtype())?;
        let (b, n, f) = x.dims3()?;
        let xv: Vec<Vec<Vec<f64>>> = x.to_dtype(DType::F64)?.to_vec3()?;
        let mv: Option<Vec<Vec<u8>>> = mask
            .as_ref()
            .map(|m| m.to_dtype(DType::U8)?.to_vec2())
            .transpose()?;
        let mut real_idx = Vec::with_capacity(b);
        let mut xyz = Vec::with_capacity(b);
        for (i, pts) in xv.iter().enumerate() {
            let idx: Vec<usize> = (0..n)
                .filter(|&j| mv.as_ref().is_none_or(|m| m[i][j] != 0))
                .collect();
            xyz.push(
                idx.iter()
                    .map(|&j| [pts[j][0], pts[j][1], pts[j][2]])
                    .collect::<Vec<_>>(),
            );
            real_idx.push(idx);
        }
        let grouped = group_points(&xyz, self.groups, self.group_size);
        let (g, k) = (self.groups, self.group_size);
        let mut centre_rows = Vec::with_capacity(b * g);
        let mut member_rows = Vec::with_capacity(b * g * k);
        for (i, (c, m)) in grouped.iter().enumerate() {
            let base = (i * n) as u32;
            let map = |j: usize| base + real_idx[i].get(j).copied().unwrap_or(0) as u32;
            centre_rows.extend(c.iter().map(|&j| map(j)));
            member_rows.extend(m.iter().map(|&j| map(j)));
        }
        let flat = x.reshape((b * n, f))?;
        let dev = x.device();
        let centres = flat
            .index_select(&Tensor::new(centre_rows, dev)?, 0)?
            .reshape((b, g, f))?;
        let members = flat
            .index_select(&Tensor::new(member_rows, dev)?, 0)?
            .reshape((b, g, k, f))?;
        let cxyz = centres.narrow(2, 0, 3)?;
        // Relative xyz, other features as they are.
        let rel_xyz = members
            .narrow(3, 0, 3)?
            .broadcast_sub(&cxyz.unsqueeze(2)?)?;
        let rel = if f > 3 {
            Tensor::cat(&[&rel_xyz, &members.narrow(3, 3, f - 3)?], 3)?
        } else {
            rel_xyz
        };
        let h = self.local[1].forward(&self.local[0].forward(&rel)?.relu()?)?;
        let tok = h.max(2)?.broadcast_add(&self.centre_pos.forward(&cxyz)?)?;
        let tokens = self.body.forward(&tok, None, None)?;
        let pooled = tokens.mean(1)?;
        Ok(Features {
            tokens,
            mask: None,
            pooled,
        })
    }
}

/// 1-D convolution over time + sinusoidal time encodings + transformer.
#[derive(Debug, Clone)]
pub struct SensorEncoder {
    conv: (Tensor, Tensor),
    body: Transformer,
    channels: usize,
    max_len: usize,
    kernel: usize,
    dim: usize,
}

impl SensorEncoder {
    fn new(p: &ParamStore, cfg: &SensorConfig) -> Result<Self> {
        let SensorConfig {
            channels,
            max_len,
            dim,
            layers,
            heads,
            kernel,
        } = cfg;
        Ok(SensorEncoder {
            conv: conv_weight(p, "conv", &[*dim, *channels, *kernel])?,
            body: Transformer::new(p, "body", *layers, BlockSpec::new(*dim, *heads))?,
            channels: *channels,
            max_len: *max_len,
            kernel: *kernel,
            dim: *dim,
        })
    }
}

impl Encoder for SensorEncoder {
    fn modality(&self) -> Modality {
        Modality::Sensor
    }
    fn token_dim(&self) -> usize {
        self.dim
    }
    fn pooled_dim(&self) -> usize {
        self.dim
    }
    /// Input `[B, T, C]` with an optional `[B, T]` step mask.
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let x = float_input(
            batch,
            Modality::Sensor,
            3,
            "[B, T, C] float series",
            self.conv.0.dtype(),
        )?;
        let (_, t, c) = x.dims3()?;
        if c != self.channels || t == 0 || t > self.max_len {
            return Err(input_err(
                Modality::Sensor,
                &format!("[B, 1..={}, {}]", self.max_len, self.channels),
                &x,
            ));
        }
        let mask = batch.mask.clone();
        // Zero padded steps so the convolution cannot carry them into real ones.
        let x = match &mask {
            Some(m) => x.broadcast_mul(&m.to_dtype(x.dtype())?.unsqueeze(2)?)?,
            None => x,
        };
        let y = conv1d(
            &x.transpose(1, 2)?.contiguous()?,
            &self.conv.0,
            Some(&self.conv.1),
            self.kernel / 2,
            1,
        )?
        .transpose(1, 2)?;
        let y = Activation::Gelu.forward(&y)?;
        let y = y.broadcast_add(&sinusoidal(t, self.dim, y.dtype(), y.device())?.unsqueeze(0)?)?;
        let bias = mask.as_ref().map(|m| key_bias(m, y.dtype())).transpose()?;
        let tokens = self.body.forward(&y, bias.as_ref(), None)?;
        let pooled = masked_mean(&tokens, mask.as_ref())?;
        Ok(Features {
            tokens,
            mask,
            pooled,
        })
    }
}
