//! `MultimodalModel`: encoders + fusion + heads built from an
//! [`ArchConfig`], saved as `config.json` + `model.safetensors`.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use mosaic_core::{Batch, Modality};

use crate::arch::config::{ArchConfig, HeadConfig};
use crate::arch::encoders::ArchEncoder;
use crate::arch::fusion::{Fused, Fusion, GenerativeDecoder};
use crate::encoder::{Encoder, Features};
use crate::error::{Error, Result};
use crate::nn::Linear;
use crate::nn::params::{Init, ParamStore};
use crate::pretrained::bert::l2_normalize;

/// A built head.
#[derive(Debug, Clone)]
pub enum Head {
    /// Two projections (or none) and a learnable log inverse temperature.
    Contrastive {
        /// The two modalities.
        modalities: [Modality; 2],
        /// Projections from each modality's pooled features; `None`
        /// compares the encoders' pooled vectors as they are.
        proj: Option<[Linear; 2]>,
        /// `log(1 / temperature)`, `[1]`.
        logit_scale: Tensor,
    },
    /// Linear classifier on the fused vector.
    Classifier(Linear),
    /// Match / no-match on the fused vector.
    Itm(Linear),
    /// Next-token logits of the generative decoder.
    Lm,
}

/// Outputs of a forward pass.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// Encoder outputs.
    pub features: BTreeMap<Modality, Features>,
    /// Fusion output.
    pub fused: Fused,
    /// Per head: contrastive → `[B, B]` logits (row: first modality);
    /// classifier / itm → `[B, classes]`; lm → `[B, T, vocab]`.
    pub heads: BTreeMap<String, Tensor>,
    /// Per contrastive head: the two normalised embeddings.
    pub embeddings: BTreeMap<String, (Tensor, Tensor)>,
}

/// Encoders + fusion + heads.
#[derive(Debug, Clone)]
pub struct MultimodalModel {
    config: ArchConfig,
    params: ParamStore,
    encoders: BTreeMap<Modality, ArchEncoder>,
    fusion: Fusion,
    heads: BTreeMap<String, Head>,
}

impl MultimodalModel {
    /// Builds a model with fresh parameters (seeded by `config.seed`) in
    /// `dtype` on `device`. The config is validated first; errors name the
    /// key.
    pub fn from_config(config: &ArchConfig, dtype: DType, device: &Device) -> Result<Self> {
        Self::with_params(config, ParamStore::new(config.seed, dtype, device))
    }

    /// Builds on an existing store (e.g. one with a LoRA spec set). The
    /// config's `lora` and the store's spec are one: either sets the other;
    /// two different ones are an error.
    pub fn with_params(config: &ArchConfig, params: ParamStore) -> Result<Self> {
        let mut config = config.clone();
        if let Some(l) = &config.lora {
            let bad = |key: &str, why: String| Error::Config {
                source_name: config.name.clone(),
                message: format!("key `lora.{key}`: {why}"),
            };
            if l.rank == 0 {
                return Err(bad("rank", "must be at least 1".into()));
            }
            if !(l.alpha.is_finite() && l.alpha > 0.0) {
                return Err(bad(
                    "alpha",
                    format!("must be a positive number, got {}", l.alpha),
                ));
            }
            if l.targets.is_empty() {
                return Err(bad("targets", "names no layer".into()));
            }
        }
        match (&config.lora, params.lora()) {
            (Some(spec), None) => params.set_lora(Some(spec.clone())),
            (None, Some(spec)) => config.lora = Some(spec),
            (Some(a), Some(b)) if *a != b => {
                return Err(Error::Config {
                    source_name: config.name.clone(),
                    message: format!("key `lora`: {a:?}, but the parameter store was given {b:?}"),
                });
            }
            _ => {}
        }
        config.resolve_pretrained()?;
        config.validate()?;
        let config = &config;
        let mut encoders = BTreeMap::new();
        for (m, e) in &config.encoders {
            encoders.insert(*m, ArchEncoder::build(&params, *m, e)?);
        }
        let fusion = Fusion::build(&params, config)?;
        let mut heads = BTreeMap::new();
        let hp = params.sub("heads");
        for (name, h) in &config.heads {
            let s = hp.sub(name);
            let head = match h {
                HeadConfig::Contrastive {
                    modalities,
                    dim,
                    init_temperature,
                    project,
                    init_logit_scale,
                } => {
                    let proj_in = |m: &Modality| match &fusion {
                        // Late / gated fusion already project to the model dim.
                        Fusion::Late { .. } | Fusion::Gated { .. } => config.dim,
                        // Cross-attention's unimodal projections feed the head.
                        Fusion::CrossAttention { unimodal, .. } if unimodal.contains_key(m) => {
                            unimodal[m].weight.dims()[0]
                        }
                        _ => config.encoders[m].dim(),
                    };
                    let proj = if *project {
                        let side =
                            |m: &Modality| s.linear(&format!("proj.{m}"), proj_in(m), *dim, false);
                        Some([side(&modalities[0])?, side(&modalities[1])?])
                    } else {
                        None
                    };
                    // The head's own temperature; its first value may come
                    // from an existing scalar (a CLIP checkpoint's), so the
                    // head trains, groups and saves like any head, whether
                    // or not that tower is frozen.
                    let init = match init_logit_scale {
                        Some(from) => {
                            let key = format!("heads.{name}.init_logit_scale");
                            let t = params.existing(from).ok_or_else(|| Error::Config {
                                source_name: config.name.clone(),
                                message: format!(
                                    "key `{key}`: no parameter `{from}` in the model (a checkpoint's is `encoders.<modality>.logit_scale`)"
                                ),
                            })?;
                            if t.elem_count() != 1 {
                                return Err(Error::Config {
                                    source_name: config.name.clone(),
                                    message: format!(
                                        "key `{key}`: `{from}` has shape {:?}, not a scalar",
                                        t.dims()
                                    ),
                                });
                            }
                            t.flatten_all()?
                                .to_dtype(candle_core::DType::F64)?
                                .to_vec1::<f64>()?[0]
                        }
                        None => (1.0 / init_temperature).ln(),
                    };
                    let logit_scale = s.get("logit_scale", &[1], Init::Constant(init))?;
                    Head::Contrastive {
                        modalities: [modalities[0], modalities[1]],
                        proj,
                        logit_scale,
                    }
                }
                HeadConfig::Classifier { classes } => {
                    Head::Classifier(s.linear("fc", config.dim, *classes, true)?)
                }
                HeadConfig::Itm {} => Head::Itm(s.linear("fc", config.dim, 2, true)?),
                HeadConfig::Lm {} => Head::Lm,
            };
            heads.insert(name.clone(), head);
        }
        Ok(MultimodalModel {
            config: config.clone(),
            params,
            encoders,
            fusion,
            heads,
        })
    }

    /// The config.
    pub fn config(&self) -> &ArchConfig {
        &self.config
    }

    /// The parameters.
    pub fn params(&self) -> &ParamStore {
        &self.params
    }

    /// The encoders.
    pub fn encoders(&self) -> &BTreeMap<Modality, ArchEncoder> {
        &self.encoders
    }

    /// The generative decoder, when the fusion is generative.
    pub fn decoder(&self) -> Option<&GenerativeDecoder> {
        match &self.fusion {
            Fusion::Generative(g) => Some(g),
            _ => None,
        }
    }

    /// Encodes, fuses and applies every head. For an `lm` head the batch's
    /// text is the decoder input (teacher forcing).
    pub fn forward(&self, batch: &Batch) -> Result<ModelOutput> {
        let mut features = BTreeMap::new();
        let mut present = BTreeMap::new();
        for (m, mb) in &batch.modalities {
            let Some(enc) = self.encoders.get(m) else {
                if *m == Modality::Text && self.decoder().is_some() {
                    continue;
                }
                return Err(Error::InvalidInput {
                    what: "batch".into(),
                    message: format!(
                        "modality `{m}` has no encoder in model `{}`",
                        self.config.name
                    ),
                });
            };
            features.insert(*m, enc.encode(mb)?);
            present.insert(*m, mb.present.clone());
        }
        let fused = self.fusion.forward(&features, &present)?;
        let mut heads = BTreeMap::new();
        let mut embeddings = BTreeMap::new();
        for (name, h) in &self.heads {
            let need_pooled = || {
                fused.pooled.clone().ok_or_else(|| Error::InvalidInput {
                    what: format!("head `{name}`"),
                    message: "the fusion produced no joint vector".into(),
                })
            };
            match h {
                Head::Contrastive {
                    modalities,
                    proj,
                    logit_scale,
                } => {
                    let side = |i: usize| -> Result<Tensor> {
                        let m = modalities[i];
                        let pooled = || {
                            features.get(&m).map(|f| f.pooled.clone()).ok_or_else(|| {
                                Error::InvalidInput {
                                    what: format!("head `{name}`"),
                                    message: format!("modality `{m}` is missing from the batch"),
                                }
                            })
                        };
                        match proj {
                            Some(proj) => {
                                let v = match fused.per_modality.get(&m) {
                                    Some(v) => v.clone(),
                                    None => pooled()?,
                                };
                                l2_normalize(&proj[i].forward(&v)?)
                            }
                            None => l2_normalize(&pooled()?),
                        }
                    };
                    let (a, b) = (side(0)?, side(1)?);
                    let logits = a.matmul(&b.t()?)?.broadcast_mul(&logit_scale.exp()?)?;
                    heads.insert(name.clone(), logits);
                    embeddings.insert(name.clone(), (a, b));
                }
                Head::Classifier(fc) | Head::Itm(fc) => {
                    heads.insert(name.clone(), fc.forward(&need_pooled()?)?);
                }
                Head::Lm => {
                    let dec = self.decoder().ok_or_else(|| Error::InvalidInput {
                        what: "lm head".into(),
                        message: "no decoder".into(),
                    })?;
                    let text = batch.modalities.get(&Modality::Text).ok_or_else(|| {
                        Error::InvalidInput {
                            what: format!("head `{name}`"),
                            message: "the lm head reads the batch's text (token ids)".into(),
                        }
                    })?;
                    let prefix = fused.tokens.as_ref().ok_or_else(|| Error::InvalidInput {
                        what: "lm head".into(),
                        message: "no prefix".into(),
                    })?;
                    heads.insert(name.clone(), dec.logits(prefix, &text.values)?);
                }
            }
        }
        Ok(ModelOutput {
            features,
            fused,
            heads,
            embeddings,
        })
    }

    /// The normalised joint-space embedding of one modality of a
    /// contrastive head, computed from the batch's `modality` alone (the
    /// other side need not be present): for retrieval and zero-shot.
    pub fn embed(&self, batch: &Batch, head: &str, modality: Modality) -> Result<Tensor> {
        let mb = batch
            .modalities
            .get(&modality)
            .ok_or_else(|| Error::InvalidInput {
                what: "batch".into(),
                message: format!("modality `{modality}` is missing"),
            })?;
        let enc = self
            .encoders
            .get(&modality)
            .ok_or_else(|| Error::InvalidInput {
                what: "model".into(),
                message: format!("no encoder for `{modality}`"),
            })?;
        self.embed_features(head, modality, &enc.encode(mb)?)
    }

    /// [`MultimodalModel::embed`] from encoder features computed elsewhere
    /// (e.g. [`crate::arch::encoders::TextEncoder::encode_prompted`] for
    /// prompt tuning): the fusion's and the head's projections, normalised.
    pub fn embed_features(&self, head: &str, modality: Modality, f: &Features) -> Result<Tensor> {
        let Some(Head::Contrastive {
            modalities, proj, ..
        }) = self.heads.get(head)
        else {
            return Err(Error::InvalidInput {
                what: format!("head `{head}`"),
                message: "no contrastive head of that name".into(),
            });
        };
        let side = modalities
            .iter()
            .position(|m| *m == modality)
            .ok_or_else(|| Error::InvalidInput {
                what: format!("head `{head}`"),
                message: format!(
                    "it joins {} and {}, not {modality}",
                    modalities[0], modalities[1]
                ),
            })?;
        let Some(proj) = proj else {
            return l2_normalize(&f.pooled);
        };
        let v = match &self.fusion {
            Fusion::Late { proj: p } | Fusion::Gated { proj: p, .. } => {
                p[&modality].forward(&f.pooled)?
            }
            _ => f.pooled.clone(),
        };
        l2_normalize(&proj[side].forward(&v)?)
    }

    /// Writes `config.json` and `model.safetensors` into `dir` (each via a
    /// temporary file and rename).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| mosaic_core::Error::io(dir, e))?;
        let json = serde_json::to_vec_pretty(&self.config).map_err(|e| Error::Config {
            source_name: "architecture".into(),
            message: e.to_string(),
        })?;
        mosaic_core::atomic::write_bytes_atomic(&dir.join("config.json"), &json)?;
        self.params.save(&dir.join("model.safetensors"))
    }

    /// Loads what [`MultimodalModel::save`] wrote; every parameter must be
    /// present with its shape.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        let config = ArchConfig::from_file(&dir.join("config.json"))?;
        let model = Self::from_config(&config, dtype, device)?;
        model.params.load(&dir.join("model.safetensors"))?;
        Ok(model)
    }
}
