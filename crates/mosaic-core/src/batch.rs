//! Batches: per-modality padded values with masks, on one device.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::modality::Modality;

/// One modality of a batch: padded values, an optional mask over the padded
/// positions, and which samples have the modality at all.
#[derive(Debug, Clone)]
pub struct ModalityBatch {
    /// `[B, ...]` values; padded positions hold arbitrary (usually zero) values.
    pub values: Tensor,
    /// `[B, T]` u8 mask (1 = real position, 0 = padding) for sequence-like
    /// values; `None` when nothing is padded (e.g. fixed-size images).
    pub mask: Option<Tensor>,
    /// Per sample, whether it has this modality. Absent samples hold zeros in
    /// `values` and must be ignored by consumers.
    pub present: Vec<bool>,
}

impl ModalityBatch {
    /// Builds a batch, checking that the mask and presence agree with the values.
    pub fn new(values: Tensor, mask: Option<Tensor>, present: Vec<bool>) -> Result<Self> {
        let dims = values.dims().to_vec();
        let Some(&batch) = dims.first() else {
            return Err(Error::Shape {
                context: "modality batch values".into(),
                message: "values must have a leading batch dimension, got a scalar".into(),
            });
        };
        if present.len() != batch {
            return Err(Error::Shape {
                context: "modality batch presence".into(),
                message: format!("{} presence flags for batch size {batch}", present.len()),
            });
        }
        if let Some(mask) = &mask {
            let mdims = mask.dims();
            if mdims.len() != 2 || dims.len() < 2 || mdims[0] != batch || mdims[1] != dims[1] {
                return Err(Error::Shape {
                    context: "modality batch mask".into(),
                    message: format!("mask {mdims:?} must be [B, T] matching values {dims:?}"),
                });
            }
        }
        Ok(ModalityBatch {
            values,
            mask,
            present,
        })
    }

    /// Batch size.
    pub fn batch_size(&self) -> usize {
        self.present.len()
    }

    /// Moves values and mask to `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let values = self
            .values
            .to_device(device)
            .map_err(|e| Error::tensor("moving batch values", e))?;
        let mask = match &self.mask {
            Some(m) => Some(
                m.to_device(device)
                    .map_err(|e| Error::tensor("moving batch mask", e))?,
            ),
            None => None,
        };
        Ok(ModalityBatch {
            values,
            mask,
            present: self.present.clone(),
        })
    }

    /// Casts floating-point values to `dtype` (integer values such as token
    /// ids are kept as they are).
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let values = if self.values.dtype().is_float() {
            self.values
                .to_dtype(dtype)
                .map_err(|e| Error::tensor("casting batch values", e))?
        } else {
            self.values.clone()
        };
        Ok(ModalityBatch {
            values,
            mask: self.mask.clone(),
            present: self.present.clone(),
        })
    }
}

/// A batch of samples: sample ids plus one [`ModalityBatch`] per modality
/// that at least one sample has.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The ids of the samples, in batch order.
    pub ids: Vec<String>,
    /// Per-modality values.
    pub modalities: BTreeMap<Modality, ModalityBatch>,
}

impl Batch {
    /// An empty batch for the given sample ids.
    pub fn new(ids: Vec<String>) -> Self {
        Batch {
            ids,
            modalities: BTreeMap::new(),
        }
    }

    /// Adds a modality, checking its batch size.
    pub fn insert(&mut self, modality: Modality, batch: ModalityBatch) -> Result<()> {
        if batch.batch_size() != self.ids.len() {
            return Err(Error::Shape {
                context: format!("batch {modality}"),
                message: format!(
                    "{} rows for a batch of {} samples",
                    batch.batch_size(),
                    self.ids.len()
                ),
            });
        }
        self.modalities.insert(modality, batch);
        Ok(())
    }

    /// The values of `modality`, if the batch has it.
    pub fn get(&self, modality: Modality) -> Option<&ModalityBatch> {
        self.modalities.get(&modality)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the batch has no samples.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Moves every modality to `device`.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        let mut out = Batch::new(self.ids.clone());
        for (m, b) in &self.modalities {
            out.modalities.insert(*m, b.to_device(device)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_shape_is_checked() {
        let dev = Device::Cpu;
        let v = Tensor::zeros((2, 5, 8), DType::F32, &dev).unwrap();
        let good = Tensor::ones((2, 5), DType::U8, &dev).unwrap();
        assert!(ModalityBatch::new(v.clone(), Some(good), vec![true, true]).is_ok());
        let bad = Tensor::ones((2, 4), DType::U8, &dev).unwrap();
        let err = ModalityBatch::new(v.clone(), Some(bad), vec![true, true]).unwrap_err();
        assert!(err.to_string().contains("mask [2, 4]"), "{err}");
        let err = ModalityBatch::new(v, None, vec![true]).unwrap_err();
        assert!(err.to_string().contains("1 presence flags"), "{err}");
    }

    #[test]
    fn batch_size_must_match_ids() {
        let dev = Device::Cpu;
        let mut b = Batch::new(vec!["a".into(), "b".into(), "c".into()]);
        let v = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        let mb = ModalityBatch::new(v, None, vec![true, false]).unwrap();
        assert!(b.insert(Modality::Sensor, mb).is_err());
        let v = Tensor::zeros((3, 3), DType::F32, &dev).unwrap();
        let mb = ModalityBatch::new(v, None, vec![true, false, true]).unwrap();
        b.insert(Modality::Sensor, mb).unwrap();
        let moved = b.to_device(&Device::Cpu).unwrap();
        assert_eq!(
            moved.get(Modality::Sensor).unwrap().present,
            vec![true, false, true]
        );
        let half = moved
            .get(Modality::Sensor)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        assert_eq!(half.values.dtype(), DType::F16);
    }
}
