//! `mosaic model`: inspect architectures built from configs.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use mosaic_core::candle::{DType, Device};
use mosaic_models::arch::{ArchConfig, MultimodalModel, describe::describe};

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Build a model from an architecture config (configs/arch/*.toml) and
    /// print its module tree with parameter counts and FLOPs per sample.
    Describe {
        /// The architecture config (.toml or .json).
        #[arg(value_name = "CONFIG")]
        arch: PathBuf,
        /// Name levels of the module tree to show.
        #[arg(long, default_value_t = 3)]
        depth: usize,
    },
}

pub fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Describe { arch, depth } => {
            let cfg = ArchConfig::from_file(&arch)?;
            let model = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu)
                .with_context(|| format!("building {}", arch.display()))?;
            print!("{}", describe(&model, depth.max(1)));
        }
    }
    Ok(())
}
