//! Spectral features: framing, STFT, mel filter banks, Whisper log-mel
//! (matching `transformers.WhisperFeatureExtractor`), librosa-style mel
//! spectrograms and MFCCs.

use std::sync::Arc;

use crate::error::{Error, Result};

/// Window functions for the STFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Periodic Hann (numpy/scipy `fftbins=True`, torch `periodic=True`).
    Hann,
    /// No window.
    Rectangular,
}

/// How the signal is padded when frames are centred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// Mirror without repeating the edge (`numpy.pad(mode="reflect")`).
    Reflect,
    /// Zeros (`librosa` ≥ 0.10 default).
    Constant,
}

/// Short-time Fourier transform settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StftConfig {
    /// FFT size (= frame length).
    pub n_fft: usize,
    /// Hop between frames.
    pub hop: usize,
    /// Window.
    pub window: Window,
    /// Centre frames on their sample by padding `n_fft / 2` on each side.
    pub center: bool,
    /// Padding mode when centring.
    pub pad_mode: PadMode,
}

/// The periodic window of length `n` in f64.
pub fn window(kind: Window, n: usize) -> Vec<f64> {
    match kind {
        Window::Rectangular => vec![1.0; n],
        Window::Hann => (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect(),
    }
}

/// Splits a signal into frames of `frame_len` every `hop` samples (no
/// padding; a trailing partial frame is dropped).
pub fn frame(signal: &[f32], frame_len: usize, hop: usize) -> Result<Vec<&[f32]>> {
    if frame_len == 0 || hop == 0 {
        return Err(Error::invalid(
            "framing",
            "frame length and hop must be positive",
        ));
    }
    if signal.len() < frame_len {
        return Ok(Vec::new());
    }
    Ok((0..=(signal.len() - frame_len) / hop)
        .map(|i| &signal[i * hop..i * hop + frame_len])
        .collect())
}

fn pad_signal(x: &[f64], pad: usize, mode: PadMode) -> Result<Vec<f64>> {
    let n = x.len();
    let mut out = Vec::with_capacity(n + 2 * pad);
    match mode {
        PadMode::Constant => {
            out.resize(pad, 0.0);
            out.extend_from_slice(x);
            out.resize(n + 2 * pad, 0.0);
        }
        PadMode::Reflect => {
            if n < 2 && pad > 0 {
                return Err(Error::invalid(
                    "audio",
                    format!("{n} samples is too short to reflect-pad by {pad}"),
                ));
            }
            // numpy's reflect repeats the reflection when pad >= n.
            let reflect = |i: isize| -> f64 {
                let period = 2 * (n as isize - 1);
                let mut j = i.rem_euclid(period);
                if j >= n as isize {
                    j = period - j;
                }
                x[j as usize]
            };
            for i in -(pad as isize)..(n + pad) as isize {
                out.push(reflect(i));
            }
        }
    }
    Ok(out)
}

/// A reusable short-time Fourier transform (real-input FFT).
pub struct Stft {
    config: StftConfig,
    window: Vec<f64>,
    fft: Arc<dyn realfft::RealToComplex<f64>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("config", &self.config)
            .finish()
    }
}

impl Stft {
    /// Plans the FFT.
    pub fn new(config: StftConfig) -> Result<Self> {
        if config.n_fft < 2 || config.hop == 0 {
            return Err(Error::invalid(
                "STFT",
                format!(
                    "n_fft {} / hop {} must be ≥ 2 / ≥ 1",
                    config.n_fft, config.hop
                ),
            ));
        }
        let fft = realfft::RealFftPlanner::<f64>::new().plan_fft_forward(config.n_fft);
        Ok(Stft {
            window: window(config.window, config.n_fft),
            config,
            fft,
        })
    }

    /// Number of frequency bins (`n_fft / 2 + 1`).
    pub fn n_freqs(&self) -> usize {
        self.config.n_fft / 2 + 1
    }

    /// Calls `f(frame_index, power)` for every frame, with `power[k] =
    /// |X_k|^power`. With `round_to_f32` each bin is rounded to complex64
    /// first (numpy stores `rfft` output in a complex64 array in
    /// `transformers.audio_utils.spectrogram` and librosa's `stft`).
    pub fn for_each_frame(
        &self,
        signal: &[f32],
        power: f64,
        round_to_f32: bool,
        mut f: impl FnMut(usize, &[f64]),
    ) -> Result<usize> {
        let n_fft = self.config.n_fft;
        let x: Vec<f64> = signal.iter().map(|&v| v as f64).collect();
        let x = if self.config.center {
            pad_signal(&x, n_fft / 2, self.config.pad_mode)?
        } else {
            x
        };
        if x.len() < n_fft {
            return Err(Error::invalid(
                "audio",
                format!(
                    "{} samples is shorter than one {n_fft}-sample frame",
                    signal.len()
                ),
            ));
        }
        let n_frames = 1 + (x.len() - n_fft) / self.config.hop;
        let mut input = self.fft.make_input_vec();
        let mut output = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut pow = vec![0f64; self.n_freqs()];
        for fr in 0..n_frames {
            let s = &x[fr * self.config.hop..fr * self.config.hop + n_fft];
            for ((b, &v), &w) in input.iter_mut().zip(s).zip(&self.window) {
                *b = v * w;
            }
            self.fft
                .process_with_scratch(&mut input, &mut output, &mut scratch)
                .map_err(|e| Error::invalid("STFT", e.to_string()))?;
            for (p, c) in pow.iter_mut().zip(&output) {
                let (re, im) = if round_to_f32 {
                    (c.re as f32 as f64, c.im as f32 as f64)
                } else {
                    (c.re, c.im)
                };
                let mag2 = re * re + im * im;
                *p = if power == 2.0 {
                    mag2
                } else if power == 1.0 {
                    mag2.sqrt()
                } else {
                    mag2.sqrt().powf(power)
                };
            }
            f(fr, &pow);
        }
        Ok(n_frames)
    }

    /// The whole spectrogram `[n_freq][n_frames]` of |X|^`power` in f64.
    pub fn power(&self, signal: &[f32], power: f64, round_to_f32: bool) -> Result<Vec<Vec<f64>>> {
        let mut frames: Vec<Vec<f64>> = Vec::new();
        self.for_each_frame(signal, power, round_to_f32, |_, p| frames.push(p.to_vec()))?;
        Ok((0..self.n_freqs())
            .map(|k| frames.iter().map(|fr| fr[k]).collect())
            .collect())
    }
}

/// A filter bank stored sparsely: per filter, the first bin and its weights.
#[derive(Debug, Clone)]
struct SparseBank {
    rows: Vec<(usize, Vec<f64>)>,
}

impl SparseBank {
    fn new(bank: &[Vec<f64>]) -> Self {
        SparseBank {
            rows: bank
                .iter()
                .map(|row| {
                    let lo = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                    let hi = row
                        .iter()
                        .rposition(|&w| w != 0.0)
                        .map(|i| i + 1)
                        .unwrap_or(lo);
                    (lo, row[lo..hi].to_vec())
                })
                .collect(),
        }
    }

    /// `out[m] = Σ_k bank[m][k] · power[k]`, bins in ascending order.
    fn apply(&self, power: &[f64], out: &mut [f64]) {
        for ((lo, w), o) in self.rows.iter().zip(out.iter_mut()) {
            *o = w.iter().zip(&power[*lo..]).map(|(a, b)| a * b).sum();
        }
    }
}

/// Mel scale formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MelScale {
    /// Slaney's Auditory Toolbox scale (linear below 1 kHz, log above).
    Slaney,
    /// HTK: `2595 log10(1 + f / 700)`.
    Htk,
}

/// Hz to mel.
pub fn hz_to_mel(f: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + f / 700.0).log10(),
        MelScale::Slaney => {
            let f_sp = 200.0 / 3.0;
            let min_log_hz = 1000.0;
            let min_log_mel = min_log_hz / f_sp;
            let logstep = (6.4f64).ln() / 27.0;
            if f >= min_log_hz {
                min_log_mel + (f / min_log_hz).ln() / logstep
            } else {
                f / f_sp
            }
        }
    }
}

/// Mel to Hz.
pub fn mel_to_hz(m: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(m / 2595.0) - 1.0),
        MelScale::Slaney => {
            let f_sp = 200.0 / 3.0;
            let min_log_hz = 1000.0;
            let min_log_mel = min_log_hz / f_sp;
            let logstep = (6.4f64).ln() / 27.0;
            if m >= min_log_mel {
                min_log_hz * (logstep * (m - min_log_mel)).exp()
            } else {
                f_sp * m
            }
        }
    }
}

/// A triangular mel filter bank `[n_mels][n_freqs]` (librosa /
/// transformers construction, optional Slaney area normalisation).
pub fn mel_filter_bank(
    sample_rate: u32,
    n_fft: usize,
    n_mels: usize,
    f_min: f64,
    f_max: f64,
    scale: MelScale,
    slaney_norm: bool,
) -> Result<Vec<Vec<f64>>> {
    if n_mels == 0 || f_max <= f_min || f_max > sample_rate as f64 / 2.0 + 1e-9 {
        return Err(Error::invalid(
            "mel filter bank",
            format!("{n_mels} mels over {f_min}–{f_max} Hz at {sample_rate} Hz"),
        ));
    }
    let n_freqs = n_fft / 2 + 1;
    let (m_lo, m_hi) = (hz_to_mel(f_min, scale), hz_to_mel(f_max, scale));
    let pts: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(m_lo + (m_hi - m_lo) * i as f64 / (n_mels + 1) as f64, scale))
        .collect();
    // numpy.linspace(0, sr // 2, n_freqs) for transformers; librosa's
    // rfftfreq gives the same values.
    // librosa's rfftfreq; transformers' linspace(0, sr // 2) is the same
    // for the even rates it is used with.
    let nyq = sample_rate as f64 / 2.0;
    let freqs: Vec<f64> = (0..n_freqs)
        .map(|k| {
            if k == n_freqs - 1 {
                nyq
            } else {
                k as f64 * nyq / (n_freqs - 1) as f64
            }
        })
        .collect();
    let mut bank = vec![vec![0f64; n_freqs]; n_mels];
    for (m, row) in bank.iter_mut().enumerate() {
        let lower_d = pts[m + 1] - pts[m];
        let upper_d = pts[m + 2] - pts[m + 1];
        for (k, w) in row.iter_mut().enumerate() {
            let down = -(pts[m] - freqs[k]) / lower_d;
            let up = (pts[m + 2] - freqs[k]) / upper_d;
            *w = down.min(up).max(0.0);
        }
        if slaney_norm {
            let enorm = 2.0 / (pts[m + 2] - pts[m]);
            row.iter_mut().for_each(|w| *w *= enorm);
        }
    }
    Ok(bank)
}

/// `WhisperFeatureExtractor` settings (defaults: 80 mels, 16 kHz, 30 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WhisperFeatureConfig {
    /// Mel bins (80 for most Whisper models, 128 for large-v3).
    pub n_mels: usize,
    /// Expected sample rate.
    pub sample_rate: u32,
    /// FFT size.
    pub n_fft: usize,
    /// Hop.
    pub hop: usize,
    /// Window length in seconds; audio is zero-padded or trimmed to it.
    pub chunk_seconds: usize,
}

impl Default for WhisperFeatureConfig {
    fn default() -> Self {
        WhisperFeatureConfig {
            n_mels: 80,
            sample_rate: 16_000,
            n_fft: 400,
            hop: 160,
            chunk_seconds: 30,
        }
    }
}

/// Whisper's log-mel front end.
#[derive(Debug)]
pub struct WhisperFeatureExtractor {
    config: WhisperFeatureConfig,
    stft: Stft,
    sparse: SparseBank,
}

impl WhisperFeatureExtractor {
    /// Builds the extractor (mel filters: Slaney scale and norm, 0–8 kHz,
    /// so the rate must be at least 16 kHz).
    pub fn new(config: WhisperFeatureConfig) -> Result<Self> {
        let stft = Stft::new(StftConfig {
            n_fft: config.n_fft,
            hop: config.hop,
            window: Window::Hann,
            center: true,
            pad_mode: PadMode::Reflect,
        })?;
        let mel = mel_filter_bank(
            config.sample_rate,
            config.n_fft,
            config.n_mels,
            0.0,
            // transformers fixes the top at 8 kHz whatever the rate.
            8000.0,
            MelScale::Slaney,
            true,
        )?;
        Ok(WhisperFeatureExtractor {
            config,
            stft,
            sparse: SparseBank::new(&mel),
        })
    }

    /// Reads `preprocessor_config.json` keys `feature_size`,
    /// `sampling_rate`, `n_fft`, `hop_length`, `chunk_length`.
    pub fn from_config_value(v: &serde_json::Value, source: &str) -> Result<Self> {
        let d = WhisperFeatureConfig::default();
        let get = |k: &str, def: usize| -> Result<usize> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(def),
                Some(x) => x
                    .as_u64()
                    .filter(|&n| n > 0)
                    .map(|n| n as usize)
                    .ok_or_else(|| {
                        Error::config(source, format!("key `{k}`: expected a positive integer"))
                    }),
            }
        };
        Self::new(WhisperFeatureConfig {
            n_mels: get("feature_size", d.n_mels)?,
            sample_rate: get("sampling_rate", d.sample_rate as usize)? as u32,
            n_fft: get("n_fft", d.n_fft)?,
            hop: get("hop_length", d.hop)?,
            chunk_seconds: get("chunk_length", d.chunk_seconds)?,
        })
    }

    /// The settings.
    pub fn config(&self) -> &WhisperFeatureConfig {
        &self.config
    }

    /// Number of frames per window (3000 for 30 s).
    pub fn n_frames(&self) -> usize {
        self.config.chunk_seconds * self.config.sample_rate as usize / self.config.hop
    }

    /// Log-mel features of a whole recording the way faster-whisper computes
    /// them: 160 zero samples appended, no padding to 30 s, the last frame
    /// dropped, the dynamic-range clamp over the whole recording. Returns
    /// `(features [n_mels][frames] row-major, frames)`; faster-whisper treats
    /// `frames - 1` of them as content and pads windows with 0.0.
    pub fn extract_full(&self, audio: &[f32]) -> Result<(Vec<f32>, usize)> {
        let mut x = audio.to_vec();
        x.resize(audio.len() + self.config.hop, 0.0);
        let n_mels = self.config.n_mels;
        let mut frames_out: Vec<Vec<f64>> = Vec::new();
        let mut mel = vec![0f64; n_mels];
        let total = self.stft.for_each_frame(&x, 2.0, true, |_, p| {
            self.sparse.apply(p, &mut mel);
            frames_out.push(mel.clone());
        })?;
        let n_frames = total - 1;
        let mut logs = vec![0f32; n_mels * n_frames];
        for (f, col) in frames_out.iter().take(n_frames).enumerate() {
            for (m, &v) in col.iter().enumerate() {
                logs[m * n_frames + f] = v.max(1e-10).log10() as f32;
            }
        }
        let max = logs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Ok((
            logs.into_iter()
                .map(|v| (v.max(max - 8.0) + 4.0) / 4.0)
                .collect(),
            n_frames,
        ))
    }

    /// Log-mel features `[n_mels][n_frames]` (row-major, flattened) of
    /// mono audio at the model's rate, padded with zeros or trimmed to the
    /// window.
    pub fn extract(&self, audio: &[f32]) -> Result<Vec<f32>> {
        let n_samples = self.config.chunk_seconds * self.config.sample_rate as usize;
        let mut x = audio[..audio.len().min(n_samples)].to_vec();
        x.resize(n_samples, 0.0);
        let n_mels = self.config.n_mels;
        let n_frames = self.n_frames();
        let mut out = vec![0f64; n_mels * n_frames];
        let mut mel = vec![0f64; n_mels];
        // Frame-major: each frame's power goes straight through the sparse
        // filter bank; the last frame is dropped, as transformers does.
        self.stft.for_each_frame(&x, 2.0, true, |fr, p| {
            if fr < n_frames {
                self.sparse.apply(p, &mut mel);
                for (m, &v) in mel.iter().enumerate() {
                    out[m * n_frames + fr] = v;
                }
            }
        })?;
        // log10 in f64 then float32, like numpy's spectrogram(); the
        // dynamic-range clamp and scaling are in float32.
        let logs: Vec<f32> = out.iter().map(|&v| v.max(1e-10).log10() as f32).collect();
        let max = logs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Ok(logs
            .into_iter()
            .map(|v| (v.max(max - 8.0) + 4.0) / 4.0)
            .collect())
    }
}

/// librosa-style mel spectrogram settings (defaults are librosa's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MelConfig {
    /// Sample rate.
    pub sample_rate: u32,
    /// FFT size (2048).
    pub n_fft: usize,
    /// Hop (512).
    pub hop: usize,
    /// Mel bins (128).
    pub n_mels: usize,
    /// Lowest frequency (0).
    pub f_min: f64,
    /// Highest frequency (`None` = Nyquist).
    pub f_max: Option<f64>,
    /// Exponent of the magnitude (2 = power).
    pub power: f64,
    /// Centre frames (true) with this padding (constant).
    pub center: bool,
    /// Padding mode.
    pub pad_mode: PadMode,
    /// Mel formula (Slaney).
    pub scale: MelScale,
    /// Slaney area normalisation (true).
    pub slaney_norm: bool,
}

impl MelConfig {
    /// librosa's defaults at `sample_rate`.
    pub fn librosa(sample_rate: u32) -> Self {
        MelConfig {
            sample_rate,
            n_fft: 2048,
            hop: 512,
            n_mels: 128,
            f_min: 0.0,
            f_max: None,
            power: 2.0,
            center: true,
            pad_mode: PadMode::Constant,
            scale: MelScale::Slaney,
            slaney_norm: true,
        }
    }
}

/// A mel spectrogram `[n_mels][n_frames]` in f64.
pub fn mel_spectrogram(signal: &[f32], cfg: &MelConfig) -> Result<Vec<Vec<f64>>> {
    let stft = Stft::new(StftConfig {
        n_fft: cfg.n_fft,
        hop: cfg.hop,
        window: Window::Hann,
        center: cfg.center,
        pad_mode: cfg.pad_mode,
    })?;
    let bank = SparseBank::new(&mel_filter_bank(
        cfg.sample_rate,
        cfg.n_fft,
        cfg.n_mels,
        cfg.f_min,
        cfg.f_max.unwrap_or(cfg.sample_rate as f64 / 2.0),
        cfg.scale,
        cfg.slaney_norm,
    )?);
    let mut frames: Vec<Vec<f64>> = Vec::new();
    let mut mel = vec![0f64; cfg.n_mels];
    stft.for_each_frame(signal, cfg.power, true, |_, p| {
        bank.apply(p, &mut mel);
        frames.push(mel.clone());
    })?;
    Ok((0..cfg.n_mels)
        .map(|m| frames.iter().map(|f| f[m]).collect())
        .collect())
}

/// `librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=80)`.
pub fn power_to_db(spec: &[Vec<f64>], top_db: Option<f64>) -> Vec<Vec<f64>> {
    let mut db: Vec<Vec<f64>> = spec
        .iter()
        .map(|r| r.iter().map(|&v| 10.0 * v.max(1e-10).log10()).collect())
        .collect();
    if let Some(top) = top_db {
        let max = db
            .iter()
            .flatten()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        db.iter_mut().flatten().for_each(|v| *v = v.max(max - top));
    }
    db
}

/// MFCCs `[n_mfcc][n_frames]`: DCT-II (orthonormal) of the dB mel
/// spectrogram, like `librosa.feature.mfcc`.
pub fn mfcc(signal: &[f32], cfg: &MelConfig, n_mfcc: usize) -> Result<Vec<Vec<f64>>> {
    let db = power_to_db(&mel_spectrogram(signal, cfg)?, Some(80.0));
    let n = db.len();
    if n_mfcc == 0 || n_mfcc > n {
        return Err(Error::invalid(
            "n_mfcc",
            format!("{n_mfcc} coefficients from {n} mel bins"),
        ));
    }
    let frames = db[0].len();
    let mut out = vec![vec![0f64; frames]; n_mfcc];
    for (k, row) in out.iter_mut().enumerate() {
        let norm = if k == 0 {
            (1.0 / n as f64).sqrt()
        } else {
            (2.0 / n as f64).sqrt()
        };
        for (m, drow) in db.iter().enumerate() {
            let c = (std::f64::consts::PI * k as f64 * (2 * m + 1) as f64 / (2 * n) as f64).cos()
                * norm;
            for (o, &v) in row.iter_mut().zip(drow) {
                *o += c * v;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_padding_matches_numpy() {
        let x = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(
            pad_signal(&x, 2, PadMode::Reflect).unwrap(),
            vec![3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0]
        );
        assert_eq!(
            pad_signal(&x, 1, PadMode::Constant).unwrap(),
            vec![0.0, 1.0, 2.0, 3.0, 4.0, 0.0]
        );
    }

    #[test]
    fn mel_scale_round_trips() {
        for f in [0.0, 300.0, 1000.0, 4321.0, 8000.0] {
            for s in [MelScale::Slaney, MelScale::Htk] {
                assert!((mel_to_hz(hz_to_mel(f, s), s) - f).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn whisper_shape_and_silence() {
        let fe = WhisperFeatureExtractor::new(WhisperFeatureConfig::default()).unwrap();
        let out = fe.extract(&[0.0; 1600]).unwrap();
        assert_eq!(out.len(), 80 * 3000);
        // All silence: log10(1e-10) = -10 everywhere → (-10 + 4) / 4.
        assert!(out.iter().all(|&v| (v - -1.5).abs() < 1e-6));
    }

    #[test]
    fn frames_cover_the_signal() {
        let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let f = frame(&x, 4, 3).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[2], &[6.0, 7.0, 8.0, 9.0]);
        assert!(frame(&x, 0, 1).is_err());
    }
}
