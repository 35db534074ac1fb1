//! The registry from a checkpoint folder to a tower (an [`Encoder`]) that a
//! [`crate::arch::MultimodalModel`] holds next to config-built encoders:
//! one place maps a `config.json` `model_type` (or an EfficientNet `.pth`)
//! and the modality wanted to the family's loader. Towers load into the
//! model's [`ParamStore`] under its prefix, trainable or frozen, so the
//! model's optimiser, LoRA spec, save and load see them like any part (a
//! LoRA merge into a frozen tower is a new checkpoint of it, see
//! `mosaic_train::strategy::lora::merge_lora_params`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mosaic_core::Modality;
use serde_json::Value;

use super::{
    BlipModel, ClipModel, EfficientNetLite, ResNetModel, SentenceEncoder, SiglipModel, VitModel,
};
use crate::encoder::{
    BlipVisionEncoder, ClipTextEncoder, ClipVisionEncoder, Encoder, SiglipTextEncoder,
    SiglipVisionEncoder,
};
use crate::error::{Error, Result};
use crate::nn::{CheckpointMode, ParamStore};

/// The towers [`load_tower`] builds, as `family: modality`.
pub const SUPPORTED_TOWERS: &[&str] = &[
    "bert (sentence-transformers): text",
    "vit: image",
    "resnet: image",
    "efficientnet-lite (.pth): image",
    "clip: image, text",
    "siglip: image, text",
    "blip: image",
];

/// What a tower gives without loading its weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TowerInfo {
    /// The family (`bert`, `vit`, …).
    pub family: String,
    /// Width of its tokens and pooled vector.
    pub dim: usize,
    /// Longest text it reads (text towers).
    pub max_len: Option<usize>,
}

fn config_json(dir: &Path) -> Result<Value> {
    let file = dir.join("config.json");
    let text = std::fs::read_to_string(&file).map_err(|e| mosaic_core::Error::io(&file, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        source_name: file.display().to_string(),
        message: e.to_string(),
    })
}

/// `dir`'s family: its `model_type`, or `efficientnet-lite` for a folder
/// (or file) holding a `.pth` and no `config.json`.
fn family(dir: &Path) -> Result<String> {
    let pth = |p: &Path| p.extension().is_some_and(|e| e == "pth");
    if pth(dir) {
        return Ok("efficientnet-lite".into());
    }
    if !dir.join("config.json").is_file() && dir.is_dir() {
        let has_pth = std::fs::read_dir(dir)
            .map_err(|e| mosaic_core::Error::io(dir, e))?
            .filter_map(|e| e.ok())
            .any(|e| pth(&e.path()));
        if has_pth {
            return Ok("efficientnet-lite".into());
        }
    }
    super::read_model_type(dir)
}

fn unsupported(dir: &Path, family: &str, modality: Modality, why: &str) -> Error {
    Error::Config {
        source_name: dir.display().to_string(),
        message: format!(
            "`{family}` gives no {modality} tower{why}; supported towers: {}",
            SUPPORTED_TOWERS.join("; ")
        ),
    }
}

fn usize_at(v: &Value, path: &[&str], dir: &Path) -> Result<usize> {
    let mut cur = v;
    for k in path {
        cur = &cur[*k];
    }
    cur.as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| Error::Config {
            source_name: dir.join("config.json").display().to_string(),
            message: format!("key `{}`: missing or not a number", path.join(".")),
        })
}

/// A CLIP config's joint width (`ClipConfig`'s default when absent).
fn clip_projection(c: &Value) -> usize {
    c["projection_dim"].as_u64().map_or(512, |n| n as usize)
}

/// The tower `dir` gives for `modality`, read from its config alone.
pub fn tower_info(dir: &Path, modality: Modality) -> Result<TowerInfo> {
    let fam = family(dir)?;
    let info = |dim: usize, max_len: Option<usize>| TowerInfo {
        family: fam.clone(),
        dim,
        max_len,
    };
    match (fam.as_str(), modality) {
        ("efficientnet-lite", Modality::Image) => Ok(info(1280, None)),
        ("bert", Modality::Text) => {
            let c = config_json(dir)?;
            let positions = usize_at(&c, &["max_position_embeddings"], dir)?;
            // sentence-transformers truncates at `max_seq_length`.
            let st = dir.join("sentence_bert_config.json");
            let max_len = if st.is_file() {
                let text =
                    std::fs::read_to_string(&st).map_err(|e| mosaic_core::Error::io(&st, e))?;
                let v: Value = serde_json::from_str(&text).map_err(|e| Error::Config {
                    source_name: st.display().to_string(),
                    message: e.to_string(),
                })?;
                v["max_seq_length"]
                    .as_u64()
                    .map_or(positions, |n| (n as usize).min(positions))
            } else {
                positions
            };
            Ok(info(usize_at(&c, &["hidden_size"], dir)?, Some(max_len)))
        }
        ("vit", Modality::Image) => Ok(info(
            usize_at(&config_json(dir)?, &["hidden_size"], dir)?,
            None,
        )),
        ("resnet", Modality::Image) => {
            let c = config_json(dir)?;
            let last = c["hidden_sizes"]
                .as_array()
                .and_then(|a| a.last())
                .and_then(|v| v.as_u64())
                .ok_or_else(|| Error::Config {
                    source_name: dir.join("config.json").display().to_string(),
                    message: "key `hidden_sizes`: missing or empty".into(),
                })?;
            Ok(info(last as usize, None))
        }
        ("siglip", Modality::Image) | ("blip", Modality::Image) => Ok(info(
            usize_at(&config_json(dir)?, &["vision_config", "hidden_size"], dir)?,
            None,
        )),
        ("siglip", Modality::Text) => {
            let c = config_json(dir)?;
            let hidden = usize_at(&c, &["text_config", "hidden_size"], dir)?;
            let proj = c["text_config"]["projection_size"]
                .as_u64()
                .map_or(hidden, |n| n as usize);
            if proj != hidden {
                return Err(unsupported(
                    dir,
                    &fam,
                    modality,
                    &format!(
                        " of one width (tokens {hidden}, pooled {proj}; a tower's tokens and pooled vector must match)"
                    ),
                ));
            }
            let max_len = usize_at(&c, &["text_config", "max_position_embeddings"], dir)?;
            Ok(info(hidden, Some(max_len)))
        }
        // Both CLIP towers work in the joint embedding space (tokens and
        // pooled through the projection; see `ClipTextEncoder`).
        ("clip", Modality::Image) => Ok(info(clip_projection(&config_json(dir)?), None)),
        ("clip", Modality::Text) => {
            let c = config_json(dir)?;
            Ok(info(
                clip_projection(&c),
                Some(usize_at(
                    &c,
                    &["text_config", "max_position_embeddings"],
                    dir,
                )?),
            ))
        }
        _ => Err(unsupported(dir, &fam, modality, "")),
    }
}

/// Loads the `modality` tower of the checkpoint `dir` into `store` (at its
/// prefix), trainable or frozen. Two-tower checkpoints (CLIP, SigLIP) load whole;
/// the other tower's parameters are then never read by the forward.
pub fn load_tower(
    dir: &Path,
    modality: Modality,
    store: &ParamStore,
    mode: CheckpointMode,
) -> Result<Arc<dyn Encoder>> {
    let info = tower_info(dir, modality)?;
    Ok(match (info.family.as_str(), modality) {
        ("efficientnet-lite", _) => Arc::new(EfficientNetLite::load(dir, store, mode)?),
        ("bert", _) => {
            if dir.join("tokenizer.json").is_file() {
                Arc::new(SentenceEncoder::load(dir, store, mode)?)
            } else {
                return Err(Error::Config {
                    source_name: dir.display().to_string(),
                    message: format!(
                        "a BERT tower needs the folder's tokenizer.json (its pooling and text length come with it); {} has none",
                        dir.display()
                    ),
                });
            }
        }
        ("vit", _) => Arc::new(VitModel::load(dir, store, mode)?),
        ("resnet", _) => Arc::new(ResNetModel::load(dir, store, mode)?),
        ("clip", Modality::Image) => Arc::new(ClipVisionEncoder(Arc::new(ClipModel::load(
            dir, store, mode,
        )?))),
        ("clip", _) => Arc::new(ClipTextEncoder(Arc::new(ClipModel::load(
            dir, store, mode,
        )?))),
        ("siglip", Modality::Image) => Arc::new(SiglipVisionEncoder(Arc::new(SiglipModel::load(
            dir, store, mode,
        )?))),
        ("siglip", _) => Arc::new(SiglipTextEncoder(Arc::new(SiglipModel::load(
            dir, store, mode,
        )?))),
        ("blip", _) => Arc::new(BlipVisionEncoder(Arc::new(BlipModel::load(
            dir, store, mode,
        )?))),
        (other, _) => return Err(unsupported(dir, other, modality, "")),
    })
}

/// Resolves a tower reference: an existing path, a catalog asset (fetched
/// on first use) or a hub id `org/name[@revision]` (from the local cache,
/// or downloaded unless offline).
pub fn resolve_tower(reference: &str) -> Result<PathBuf> {
    let store = mosaic_core::assets::AssetStore::from_env()?;
    if !Path::new(reference).exists()
        && store.catalog().get(reference).is_ok()
        && !store.is_fetched(reference)
    {
        store.fetch(reference, &mosaic_core::assets::FetchOptions::default())?;
    }
    Ok(mosaic_core::assets::resolve_model(reference, &store)?)
}
