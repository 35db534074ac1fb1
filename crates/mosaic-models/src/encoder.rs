//! The one encoder interface (DESIGN §3): a modality batch in, a token
//! sequence + mask + pooled vector out. Pretrained towers implement it, so
//! fusion, training, evaluation and serving treat a published checkpoint
//! like any encoder built from a config.

use std::sync::Arc;

use candle_core::{DType, Tensor};
use mosaic_core::{Modality, ModalityBatch};

use crate::error::{Error, Result};
use crate::pretrained::{
    BlipModel, ClipModel, EfficientNetLite, ResNetModel, SentenceEncoder, SiglipModel, VitModel,
};

/// What an encoder produces for a batch.
#[derive(Debug, Clone)]
pub struct Features {
    /// `[B, T, H]` token (patch, frame) features.
    pub tokens: Tensor,
    /// `[B, T]` u8, 1 on real tokens; `None` when every token is real.
    pub mask: Option<Tensor>,
    /// `[B, P]` one vector per sample.
    pub pooled: Tensor,
}

/// An encoder of one modality.
pub trait Encoder: Send + Sync {
    /// The modality it reads.
    fn modality(&self) -> Modality;
    /// Width of `Features::tokens`.
    fn token_dim(&self) -> usize;
    /// Width of `Features::pooled`.
    fn pooled_dim(&self) -> usize;
    /// Encodes a batch: text as `[B, T]` token ids with a mask, images as
    /// `[B, C, H, W]` preprocessed pixels.
    fn encode(&self, batch: &ModalityBatch) -> Result<Features>;
}

fn text_inputs(batch: &ModalityBatch) -> Result<(Tensor, Tensor)> {
    let ids = &batch.values;
    if ids.rank() != 2 || ids.dtype().is_float() {
        return Err(Error::InvalidInput {
            what: "text batch".into(),
            message: format!(
                "expected [B, T] integer token ids, got {:?} {:?}",
                ids.dims(),
                ids.dtype()
            ),
        });
    }
    let mask = match &batch.mask {
        Some(m) => m.clone(),
        None => Tensor::ones(ids.dims(), DType::U8, ids.device())?,
    };
    Ok((ids.clone(), mask))
}

fn image_inputs(batch: &ModalityBatch) -> Result<&Tensor> {
    let px = &batch.values;
    if px.rank() != 4 || !px.dtype().is_float() {
        return Err(Error::InvalidInput {
            what: "image batch".into(),
            message: format!(
                "expected [B, C, H, W] float pixels, got {:?} {:?}",
                px.dims(),
                px.dtype()
            ),
        });
    }
    Ok(px)
}

/// `[B, C, h, w]` feature map → `[B, h·w, C]` tokens.
fn map_to_tokens(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    Ok(x.reshape((b, c, h * w))?.transpose(1, 2)?.contiguous()?)
}

impl Encoder for SentenceEncoder {
    fn modality(&self) -> Modality {
        Modality::Text
    }
    fn token_dim(&self) -> usize {
        self.model().config().hidden_size
    }
    fn pooled_dim(&self) -> usize {
        self.dim()
    }
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let (ids, mask) = text_inputs(batch)?;
        let (tokens, pooled) = self.embed_tokens(&ids, None, &mask)?;
        Ok(Features {
            tokens,
            mask: Some(mask),
            pooled,
        })
    }
}

/// CLIP's text tower in the joint embedding space as an [`Encoder`]:
/// pooled = the projected end-of-text token (`text_embeds`), tokens = every
/// token through the same projection ([`ClipModel::text_joint`]), so both
/// have the projection's width and a fusion module can read either.
#[derive(Debug, Clone)]
pub struct ClipTextEncoder(pub Arc<ClipModel>);

/// CLIP's vision tower in the joint embedding space as an [`Encoder`]:
/// pooled = `image_embeds`, tokens = every post-LayerNormed token through
/// the visual projection (token 0 is the pooled one).
#[derive(Debug, Clone)]
pub struct ClipVisionEncoder(pub Arc<ClipModel>);

impl Encoder for ClipTextEncoder {
    fn modality(&self) -> Modality {
        Modality::Text
    }
    fn token_dim(&self) -> usize {
        self.0.config().projection_dim
    }
    fn pooled_dim(&self) -> usize {
        self.0.config().projection_dim
    }
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let (ids, mask) = text_inputs(batch)?;
        let (tokens, pooled) = self.0.text_joint(&ids, Some(&mask))?;
        Ok(Features {
            tokens,
            mask: Some(mask),
            pooled,
        })
    }
}

impl Encoder for ClipVisionEncoder {
    fn modality(&self) -> Modality {
        Modality::Image
    }
    fn token_dim(&self) -> usize {
        self.0.config().projection_dim
    }
    fn pooled_dim(&self) -> usize {
        self.0.config().projection_dim
    }
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let (tokens, pooled) = self.0.vision_joint(image_inputs(batch)?)?;
        Ok(Features {
            tokens,
            mask: None,
            pooled,
        })
    }
}

/// SigLIP's text tower as an [`Encoder`] (texts padded to the context
/// length; the mask is reported but, as in SigLIP, not applied).
#[derive(Debug, Clone)]
pub struct SiglipTextEncoder(pub Arc<SiglipModel>);

/// SigLIP's vision tower as an [`Encoder`] (pooled = attention-pool head).
#[derive(Debug, Clone)]
pub struct SiglipVisionEncoder(pub Arc<SiglipModel>);

impl Encoder for SiglipTextEncoder {
    fn modality(&self) -> Modality {
        Modality::Text
    }
    fn token_dim(&self) -> usize {
        self.0.config().text_config.hidden_size
    }
    fn pooled_dim(&self) -> usize {
        let t = &self.0.config().text_config;
        t.projection_size.unwrap_or(t.hidden_size)
    }
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let (ids, mask) = text_inputs(batch)?;
        let (tokens, pooled) = self.0.text_features(&ids)?;
        Ok(Features {
            tokens,
            mask: Some(mask),
            pooled,
        })
    }
}

impl Encoder for SiglipVisionEncoder {
    fn modality(&self) -> Modality {
        Modality::Image
    }
    fn token_dim(&self) -> usize {
        self.0.config().vision_config.hidden_size
    }
    fn pooled_dim(&self) -> usize {
        self.0.config().vision_config.hidden_size
    }
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let o = self.0.vision_features(image_inputs(batch)?)?;
        let pooled = o.pooler_output.ok_or_else(|| Error::InvalidInput {
            what: "model".into(),
            message: "this SigLIP vision tower has no pooling head".into(),
        })?;
        Ok(Features {
            tokens: o.last_hidden_state,
            mask: None,
            pooled,
        })
    }
}

impl Encoder for VitModel {
    fn modality(&self) -> Modality {
        Modality::Image
    }
    fn token_dim(&self) -> usize {
        self.config().hidden_size
    }
    fn pooled_dim(&self) -> usize {
        self.config().hidden_size
    }
    /// Pooled: the pooler output when the checkpoint has one, else the
    /// class token.
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let o = self.forward(image_inputs(batch)?)?;
        let pooled = match o.pooler_output {
            Some(p) => p,
            None => o.last_hidden_state.narrow(1, 0, 1)?.squeeze(1)?,
        };
        Ok(Features {
            tokens: o.last_hidden_state,
            mask: None,
            pooled,
        })
    }
}

impl Encoder for ResNetModel {
    fn modality(&self) -> Modality {
        Modality::Image
    }
    fn token_dim(&self) -> usize {
        *self.config().hidden_sizes.last().unwrap_or(&0)
    }
    fn pooled_dim(&self) -> usize {
        self.token_dim()
    }
    /// Tokens: the last feature map's positions, row-major.
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let o = self.forward(image_inputs(batch)?)?;
        Ok(Features {
            tokens: map_to_tokens(&o.last_hidden_state)?,
            mask: None,
            pooled: o.pooler_output,
        })
    }
}

impl Encoder for EfficientNetLite {
    fn modality(&self) -> Modality {
        Modality::Image
    }
    fn token_dim(&self) -> usize {
        1280
    }
    fn pooled_dim(&self) -> usize {
        1280
    }
    /// Tokens: the head feature map's positions; pooled: their mean (the
    /// classifier's input).
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let map = self.features(image_inputs(batch)?)?;
        Ok(Features {
            tokens: map_to_tokens(&map)?,
            mask: None,
            pooled: map.mean(3)?.mean(2)?,
        })
    }
}

/// BLIP's vision tower as an [`Encoder`] (pooled = class token).
#[derive(Debug, Clone)]
pub struct BlipVisionEncoder(pub Arc<BlipModel>);

impl Encoder for BlipVisionEncoder {
    fn modality(&self) -> Modality {
        Modality::Image
    }
    fn token_dim(&self) -> usize {
        self.0.config().vision_config.hidden_size
    }
    fn pooled_dim(&self) -> usize {
        self.0.config().vision_config.hidden_size
    }
    fn encode(&self, batch: &ModalityBatch) -> Result<Features> {
        let tokens = self.0.image_tokens(image_inputs(batch)?)?;
        let pooled = tokens.narrow(1, 0, 1)?.squeeze(1)?;
        Ok(Features {
            tokens,
            mask: None,
            pooled,
        })
    }
}
