//! # mosaic-data
//!
//! Turns files into model-ready tensors for all six modalities, exactly as
//! the reference preprocessing does.
pub mod align;
pub mod audio;
pub mod augment;
pub mod check;
pub mod clean;
pub mod error;
pub mod image;
pub mod import;
pub mod loader;
pub mod manifest;
pub mod pipeline;
pub mod pointcloud;
pub mod sensor;
pub mod text;
pub mod video;

pub use error::{Error, Result};
