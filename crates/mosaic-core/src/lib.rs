//! # mosaic-core
//!
//! The ground every other Mosaic crate stands on: the closed set of
//! [`Modality`]s, the [`Sample`] and [`Batch`] types that flow from data to
//! models, device and dtype choice, the one [`Error`] type, typed config
//! loading that names unknown keys, atomic checkpoint I/O, readers for every
//! weight format the real assets use (safetensors, PyTorch zip and legacy
//! pickle, CTranslate2) and the [`assets`] store that resolves a model or
//! data set by name to files on disk.
//!
//! ```
//! use std::collections::HashMap;
//! use candle_core::{Device, Tensor};
//! use mosaic_core::{Modality, ModalityValue, Sample, inspect::inspect, checkpoint};
//!
//! # fn main() -> mosaic_core::Result<()> {
//! // A sample may carry any subset of modalities.
//! let s = Sample::new("cat-1").with(Modality::Text, ModalityValue::Text("a cat".into()));
//! assert!(s.has(Modality::Text) && !s.has(Modality::Audio));
//!
//! // Save a checkpoint atomically, then inspect it like `mosaic inspect` does.
//! let dir = std::env::temp_dir().join(format!("mosaic-doc-{}", std::process::id()));
//! let mut weights = HashMap::new();
//! weights.insert("proj.weight".to_string(), Tensor::zeros((4, 8), candle_core::DType::F32, &Device::Cpu)?);
//! checkpoint::save_checkpoint(&dir, &serde_json::json!({"dim": 8}), &weights)?;
//! let report = inspect(&dir)?;
//! assert_eq!(report.total_params, 32);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

pub use candle_core as candle;

pub mod assets;
pub mod atomic;
pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod formats;
pub mod inspect;
pub mod modality;
pub mod sample;

pub use batch::{Batch, ModalityBatch};
pub use device::{DTypeSpec, DeviceSpec};
pub use error::{Error, Result};
pub use modality::Modality;
pub use sample::{BoundingBox, ModalityValue, Sample, TimeSpan};

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::tensor("tensor operation", e)
    }
}
