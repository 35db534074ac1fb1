//! Loaders for published checkpoints, numerically matching their reference
//! implementations.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::nn::{CheckpointMode, ParamStore};
use crate::weights::Weights;

pub mod bert;
pub mod blip;
pub mod clip;
pub mod efficientnet;
pub mod llama;
pub mod llava;
pub mod resnet;
pub mod sentence;
pub mod siglip;
pub mod tower;
pub mod vit;
pub mod whisper;

pub use bert::{BertConfig, BertModel, BertOutput};
pub use blip::{BlipConfig, BlipModel};
pub use clip::{ClipConfig, ClipModel};
pub use efficientnet::{EfficientNetLite, imagenet_classes, lite_preprocessor, top_k};
pub use llama::{KvCache, LlamaConfig, LlamaModel};
pub use llava::{LlavaConfig, LlavaModel};
pub use resnet::{ResNetConfig, ResNetModel, ResNetOutput};
pub use sentence::{Pooling, SentenceEncoder};
pub use siglip::{SiglipConfig, SiglipModel};
pub use tower::{SUPPORTED_TOWERS, TowerInfo, load_tower, resolve_tower, tower_info};
pub use vit::{VitConfig, VitModel};
pub use whisper::WhisperModel;

/// Attaches the weight file of `path` (a Hugging Face folder or a weight
/// file) to `store` at its prefix, read in the store's dtype on its device,
/// with the first of `strip` that any tensor name starts with removed
/// (e.g. `bert.` of a `BertForMaskedLM` save). Every family's `load` reads
/// its checkpoint this way, so a pretrained tower can sit under any prefix
/// of a larger model, trainable or frozen.
pub fn attach(path: &Path, store: &ParamStore, mode: CheckpointMode, strip: &[&str]) -> Result<()> {
    let mut w = Weights::load(path, &store.device(), store.dtype())?;
    for s in strip {
        w = w.strip_prefix(s);
    }
    store.attach_checkpoint("", w, mode)
}

/// The store a family's `from_pretrained` builds on: frozen f32 on the CPU
/// (inference: no autograd bookkeeping).
pub fn inference_store() -> ParamStore {
    ParamStore::new(0, candle_core::DType::F32, &candle_core::Device::Cpu)
}

/// Parses a folder's `config.json` into `T`; errors name the file and key.
pub fn read_config<T: DeserializeOwned>(dir: &Path) -> Result<T> {
    let file = dir.join("config.json");
    let text = std::fs::read_to_string(&file).map_err(|e| mosaic_core::Error::io(&file, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        source_name: file.display().to_string(),
        message: e.to_string(),
    })
}

/// The `model_type` of a folder's `config.json`.
pub fn read_model_type(dir: &Path) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        model_type: Option<String>,
    }
    let t: Typed = read_config(dir)?;
    t.model_type.ok_or_else(|| Error::Config {
        source_name: dir.join("config.json").display().to_string(),
        message: format!(
            "key `model_type` is missing; supported: {}",
            SUPPORTED_MODEL_TYPES.join(", ")
        ),
    })
}

/// `model_type` values [`read_model_type`] callers can load.
pub const SUPPORTED_MODEL_TYPES: &[&str] = &[
    "bert", "blip", "clip", "llava", "resnet", "siglip", "vit", "whisper",
];

/// The error for a `model_type` no loader handles, listing those that are.
pub fn unsupported_model_type(dir: &Path, model_type: &str) -> Error {
    Error::Config {
        source_name: dir.join("config.json").display().to_string(),
        message: format!(
            "key `model_type`: `{model_type}` is not supported; supported: {}",
            SUPPORTED_MODEL_TYPES.join(", ")
        ),
    }
}

/// Any checkpoint [`load_any`] can load, by family.
#[derive(Debug)]
pub enum PretrainedModel {
    /// A BERT-family encoder.
    Bert(BertModel),
    /// CLIP / OpenCLIP in the HF layout.
    Clip(ClipModel),
    /// SigLIP.
    Siglip(SiglipModel),
    /// ViT.
    Vit(VitModel),
    /// ResNet.
    ResNet(ResNetModel),
    /// LLaVA.
    Llava(Box<LlavaModel>),
    /// Whisper (Hugging Face layout).
    Whisper(Box<WhisperModel>),
    /// BLIP (retrieval/ITM or captioning).
    Blip(Box<BlipModel>),
}

/// Loads a Hugging Face folder by the `model_type` of its `config.json`;
/// an unknown type is refused with the list of supported ones.
pub fn load_any(dir: &Path) -> Result<PretrainedModel> {
    let t = read_model_type(dir)?;
    Ok(match t.as_str() {
        "bert" => PretrainedModel::Bert(BertModel::from_pretrained(dir)?),
        "clip" => PretrainedModel::Clip(ClipModel::from_pretrained(dir)?),
        "siglip" => PretrainedModel::Siglip(SiglipModel::from_pretrained(dir)?),
        "vit" => PretrainedModel::Vit(VitModel::from_pretrained(dir)?),
        "resnet" => PretrainedModel::ResNet(ResNetModel::from_pretrained(dir)?),
        "blip" => PretrainedModel::Blip(Box::new(BlipModel::from_pretrained(dir)?)),
        "whisper" => PretrainedModel::Whisper(Box::new(WhisperModel::from_hf_dir(dir)?)),
        "llava" => PretrainedModel::Llava(Box::new(LlavaModel::from_pretrained(dir)?)),
        other => return Err(unsupported_model_type(dir, other)),
    })
}
