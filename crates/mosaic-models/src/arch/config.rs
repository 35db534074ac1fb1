//! The architecture config (`configs/arch/*.toml`): encoders per modality,
//! one fusion paradigm, heads. Unknown keys are refused; [`ArchConfig::validate`]
//! checks the cross-references (widths, modalities a head needs) and names
//! the offending key.

use std::collections::BTreeMap;
use std::path::Path;

use mosaic_core::Modality;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn four() -> usize {
    4
}
fn yes() -> bool {
    true
}

/// How a text encoder marks positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// A learned table.
    #[default]
    Learned,
    /// Rotary embeddings in attention.
    Rotary,
}

/// How a video encoder attends over space and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VideoAttention {
    /// A per-frame image encoder, then a temporal transformer over frames.
    #[default]
    Factorized,
    /// TimeSformer's divided space–time attention: each block attends over
    /// time (same patch), then over space (same frame).
    Divided,
}

/// One modality's encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EncoderConfig {
    /// Token embedding + positions + transformer; pooled = mean over real tokens.
    TextTransformer {
        /// Vocabulary.
        vocab_size: usize,
        /// Longest input.
        max_len: usize,
        /// Width.
        dim: usize,
        /// Layers.
        layers: usize,
        /// Heads.
        heads: usize,
        /// Learned or rotary positions.
        #[serde(default)]
        positions: Positions,
        /// MLP width factor.
        #[serde(default = "four")]
        mlp_ratio: usize,
        /// Pre-norm (true) or post-norm blocks.
        #[serde(default = "yes")]
        pre_norm: bool,
    },
    /// Mean of token embeddings over real tokens (tokens = the embeddings).
    BagOfWords {
        /// Vocabulary.
        vocab_size: usize,
        /// Width.
        dim: usize,
    },
    /// Vision transformer: patches + class token + learned positions.
    Vit {
        /// Input side.
        image_size: usize,
        /// Patch side.
        patch_size: usize,
        /// Input channels.
        channels: usize,
        /// Width.
        dim: usize,
        /// Layers.
        layers: usize,
        /// Heads.
        heads: usize,
        /// MLP width factor.
        #[serde(default = "four")]
        mlp_ratio: usize,
    },
    /// Convolutions (3×3, stride 2, ReLU) then a linear map of each position.
    Cnn {
        /// Input side (square images).
        image_size: usize,
        /// Input channels.
        channels: usize,
        /// Output channels per conv layer.
        widths: Vec<usize>,
        /// Token width.
        dim: usize,
    },
    /// Log-mel spectrogram `[B, T, n_mels]`: two 1-D convolutions (the
    /// second with stride 2, GELU), learned positions, transformer.
    Audio {
        /// Mel bins.
        n_mels: usize,
        /// Longest input in frames.
        max_frames: usize,
        /// Width.
        dim: usize,
        /// Layers.
        layers: usize,
        /// Heads.
        heads: usize,
    },
    /// Frames `[B, F, C, H, W]`.
    Video {
        /// Frames per clip.
        frames: usize,
        /// Frame side.
        image_size: usize,
        /// Patch side.
        patch_size: usize,
        /// Channels.
        channels: usize,
        /// Width.
        dim: usize,
        /// Spatial (factorized) or space–time (divided) layers.
        layers: usize,
        /// Temporal layers (factorized only).
        #[serde(default)]
        temporal_layers: usize,
        /// Heads.
        heads: usize,
        /// Attention layout.
        #[serde(default)]
        attention: VideoAttention,
    },
    /// PointNet: a shared per-point MLP, max-pooled (masked) over points.
    Pointnet {
        /// Features per point (3 = xyz, 6 = xyz + normals/colours).
        in_features: usize,
        /// Hidden widths of the shared MLP.
        widths: Vec<usize>,
        /// Output width.
        dim: usize,
    },
    /// Point groups (farthest-point centres, k nearest points), a mini
    /// PointNet per group, then a transformer over the groups.
    PointTransformer {
        /// Features per point.
        in_features: usize,
        /// Groups.
        groups: usize,
        /// Points per group.
        group_size: usize,
        /// Width.
        dim: usize,
        /// Layers.
        layers: usize,
        /// Heads.
        heads: usize,
    },
    /// Time series `[B, T, C]`: a 1-D convolution over time, sinusoidal
    /// time encodings, transformer; pooled = mean over real steps.
    Sensor {
        /// Channels.
        channels: usize,
        /// Longest series.
        max_len: usize,
        /// Width.
        dim: usize,
        /// Layers.
        layers: usize,
        /// Heads.
        heads: usize,
        /// Convolution width (odd).
        #[serde(default = "three")]
        kernel: usize,
    },
}

fn three() -> usize {
    3
}

impl EncoderConfig {
    /// Width of the encoder's tokens and pooled vector.
    pub fn dim(&self) -> usize {
        match self {
            EncoderConfig::TextTransformer { dim, .. }
            | EncoderConfig::BagOfWords { dim, .. }
            | EncoderConfig::Vit { dim, .. }
            | EncoderConfig::Cnn { dim, .. }
            | EncoderConfig::Audio { dim, .. }
            | EncoderConfig::Video { dim, .. }
            | EncoderConfig::Pointnet { dim, .. }
            | EncoderConfig::PointTransformer { dim, .. }
            | EncoderConfig::Sensor { dim, .. } => *dim,
        }
    }

    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            EncoderConfig::TextTransformer { .. } => "text_transformer",
            EncoderConfig::BagOfWords { .. } => "bag_of_words",
            EncoderConfig::Vit { .. } => "vit",
            EncoderConfig::Cnn { .. } => "cnn",
            EncoderConfig::Audio { .. } => "audio",
            EncoderConfig::Video { .. } => "video",
            EncoderConfig::Pointnet { .. } => "pointnet",
            EncoderConfig::PointTransformer { .. } => "point_transformer",
            EncoderConfig::Sensor { .. } => "sensor",
        }
    }

    /// The modalities this kind reads.
    pub fn reads(&self) -> &'static [Modality] {
        match self {
            EncoderConfig::TextTransformer { .. } | EncoderConfig::BagOfWords { .. } => {
                &[Modality::Text]
            }
            EncoderConfig::Vit { .. } | EncoderConfig::Cnn { .. } => &[Modality::Image],
            EncoderConfig::Audio { .. } => &[Modality::Audio],
            EncoderConfig::Video { .. } => &[Modality::Video],
            EncoderConfig::Pointnet { .. } | EncoderConfig::PointTransformer { .. } => {
                &[Modality::PointCloud]
            }
            EncoderConfig::Sensor { .. } => &[Modality::Sensor],
        }
    }
}

/// The fusion paradigm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FusionConfig {
    /// Pooled features of every modality concatenated into one shared MLP
    /// encoder (feature-level early fusion).
    Early {
        /// Hidden width of the shared encoder.
        hidden: usize,
        /// Hidden layers of the shared encoder.
        #[serde(default = "two")]
        layers: usize,
    },
    /// Independent towers; their pooled features are projected to `dim`
    /// and joined by similarity (contrastive head) or a small head.
    Late {},
    /// `query` tokens attend to `context` tokens (ALBEF/BLIP-style).
    CrossAttention {
        /// The attending modality.
        query: Modality,
        /// The attended modality.
        context: Modality,
        /// Fusion layers.
        layers: usize,
        /// Heads.
        heads: usize,
    },
    /// All tokens (plus a class token and modality-type embeddings) in one
    /// transformer (ViLT-style); encoders act as embedders.
    SingleStream {
        /// Layers.
        layers: usize,
        /// Heads.
        heads: usize,
    },
    /// One tower per modality (≥ 3), then a shared fusion transformer over
    /// their tokens with modality-type embeddings (VideoBERT-style).
    MultiStream {
        /// Fusion layers.
        layers: usize,
        /// Heads.
        heads: usize,
    },
    /// Learned per-sample modality weights (softmax over the modalities a
    /// sample has) on the pooled features.
    Gated {},
    /// Features of `prefix` modalities projected to a prefix of a causal
    /// decoder (LLaVA-style).
    Generative {
        /// Modalities turned into prefix tokens, in order.
        prefix: Vec<Modality>,
        /// Prefix tokens per modality (attention-pooled from its tokens).
        prefix_tokens: usize,
        /// Vocabulary.
        vocab_size: usize,
        /// Longest prefix + text.
        max_len: usize,
        /// Decoder layers.
        layers: usize,
        /// Heads.
        heads: usize,
    },
}

fn two() -> usize {
    2
}

impl FusionConfig {
    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            FusionConfig::Early { .. } => "early",
            FusionConfig::Late {} => "late",
            FusionConfig::CrossAttention { .. } => "cross_attention",
            FusionConfig::SingleStream { .. } => "single_stream",
            FusionConfig::MultiStream { .. } => "multi_stream",
            FusionConfig::Gated {} => "gated",
            FusionConfig::Generative { .. } => "generative",
        }
    }
}

/// A head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum HeadConfig {
    /// Projections of two modalities' pooled features into a joint space
    /// with a learnable temperature.
    Contrastive {
        /// The two modalities.
        modalities: Vec<Modality>,
        /// Joint width.
        dim: usize,
        /// Initial temperature (CLIP: 0.07).
        #[serde(default = "temp")]
        init_temperature: f64,
    },
    /// Classes from the fused vector.
    Classifier {
        /// Classes.
        classes: usize,
    },
    /// Match / no-match logits from the fused vector.
    Itm {},
    /// The generative fusion's language-model head (next-token logits).
    Lm {},
}

fn temp() -> f64 {
    0.07
}

impl HeadConfig {
    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            HeadConfig::Contrastive { .. } => "contrastive",
            HeadConfig::Classifier { .. } => "classifier",
            HeadConfig::Itm {} => "itm",
            HeadConfig::Lm {} => "lm",
        }
    }
}

/// A whole model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchConfig {
    /// Name.
    pub name: String,
    /// Seed of the initial parameters.
    #[serde(default)]
    pub seed: u64,
    /// Width of the fusion and of the features heads read.
    pub dim: usize,
    /// Encoders by modality.
    pub encoders: BTreeMap<Modality, EncoderConfig>,
    /// Fusion paradigm.
    pub fusion: FusionConfig,
    /// Heads by name.
    pub heads: BTreeMap<String, HeadConfig>,
}

fn cfg_err(key: &str, message: impl Into<String>) -> Error {
    Error::Config {
        source_name: "architecture".into(),
        message: format!("key `{key}`: {}", message.into()),
    }
}

impl ArchConfig {
    /// Reads a `.toml` or `.json` file (by extension) and validates it.
    pub fn from_file(path: &Path) -> Result<Self> {
        // Key-path errors (`encoders.image.kind: unknown variant ...`).
        let cfg: ArchConfig = mosaic_core::config::load_config(path)?;
        cfg.validate().map_err(|e| match e {
            Error::Config { message, .. } => Error::Config {
                source_name: path.display().to_string(),
                message,
            },
            other => other,
        })?;
        Ok(cfg)
    }

    /// Checks what serde cannot: sizes, and that fusion and heads only use
    /// modalities that have encoders with compatible widths.
    pub fn validate(&self) -> Result<()> {
        if self.encoders.is_empty() {
            return Err(cfg_err("encoders", "at least one encoder is needed"));
        }
        if self.dim == 0 {
            return Err(cfg_err("dim", "must be positive"));
        }
        for (m, e) in &self.encoders {
            let key = format!("encoders.{m}");
            if !e.reads().contains(m) {
                return Err(cfg_err(
                    &format!("{key}.kind"),
                    format!("`{}` encodes {}, not {m}", e.kind(), e.reads()[0]),
                ));
            }
            let check_heads = |dim: usize, heads: usize| -> Result<()> {
                if heads == 0 || dim % heads != 0 {
                    return Err(cfg_err(
                        &format!("{key}.heads"),
                        format!("{heads} does not divide dim {dim}"),
                    ));
                }
                Ok(())
            };
            if e.dim() == 0 {
                return Err(cfg_err(&format!("{key}.dim"), "must be positive"));
            }
            match e {
                EncoderConfig::TextTransformer {
                    dim,
                    heads,
                    vocab_size,
                    max_len,
                    positions,
                    ..
                } => {
                    check_heads(*dim, *heads)?;
                    if *vocab_size == 0 || *max_len == 0 {
                        return Err(cfg_err(
                            &format!("{key}.vocab_size"),
                            "vocab_size and max_len must be positive",
                        ));
                    }
                    if *positions == Positions::Rotary && (dim / heads) % 2 != 0 {
                        return Err(cfg_err(
                            &format!("{key}.positions"),
                            "rotary positions need an even head width",
                        ));
                    }
                }
                EncoderConfig::Vit {
                    dim,
                    heads,
                    image_size,
                    patch_size,
                    ..
                }
                | EncoderConfig::Video {
                    dim,
                    heads,
                    image_size,
                    patch_size,
                    ..
                } => {
                    check_heads(*dim, *heads)?;
                    if *patch_size == 0 || image_size % patch_size != 0 {
                        return Err(cfg_err(
                            &format!("{key}.patch_size"),
                            format!("{patch_size} does not divide image_size {image_size}"),
                        ));
                    }
                }
                EncoderConfig::Audio { dim, heads, .. }
                | EncoderConfig::PointTransformer { dim, heads, .. }
                | EncoderConfig::Sensor { dim, heads, .. } => check_heads(*dim, *heads)?,
                EncoderConfig::Cnn { widths, .. } | EncoderConfig::Pointnet { widths, .. } => {
                    if widths.is_empty() || widths.contains(&0) {
                        return Err(cfg_err(
                            &format!("{key}.widths"),
                            "needs at least one positive width",
                        ));
                    }
                }
                EncoderConfig::BagOfWords { .. } => {}
            }
            if let EncoderConfig::Sensor { kernel, .. } = e
                && kernel % 2 == 0
            {
                return Err(cfg_err(
                    &format!("{key}.kernel"),
                    format!("{kernel} must be odd"),
                ));
            }
        }
        let need = |m: &Modality, key: &str| -> Result<()> {
            if self.encoders.contains_key(m) {
                Ok(())
            } else {
                Err(cfg_err(
                    key,
                    format!(
                        "modality `{m}` has no encoder (encoders: {})",
                        self.modality_list()
                    ),
                ))
            }
        };
        // Fusions that mix tokens need one width across encoders.
        let same_width = |what: &str| -> Result<()> {
            for (m, e) in &self.encoders {
                if e.dim() != self.dim {
                    return Err(cfg_err(
                        &format!("encoders.{m}.dim"),
                        format!(
                            "{} differs from the model dim {} that {what} fusion needs",
                            e.dim(),
                            self.dim
                        ),
                    ));
                }
            }
            Ok(())
        };
        match &self.fusion {
            FusionConfig::Early { hidden, layers } => {
                if *hidden == 0 || *layers == 0 {
                    return Err(cfg_err(
                        "fusion.hidden",
                        "hidden and layers must be positive",
                    ));
                }
            }
            FusionConfig::Late {} | FusionConfig::Gated {} => {}
            FusionConfig::CrossAttention {
                query,
                context,
                layers,
                heads,
            } => {
                need(query, "fusion.query")?;
                need(context, "fusion.context")?;
                if query == context {
                    return Err(cfg_err("fusion.context", "must differ from fusion.query"));
                }
                if *layers == 0 || *heads == 0 || self.dim % heads != 0 {
                    return Err(cfg_err(
                        "fusion.heads",
                        format!("{heads} heads, {layers} layers for dim {}", self.dim),
                    ));
                }
                let q = &self.encoders[query];
                if q.dim() != self.dim {
                    return Err(cfg_err(
                        &format!("encoders.{query}.dim"),
                        format!(
                            "{} differs from the model dim {} (the query stream is the fusion's width)",
                            q.dim(),
                            self.dim
                        ),
                    ));
                }
            }
            FusionConfig::SingleStream { layers, heads }
            | FusionConfig::MultiStream { layers, heads } => {
                if *layers == 0 || *heads == 0 || self.dim % heads != 0 {
                    return Err(cfg_err(
                        "fusion.heads",
                        format!("{heads} heads, {layers} layers for dim {}", self.dim),
                    ));
                }
                same_width(self.fusion.kind())?;
                if matches!(self.fusion, FusionConfig::MultiStream { .. })
                    && self.encoders.len() < 3
                {
                    return Err(cfg_err(
                        "encoders",
                        "multi-stream fusion needs at least 3 modalities",
                    ));
                }
            }
            FusionConfig::Generative {
                prefix,
                prefix_tokens,
                vocab_size,
                max_len,
                layers,
                heads,
            } => {
                if prefix.is_empty() {
                    return Err(cfg_err("fusion.prefix", "needs at least one modality"));
                }
                for m in prefix {
                    need(m, "fusion.prefix")?;
                    if *m == Modality::Text {
                        return Err(cfg_err(
                            "fusion.prefix",
                            "text is what the decoder reads and writes; it cannot be a prefix modality",
                        ));
                    }
                }
                if *prefix_tokens == 0
                    || *vocab_size == 0
                    || *layers == 0
                    || *heads == 0
                    || self.dim % heads != 0
                {
                    return Err(cfg_err(
                        "fusion.heads",
                        "prefix_tokens, vocab_size, layers, heads must be positive and heads must divide dim",
                    ));
                }
                if prefix.len() * prefix_tokens >= *max_len {
                    return Err(cfg_err(
                        "fusion.max_len",
                        format!(
                            "{max_len} leaves no room for text after {} prefix tokens",
                            prefix.len() * prefix_tokens
                        ),
                    ));
                }
            }
        }
        if self.heads.is_empty() {
            return Err(cfg_err("heads", "at least one head is needed"));
        }
        for (name, h) in &self.heads {
            let key = format!("heads.{name}");
            match h {
                HeadConfig::Contrastive {
                    modalities,
                    dim,
                    init_temperature,
                } => {
                    if modalities.len() != 2 || modalities[0] == modalities[1] {
                        return Err(cfg_err(
                            &format!("{key}.modalities"),
                            "needs exactly two different modalities",
                        ));
                    }
                    for m in modalities {
                        need(m, &format!("{key}.modalities"))?;
                    }
                    if *dim == 0 || *init_temperature <= 0.0 {
                        return Err(cfg_err(
                            &format!("{key}.dim"),
                            "dim and init_temperature must be positive",
                        ));
                    }
                    if matches!(self.fusion, FusionConfig::Generative { .. }) {
                        return Err(cfg_err(
                            &format!("{key}.kind"),
                            "contrastive heads read per-modality features; generative fusion has an lm head",
                        ));
                    }
                }
                HeadConfig::Classifier { classes } => {
                    if *classes < 2 {
                        return Err(cfg_err(
                            &format!("{key}.classes"),
                            "needs at least 2 classes",
                        ));
                    }
                    if matches!(self.fusion, FusionConfig::Generative { .. }) {
                        return Err(cfg_err(
                            &format!("{key}.kind"),
                            "generative fusion has no fused vector; use an lm head",
                        ));
                    }
                }
                HeadConfig::Itm {} => {
                    if !matches!(
                        self.fusion,
                        FusionConfig::CrossAttention { .. } | FusionConfig::SingleStream { .. }
                    ) {
                        return Err(cfg_err(
                            &format!("{key}.kind"),
                            "image–text matching needs cross-attention or single-stream fusion",
                        ));
                    }
                }
                HeadConfig::Lm {} => {
                    if !matches!(self.fusion, FusionConfig::Generative { .. }) {
                        return Err(cfg_err(
                            &format!("{key}.kind"),
                            "an lm head needs generative fusion",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn modality_list(&self) -> String {
        self.encoders
            .keys()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
