//! Long-form transcription the way faster-whisper 1.2.1's
//! `WhisperModel.transcribe` does it: log-mel of the whole recording,
//! 30 s windows padded with 0.0, decoding with temperature fallback,
//! faster-whisper's no-speech skip, segments split at timestamp pairs, a
//! seek to the last closing timestamp, the previous text as a prompt
//! (`condition_on_previous_text`), and optionally `vad_filter=True`: Silero
//! VAD speech chunks are cut out, concatenated, transcribed, and the
//! segment times mapped back to the original timeline.

use std::path::Path;
use std::sync::Mutex;

use candle_core::{Device, Tensor};
use mosaic_data::audio::vad::{SileroVad, SpeechSegment, VadOptions, WINDOW, speech_segments};

use super::WhisperModel;
use super::decoding::{
    DecodeOptions, FallbackOptions, Generated, SampleRng, WhisperTokens, compression_ratio,
    generate_with_fallback,
};
use crate::error::{Error, Result};

/// Mel frames per window.
const N_FRAMES: usize = 3000;
/// Seconds per mel frame (`160 / 16000`).
const TIME_PER_FRAME: f64 = 0.01;
/// Seconds per timestamp id.
const TIME_PRECISION: f64 = 0.02;
/// Mel frames per encoder position.
const INPUT_STRIDE: usize = 2;

/// A segment of one window, before decoding its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start in seconds.
    pub start: f64,
    /// End in seconds.
    pub end: f64,
    /// The window's ids in this segment (timestamps included, as in
    /// faster-whisper's `Segment.tokens`).
    pub tokens: Vec<u32>,
}

/// Splits a window's generated ids into segments at timestamp pairs, as
/// faster-whisper's `_split_segments_by_timestamps` does for a window
/// starting at `seek` (mel frames) of `segment_size` frames. Returns the
/// segments and the next seek: after a single closing timestamp the whole
/// window, otherwise the last timestamp of the last pair (the unfinished
/// tail is decoded again in the next window).
pub fn split_segments(
    seq: &[u32],
    tokens: WhisperTokens,
    seek: usize,
    segment_size: usize,
) -> (Vec<Segment>, usize) {
    let tb = tokens.timestamp_begin;
    let is_ts = |t: u32| t >= tb;
    let time_offset = seek as f64 * TIME_PER_FRAME;
    let segment_duration = segment_size as f64 * TIME_PER_FRAME;
    let time = |t: u32| time_offset + (t - tb) as f64 * TIME_PRECISION;
    let n = seq.len();
    let single_ending = n >= 2 && seq[n - 2] < tb && seq[n - 1] >= tb;
    let consecutive: Vec<usize> = (1..n)
        .filter(|&i| is_ts(seq[i]) && is_ts(seq[i - 1]))
        .collect();
    let mut out = Vec::new();
    if !consecutive.is_empty() {
        let mut slices = consecutive;
        if single_ending {
            slices.push(n);
        }
        let mut last = 0;
        for &cur in &slices {
            let s = &seq[last..cur];
            out.push(Segment {
                start: time(s[0]),
                end: time(s[s.len() - 1]),
                tokens: s.to_vec(),
            });
            last = cur;
        }
        let next = if single_ending {
            seek + segment_size
        } else {
            seek + (seq[last - 1] - tb) as usize * INPUT_STRIDE
        };
        (out, next)
    } else {
        let mut duration = segment_duration;
        if let Some(&t) = seq.iter().rev().find(|&&t| is_ts(t))
            && t != tb
        {
            duration = (t - tb) as f64 * TIME_PRECISION;
        }
        out.push(Segment {
            start: time_offset,
            end: time_offset + duration,
            tokens: seq.to_vec(),
        });
        (out, seek + segment_size)
    }
}

/// A transcribed segment with its text (faster-whisper's `Segment`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TextSegment {
    /// Start in seconds (on the original timeline, also with VAD).
    pub start: f64,
    /// End in seconds.
    pub end: f64,
    /// Text (with its leading space).
    pub text: String,
    /// Ids of the segment, timestamps included.
    pub tokens: Vec<u32>,
    /// Temperature of the decoding that produced it.
    pub temperature: f64,
    /// `avg_logprob` of its window.
    pub avg_logprob: f64,
    /// Compression ratio of its window's text.
    pub compression_ratio: f64,
    /// No-speech probability of its window.
    pub no_speech_prob: f64,
}

/// What happened in one 30 s window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    /// First mel frame of the window (of the audio transcribed, i.e. of the
    /// concatenated speech with VAD).
    pub seek: usize,
    /// Content frames in the window (≤ 3000).
    pub segment_size: usize,
    /// The prompt the decoder was given.
    pub prompt: Vec<u32>,
    /// Generated ids of the kept attempt.
    pub tokens: Vec<u32>,
    /// Temperature faster-whisper reports for the window.
    pub temperature: f64,
    /// `avg_logprob` of the kept attempt.
    pub avg_logprob: f64,
    /// No-speech probability.
    pub no_speech_prob: f64,
    /// Compression ratio of the kept attempt's text.
    pub compression_ratio: f64,
    /// Skipped as silence (no segments).
    pub skipped_no_speech: bool,
    /// Segments emitted from this window.
    pub segments: Vec<TextSegment>,
}

/// faster-whisper's `vad_filter=True` settings (its `VadOptions`
/// defaults: threshold 0.5, negative threshold `threshold − 0.15`, no
/// minimum speech length, 2 s of silence to end a chunk, 400 ms padding).
/// Chunks are never split by length (faster-whisper's default
/// `max_speech_duration_s = inf`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadFilter {
    /// The segmentation settings.
    pub options: VadOptions,
}

impl Default for VadFilter {
    fn default() -> Self {
        VadFilter {
            options: VadOptions {
                threshold: 0.5,
                neg_threshold: None,
                min_speech_ms: 0.0,
                min_silence_ms: 2000.0,
                speech_pad_ms: 400.0,
            },
        }
    }
}

/// Transcription settings; the defaults are faster-whisper's
/// `transcribe()` defaults (beam 5, temperatures 0.0–1.0 with fallback,
/// previous text as prompt, no VAD).
#[derive(Debug, Clone, PartialEq)]
pub struct TranscribeOptions {
    /// Decoding of one window.
    pub decode: DecodeOptions,
    /// Temperature fallback and the no-speech skip.
    pub fallback: FallbackOptions,
    /// Prompt each window with the text of the previous ones (true).
    pub condition_on_previous_text: bool,
    /// Drop that prompt after a window decoded above this temperature (0.5).
    pub prompt_reset_on_temperature: f64,
    /// Seed of the sampler used above temperature 0 (0).
    pub seed: u64,
    /// Gate the audio with Silero VAD first (`None`: off).
    pub vad: Option<VadFilter>,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            decode: DecodeOptions::default(),
            fallback: FallbackOptions::default(),
            condition_on_previous_text: true,
            prompt_reset_on_temperature: 0.5,
            seed: 0,
            vad: None,
        }
    }
}

impl TranscribeOptions {
    /// faster-whisper's greedy call used by the parity fixtures: beam 1,
    /// temperature 0 only, no previous-text prompt, no VAD (empty suppress
    /// lists; see [`with_greedy`](Self::with_greedy) to keep a model's).
    pub fn greedy() -> Self {
        TranscribeOptions::default().with_greedy()
    }

    /// These options with greedy decoding at temperature 0 only and no
    /// previous-text prompt (`beam_size=1, best_of=1, temperature=0.0,
    /// condition_on_previous_text=False`); suppress lists, thresholds and
    /// VAD stay as they are.
    pub fn with_greedy(mut self) -> Self {
        self.decode.beam_size = 1;
        self.decode.best_of = 1;
        self.fallback.temperatures = vec![0.0];
        self.condition_on_previous_text = false;
        self
    }
}

/// A full transcription.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// Segments on the original timeline.
    pub segments: Vec<TextSegment>,
    /// Every window decoded (times and seeks on the transcribed audio:
    /// the concatenated speech when VAD is on).
    pub windows: Vec<WindowResult>,
    /// The VAD speech chunks (samples of the original audio), when VAD is on.
    pub speech_chunks: Option<Vec<SpeechSegment>>,
    /// Seconds of audio.
    pub duration: f64,
    /// Seconds transcribed (after VAD).
    pub duration_after_vad: f64,
}

/// A ready-to-use speech recogniser: features, model, tokenizer, decoding,
/// and optionally a Silero VAD.
#[derive(Debug)]
pub struct WhisperTranscriber {
    model: WhisperModel,
    tokenizer: mosaic_data::text::TextTokenizer,
    features: mosaic_data::audio::WhisperFeatureExtractor,
    /// Settings (faster-whisper's defaults after loading, with the
    /// checkpoint's suppress lists).
    pub options: TranscribeOptions,
    tokens: WhisperTokens,
    vad: Option<Mutex<SileroVad>>,
}

impl WhisperTranscriber {
    /// Loads a Whisper folder in either layout: CTranslate2 (`model.bin`,
    /// `config.json`, `tokenizer.json`) or Hugging Face (`config.json`,
    /// `model.safetensors`, `tokenizer.json`, `generation_config.json`).
    /// Only English-only vocabularies (51864 ids) are supported so far.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        let model = WhisperModel::load(dir)?;
        if model.vocab_size() != 51864 {
            return Err(Error::Config {
                source_name: dir.display().to_string(),
                message: format!(
                    "vocabulary of {} ids: only English-only Whisper models (51864) are supported so far",
                    model.vocab_size()
                ),
            });
        }
        let tokenizer = mosaic_data::text::TextTokenizer::from_file(
            &dir.join("tokenizer.json"),
            mosaic_data::text::TextConfig {
                max_length: None,
                padding: mosaic_data::text::Padding::None,
                add_special_tokens: false,
            },
        )?;
        let features = mosaic_data::audio::WhisperFeatureExtractor::new(
            mosaic_data::audio::WhisperFeatureConfig {
                n_mels: model.n_mels(),
                ..Default::default()
            },
        )?;
        let from_config = DecodeOptions::from_config(dir)?;
        let options = TranscribeOptions {
            decode: DecodeOptions {
                suppress: from_config.suppress,
                suppress_begin: from_config.suppress_begin,
                ..Default::default()
            },
            ..Default::default()
        };
        Ok(WhisperTranscriber {
            model,
            tokenizer,
            features,
            options,
            tokens: WhisperTokens::ENGLISH,
            vad: None,
        })
    }

    /// Loads the Silero VAD used when `options.vad` is set: the
    /// `silero-vad` asset folder or a weight file
    /// ([`SileroVad::load`]).
    pub fn load_vad(&mut self, path: &Path) -> Result<()> {
        self.vad = Some(Mutex::new(SileroVad::load(path)?));
        Ok(())
    }

    /// The model.
    pub fn model(&self) -> &WhisperModel {
        &self.model
    }

    /// Special ids.
    pub fn tokens(&self) -> WhisperTokens {
        self.tokens
    }

    /// Transcribes 16 kHz mono audio of any length with `self.options`;
    /// see [`transcribe_full`](Self::transcribe_full).
    pub fn transcribe(&self, audio_16k: &[f32]) -> Result<Vec<TextSegment>> {
        Ok(self.transcribe_full(audio_16k)?.segments)
    }

    /// Like [`transcribe`](Self::transcribe), returning every window
    /// (skipped ones included).
    pub fn transcribe_windows(&self, audio_16k: &[f32]) -> Result<Vec<WindowResult>> {
        Ok(self.transcribe_full(audio_16k)?.windows)
    }

    /// Transcribes 16 kHz mono audio: with `options.vad` set, through
    /// [`speech_chunks`](Self::speech_chunks) and
    /// [`transcribe_chunks`](Self::transcribe_chunks), otherwise the whole
    /// recording.
    pub fn transcribe_full(&self, audio_16k: &[f32]) -> Result<Transcript> {
        if audio_16k.is_empty() {
            return Err(Error::InvalidInput {
                what: "audio".into(),
                message: "no samples".into(),
            });
        }
        if let Some(v) = self.options.vad {
            let chunks = self.speech_chunks(audio_16k, &v)?;
            return self.transcribe_chunks(audio_16k, &chunks);
        }
        let windows = self.transcribe_audio(audio_16k)?;
        let segments = windows.iter().flat_map(|w| w.segments.clone()).collect();
        let d = audio_16k.len() as f64 / 16000.0;
        Ok(Transcript {
            segments,
            windows,
            speech_chunks: None,
            duration: d,
            duration_after_vad: d,
        })
    }

    /// faster-whisper's `get_speech_timestamps`: Silero probabilities of
    /// 512-sample windows of the audio zero-padded by `512 − len % 512`
    /// samples (a whole window when the length is a multiple), with the
    /// last 64 padded samples zeroed as faster-whisper's batching does,
    /// then [`speech_segments`] over the original length.
    pub fn speech_chunks(&self, audio_16k: &[f32], vad: &VadFilter) -> Result<Vec<SpeechSegment>> {
        let model = self.vad.as_ref().ok_or_else(|| Error::InvalidInput {
            what: "VAD".into(),
            message: "no Silero VAD loaded (WhisperTranscriber::load_vad)".into(),
        })?;
        let mut padded = audio_16k.to_vec();
        padded.resize(audio_16k.len() + WINDOW - audio_16k.len() % WINDOW, 0.0);
        let n = padded.len();
        padded[n - 64..].fill(0.0);
        let probs = model
            .lock()
            .map_err(|_| Error::InvalidInput {
                what: "VAD".into(),
                message: "the VAD model was poisoned by a panic".into(),
            })?
            .probabilities(&padded)?;
        Ok(speech_segments(&probs, audio_16k.len(), &vad.options))
    }

    /// Transcribes only `chunks` of the audio (samples `[start, end)`),
    /// concatenated, and maps segment times back to the original timeline
    /// as faster-whisper's `restore_speech_timestamps` does (start: the
    /// chunk the time falls in; end: the chunk it ends exactly, if any;
    /// rounded to 0.01 s). No chunks: no segments.
    pub fn transcribe_chunks(
        &self,
        audio_16k: &[f32],
        chunks: &[SpeechSegment],
    ) -> Result<Transcript> {
        let mut speech = Vec::new();
        for c in chunks {
            if c.start > c.end || c.end > audio_16k.len() {
                return Err(Error::InvalidInput {
                    what: "speech chunk".into(),
                    message: format!(
                        "[{}, {}) outside the {} samples",
                        c.start,
                        c.end,
                        audio_16k.len()
                    ),
                });
            }
            speech.extend_from_slice(&audio_16k[c.start..c.end]);
        }
        let duration = audio_16k.len() as f64 / 16000.0;
        if speech.is_empty() {
            return Ok(Transcript {
                segments: Vec::new(),
                windows: Vec::new(),
                speech_chunks: Some(chunks.to_vec()),
                duration,
                duration_after_vad: 0.0,
            });
        }
        let windows = self.transcribe_audio(&speech)?;
        let map = SpeechTimestampsMap::new(chunks, 16000);
        let segments = windows
            .iter()
            .flat_map(|w| w.segments.iter().cloned())
            .map(|mut s| {
                s.start = map.original_time(s.start, false);
                s.end = map.original_time(s.end, true);
                s
            })
            .collect();
        Ok(Transcript {
            segments,
            windows,
            speech_chunks: Some(chunks.to_vec()),
            duration,
            duration_after_vad: speech.len() as f64 / 16000.0,
        })
    }

    /// The window loop of faster-whisper's `generate_segments`.
    fn transcribe_audio(&self, audio_16k: &[f32]) -> Result<Vec<WindowResult>> {
        let o = &self.options;
        let n_mels = self.model.n_mels();
        let (feats, frames) = self.features.extract_full(audio_16k)?;
        let content = frames.saturating_sub(1);
        let t = self.tokens;
        let mut rng = SampleRng::new(o.seed);
        let mut out = Vec::new();
        let mut all_tokens: Vec<u32> = Vec::new();
        let mut prompt_reset_since = 0usize;
        let max_prev = self.model.max_target_positions() / 2 - 1;
        let mut seek = 0usize; // in frames (10 ms)
        while seek < content {
            let size = (content - seek).min(N_FRAMES);
            let mut window = vec![0f32; n_mels * N_FRAMES];
            for m in 0..n_mels {
                window[m * N_FRAMES..m * N_FRAMES + size]
                    .copy_from_slice(&feats[m * frames + seek..m * frames + seek + size]);
            }
            let mel = Tensor::from_vec(window, (1, n_mels, N_FRAMES), &Device::Cpu)?;
            let enc = self.model.encode(&mel)?;
            let previous = &all_tokens[prompt_reset_since..];
            let mut prompt = Vec::new();
            if !previous.is_empty() {
                prompt.push(t.sot_prev);
                prompt.extend_from_slice(&previous[previous.len().saturating_sub(max_prev)..]);
            }
            prompt.push(t.sot);
            if !o.decode.timestamps {
                prompt.push(t.no_timestamps);
            }
            let (attempt, temperature) = generate_with_fallback(&o.fallback, |temp| {
                let g: Generated = self
                    .model
                    .generate(&enc, &prompt, t, &o.decode, temp, &mut rng)?;
                let text = self.text_of(&g.ids)?;
                let cr = compression_ratio(text.trim());
                Ok((g, cr))
            })?;
            let g = attempt.generated;
            let mut win = WindowResult {
                seek,
                segment_size: size,
                prompt,
                tokens: g.ids.clone(),
                temperature,
                avg_logprob: g.avg_logprob,
                no_speech_prob: g.no_speech_prob,
                compression_ratio: attempt.compression_ratio,
                skipped_no_speech: false,
                segments: Vec::new(),
            };
            if let Some(ns) = o.fallback.no_speech_threshold {
                let mut skip = g.no_speech_prob > ns;
                if let Some(lp) = o.fallback.log_prob_threshold
                    && g.avg_logprob > lp
                {
                    skip = false;
                }
                if skip {
                    seek += size;
                    win.skipped_no_speech = true;
                    out.push(win);
                    continue;
                }
            }
            let (segs, next) = split_segments(&g.ids, t, seek, size);
            for s in segs {
                let text = self.text_of(&s.tokens)?;
                if s.start == s.end || text.trim().is_empty() {
                    continue;
                }
                all_tokens.extend_from_slice(&s.tokens);
                win.segments.push(TextSegment {
                    start: s.start,
                    end: s.end,
                    text,
                    tokens: s.tokens,
                    temperature,
                    avg_logprob: g.avg_logprob,
                    compression_ratio: attempt.compression_ratio,
                    no_speech_prob: g.no_speech_prob,
                });
            }
            if !o.condition_on_previous_text || temperature > o.prompt_reset_on_temperature {
                prompt_reset_since = all_tokens.len();
            }
            // Never stall (faster-whisper cannot produce a zero advance with
            // the timestamp rules; this only guards against a broken model).
            seek = next.max(seek + 1);
            out.push(win);
        }
        Ok(out)
    }

    /// Text of ids below `<|endoftext|>` (timestamps and specials dropped).
    fn text_of(&self, ids: &[u32]) -> Result<String> {
        let text: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|&x| x < self.tokens.eot)
            .collect();
        Ok(self.tokenizer.decode(&text, true)?)
    }
}

/// faster-whisper's `SpeechTimestampsMap` (`time_precision = 2`).
#[derive(Debug, Clone)]
pub struct SpeechTimestampsMap {
    sr: f64,
    chunk_end_sample: Vec<i64>,
    total_silence_before: Vec<f64>,
}

impl SpeechTimestampsMap {
    /// The map for speech `chunks` (samples) at `sampling_rate`.
    pub fn new(chunks: &[SpeechSegment], sampling_rate: usize) -> Self {
        let mut previous_end = 0i64;
        let mut silent = 0i64;
        let mut chunk_end_sample = Vec::new();
        let mut total_silence_before = Vec::new();
        for c in chunks {
            silent += c.start as i64 - previous_end;
            previous_end = c.end as i64;
            chunk_end_sample.push(c.end as i64 - silent);
            total_silence_before.push(silent as f64 / sampling_rate as f64);
        }
        SpeechTimestampsMap {
            sr: sampling_rate as f64,
            chunk_end_sample,
            total_silence_before,
        }
    }

    /// The chunk a time (seconds of concatenated speech) belongs to.
    pub fn chunk_index(&self, time: f64, is_end: bool) -> usize {
        let sample = (time * self.sr) as i64;
        if is_end && let Some(i) = self.chunk_end_sample.iter().position(|&e| e == sample) {
            return i;
        }
        let bisect = self.chunk_end_sample.partition_point(|&e| e <= sample);
        bisect.min(self.chunk_end_sample.len().saturating_sub(1))
    }

    /// The time on the original timeline, rounded to 0.01 s like
    /// Python's `round(x, 2)`.
    pub fn original_time(&self, time: f64, is_end: bool) -> f64 {
        if self.chunk_end_sample.is_empty() {
            return time;
        }
        let i = self.chunk_index(time, is_end);
        round2(self.total_silence_before[i] + time)
    }
}

/// Python's `round(x, 2)`: the correctly rounded decimal (ties to even on
/// the exact binary value), which Rust's formatting also produces.
fn round2(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: WhisperTokens = WhisperTokens::ENGLISH;

    fn ts(s: f64) -> u32 {
        T.timestamp_begin + (s / 0.02).round() as u32
    }

    #[test]
    fn split_follows_faster_whisper() {
        // <|0.00|> a <|1.00|><|1.00|> b <|2.00|>: single ending → two segments, seek past the window.
        let seq = [ts(0.0), 10, ts(1.0), ts(1.0), 11, ts(2.0)];
        let (s, next) = split_segments(&seq, T, 100, 500);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].start, s[0].end), (1.0, 2.0));
        assert_eq!((s[1].start, s[1].end), (2.0, 3.0));
        assert_eq!(s[1].tokens, vec![ts(1.0), 11, ts(2.0)]);
        assert_eq!(next, 600);
        // Unfinished tail after the last pair is dropped; seek to that pair.
        let seq = [ts(0.0), 10, ts(1.0), ts(1.0), 11];
        let (s, next) = split_segments(&seq, T, 0, 3000);
        assert_eq!(s.len(), 1);
        assert_eq!(next, 100);
        // No pair: one segment from the window start to the last timestamp.
        let seq = [ts(0.4), 10, ts(2.0)];
        let (s, next) = split_segments(&seq, T, 0, 250);
        assert_eq!((s[0].start, s[0].end, next), (0.0, 2.0, 250));
        // No timestamp (or only <|0.00|>): the whole window.
        let (s, _) = split_segments(&[10, 11], T, 0, 250);
        assert_eq!(s[0].end, 2.5);
    }

    #[test]
    fn timestamps_map_back_across_removed_silence() {
        // Speech at 1.0–2.0 s and 5.0–6.5 s of the original audio.
        let chunks = [
            SpeechSegment {
                start: 16000,
                end: 32000,
            },
            SpeechSegment {
                start: 80000,
                end: 104000,
            },
        ];
        let m = SpeechTimestampsMap::new(&chunks, 16000);
        // 0.5 s into the speech → 1.5 s; 1.2 s → second chunk (4 s of silence removed in total).
        assert_eq!(m.original_time(0.5, false), 1.5);
        assert_eq!(m.original_time(1.2, false), 5.2);
        // The end of the first chunk maps to its end, not to the next chunk's start.
        assert_eq!(m.original_time(1.0, true), 2.0);
        assert_eq!(m.original_time(1.0, false), 5.0);
        // Past the end: the last chunk.
        assert_eq!(m.original_time(9.0, false), 13.0);
        assert_eq!(round2(0.125), 0.12);
        assert_eq!(round2(0.375), 0.38);
    }
}
