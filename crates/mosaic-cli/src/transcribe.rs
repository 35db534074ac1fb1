//! `mosaic transcribe`: speech to text with timestamps (Whisper), with
//! faster-whisper's decoding settings and defaults.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use mosaic_core::assets::{AssetStore, resolve_model};
use mosaic_models::pretrained::whisper::{VadFilter, WhisperTranscriber};

/// A threshold, or `none` (the check is off).
#[derive(Debug, Clone, Copy)]
struct Threshold(Option<f64>);

fn threshold(s: &str) -> Result<Threshold, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Threshold(None));
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Threshold(Some(v))),
        Ok(_) => Err(format!("`{s}`: not a finite number")),
        Err(e) => Err(format!("`{s}`: {e} (a number or `none`)")),
    }
}

#[derive(Args, Debug)]
pub struct TranscribeArgs {
    /// Model: an asset name (whisper-tiny-en), a CTranslate2 Whisper folder
    /// (model.bin) or a Hugging Face Whisper folder (config.json +
    /// model.safetensors); English-only vocabularies.
    #[arg(long)]
    model: String,
    /// Audio files (WAV, FLAC, MP3, OGG; any rate, mixed down to mono).
    #[arg(required = true)]
    audio: Vec<PathBuf>,
    /// Print JSON lines (file, text, segments with start/end/text/ids and
    /// decoding statistics) instead of text.
    #[arg(long)]
    json: bool,
    /// Beam width at temperature 0 (faster-whisper's default 5; 1 = greedy).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=64))]
    beam_size: u64,
    /// Beam search stops after round(beam_size × patience) finished hypotheses.
    #[arg(long, default_value_t = 1.0)]
    patience: f64,
    /// Hypothesis scores are divided by length^length_penalty.
    #[arg(long, default_value_t = 1.0)]
    length_penalty: f64,
    /// Samples drawn per temperature above 0 (the best score is kept).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=64))]
    best_of: u64,
    /// Temperatures tried in turn when a result fails the thresholds
    /// (comma-separated; `0` alone turns the fallback off).
    #[arg(long, value_delimiter = ',', default_value = "0.0,0.2,0.4,0.6,0.8,1.0")]
    temperatures: Vec<f64>,
    /// Text compressing better than this (zlib ratio) is too repetitive:
    /// try the next temperature (`none` turns the check off).
    #[arg(long, default_value = "2.4", value_parser = threshold, allow_hyphen_values = true)]
    compression_ratio_threshold: Threshold,
    /// A mean log-probability below this fails: try the next temperature
    /// (`none` turns the check off).
    #[arg(long, default_value = "-1.0", value_parser = threshold, allow_hyphen_values = true)]
    log_prob_threshold: Threshold,
    /// A window whose no-speech probability is above this (and whose mean
    /// log-probability is below the threshold above) is silence: skipped.
    #[arg(long, default_value = "0.6", value_parser = threshold, allow_hyphen_values = true)]
    no_speech_threshold: Threshold,
    /// Do not prompt each window with the previous windows' text.
    #[arg(long)]
    no_condition_on_previous_text: bool,
    /// Seed of the sampler used above temperature 0.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Transcribe only the speech Silero VAD finds (faster-whisper's
    /// `vad_filter=True`); times stay on the original timeline.
    #[arg(long, overrides_with = "no_vad")]
    vad: bool,
    /// Transcribe the whole recording (the default).
    #[arg(long, overrides_with = "vad")]
    no_vad: bool,
    /// Silero VAD weights: an asset name or a folder/file.
    #[arg(long, default_value = "silero-vad")]
    vad_model: String,
    /// VAD speech probability threshold.
    #[arg(long, default_value_t = 0.5)]
    vad_threshold: f32,
    /// Silence (ms) that ends a speech chunk.
    #[arg(long, default_value_t = 2000.0)]
    vad_min_silence_ms: f64,
    /// Padding (ms) added to each side of a speech chunk.
    #[arg(long, default_value_t = 400.0)]
    vad_speech_pad_ms: f64,
}

pub fn run(args: TranscribeArgs, store: &AssetStore) -> Result<()> {
    let dir = resolve_model(&args.model, store)?;
    let mut t = WhisperTranscriber::from_pretrained(&dir)
        .with_context(|| format!("loading Whisper from {}", dir.display()))?;
    if args.temperatures.is_empty()
        || args
            .temperatures
            .iter()
            .any(|&x| !(0.0..=10.0).contains(&x))
    {
        bail!("--temperatures: give values in [0, 10], e.g. 0,0.2,0.4");
    }
    if args.patience.is_nan() || args.patience <= 0.0 {
        bail!("--patience must be above 0");
    }
    let o = &mut t.options;
    o.decode.beam_size = args.beam_size as usize;
    o.decode.patience = args.patience;
    o.decode.length_penalty = args.length_penalty;
    o.decode.best_of = args.best_of as usize;
    o.fallback.temperatures = args.temperatures.clone();
    o.fallback.compression_ratio_threshold = args.compression_ratio_threshold.0;
    o.fallback.log_prob_threshold = args.log_prob_threshold.0;
    o.fallback.no_speech_threshold = args.no_speech_threshold.0;
    o.condition_on_previous_text = !args.no_condition_on_previous_text;
    o.seed = args.seed;
    if args.vad && !args.no_vad {
        let mut v = VadFilter::default();
        v.options.threshold = args.vad_threshold;
        v.options.min_silence_ms = args.vad_min_silence_ms;
        v.options.speech_pad_ms = args.vad_speech_pad_ms;
        o.vad = Some(v);
        let vad_path = resolve_model(&args.vad_model, store)?;
        t.load_vad(&vad_path)
            .with_context(|| format!("loading Silero VAD from {}", vad_path.display()))?;
    }
    for path in &args.audio {
        let a = mosaic_data::audio::load_audio(path, &Default::default())?;
        let x = mosaic_data::audio::resample(&a.to_mono(), a.sample_rate, 16_000)?;
        let full = t
            .transcribe_full(&x)
            .with_context(|| format!("transcribing {}", path.display()))?;
        let segs = &full.segments;
        if args.json {
            let text: String = segs
                .iter()
                .map(|s| s.text.as_str())
                .collect::<String>()
                .trim()
                .to_string();
            let mut line = serde_json::json!({
                "file": path.display().to_string(),
                "text": text,
                "duration": full.duration,
                "segments": segs,
            });
            if let Some(chunks) = &full.speech_chunks {
                line["duration_after_vad"] = full.duration_after_vad.into();
                line["speech_chunks"] = chunks
                    .iter()
                    .map(|c| serde_json::json!([c.start as f64 / 16000.0, c.end as f64 / 16000.0]))
                    .collect();
            }
            println!("{line}");
        } else {
            println!("{}", path.display());
            for s in segs {
                println!("  [{:>7.2} → {:>7.2}] {}", s.start, s.end, s.text.trim());
            }
        }
    }
    Ok(())
}
