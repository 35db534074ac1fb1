//! Audio: decoding, downmixing, resampling, Whisper log-mel and generic
//! mel/MFCC features, framing, and voice-activity segmentation.

pub mod decode;
pub mod features;
pub mod resample;
pub mod vad;

pub use decode::{Audio, AudioLimits, decode_audio, load_audio};
pub use features::{
    MelConfig, WhisperFeatureConfig, WhisperFeatureExtractor, mel_spectrogram, mfcc,
};
pub use resample::{Resampler, resample};
