//! Hugging Face checkpoints as arch models: BLIP image–text matching through
//! the cross-attention paradigm, ViLT retrieval through the single-stream
//! paradigm, LLaVA through the generative paradigm.
//!
//! Each converter reads `config.json`, writes the [`ArchConfig`] that
//! reproduces the reference architecture with the arch knobs, and renames
//! (reshapes, splits) every checkpoint tensor to the arch parameter it
//! becomes. Loading is strict both ways: a tensor the converter does not
//! consume is an error naming it, and so is an arch parameter left unfilled
//! ([`crate::nn::ParamStore::load_map`]). The few checkpoint tensors the
//! reference itself never reads are listed in [`Imported::dropped`] with the
//! reason; the few arch parameters the checkpoint has no tensor for, but whose
//! value is fixed by the reference's arithmetic, in [`Imported::synthesized`].
//!
//! ```no_run
//! use candle_core::{DType, Device};
//! use mosaic_models::arch::MultimodalModel;
//!
//! # fn main() -> mosaic_models::Result<()> {
//! let model = MultimodalModel::from_hf("vilt-dir".as_ref(), DType::F32, &Device::Cpu)?;
//! println!("{}", model.config().fusion.kind()); // single_stream
//! # Ok(())
//! # }
//! ```

use crate::arch::encoders::{BagOfWordsConfig, VitConfig};
use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use mosaic_core::Modality;
use serde::Deserialize;

use crate::arch::config::{
    Act, ArchConfig, BlockOptions, EncoderConfig, FusionConfig, HeadConfig, Positions, Projector,
};
use crate::arch::model::MultimodalModel;
use crate::error::{Error, Result};
use crate::pretrained::blip::BlipConfig;
use crate::pretrained::llava::LlavaConfig;
use crate::pretrained::{read_config, read_model_type};
use crate::weights::Weights;

/// A converted checkpoint.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The arch config reproducing the reference architecture.
    pub config: ArchConfig,
    /// Every arch parameter, by its arch name.
    pub tensors: BTreeMap<String, Tensor>,
    /// Checkpoint tensors the reference never reads (name, why).
    pub dropped: Vec<(String, String)>,
    /// Arch parameters with no checkpoint tensor, set to the value the
    /// reference's arithmetic implies (name, what and why).
    pub synthesized: Vec<(String, String)>,
}

/// `model_type` values [`convert`] handles.
pub const IMPORTABLE_MODEL_TYPES: &[&str] = &["blip", "llava", "vilt"];

/// Converts a Hugging Face folder by the `model_type` of its `config.json`.
pub fn convert(dir: &Path) -> Result<Imported> {
    match read_model_type(dir)?.as_str() {
        "blip" => blip_itm(dir),
        "vilt" => vilt(dir),
        "llava" => llava(dir),
        other => Err(Error::Config {
            source_name: dir.join("config.json").display().to_string(),
            message: format!(
                "key `model_type`: `{other}` has no arch import; supported: {}",
                IMPORTABLE_MODEL_TYPES.join(", ")
            ),
        }),
    }
}

impl MultimodalModel {
    /// Builds the arch model of a Hugging Face folder ([`convert`]) and
    /// loads its weights strictly, in `dtype` on `device`.
    pub fn from_hf(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let imp = convert(dir)?;
        imp.into_model(dtype, device, &dir.display().to_string())
    }
}

impl Imported {
    /// Builds the model and loads the tensors (every parameter must be
    /// filled, no tensor may be left over; errors name the tensor).
    pub fn into_model(
        self,
        dtype: DType,
        device: &Device,
        source: &str,
    ) -> Result<MultimodalModel> {
        let model = MultimodalModel::from_config(&self.config, dtype, device)?;
        model.params().load_map(&self.tensors, source)?;
        Ok(model)
    }
}

/// Collects renamed tensors; every read goes through [`Weights::get`] so
/// shapes are checked and the tensor counts as used.
struct Conv<'a> {
    w: &'a Weights,
    out: BTreeMap<String, Tensor>,
    dropped: Vec<(String, String)>,
    synthesized: Vec<(String, String)>,
}

impl<'a> Conv<'a> {
    fn new(w: &'a Weights) -> Self {
        Conv {
            w,
            out: BTreeMap::new(),
            dropped: Vec::new(),
            synthesized: Vec::new(),
        }
    }

    fn put(&mut self, arch: &str, t: Tensor) {
        self.out.insert(arch.to_string(), t);
    }

    /// `hf` (of `shape`) as `arch`.
    fn take(&mut self, hf: &str, shape: &[usize], arch: &str) -> Result<()> {
        let t = self.w.get(hf, shape)?;
        self.put(arch, t);
        Ok(())
    }

    /// `hf` (of `shape`) reshaped to `to` as `arch`.
    fn take_as(&mut self, hf: &str, shape: &[usize], arch: &str, to: &[usize]) -> Result<()> {
        let t = self.w.get(hf, shape)?.reshape(to)?;
        self.put(arch, t);
        Ok(())
    }

    /// A linear layer `hf.{weight,bias}` `[o, i]` as `arch.{weight,bias}`.
    fn linear(&mut self, hf: &str, i: usize, o: usize, arch: &str, bias: bool) -> Result<()> {
        self.take(&format!("{hf}.weight"), &[o, i], &format!("{arch}.weight"))?;
        if bias {
            self.take(&format!("{hf}.bias"), &[o], &format!("{arch}.bias"))?;
        }
        Ok(())
    }

    /// A norm `hf.weight` (+ `hf.bias` unless RMS) of width `d`.
    fn norm(&mut self, hf: &str, d: usize, arch: &str, rms: bool) -> Result<()> {
        self.take(&format!("{hf}.weight"), &[d], &format!("{arch}.weight"))?;
        if !rms {
            self.take(&format!("{hf}.bias"), &[d], &format!("{arch}.bias"))?;
        }
        Ok(())
    }

    /// The second half of a BLIP / CLIP vision layer: `layer_norm2` and
    /// the `mlp.fc1`/`fc2` of width `hidden → inner → hidden`, as the arch
    /// block's `norm2` and `mlp`.
    fn norm_mlp(&mut self, layer: &str, block: &str, hidden: usize, inner: usize) -> Result<()> {
        self.norm(
            &format!("{layer}.layer_norm2"),
            hidden,
            &format!("{block}.norm2"),
            false,
        )?;
        self.linear(
            &format!("{layer}.mlp.fc1"),
            hidden,
            inner,
            &format!("{block}.mlp.fc1"),
            true,
        )?;
        self.linear(
            &format!("{layer}.mlp.fc2"),
            inner,
            hidden,
            &format!("{block}.mlp.fc2"),
            true,
        )
    }

    /// Marks `hf` as knowingly unused.
    fn discard(&mut self, hf: &str, why: &str) -> Result<()> {
        self.w.get_unchecked(hf)?;
        self.dropped.push((hf.to_string(), why.to_string()));
        Ok(())
    }

    fn finish(self, config: ArchConfig) -> Result<Imported> {
        // Buffers transformers may write; never parameters.
        self.w.check_unused(&["*position_ids", "*token_type_ids"])?;
        config.validate()?;
        Ok(Imported {
            config,
            tensors: self.out,
            dropped: self.dropped,
            synthesized: self.synthesized,
        })
    }
}

fn cfg_err(dir: &Path, key: &str, message: impl Into<String>) -> Error {
    Error::Config {
        source_name: dir.join("config.json").display().to_string(),
        message: format!("key `{key}`: {}", message.into()),
    }
}

fn act(dir: &Path, key: &str, name: &str) -> Result<Act> {
    Act::from_hf(name).ok_or_else(|| cfg_err(dir, key, format!("unsupported activation `{name}`")))
}

fn heads_divide(dir: &Path, key: &str, dim: usize, heads: usize) -> Result<()> {
    if heads == 0 || dim % heads != 0 {
        return Err(cfg_err(
            dir,
            key,
            format!("{heads} heads do not divide the width {dim}"),
        ));
    }
    Ok(())
}

fn load_weights(dir: &Path) -> Result<Weights> {
    Weights::load(dir, &Device::Cpu, DType::F32)
}

// ---------------------------------------------------------------------------
// ViLT
// ---------------------------------------------------------------------------

fn two() -> usize {
    2
}
fn forty() -> usize {
    40
}
fn gelu() -> String {
    "gelu".into()
}
fn eps12() -> f64 {
    1e-12
}
fn three() -> usize {
    3
}
fn yes() -> bool {
    true
}
fn minus_one() -> i64 {
    -1
}

/// The parts of a ViLT `config.json` the import reads.
#[derive(Debug, Clone, Deserialize)]
struct ViltConfig {
    vocab_size: usize,
    #[serde(default = "two")]
    type_vocab_size: usize,
    #[serde(default = "two")]
    modality_type_vocab_size: usize,
    #[serde(default = "forty")]
    max_position_embeddings: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default = "eps12")]
    layer_norm_eps: f64,
    image_size: usize,
    patch_size: usize,
    #[serde(default = "three")]
    num_channels: usize,
    #[serde(default = "yes")]
    qkv_bias: bool,
    #[serde(default = "minus_one")]
    max_image_length: i64,
}

/// `ViltForImageAndTextRetrieval` as a single-stream model: a text embedder
/// (`bag_of_words` with positions, token type 0 and LayerNorm) and a patch
/// embedder (`vit` without layers or closing norm) feed the single-stream
/// fusion in the order text, image, with ViLT's modality-type table, its
/// pre-norm layers, closing LayerNorm and tanh pooler; head `rank` is the
/// one-score `rank_output`. Inputs must be `image_size` square images with
/// every pixel valid (ViLT's `pixel_mask` all ones): then ViLT's position
/// interpolation is the identity. ViLT draws the patch order at random
/// (`torch.multinomial`); Mosaic keeps row-major order, which leaves the
/// pooled vector and the score unchanged.
pub fn vilt(dir: &Path) -> Result<Imported> {
    let c: ViltConfig = read_config(dir)?;
    let (h, nh) = (c.hidden_size, c.num_attention_heads);
    heads_divide(dir, "num_attention_heads", h, nh)?;
    if c.patch_size == 0 || c.image_size % c.patch_size != 0 {
        return Err(cfg_err(dir, "patch_size", "must divide image_size"));
    }
    let n = (c.image_size / c.patch_size).pow(2);
    if !c.qkv_bias {
        return Err(cfg_err(
            dir,
            "qkv_bias",
            "false is not supported (arch blocks have biases on all of q, k, v, o or none)",
        ));
    }
    if c.max_image_length >= 0 && (c.max_image_length as usize) < n {
        return Err(cfg_err(
            dir,
            "max_image_length",
            format!(
                "{} < {n} patches: ViLT would keep a random subset of the patches",
                c.max_image_length
            ),
        ));
    }
    if c.modality_type_vocab_size != 2 {
        return Err(cfg_err(
            dir,
            "modality_type_vocab_size",
            format!(
                "{} (several images per text, NLVR2-style) is not supported; 2 = text, image",
                c.modality_type_vocab_size
            ),
        ));
    }
    let a = act(dir, "hidden_act", &c.hidden_act)?;
    let w = load_weights(dir)?;
    if !w.contains("rank_output.weight") {
        return Err(Error::Weight {
            checkpoint: w.source().to_string(),
            name: "rank_output.weight".into(),
            message: "missing: only ViltForImageAndTextRetrieval checkpoints are imported".into(),
        });
    }
    let mut cv = Conv::new(&w);
    let e = "vilt.embeddings";
    let t = "encoders.text";
    cv.take(
        &format!("{e}.text_embeddings.word_embeddings.weight"),
        &[c.vocab_size, h],
        &format!("{t}.embed.weight"),
    )?;
    cv.take(
        &format!("{e}.text_embeddings.position_embeddings.weight"),
        &[c.max_position_embeddings, h],
        &format!("{t}.pos"),
    )?;
    cv.take(
        &format!("{e}.text_embeddings.token_type_embeddings.weight"),
        &[c.type_vocab_size, h],
        &format!("{t}.types.weight"),
    )?;
    cv.norm(
        &format!("{e}.text_embeddings.LayerNorm"),
        h,
        &format!("{t}.norm"),
        false,
    )?;
    let ps = c.patch_size;
    let ch = c.num_channels;
    cv.take(&format!("{e}.cls_token"), &[1, 1, h], "encoders.image.cls")?;
    cv.take_as(
        &format!("{e}.patch_embeddings.projection.weight"),
        &[h, ch, ps, ps],
        "encoders.image.patch.weight",
        &[h, ch * ps * ps],
    )?;
    cv.take(
        &format!("{e}.patch_embeddings.projection.bias"),
        &[h],
        "encoders.image.patch.bias",
    )?;
    cv.take(
        &format!("{e}.position_embeddings"),
        &[1, n + 1, h],
        "encoders.image.pos",
    )?;
    // Row 0 text, row 1 image: the fusion's order below.
    cv.take(
        &format!("{e}.token_type_embeddings.weight"),
        &[2, h],
        "fusion.types",
    )?;
    let im = c.intermediate_size;
    for i in 0..c.num_hidden_layers {
        let l = format!("vilt.encoder.layer.{i}");
        let b = format!("fusion.body.blocks.{i}");
        cv.norm(
            &format!("{l}.layernorm_before"),
            h,
            &format!("{b}.norm1"),
            false,
        )?;
        for (hf, ar) in [("query", "q"), ("key", "k"), ("value", "v")] {
            cv.linear(
                &format!("{l}.attention.attention.{hf}"),
                h,
                h,
                &format!("{b}.attn.{ar}"),
                true,
            )?;
        }
        cv.linear(
            &format!("{l}.attention.output.dense"),
            h,
            h,
            &format!("{b}.attn.o"),
            true,
        )?;
        cv.norm(
            &format!("{l}.layernorm_after"),
            h,
            &format!("{b}.norm2"),
            false,
        )?;
        cv.linear(
            &format!("{l}.intermediate.dense"),
            h,
            im,
            &format!("{b}.mlp.fc1"),
            true,
        )?;
        cv.linear(
            &format!("{l}.output.dense"),
            im,
            h,
            &format!("{b}.mlp.fc2"),
            true,
        )?;
    }
    cv.norm("vilt.layernorm", h, "fusion.body.norm", false)?;
    cv.linear("vilt.pooler.dense", h, h, "fusion.pooler", true)?;
    cv.linear("rank_output", h, 1, "heads.rank.fc", true)?;
    let block = BlockOptions {
        eps: c.layer_norm_eps,
        act: a,
        mlp_dim: Some(im),
        ..BlockOptions::default()
    };
    let config = ArchConfig {
        name: "vilt".into(),
        seed: 0,
        dim: h,
        encoders: BTreeMap::from([
            (
                Modality::Text,
                EncoderConfig::BagOfWords(BagOfWordsConfig {
                    vocab_size: c.vocab_size,
                    dim: h,
                    max_len: Some(c.max_position_embeddings),
                    type_vocab_size: c.type_vocab_size,
                    norm_eps: Some(c.layer_norm_eps),
                }),
            ),
            (
                Modality::Image,
                EncoderConfig::Vit(VitConfig {
                    image_size: c.image_size,
                    patch_size: ps,
                    channels: ch,
                    dim: h,
                    layers: 0,
                    heads: nh,
                    mlp_ratio: 4,
                    block: BlockOptions::default(),
                    patch_bias: true,
                    embed_norm: false,
                    final_norm: false,
                    drop_class_token: false,
                }),
            ),
        ]),
        fusion: FusionConfig::SingleStream {
            layers: c.num_hidden_layers,
            heads: nh,
            block,
            project: false,
            class_token: false,
            order: vec![Modality::Text, Modality::Image],
            pooler: true,
        },
        heads: BTreeMap::from([("rank".to_string(), HeadConfig::Classifier { classes: 1 })]),
        lora: None,
    };
    cv.finish(config)
}

// ---------------------------------------------------------------------------
// BLIP image–text matching
// ---------------------------------------------------------------------------

/// `BlipForImageTextRetrieval` as a cross-attention model: the text side is
/// BLIP's text embedding layer (`bag_of_words` with positions and
/// LayerNorm), the image side the arch ViT (BLIP's has no pre-norm and ends
/// in `post_layernorm`, exactly the arch `vit`), and BLIP's text layers are
/// the fusion's post-norm blocks cross-attending to the image tokens; head
/// `itm` is `itm_head` on the fused first token. With `unimodal` the fusion
/// also runs the same layers without cross-attention (BLIP's retrieval
/// mode) and applies `text_proj` / `vision_proj`; head `itc` then gives
/// BLIP's cosine similarities (`[image, text]` rows × columns).
pub fn blip_itm(dir: &Path) -> Result<Imported> {
    let c: BlipConfig = read_config(dir)?;
    let (vc, tc) = (&c.vision_config, &c.text_config);
    let (vh, th, ith) = (vc.hidden_size, tc.hidden_size, c.image_text_hidden_size);
    heads_divide(
        dir,
        "vision_config.num_attention_heads",
        vh,
        vc.num_attention_heads,
    )?;
    heads_divide(
        dir,
        "text_config.num_attention_heads",
        th,
        tc.num_attention_heads,
    )?;
    if vc.patch_size == 0 || vc.image_size % vc.patch_size != 0 {
        return Err(cfg_err(
            dir,
            "vision_config.patch_size",
            "must divide image_size",
        ));
    }
    let vact = act(dir, "vision_config.hidden_act", &vc.hidden_act)?;
    let tact = act(dir, "text_config.hidden_act", &tc.hidden_act)?;
    let w = load_weights(dir)?;
    if !w.contains("text_encoder.embeddings.word_embeddings.weight") {
        return Err(Error::Weight {
            checkpoint: w.source().to_string(),
            name: "text_encoder.embeddings.word_embeddings.weight".into(),
            message: "missing: only BlipForImageTextRetrieval (image–text matching) checkpoints are imported".into(),
        });
    }
    let mut cv = Conv::new(&w);
    let (ps, n) = (vc.patch_size, (vc.image_size / vc.patch_size).pow(2));
    // Vision tower → encoders.image (the arch ViT).
    let v = "vision_model";
    let ei = "encoders.image";
    cv.take(
        &format!("{v}.embeddings.class_embedding"),
        &[1, 1, vh],
        &format!("{ei}.cls"),
    )?;
    cv.take_as(
        &format!("{v}.embeddings.patch_embedding.weight"),
        &[vh, 3, ps, ps],
        &format!("{ei}.patch.weight"),
        &[vh, 3 * ps * ps],
    )?;
    cv.take(
        &format!("{v}.embeddings.patch_embedding.bias"),
        &[vh],
        &format!("{ei}.patch.bias"),
    )?;
    cv.take(
        &format!("{v}.embeddings.position_embedding"),
        &[1, n + 1, vh],
        &format!("{ei}.pos"),
    )?;
    let vim = vc.intermediate_size;
    for i in 0..vc.num_hidden_layers {
        let l = format!("{v}.encoder.layers.{i}");
        let b = format!("{ei}.body.blocks.{i}");
        cv.norm(
            &format!("{l}.layer_norm1"),
            vh,
            &format!("{b}.norm1"),
            false,
        )?;
        // One fused [3H, H] projection: rows q, then k, then v.
        let qkv_w = w.get(&format!("{l}.self_attn.qkv.weight"), &[3 * vh, vh])?;
        let qkv_b = w.get(&format!("{l}.self_attn.qkv.bias"), &[3 * vh])?;
        for (j, ar) in ["q", "k", "v"].iter().enumerate() {
            cv.put(
                &format!("{b}.attn.{ar}.weight"),
                qkv_w.narrow(0, j * vh, vh)?.contiguous()?,
            );
            cv.put(
                &format!("{b}.attn.{ar}.bias"),
                qkv_b.narrow(0, j * vh, vh)?.contiguous()?,
            );
        }
        cv.linear(
            &format!("{l}.self_attn.projection"),
            vh,
            vh,
            &format!("{b}.attn.o"),
            true,
        )?;
        cv.norm_mlp(&l, &b, vh, vim)?;
    }
    cv.norm(
        &format!("{v}.post_layernorm"),
        vh,
        &format!("{ei}.body.norm"),
        false,
    )?;
    // Text embeddings → encoders.text; text layers → fusion blocks.
    let te = "text_encoder";
    cv.take(
        &format!("{te}.embeddings.word_embeddings.weight"),
        &[tc.vocab_size, th],
        "encoders.text.embed.weight",
    )?;
    cv.take(
        &format!("{te}.embeddings.position_embeddings.weight"),
        &[tc.max_position_embeddings, th],
        "encoders.text.pos",
    )?;
    cv.norm(
        &format!("{te}.embeddings.LayerNorm"),
        th,
        "encoders.text.norm",
        false,
    )?;
    let tim = tc.intermediate_size;
    for i in 0..tc.num_hidden_layers {
        let l = format!("{te}.encoder.layer.{i}");
        let b = format!("fusion.body.blocks.{i}");
        for (hf, ar, norm, kv_in) in [
            ("attention", "attn", "norm1", th),
            ("crossattention", "cross", "norm_cross", vh),
        ] {
            cv.linear(
                &format!("{l}.{hf}.self.query"),
                th,
                th,
                &format!("{b}.{ar}.q"),
                true,
            )?;
            cv.linear(
                &format!("{l}.{hf}.self.key"),
                kv_in,
                th,
                &format!("{b}.{ar}.k"),
                true,
            )?;
            cv.linear(
                &format!("{l}.{hf}.self.value"),
                kv_in,
                th,
                &format!("{b}.{ar}.v"),
                true,
            )?;
            cv.linear(
                &format!("{l}.{hf}.output.dense"),
                th,
                th,
                &format!("{b}.{ar}.o"),
                true,
            )?;
            cv.norm(
                &format!("{l}.{hf}.output.LayerNorm"),
                th,
                &format!("{b}.{norm}"),
                false,
            )?;
        }
        cv.linear(
            &format!("{l}.intermediate.dense"),
            th,
            tim,
            &format!("{b}.mlp.fc1"),
            true,
        )?;
        cv.linear(
            &format!("{l}.output.dense"),
            tim,
            th,
            &format!("{b}.mlp.fc2"),
            true,
        )?;
        cv.norm(
            &format!("{l}.output.LayerNorm"),
            th,
            &format!("{b}.norm2"),
            false,
        )?;
    }
    cv.linear("itm_head", th, 2, "heads.itm.fc", true)?;
    cv.linear("text_proj", th, ith, "fusion.unimodal.text", true)?;
    cv.linear("vision_proj", vh, ith, "fusion.unimodal.image", true)?;
    // BLIP's cosine has no projection after text_proj / vision_proj and no
    // temperature: the arch contrastive head's own maps are the identity
    // and its scale exp(0) = 1.
    let eye = Tensor::eye(ith, DType::F32, &Device::Cpu)?;
    for m in ["image", "text"] {
        let name = format!("heads.itc.proj.{m}.weight");
        cv.put(&name, eye.clone());
        cv.synthesized.push((
            name,
            "identity: BLIP's cosine uses the unimodal projections directly".into(),
        ));
    }
    cv.put(
        "heads.itc.logit_scale",
        Tensor::zeros(1, DType::F32, &Device::Cpu)?,
    );
    cv.synthesized.push((
        "heads.itc.logit_scale".into(),
        "0 (scale exp(0) = 1): BLIP's cosine similarity has no temperature".into(),
    ));
    let config = ArchConfig {
        name: "blip-itm".into(),
        seed: 0,
        dim: th,
        encoders: BTreeMap::from([
            (
                Modality::Text,
                EncoderConfig::BagOfWords(BagOfWordsConfig {
                    vocab_size: tc.vocab_size,
                    dim: th,
                    max_len: Some(tc.max_position_embeddings),
                    type_vocab_size: 0,
                    norm_eps: Some(tc.layer_norm_eps),
                }),
            ),
            (
                Modality::Image,
                EncoderConfig::Vit(VitConfig {
                    image_size: vc.image_size,
                    patch_size: ps,
                    channels: 3,
                    dim: vh,
                    layers: vc.num_hidden_layers,
                    heads: vc.num_attention_heads,
                    mlp_ratio: 4,
                    block: BlockOptions {
                        eps: vc.layer_norm_eps,
                        act: vact,
                        mlp_dim: Some(vim),
                        ..BlockOptions::default()
                    },
                    patch_bias: true,
                    embed_norm: false,
                    final_norm: true,
                    drop_class_token: false,
                }),
            ),
        ]),
        fusion: FusionConfig::CrossAttention {
            query: Modality::Text,
            context: Modality::Image,
            layers: tc.num_hidden_layers,
            heads: tc.num_attention_heads,
            block: BlockOptions {
                pre_norm: false,
                eps: tc.layer_norm_eps,
                act: tact,
                mlp_dim: Some(tim),
                ..BlockOptions::default()
            },
            unimodal: Some(ith),
        },
        heads: BTreeMap::from([
            ("itm".to_string(), HeadConfig::Itm {}),
            (
                "itc".to_string(),
                HeadConfig::Contrastive {
                    modalities: vec![Modality::Image, Modality::Text],
                    dim: ith,
                    init_temperature: 1.0,
                    project: true,
                    init_logit_scale: None,
                },
            ),
        ]),
        lora: None,
    };
    cv.finish(config)
}

// ---------------------------------------------------------------------------
// LLaVA
// ---------------------------------------------------------------------------

/// The first prefix under which `probe` exists.
fn find_prefix<'a>(w: &Weights, candidates: &[&'a str], probe: &str) -> Option<&'a str> {
    candidates
        .iter()
        .copied()
        .find(|p| w.contains(&format!("{p}.{probe}")))
}

/// `LlavaForConditionalGeneration` as a generative model: the CLIP vision
/// tower is the arch ViT (no patch bias, `embed_norm` = `pre_layrnorm`,
/// quick GELU) cut at `vision_feature_layer` with no closing norm, its class
/// token dropped under the `default` strategy; the projector is the
/// generative fusion's `mlp` projector; the Llama decoder is the fusion's
/// rotary, RMSNorm, SwiGLU, grouped-query blocks; the image features replace
/// the (already expanded) `image_token_index` placeholders. The vision
/// layers after the feature layer and `post_layernorm` are in the
/// checkpoint but never read by LLaVA: they are [`Imported::dropped`].
pub fn llava(dir: &Path) -> Result<Imported> {
    let c: LlavaConfig = read_config(dir)?;
    let (vc, tc) = (&c.vision_config, &c.text_config);
    let (vh, th) = (vc.hidden_size, tc.hidden_size);
    heads_divide(
        dir,
        "vision_config.num_attention_heads",
        vh,
        vc.num_attention_heads,
    )?;
    heads_divide(
        dir,
        "text_config.num_attention_heads",
        th,
        tc.num_attention_heads,
    )?;
    if vc.patch_size == 0 || vc.image_size % vc.patch_size != 0 {
        return Err(cfg_err(
            dir,
            "vision_config.patch_size",
            "must divide image_size",
        ));
    }
    let nh = tc.num_attention_heads;
    let kvh = tc.num_key_value_heads.unwrap_or(nh);
    let hd = th / nh;
    if tc.head_dim.is_some_and(|d| d != hd) {
        return Err(cfg_err(
            dir,
            "text_config.head_dim",
            format!("{:?} differs from hidden_size / heads = {hd}", tc.head_dim),
        ));
    }
    if kvh == 0 || nh % kvh != 0 {
        return Err(cfg_err(
            dir,
            "text_config.num_key_value_heads",
            format!("{kvh} does not divide the {nh} heads"),
        ));
    }
    if tc.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(cfg_err(
            dir,
            "text_config.rope_scaling",
            "scaled rotary embeddings are not supported",
        ));
    }
    let rp = tc.rope_parameters.clone();
    if let Some(t) = rp.as_ref().and_then(|r| r.rope_type.as_deref())
        && t != "default"
    {
        return Err(cfg_err(
            dir,
            "text_config.rope_parameters.rope_type",
            format!("`{t}` is not supported (only `default`)"),
        ));
    }
    let theta = rp
        .and_then(|r| r.rope_theta)
        .or(tc.rope_theta)
        .unwrap_or(10000.0);
    if tc.attention_bias != tc.mlp_bias {
        return Err(cfg_err(
            dir,
            "text_config.attention_bias",
            "must equal mlp_bias (one bias switch per block)",
        ));
    }
    if !c.multimodal_projector_bias {
        return Err(cfg_err(
            dir,
            "multimodal_projector_bias",
            "false is not supported (the arch projector has biases)",
        ));
    }
    let n_layers = vc.num_hidden_layers as i64;
    let feature_layer = match c.vision_feature_layer.as_i64() {
        Some(l) if l < 0 && l >= -(n_layers + 1) => (n_layers + 1 + l) as usize,
        Some(l) if l >= 0 && l <= n_layers => l as usize,
        _ => {
            return Err(cfg_err(
                dir,
                "vision_feature_layer",
                format!(
                    "{} is not a layer index in -{}..={n_layers} (lists of layers are not supported)",
                    c.vision_feature_layer,
                    n_layers + 1
                ),
            ));
        }
    };
    let drop_cls = match c.vision_feature_select_strategy.as_str() {
        "default" => true,
        "full" => false,
        other => {
            return Err(cfg_err(
                dir,
                "vision_feature_select_strategy",
                format!("`{other}` is not `default` or `full`"),
            ));
        }
    };
    let vact = act(dir, "vision_config.hidden_act", &vc.hidden_act)?;
    let tact = act(dir, "text_config.hidden_act", &tc.hidden_act)?;
    let pact = act(dir, "projector_hidden_act", &c.projector_hidden_act)?;
    let w = load_weights(dir)?;
    let missing = |what: &str, tried: &[&str]| Error::Weight {
        checkpoint: w.source().to_string(),
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
    let vp = find_prefix(&w, &VISION, "embeddings.class_embedding")
        .ok_or_else(|| missing("vision tower", &VISION))?;
    let lp = find_prefix(&w, &LM, "embed_tokens.weight")
        .ok_or_else(|| missing("language model", &LM))?;
    let hp = find_prefix(&w, &HEAD, "weight").unwrap_or(HEAD[0]);
    let pp =
        find_prefix(&w, &PROJ, "linear_1.weight").ok_or_else(|| missing("projector", &PROJ))?;
    let mut cv = Conv::new(&w);
    let (ps, ch) = (vc.patch_size, vc.num_channels);
    let n = (vc.image_size / ps).pow(2);
    let ei = "encoders.image";
    cv.take_as(
        &format!("{vp}.embeddings.class_embedding"),
        &[vh],
        &format!("{ei}.cls"),
        &[1, 1, vh],
    )?;
    cv.take_as(
        &format!("{vp}.embeddings.patch_embedding.weight"),
        &[vh, ch, ps, ps],
        &format!("{ei}.patch.weight"),
        &[vh, ch * ps * ps],
    )?;
    cv.take_as(
        &format!("{vp}.embeddings.position_embedding.weight"),
        &[n + 1, vh],
        &format!("{ei}.pos"),
        &[1, n + 1, vh],
    )?;
    cv.norm(
        &format!("{vp}.pre_layrnorm"),
        vh,
        &format!("{ei}.embed_norm"),
        false,
    )?;
    let vim = vc.intermediate_size;
    for i in 0..vc.num_hidden_layers {
        let l = format!("{vp}.encoder.layers.{i}");
        if i >= feature_layer {
            for name in w.names() {
                if name.starts_with(&format!("{l}.")) {
                    cv.discard(
                        &name,
                        "vision layer after vision_feature_layer: LLaVA never reads it",
                    )?;
                }
            }
            continue;
        }
        let b = format!("{ei}.body.blocks.{i}");
        cv.norm(
            &format!("{l}.layer_norm1"),
            vh,
            &format!("{b}.norm1"),
            false,
        )?;
        for (hf, ar) in [
            ("q_proj", "q"),
            ("k_proj", "k"),
            ("v_proj", "v"),
            ("out_proj", "o"),
        ] {
            cv.linear(
                &format!("{l}.self_attn.{hf}"),
                vh,
                vh,
                &format!("{b}.attn.{ar}"),
                true,
            )?;
        }
        cv.norm_mlp(&l, &b, vh, vim)?;
    }
    for part in ["weight", "bias"] {
        let name = format!("{vp}.post_layernorm.{part}");
        if w.contains(&name) {
            cv.discard(
                &name,
                "post_layernorm: LLaVA reads a hidden state, not the tower's output",
            )?;
        }
    }
    cv.linear(
        &format!("{pp}.linear_1"),
        vh,
        th,
        "fusion.prefix.image.proj",
        true,
    )?;
    cv.linear(
        &format!("{pp}.linear_2"),
        th,
        th,
        "fusion.prefix.image.proj2",
        true,
    )?;
    let (v, tim, bias) = (tc.vocab_size, tc.intermediate_size, tc.attention_bias);
    cv.take(
        &format!("{lp}.embed_tokens.weight"),
        &[v, th],
        "fusion.embed.weight",
    )?;
    for i in 0..tc.num_hidden_layers {
        let l = format!("{lp}.layers.{i}");
        let b = format!("fusion.body.blocks.{i}");
        cv.norm(
            &format!("{l}.input_layernorm"),
            th,
            &format!("{b}.norm1"),
            true,
        )?;
        cv.linear(
            &format!("{l}.self_attn.q_proj"),
            th,
            th,
            &format!("{b}.attn.q"),
            bias,
        )?;
        cv.linear(
            &format!("{l}.self_attn.k_proj"),
            th,
            kvh * hd,
            &format!("{b}.attn.k"),
            bias,
        )?;
        cv.linear(
            &format!("{l}.self_attn.v_proj"),
            th,
            kvh * hd,
            &format!("{b}.attn.v"),
            bias,
        )?;
        cv.linear(
            &format!("{l}.self_attn.o_proj"),
            th,
            th,
            &format!("{b}.attn.o"),
            bias,
        )?;
        cv.norm(
            &format!("{l}.post_attention_layernorm"),
            th,
            &format!("{b}.norm2"),
            true,
        )?;
        cv.linear(
            &format!("{l}.mlp.gate_proj"),
            th,
            tim,
            &format!("{b}.mlp.gate"),
            bias,
        )?;
        cv.linear(
            &format!("{l}.mlp.up_proj"),
            th,
            tim,
            &format!("{b}.mlp.fc1"),
            bias,
        )?;
        cv.linear(
            &format!("{l}.mlp.down_proj"),
            tim,
            th,
            &format!("{b}.mlp.fc2"),
            bias,
        )?;
    }
    cv.norm(&format!("{lp}.norm"), th, "fusion.body.norm", true)?;
    if tc.tie_word_embeddings {
        let e = w.get(&format!("{lp}.embed_tokens.weight"), &[v, th])?;
        cv.put("fusion.lm_head.weight", e);
        cv.synthesized.push((
            "fusion.lm_head.weight".into(),
            "a copy of the token embeddings (tie_word_embeddings)".into(),
        ));
    } else {
        cv.take(&format!("{hp}.weight"), &[v, th], "fusion.lm_head.weight")?;
    }
    let prefix_tokens = n + usize::from(!drop_cls);
    let config = ArchConfig {
        name: "llava".into(),
        seed: 0,
        dim: th,
        encoders: BTreeMap::from([(
            Modality::Image,
            EncoderConfig::Vit(VitConfig {
                image_size: vc.image_size,
                patch_size: ps,
                channels: ch,
                dim: vh,
                layers: feature_layer,
                heads: vc.num_attention_heads,
                mlp_ratio: 4,
                block: BlockOptions {
                    eps: vc.layer_norm_eps,
                    act: vact,
                    mlp_dim: Some(vim),
                    ..BlockOptions::default()
                },
                patch_bias: false,
                embed_norm: true,
                final_norm: false,
                drop_class_token: drop_cls,
            }),
        )]),
        fusion: FusionConfig::Generative {
            prefix: vec![Modality::Image],
            prefix_tokens,
            vocab_size: v,
            max_len: tc.max_position_embeddings,
            layers: tc.num_hidden_layers,
            heads: nh,
            block: BlockOptions {
                pre_norm: true,
                eps: tc.rms_norm_eps,
                rms_norm: true,
                act: tact,
                gated_mlp: true,
                mlp_dim: Some(tim),
                bias,
                kv_heads: Some(kvh),
                rope_theta: theta,
            },
            positions: Positions::Rotary,
            projector: Projector::Mlp,
            projector_act: pact,
            image_token: Some(c.image_token_index),
        },
        heads: BTreeMap::from([("lm".to_string(), HeadConfig::Lm {})]),
        lora: None,
    };
    cv.finish(config)
}
