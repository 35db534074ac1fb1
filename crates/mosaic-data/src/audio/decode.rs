//! Audio decoding (WAV, FLAC, MP3, OGG/Vorbis) through symphonia, with
//! downmixing to mono.

use std::io::Cursor;
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::error::{Error, Result, read_limited};

/// Decoded audio: interleaved f32 samples in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Samples, interleaved by channel.
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: usize,
}

impl Audio {
    /// Duration in seconds.
    pub fn duration(&self) -> f64 {
        self.frames() as f64 / self.sample_rate as f64
    }

    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }

    /// Averages the channels into one (what `librosa.to_mono` does).
    pub fn to_mono(&self) -> Vec<f32> {
        if self.channels <= 1 {
            return self.samples.clone();
        }
        let c = self.channels;
        self.samples
            .chunks_exact(c)
            .map(|fr| fr.iter().map(|&v| v as f64).sum::<f64>() as f32 / c as f32)
            .collect()
    }
}

/// Limits on decoding, so that a file whose header lies cannot make us
/// allocate without bound.
#[derive(Debug, Clone, Copy)]
pub struct AudioLimits {
    /// Largest encoded file in bytes.
    pub max_file_bytes: u64,
    /// Most decoded seconds accepted.
    pub max_seconds: f64,
    /// Most decoded samples (all channels) accepted, whatever the rate: a
    /// header may declare an absurd rate or channel count.
    pub max_samples: usize,
}

impl Default for AudioLimits {
    fn default() -> Self {
        AudioLimits {
            max_file_bytes: 1 << 30,
            max_seconds: 6.0 * 3600.0,
            max_samples: 1 << 29,
        }
    }
}

/// Decodes an audio file.
pub fn load_audio(path: &Path, limits: &AudioLimits) -> Result<Audio> {
    let bytes = read_limited(path, limits.max_file_bytes)?;
    let ext = path.extension().and_then(|e| e.to_str());
    decode_audio(bytes, &path.display().to_string(), ext, limits)
}

/// Decodes encoded audio bytes; `name` identifies the input in errors,
/// `extension` (if known) helps format detection.
pub fn decode_audio(
    bytes: Vec<u8>,
    name: &str,
    extension: Option<&str>,
    limits: &AudioLimits,
) -> Result<Audio> {
    crate::error::guard(name, "audio", || {
        decode_audio_inner(bytes, name, extension, limits)
    })
}

fn decode_audio_inner(
    bytes: Vec<u8>,
    name: &str,
    extension: Option<&str>,
    limits: &AudioLimits,
) -> Result<Audio> {
    let err = |m: String| Error::decode(name, "audio", m);
    if bytes.is_empty() {
        return Err(err("the file is empty".into()));
    }
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    if let Some(e) = extension {
        hint.with_extension(e);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| err(format!("unrecognised or corrupt container: {e}")))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| err("no audio track".into()))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let sample_rate = params
        .sample_rate
        .filter(|&r| r > 0)
        .ok_or_else(|| err("the stream has no sample rate".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| err(format!("unsupported codec: {e}")))?;
    let max_samples = (limits.max_seconds * sample_rate as f64) as usize;
    let mut samples: Vec<f32> = Vec::new();
    let mut channels = params.channels.map(|c| c.count()).unwrap_or(0);
    let mut buf: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(err(format!("reading packet: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A corrupt frame in a lossy stream: skip it, as ffmpeg does.
            Err(SymError::DecodeError(m)) => {
                tracing::debug!("{name}: skipping undecodable packet: {m}");
                continue;
            }
            Err(e) => return Err(err(format!("decoding: {e}"))),
        };
        let spec = *decoded.spec();
        channels = spec.channels.count();
        let cap = decoded.capacity() as u64;
        let b = buf.get_or_insert_with(|| SampleBuffer::new(cap, spec));
        if (b.capacity() as u64) < cap * channels as u64 {
            *b = SampleBuffer::new(cap, spec);
        }
        b.copy_interleaved_ref(decoded);
        if samples.len() + b.samples().len() > limits.max_samples {
            return Err(err(format!(
                "more than {} decoded samples",
                limits.max_samples
            )));
        }
        if samples.len() + b.samples().len() > max_samples.saturating_mul(channels.max(1)) {
            return Err(err(format!(
                "longer than the limit of {} s",
                limits.max_seconds
            )));
        }
        samples.extend_from_slice(b.samples());
    }
    if channels == 0 {
        return Err(err("the stream declares no channels".into()));
    }
    if samples.is_empty() {
        return Err(err("no audio samples decoded".into()));
    }
    Ok(Audio {
        samples,
        sample_rate,
        channels,
    })
}

/// Reads headerless little-endian 16-bit PCM (e.g. pocketsphinx `.raw`).
pub fn decode_raw_pcm16(bytes: &[u8], sample_rate: u32, channels: usize) -> Audio {
    let samples = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect();
    Audio {
        samples,
        sample_rate,
        channels,
    }
}

/// Writes 16-bit PCM WAV (mono or interleaved), atomically.
pub fn write_wav_pcm16(path: &Path, audio: &Audio) -> Result<()> {
    let data_len = (audio.samples.len() * 2) as u32;
    let ch = audio.channels.max(1) as u16;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&ch.to_le_bytes());
    out.extend_from_slice(&audio.sample_rate.to_le_bytes());
    out.extend_from_slice(&(audio.sample_rate * ch as u32 * 2).to_le_bytes());
    out.extend_from_slice(&(ch * 2).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &s in &audio.samples {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    mosaic_core::atomic::write_bytes_atomic(path, &out)?;
    Ok(())
}
