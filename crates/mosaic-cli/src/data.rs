//! `mosaic data`: validate, stats, convert, import.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use mosaic_core::assets::{AssetStore, FetchOptions};
use mosaic_data::check;
use mosaic_data::import;

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Check that every sample's files decode; reports every bad sample (by
    /// manifest line or shard position) in one pass and exits 1 if any.
    Validate {
        /// A JSONL manifest, a .tar shard or a folder of shards.
        input: PathBuf,
        /// Decoding threads.
        #[arg(long, default_value_t = default_threads())]
        threads: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Counts of samples, modalities, labels, splits and text lengths.
    Stats {
        /// A JSONL manifest, a .tar shard or a folder of shards.
        input: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// JSONL → WebDataset shards (OUT is a folder), or shards → JSONL (OUT ends in .jsonl).
    Convert {
        /// Input manifest, shard or folder of shards.
        input: PathBuf,
        /// Output folder (shards) or .jsonl file.
        out: PathBuf,
        /// Samples per shard.
        #[arg(long, default_value_t = 1000)]
        samples_per_shard: usize,
        /// Stop at the first bad sample instead of skipping it.
        #[arg(long)]
        strict: bool,
    },
    /// Run the loader over INPUT with a data config (TOML/JSON: [text],
    /// [image], [audio], [video], [point_cloud], [sensor], [loader]) and
    /// print batch shapes, skipped samples and throughput.
    Batches {
        /// A JSONL manifest, a .tar shard or a folder of shards.
        input: PathBuf,
        /// The data config.
        #[arg(long = "data-config")]
        data_config: PathBuf,
        /// Stop after this many batches.
        #[arg(long)]
        limit: Option<usize>,
        /// Epoch number (changes the shuffle).
        #[arg(long, default_value_t = 0)]
        epoch: u64,
    },
    /// Import a data set into a manifest.
    Import {
        #[command(subcommand)]
        what: ImportCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Fashion-MNIST (fetched as an asset if needed): 70,000 PNGs and manifests.
    FashionMnist {
        /// Output folder (default: $MOSAIC_HOME/datasets/fashion-mnist).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Folder with the IDX .gz files (default: the fetched asset).
        #[arg(long)]
        source: Option<PathBuf>,
        /// Replace an existing output folder.
        #[arg(long)]
        force: bool,
    },
    /// Folders of images named by class: ROOT/<class>/<image>.
    ImageFolder {
        /// Root folder.
        root: PathBuf,
        /// Manifest to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// COCO-captions JSON (images + annotations).
    CocoCaptions {
        /// The captions JSON file.
        json: PathBuf,
        /// Folder holding the images' file_name paths.
        #[arg(long)]
        images: PathBuf,
        /// Manifest to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// A `path: transcript` list (Asterisk style, may be .gz) with audio files.
    Transcripts {
        /// The list file.
        list: PathBuf,
        /// Folder the listed paths are relative to.
        #[arg(long)]
        audio_root: PathBuf,
        /// Manifest to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// WordNet noun definitions labelled by supersense (the `wordnet` asset,
    /// fetched if needed): OUT/train.jsonl and OUT/eval.jsonl of real text.
    WordnetSupersenses {
        /// Output folder (default: $MOSAIC_HOME/datasets/wordnet-supersenses).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Training definitions per class.
        #[arg(long, default_value_t = 200)]
        train_per_class: usize,
        /// Held-out definitions per class.
        #[arg(long, default_value_t = 40)]
        eval_per_class: usize,
        /// Seed of the sampling.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Replace an existing output folder.
        #[arg(long)]
        force: bool,
    },
    /// The Asterisk English prompts (fetched as an asset if needed): audio + transcripts.
    Asterisk {
        /// Manifest to write (default: $MOSAIC_HOME/datasets/asterisk/manifest.jsonl).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn fetched(store: &AssetStore, name: &str) -> Result<PathBuf> {
    if store.is_fetched(name) {
        return Ok(store.path(name)?);
    }
    eprintln!("fetching asset {name} …");
    store
        .fetch(name, &FetchOptions::default())
        .with_context(|| format!("fetching {name}"))
}

fn print_import(r: &import::ImportReport) {
    for s in r.skipped.iter().take(20) {
        eprintln!("skipped: {s}");
    }
    if r.skipped.len() > 20 {
        eprintln!("… and {} more skipped", r.skipped.len() - 20);
    }
    println!("imported {} samples", r.samples);
    for m in &r.manifests {
        println!("manifest: {}", m.display());
    }
}

pub fn run(cmd: DataCommand, open_store: &dyn Fn() -> Result<AssetStore>) -> Result<()> {
    match cmd {
        DataCommand::Validate {
            input,
            threads,
            json,
        } => {
            let r = check::validate(&input, threads)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                for (at, e) in &r.bad {
                    println!("bad {at}: {e}");
                }
                println!("{} samples, {} ok, {} bad", r.total, r.ok, r.bad.len());
            }
            if !r.bad.is_empty() {
                bail!(
                    "{} of {} samples in {} are bad",
                    r.bad.len(),
                    r.total,
                    input.display()
                );
            }
            if r.total == 0 {
                bail!("{} has no samples", input.display());
            }
        }
        DataCommand::Stats { input, json } => {
            let s = check::stats(&input)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("samples: {}", s.samples);
                if s.unreadable > 0 {
                    println!("unreadable lines: {}", s.unreadable);
                }
                for (m, n) in &s.modalities {
                    println!("modality {m}: {n}");
                }
                for (sp, n) in &s.splits {
                    println!("split {sp}: {n}");
                }
                println!("labels: {}", s.labels.len());
                for (l, n) in s.labels.iter().take(50) {
                    println!("  {l}: {n}");
                }
                if let Some((a, m, b)) = s.text_chars {
                    println!("text chars: min {a}, mean {m:.1}, max {b}");
                }
                println!("captions: {}", s.captions);
            }
        }
        DataCommand::Convert {
            input,
            out,
            samples_per_shard,
            strict,
        } => {
            let (written, skipped) = check::convert(&input, &out, samples_per_shard, strict)?;
            for s in &skipped {
                eprintln!("skipped: {s}");
            }
            for w in &written {
                println!("{}", w.display());
            }
        }
        DataCommand::Batches {
            input,
            data_config,
            limit,
            epoch,
        } => {
            let cfg = mosaic_data::config::DataConfig::load(&data_config)?;
            let loader = mosaic_data::loader::Loader::new(
                mosaic_data::loader::Source::open_path(&input)?,
                cfg.pipeline()?,
                cfg.loader_config(),
            )?;
            let start = std::time::Instant::now();
            let mut it = loader.epoch(epoch);
            let (mut batches, mut samples) = (0usize, 0usize);
            for b in it.by_ref() {
                let b = b?;
                if batches < 3 {
                    let shapes: Vec<String> = b
                        .batch
                        .modalities
                        .iter()
                        .map(|(m, mb)| {
                            format!(
                                "{m} {:?}{}",
                                mb.values.dims(),
                                if mb.mask.is_some() { " +mask" } else { "" }
                            )
                        })
                        .collect();
                    let classes = if b.classes.is_some() { ", classes" } else { "" };
                    println!(
                        "batch {batches}: {} samples: {}{classes}",
                        b.batch.len(),
                        shapes.join(", ")
                    );
                }
                batches += 1;
                samples += b.batch.len();
                if limit.is_some_and(|l| batches >= l) {
                    break;
                }
            }
            let dt = start.elapsed().as_secs_f64();
            let st = it.stats();
            for e in st.errors.iter().take(10) {
                eprintln!("skipped: {e}");
            }
            println!(
                "{batches} batches, {samples} samples, {} skipped, {:.1} s, {:.0} samples/s",
                st.skipped,
                dt,
                samples as f64 / dt.max(1e-9)
            );
        }
        DataCommand::Import { what } => match what {
            ImportCommand::FashionMnist { out, source, force } => {
                let store = open_store()?;
                let src = match source {
                    Some(s) => s,
                    None => fetched(&store, "fashion-mnist")?,
                };
                let out =
                    out.unwrap_or_else(|| store.home().join("datasets").join("fashion-mnist"));
                print_import(&import::import_fashion_mnist(&src, &out, force)?);
            }
            ImportCommand::ImageFolder { root, out } => {
                print_import(&import::import_image_folder(&root, &out)?)
            }
            ImportCommand::CocoCaptions { json, images, out } => {
                print_import(&import::import_coco_captions(&json, &images, &out)?)
            }
            ImportCommand::Transcripts {
                list,
                audio_root,
                out,
            } => print_import(&import::import_transcript_list(&list, &audio_root, &out)?),
            ImportCommand::WordnetSupersenses {
                out,
                train_per_class,
                eval_per_class,
                seed,
                force,
            } => {
                let store = open_store()?;
                let dir = fetched(&store, "wordnet")?;
                let out = out
                    .unwrap_or_else(|| store.home().join("datasets").join("wordnet-supersenses"));
                let opts = import::SupersenseOptions {
                    train_per_class,
                    eval_per_class,
                    seed,
                };
                print_import(&import::import_wordnet_supersenses(
                    &dir, &out, &opts, force,
                )?);
            }
            ImportCommand::Asterisk { out } => {
                let store = open_store()?;
                let dir = fetched(&store, "asterisk-sounds")?;
                let out = out.unwrap_or_else(|| {
                    store
                        .home()
                        .join("datasets")
                        .join("asterisk")
                        .join("manifest.jsonl")
                });
                print_import(&import::import_transcript_list(
                    &dir.join("core-sounds-en.txt.gz"),
                    &dir.join("en_US_f_Allison"),
                    &out,
                )?);
            }
        },
    }
    Ok(())
}
