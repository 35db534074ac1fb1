//! `mosaic transcribe`: speech to text with timestamps (Whisper).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use mosaic_core::assets::{AssetStore, resolve_model};
use mosaic_models::pretrained::whisper::WhisperTranscriber;

#[derive(Args, Debug)]
pub struct TranscribeArgs {
    /// Model: an asset name (whisper-tiny-en) or a CTranslate2 Whisper folder.
    #[arg(long)]
    model: String,
    /// Audio files (WAV, FLAC, MP3, OGG; any rate, mixed down to mono).
    #[arg(required = true)]
    audio: Vec<PathBuf>,
    /// Print JSON lines (file, segments with start/end/text) instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: TranscribeArgs, store: &AssetStore) -> Result<()> {
    let t = WhisperTranscriber::from_pretrained(&resolve_model(&args.model, store)?)?;
    for path in &args.audio {
        let a = mosaic_data::audio::load_audio(path, &Default::default())?;
        let x = mosaic_data::audio::resample(&a.to_mono(), a.sample_rate, 16_000)?;
        let segs = t.transcribe(&x)?;
        if args.json {
            let text: String = segs
                .iter()
                .map(|s| s.text.as_str())
                .collect::<String>()
                .trim()
                .to_string();
            println!(
                "{}",
                serde_json::json!({"file": path.display().to_string(), "text": text, "segments": segs})
            );
        } else {
            println!("{}", path.display());
            for s in &segs {
                println!("  [{:>7.2} → {:>7.2}] {}", s.start, s.end, s.text.trim());
            }
        }
    }
    Ok(())
}
