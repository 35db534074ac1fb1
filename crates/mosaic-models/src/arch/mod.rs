//! Models built from a config: encoders for six modalities, seven fusion
//! paradigms, heads (DESIGN §3). `configs/arch/*.toml` has one ready
//! config per paradigm.

pub mod config;
pub mod describe;
pub mod encoders;
pub mod fusion;
pub mod import;
pub mod model;

pub use config::{ArchConfig, BlockOptions, EncoderConfig, FusionConfig, HeadConfig};
pub use encoders::{
    AudioConfig, BagOfWordsConfig, CnnConfig, PointTransformerConfig, PointnetConfig,
    PretrainedConfig, SensorConfig, TextTransformerConfig, VideoConfig, VitConfig,
};
pub use fusion::Decoding;
pub use model::{ModelOutput, MultimodalModel};
