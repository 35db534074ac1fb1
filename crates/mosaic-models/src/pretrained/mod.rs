//! Loaders for published checkpoints, numerically matching their reference
//! implementations.

pub mod bert;
pub mod clip;
pub mod efficientnet;
pub mod sentence;
pub mod vit;
pub mod whisper;

pub use bert::{BertConfig, BertModel, BertOutput};
pub use clip::{ClipConfig, ClipModel};
pub use efficientnet::{EfficientNetLite, imagenet_classes, lite_preprocessor, top_k};
pub use sentence::{Pooling, SentenceEncoder};
pub use vit::{VitConfig, VitModel};
pub use whisper::WhisperModel;
