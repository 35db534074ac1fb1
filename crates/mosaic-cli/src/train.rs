//! `mosaic train CONFIG`: run a training config (configs/train/*.toml).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use mosaic_core::assets::AssetStore;
use mosaic_train::config::{TrainConfig, run};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The training config (TOML).
    #[arg(value_name = "CONFIG")]
    train_config: PathBuf,
    /// Override a config value: `section.key=value` (repeatable), e.g.
    /// `--set run.steps=200 --set optimizer.lr=0.001`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Continue the run folder's latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run_cli(args: TrainArgs, store: &AssetStore) -> Result<()> {
    let cfg = TrainConfig::load(&args.train_config, &args.overrides)?;
    let s = run(&cfg, store, args.resume, !args.quiet)?;
    if !s.initial_eval.is_empty() {
        println!("before training: {:?}", s.initial_eval);
    }
    println!(
        "trained {} steps in {:.1} s; final loss {:.4}; last evaluation {:?}; checkpoint {}",
        s.losses.len(),
        s.seconds,
        s.losses.last().copied().unwrap_or(f64::NAN),
        s.last_eval,
        s.final_checkpoint.display()
    );
    Ok(())
}
