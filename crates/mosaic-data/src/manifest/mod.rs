//! Manifests: multimodal JSONL and WebDataset tar shards.

pub mod jsonl;
pub mod shards;

pub use jsonl::{ManifestReader, ManifestRecord, TextField, write_manifest};
pub use shards::{ShardReader, ShardWriter};
