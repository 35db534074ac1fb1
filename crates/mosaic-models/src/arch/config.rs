//! The architecture config (`configs/arch/*.toml`): encoders per modality,
//! one fusion paradigm, heads. Unknown keys are refused; [`ArchConfig::validate`]
//! checks the cross-references (widths, modalities a head needs) and names
//! the offending key.

pub use crate::arch::encoders::{
    AudioConfig, BagOfWordsConfig, CnnConfig, PointTransformerConfig, PointnetConfig,
    PretrainedConfig, SensorConfig, TextTransformerConfig, VideoConfig, VitConfig,
};
use std::collections::BTreeMap;
use std::path::Path;

use mosaic_core::Modality;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub(crate) fn four() -> usize {
    4
}
pub(crate) fn yes() -> bool {
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

/// An activation, named as in Hugging Face configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Act {
    /// Exact (erf) GELU.
    #[default]
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// CLIP's `x σ(1.702 x)`.
    QuickGelu,
    /// ReLU.
    Relu,
    /// SiLU / swish (with `gated_mlp`: SwiGLU).
    Silu,
}

impl Act {
    /// The building-block activation.
    pub fn activation(self) -> crate::nn::Activation {
        use crate::nn::Activation as A;
        match self {
            Act::Gelu => A::Gelu,
            Act::GeluTanh => A::GeluTanh,
            Act::QuickGelu => A::QuickGelu,
            Act::Relu => A::Relu,
            Act::Silu => A::Silu,
        }
    }

    /// Parses a Hugging Face `hidden_act`.
    pub fn from_hf(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" => Act::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
            "quick_gelu" => Act::QuickGelu,
            "relu" => Act::Relu,
            "silu" | "swish" => Act::Silu,
            _ => return None,
        })
    }
}

fn eps_default() -> f64 {
    1e-5
}
fn theta_default() -> f64 {
    10000.0
}

/// Settings of the transformer blocks of an encoder or fusion (`block =
/// { ... }`). Every key has a default, and the defaults are the blocks
/// Mosaic always built (pre-norm LayerNorm, eps 1e-5, exact GELU MLP, biases
/// everywhere), so configs without the table are unchanged. The other values
/// exist to reproduce published architectures exactly (BERT-style post-norm,
/// Llama's RMSNorm + SwiGLU + grouped-query attention, CLIP's quick GELU).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockOptions {
    /// Norm before (true) or after (false) each sub-layer.
    #[serde(default = "yes")]
    pub pre_norm: bool,
    /// Norm epsilon (BERT / ViLT: 1e-12, Llama: 1e-5 or 1e-6).
    #[serde(default = "eps_default")]
    pub eps: f64,
    /// RMSNorm (scale only) instead of LayerNorm.
    #[serde(default)]
    pub rms_norm: bool,
    /// MLP activation.
    #[serde(default)]
    pub act: Act,
    /// Gated MLP `fc2(act(gate x) · fc1 x)` (SwiGLU with `act = "silu"`).
    #[serde(default)]
    pub gated_mlp: bool,
    /// MLP hidden width; overrides the `mlp_ratio` of the owner.
    #[serde(default)]
    pub mlp_dim: Option<usize>,
    /// Biases on the attention and MLP linears.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Key/value heads (grouped-query attention); must divide the heads.
    #[serde(default)]
    pub kv_heads: Option<usize>,
    /// Base of rotary frequencies, where the owner uses rotary positions.
    #[serde(default = "theta_default")]
    pub rope_theta: f64,
}

impl Default for BlockOptions {
    fn default() -> Self {
        BlockOptions {
            pre_norm: true,
            eps: eps_default(),
            rms_norm: false,
            act: Act::Gelu,
            gated_mlp: false,
            mlp_dim: None,
            bias: true,
            kv_heads: None,
            rope_theta: theta_default(),
        }
    }
}

impl BlockOptions {
    /// The block spec for width `dim`, `heads` heads and MLP ×`mlp_ratio`
    /// (unless `mlp_dim` is set).
    pub fn spec(&self, dim: usize, heads: usize, mlp_ratio: usize) -> crate::nn::BlockSpec {
        let mut s = crate::nn::BlockSpec::new(dim, heads);
        s.mlp_ratio = mlp_ratio;
        s.mlp_dim = self.mlp_dim;
        s.pre_norm = self.pre_norm;
        s.eps = self.eps;
        s.rms_norm = self.rms_norm;
        s.act = self.act.activation();
        s.gated_mlp = self.gated_mlp;
        s.bias = self.bias;
        s.kv_heads = self.kv_heads;
        s.rope_theta = self.rope_theta;
        s
    }

    fn check(&self, key: &str, heads: usize) -> Result<()> {
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(cfg_err(&format!("{key}.eps"), "must be positive"));
        }
        if self.mlp_dim == Some(0) {
            return Err(cfg_err(&format!("{key}.mlp_dim"), "must be positive"));
        }
        if let Some(kv) = self.kv_heads
            && (kv == 0 || heads % kv != 0)
        {
            return Err(cfg_err(
                &format!("{key}.kv_heads"),
                format!("{kv} does not divide the {heads} heads"),
            ));
        }
        if !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            return Err(cfg_err(&format!("{key}.rope_theta"), "must be positive"));
        }
        Ok(())
    }
}

/// How generative fusion turns a prefix modality's tokens into prefix tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Projector {
    /// A linear map, then `prefix_tokens` learned-query attention pools.
    #[default]
    AttentionPool,
    /// LLaVA's per-token `proj2(act(proj(x)))`: every encoder token becomes a
    /// prefix token (`prefix_tokens` is then the encoder's token count).
    Mlp,
}

/// One modality's encoder: the `kind` key picks the variant; each kind's
/// settings are its own struct, beside the encoder in [`super::encoders`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EncoderConfig {
    /// A pretrained checkpoint's tower (`kind = "pretrained"`, or only a
    /// `pretrained` / `checkpoint` key).
    Pretrained(PretrainedConfig),
    /// A text transformer.
    TextTransformer(TextTransformerConfig),
    /// Token embeddings, mean-pooled (or BERT's embedding layer).
    BagOfWords(BagOfWordsConfig),
    /// A vision transformer.
    Vit(VitConfig),
    /// A small convolutional image encoder.
    Cnn(CnnConfig),
    /// A log-mel audio transformer.
    Audio(AudioConfig),
    /// A video transformer.
    Video(VideoConfig),
    /// PointNet.
    Pointnet(PointnetConfig),
    /// A point-group transformer.
    PointTransformer(PointTransformerConfig),
    /// A multichannel time-series transformer.
    Sensor(SensorConfig),
}

pub(crate) fn is_true(v: &bool) -> bool {
    *v
}
pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}
pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
pub(crate) fn is_empty<T>(v: &[T]) -> bool {
    v.is_empty()
}

impl EncoderConfig {
    /// A plain ViT (every knob beyond the sizes at its default), for code
    /// that builds configs in Rust rather than reading them.
    pub fn vit(
        image_size: usize,
        patch_size: usize,
        channels: usize,
        dim: usize,
        layers: usize,
        heads: usize,
        mlp_ratio: usize,
    ) -> Self {
        EncoderConfig::Vit(VitConfig {
            image_size,
            patch_size,
            channels,
            dim,
            layers,
            heads,
            mlp_ratio,
            block: BlockOptions::default(),
            patch_bias: true,
            embed_norm: false,
            final_norm: true,
            drop_class_token: false,
        })
    }

    /// Width of the encoder's tokens and pooled vector.
    pub fn dim(&self) -> usize {
        match self {
            EncoderConfig::TextTransformer(TextTransformerConfig { dim, .. })
            | EncoderConfig::BagOfWords(BagOfWordsConfig { dim, .. })
            | EncoderConfig::Vit(VitConfig { dim, .. })
            | EncoderConfig::Cnn(CnnConfig { dim, .. })
            | EncoderConfig::Audio(AudioConfig { dim, .. })
            | EncoderConfig::Video(VideoConfig { dim, .. })
            | EncoderConfig::Pointnet(PointnetConfig { dim, .. })
            | EncoderConfig::PointTransformer(PointTransformerConfig { dim, .. })
            | EncoderConfig::Sensor(SensorConfig { dim, .. })
            | EncoderConfig::Pretrained(PretrainedConfig { dim, .. }) => *dim,
        }
    }

    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            EncoderConfig::TextTransformer(_) => "text_transformer",
            EncoderConfig::BagOfWords(_) => "bag_of_words",
            EncoderConfig::Vit(_) => "vit",
            EncoderConfig::Cnn(_) => "cnn",
            EncoderConfig::Audio(_) => "audio",
            EncoderConfig::Video(_) => "video",
            EncoderConfig::Pointnet(_) => "pointnet",
            EncoderConfig::PointTransformer(_) => "point_transformer",
            EncoderConfig::Sensor(_) => "sensor",
            EncoderConfig::Pretrained(_) => "pretrained",
        }
    }

    /// The modalities this kind reads.
    pub fn reads(&self) -> &'static [Modality] {
        match self {
            EncoderConfig::TextTransformer(_) | EncoderConfig::BagOfWords(_) => &[Modality::Text],
            EncoderConfig::Vit(_) | EncoderConfig::Cnn(_) => &[Modality::Image],
            EncoderConfig::Audio(_) => &[Modality::Audio],
            EncoderConfig::Video(_) => &[Modality::Video],
            EncoderConfig::Pointnet(_) | EncoderConfig::PointTransformer(_) => {
                &[Modality::PointCloud]
            }
            EncoderConfig::Sensor(_) => &[Modality::Sensor],
            // Which of the two a checkpoint gives is its family's say.
            EncoderConfig::Pretrained(_) => &[Modality::Text, Modality::Image],
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
        /// Block settings (BLIP: post-norm, eps 1e-12).
        #[serde(default, skip_serializing_if = "is_default")]
        block: BlockOptions,
        /// Width of unimodal (retrieval) projections. When set, the query
        /// tokens also run through the blocks without cross-attention (BLIP's
        /// text encoder in retrieval mode); their first token and the
        /// context's pooled vector are projected (`fusion.unimodal.{m}`, with
        /// bias) to this width and land in the per-modality outputs that
        /// contrastive heads read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unimodal: Option<usize>,
    },
    /// All tokens (plus a class token and modality-type embeddings) in one
    /// transformer (ViLT-style); encoders act as embedders.
    SingleStream {
        /// Layers.
        layers: usize,
        /// Heads.
        heads: usize,
        /// Block settings (ViLT: eps 1e-12).
        #[serde(default, skip_serializing_if = "is_default")]
        block: BlockOptions,
        /// A linear projection of each modality's tokens to `dim` (off: the
        /// encoders already embed to `dim`, as ViLT's do).
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        project: bool,
        /// A learned class token first in the sequence (off: the first
        /// token of the first modality plays that part, as ViLT's text
        /// `[CLS]`).
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        class_token: bool,
        /// Order of the modalities in the sequence and in the type table
        /// (default: key order).
        #[serde(default, skip_serializing_if = "is_empty")]
        order: Vec<Modality>,
        /// Pooled = `tanh(pooler(first token))` (BERT/ViLT pooler).
        #[serde(default, skip_serializing_if = "is_false")]
        pooler: bool,
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
        /// Block settings (Llama: RMSNorm, SwiGLU, no biases, kv heads).
        #[serde(default, skip_serializing_if = "is_default")]
        block: BlockOptions,
        /// Learned position table or rotary (rotate-half) attention.
        #[serde(default, skip_serializing_if = "is_default")]
        positions: Positions,
        /// How prefix tokens are made.
        #[serde(default, skip_serializing_if = "is_default")]
        projector: Projector,
        /// Activation of the `mlp` projector.
        #[serde(default, skip_serializing_if = "is_default")]
        projector_act: Act,
        /// When set, the prefix tokens are not prepended: they replace, in
        /// order, the text positions holding this id (LLaVA's expanded
        /// `<image>` placeholders), and the lm head scores every position.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_token: Option<u32>,
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
        /// Joint width (with `project = false`: 0 or the towers' width).
        #[serde(default)]
        dim: usize,
        /// Initial temperature (CLIP: 0.07); unused when `init_logit_scale`
        /// names a parameter.
        #[serde(default = "temp")]
        init_temperature: f64,
        /// Project each side into the joint space (a new linear layer per
        /// modality on the fusion's per-modality vector). `false` compares
        /// the encoders' pooled vectors as they are: the joint space of a
        /// pretrained dual encoder: a CLIP checkpoint's logits at step 0
        /// (SigLIP's up to its `logit_bias`, so its ranking).
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        project: bool,
        /// The name of an existing scalar parameter whose value starts the
        /// head's log inverse temperature instead of `init_temperature`,
        /// e.g. a CLIP checkpoint's `encoders.image.logit_scale`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init_logit_scale: Option<String>,
    },
    /// Classes from the fused vector.
    Classifier {
        /// Classes (1: one score, e.g. an image–text matching score).
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
    /// LoRA adapters the model is built with. Training runs record theirs
    /// here, so a saved fine-tune (`config.json` + `model.safetensors`)
    /// loads with its adapters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<crate::nn::LoraSpec>,
}

fn cfg_err(key: &str, message: impl Into<String>) -> Error {
    Error::Config {
        source_name: "architecture".into(),
        message: format!("key `{key}`: {}", message.into()),
    }
}

/// `text` with `kind = "pretrained"` added to every encoder table that has
/// `pretrained` or `checkpoint` and no `kind` (the short form
/// `encoders.text = { pretrained = "minilm-l6-v2" }`); `None` when there is
/// nothing to add or the text does not parse (the typed parse then reports
/// the error at its place).
fn with_pretrained_kind(text: &str, format: mosaic_core::config::ConfigFormat) -> Option<String> {
    let short = |keys: &mut dyn Iterator<Item = &str>| {
        let keys: Vec<&str> = keys.collect();
        !keys.contains(&"kind") && (keys.contains(&"pretrained") || keys.contains(&"checkpoint"))
    };
    match format {
        mosaic_core::config::ConfigFormat::Toml => {
            let mut v: toml::Table = toml::from_str(text).ok()?;
            let encoders = v.get_mut("encoders")?.as_table_mut()?;
            let mut changed = false;
            for (_, e) in encoders.iter_mut() {
                if let Some(t) = e.as_table_mut()
                    && short(&mut t.keys().map(String::as_str))
                {
                    t.insert("kind".into(), toml::Value::String("pretrained".into()));
                    changed = true;
                }
            }
            changed.then(|| toml::to_string(&v).ok()).flatten()
        }
        mosaic_core::config::ConfigFormat::Json => {
            let mut v: serde_json::Value = serde_json::from_str(text).ok()?;
            let encoders = v.get_mut("encoders")?.as_object_mut()?;
            let mut changed = false;
            for e in encoders.values_mut() {
                if let Some(t) = e.as_object_mut()
                    && short(&mut t.keys().map(String::as_str))
                {
                    t.insert("kind".into(), "pretrained".into());
                    changed = true;
                }
            }
            changed.then(|| serde_json::to_string(&v).ok()).flatten()
        }
    }
}

impl ArchConfig {
    /// Reads a `.toml` or `.json` file (by extension) and validates it.
    /// An encoder given as `{ pretrained = "..." }` (or `checkpoint`)
    /// without `kind` is a pretrained tower.
    pub fn from_file(path: &Path) -> Result<Self> {
        // Key-path errors (`encoders.image.kind: unknown variant ...`).
        let format = mosaic_core::config::ConfigFormat::from_path(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| mosaic_core::Error::io(path, e))?;
        let text = with_pretrained_kind(&text, format).unwrap_or(text);
        let mut cfg: ArchConfig = mosaic_core::config::parse_config(&text, format, path)?;
        // A relative checkpoint folder is the config file's neighbour.
        if let Some(base) = path.parent() {
            for e in cfg.encoders.values_mut() {
                if let EncoderConfig::Pretrained(PretrainedConfig { pretrained, .. }) = e {
                    let rel = Path::new(pretrained.as_str());
                    if rel.is_relative() && base.join(rel).exists() {
                        // Absolute, so a saved config.json loads from anywhere.
                        let full = base.join(rel);
                        *pretrained = std::fs::canonicalize(&full)
                            .unwrap_or(full)
                            .display()
                            .to_string();
                    }
                }
            }
        }
        cfg.validate().map_err(|e| match e {
            Error::Config { message, .. } => Error::Config {
                source_name: path.display().to_string(),
                message,
            },
            other => other,
        })?;
        Ok(cfg)
    }

    /// Reads the width (and text length) of every pretrained tower from its
    /// checkpoint's config, resolving (and on first use fetching) the
    /// reference; a `dim` given in the config must match the checkpoint's.
    pub fn resolve_pretrained(&mut self) -> Result<()> {
        for (m, e) in self.encoders.iter_mut() {
            if let EncoderConfig::Pretrained(PretrainedConfig {
                pretrained,
                dim,
                max_len,
                ..
            }) = e
            {
                let dir = crate::pretrained::resolve_tower(pretrained)?;
                let info = crate::pretrained::tower_info(&dir, *m)?;
                if *dim != 0 && *dim != info.dim {
                    return Err(cfg_err(
                        &format!("encoders.{m}.dim"),
                        format!("{dim}, but `{pretrained}` gives {}", info.dim),
                    ));
                }
                *dim = info.dim;
                if let (Some(want), Some(have)) = (*max_len, info.max_len)
                    && want > have
                {
                    return Err(cfg_err(
                        &format!("encoders.{m}.max_len"),
                        format!("{want}, but `{pretrained}` reads at most {have} tokens"),
                    ));
                }
                if max_len.is_none() {
                    *max_len = info.max_len;
                }
            }
        }
        Ok(())
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
            if let EncoderConfig::Pretrained(PretrainedConfig { tower, .. }) = e {
                let wanted = match m {
                    Modality::Text => "text",
                    _ => "vision",
                };
                if let Some(t) = tower {
                    let t = if t == "image" { "vision" } else { t.as_str() };
                    if t != wanted {
                        return Err(cfg_err(
                            &format!("{key}.tower"),
                            format!("`{t}` does not encode {m} (use `{wanted}` or leave it out)"),
                        ));
                    }
                }
            }
            // A pretrained tower's width comes from its checkpoint.
            if e.dim() == 0 && !matches!(e, EncoderConfig::Pretrained(_)) {
                return Err(cfg_err(&format!("{key}.dim"), "must be positive"));
            }
            match e {
                EncoderConfig::TextTransformer(TextTransformerConfig {
                    dim,
                    heads,
                    vocab_size,
                    max_len,
                    positions,
                    ..
                }) => {
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
                EncoderConfig::Vit(VitConfig {
                    dim,
                    heads,
                    image_size,
                    patch_size,
                    block,
                    ..
                }) => {
                    check_heads(*dim, *heads)?;
                    block.check(&format!("{key}.block"), *heads)?;
                    if *patch_size == 0 || image_size % patch_size != 0 {
                        return Err(cfg_err(
                            &format!("{key}.patch_size"),
                            format!("{patch_size} does not divide image_size {image_size}"),
                        ));
                    }
                }
                EncoderConfig::Video(VideoConfig {
                    dim,
                    heads,
                    image_size,
                    patch_size,
                    ..
                }) => {
                    check_heads(*dim, *heads)?;
                    if *patch_size == 0 || image_size % patch_size != 0 {
                        return Err(cfg_err(
                            &format!("{key}.patch_size"),
                            format!("{patch_size} does not divide image_size {image_size}"),
                        ));
                    }
                }
                EncoderConfig::Audio(AudioConfig { dim, heads, .. })
                | EncoderConfig::PointTransformer(PointTransformerConfig { dim, heads, .. })
                | EncoderConfig::Sensor(SensorConfig { dim, heads, .. }) => {
                    check_heads(*dim, *heads)?
                }
                EncoderConfig::Cnn(CnnConfig { widths, .. })
                | EncoderConfig::Pointnet(PointnetConfig { widths, .. }) => {
                    if widths.is_empty() || widths.contains(&0) {
                        return Err(cfg_err(
                            &format!("{key}.widths"),
                            "needs at least one positive width",
                        ));
                    }
                }
                EncoderConfig::BagOfWords(BagOfWordsConfig {
                    max_len, norm_eps, ..
                }) => {
                    if *max_len == Some(0) {
                        return Err(cfg_err(&format!("{key}.max_len"), "must be positive"));
                    }
                    if norm_eps.is_some_and(|e| !(e > 0.0 && e.is_finite())) {
                        return Err(cfg_err(&format!("{key}.norm_eps"), "must be positive"));
                    }
                }
                EncoderConfig::Pretrained(PretrainedConfig {
                    pretrained,
                    max_len,
                    ..
                }) => {
                    if pretrained.trim().is_empty() {
                        return Err(cfg_err(
                            &format!("{key}.pretrained"),
                            "empty: name an asset, a checkpoint folder or a hub id",
                        ));
                    }
                    if *max_len == Some(0) {
                        return Err(cfg_err(&format!("{key}.max_len"), "must be positive"));
                    }
                }
            }
            if let EncoderConfig::Sensor(SensorConfig { kernel, .. }) = e
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
        // A pretrained tower's width is read from its checkpoint
        // (`resolve_pretrained`, run before a model is built); unresolved, it
        // is checked then.
        let unresolved = |e: &EncoderConfig| {
            matches!(
                e,
                EncoderConfig::Pretrained(PretrainedConfig { dim: 0, .. })
            )
        };
        let same_width = |what: &str| -> Result<()> {
            for (m, e) in &self.encoders {
                if e.dim() != self.dim && !unresolved(e) {
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
                block,
                unimodal,
            } => {
                block.check("fusion.block", *heads)?;
                if *unimodal == Some(0) {
                    return Err(cfg_err("fusion.unimodal", "must be positive"));
                }
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
                if q.dim() != self.dim && !unresolved(q) {
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
            FusionConfig::SingleStream {
                layers,
                heads,
                block,
                order,
                ..
            } => {
                if *layers == 0 || *heads == 0 || self.dim % heads != 0 {
                    return Err(cfg_err(
                        "fusion.heads",
                        format!("{heads} heads, {layers} layers for dim {}", self.dim),
                    ));
                }
                block.check("fusion.block", *heads)?;
                same_width(self.fusion.kind())?;
                if !order.is_empty() {
                    let mut sorted = order.clone();
                    sorted.sort();
                    sorted.dedup();
                    let keys: Vec<Modality> = self.encoders.keys().copied().collect();
                    if sorted != keys || order.len() != keys.len() {
                        return Err(cfg_err(
                            "fusion.order",
                            format!(
                                "must list each encoded modality once (encoders: {})",
                                self.modality_list()
                            ),
                        ));
                    }
                }
            }
            FusionConfig::MultiStream { layers, heads } => {
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
                block,
                positions,
                image_token,
                ..
            } => {
                block.check("fusion.block", *heads)?;
                if *positions == Positions::Rotary && *heads > 0 && (self.dim / heads) % 2 != 0 {
                    return Err(cfg_err(
                        "fusion.positions",
                        "rotary positions need an even head width",
                    ));
                }
                if let Some(t) = image_token
                    && *t as usize >= *vocab_size
                {
                    return Err(cfg_err(
                        "fusion.image_token",
                        format!("{t} is outside the vocabulary of {vocab_size}"),
                    ));
                }
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
                    project,
                    init_logit_scale,
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
                    if *project && *dim == 0 {
                        return Err(cfg_err(&format!("{key}.dim"), "must be positive"));
                    }
                    if init_logit_scale.is_none() && *init_temperature <= 0.0 {
                        return Err(cfg_err(
                            &format!("{key}.init_temperature"),
                            "must be positive",
                        ));
                    }
                    if !*project {
                        // Both sides are compared as the encoders give them.
                        let widths: Vec<usize> =
                            modalities.iter().map(|m| self.encoders[m].dim()).collect();
                        let resolved = modalities.iter().all(|m| !unresolved(&self.encoders[m]));
                        if resolved && widths[0] != widths[1] {
                            return Err(cfg_err(
                                &format!("{key}.project"),
                                format!(
                                    "false compares the pooled vectors directly, but {} gives {} and {} gives {}",
                                    modalities[0], widths[0], modalities[1], widths[1]
                                ),
                            ));
                        }
                        if resolved && *dim != 0 && *dim != widths[0] {
                            return Err(cfg_err(
                                &format!("{key}.dim"),
                                format!(
                                    "{dim}, but without a projection the joint width is the encoders' {}",
                                    widths[0]
                                ),
                            ));
                        }
                    }
                    if matches!(self.fusion, FusionConfig::Generative { .. }) {
                        return Err(cfg_err(
                            &format!("{key}.kind"),
                            "contrastive heads read per-modality features; generative fusion has an lm head",
                        ));
                    }
                }
                HeadConfig::Classifier { classes } => {
                    // 1 = a single score (ViLT's retrieval `rank_output`).
                    if *classes == 0 {
                        return Err(cfg_err(&format!("{key}.classes"), "must be positive"));
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
