//! Loaders for published checkpoints, numerically matching their reference
//! implementations.

pub mod bert;
pub mod sentence;

pub use bert::{BertConfig, BertModel, BertOutput};
pub use sentence::{Pooling, SentenceEncoder};
