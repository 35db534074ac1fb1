//! Voice-activity detection with the real Silero VAD weights (v5/v6,
//! 16 kHz), and the `get_speech_timestamps` segmentation of the
//! `silero-vad` package.
//!
//! The network is small (310k parameters, ~0.6 M multiply-adds per 32 ms
//! window), so it runs as plain f32 loops: a candle graph per 512-sample
//! window would spend more time dispatching ops than computing.
//!
//! Forward for one window of 512 samples (with the last 64 samples of the
//! previous window prepended, zeros at the start): reflect-pad 64 on the
//! right → STFT as a strided conv (258 filters of 256 taps, hop 128) →
//! magnitude of 129 bins × 4 frames → 4 conv1d+ReLU layers (k=3, pad 1,
//! strides 1,2,2,1) → LSTM cell (state carried across windows) → ReLU →
//! 1×1 conv → sigmoid.

use std::path::Path;

use crate::error::{Error, Result};

/// Samples per window at 16 kHz.
pub const WINDOW: usize = 512;
const CONTEXT: usize = 64;

struct Conv {
    w: Vec<f32>,
    b: Vec<f32>,
    out_ch: usize,
    in_ch: usize,
    k: usize,
}

impl Conv {
    /// conv1d with padding `pad` and `stride` over `[in_ch][t]`.
    fn forward(
        &self,
        x: &[f32],
        t: usize,
        stride: usize,
        pad: usize,
        relu: bool,
    ) -> (Vec<f32>, usize) {
        let t_out = (t + 2 * pad - self.k) / stride + 1;
        let mut y = vec![0f32; self.out_ch * t_out];
        for o in 0..self.out_ch {
            for to in 0..t_out {
                let mut acc = self.b[o];
                for i in 0..self.in_ch {
                    let wrow =
                        &self.w[(o * self.in_ch + i) * self.k..(o * self.in_ch + i + 1) * self.k];
                    for (kk, &w) in wrow.iter().enumerate() {
                        let ti = (to * stride + kk) as isize - pad as isize;
                        if ti >= 0 && (ti as usize) < t {
                            acc += w * x[i * t + ti as usize];
                        }
                    }
                }
                y[o * t_out + to] = if relu { acc.max(0.0) } else { acc };
            }
        }
        (y, t_out)
    }
}

/// The Silero VAD network with its recurrent state.
pub struct SileroVad {
    stft: Vec<f32>,
    convs: [Conv; 4],
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b_ih: Vec<f32>,
    b_hh: Vec<f32>,
    final_w: Vec<f32>,
    final_b: f32,
    h: Vec<f32>,
    c: Vec<f32>,
    context: Vec<f32>,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SileroVad")
    }
}

impl SileroVad {
    /// Loads the 16 kHz model from the `silero-vad` package: the asset
    /// folder or `silero_vad.jit` (the weights `get_speech_timestamps`
    /// uses), or `silero_vad_16k.safetensors`. Note that the package's
    /// safetensors file holds different weights from its TorchScript model
    /// (only the STFT basis is equal), so only the `.jit` reproduces the
    /// package's probabilities.
    pub fn load(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("silero_vad.jit")
        } else {
            path.to_path_buf()
        };
        let name = file.display().to_string();
        let tensors = mosaic_core::formats::load_tensors(&file, &candle_core::Device::Cpu)?;
        let jit = file.extension().is_none_or(|e| e != "safetensors");
        let map: std::collections::HashMap<String, candle_core::Tensor> =
            tensors.into_iter().collect();
        let get = |n: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let key = if jit {
                match n {
                    "stft_conv.weight" => "_model.stft.forward_basis_buffer".to_string(),
                    "final_conv.weight" => "_model.decoder.decoder.2.weight".to_string(),
                    "final_conv.bias" => "_model.decoder.decoder.2.bias".to_string(),
                    _ if n.starts_with("conv") => {
                        let i: usize = n[4..5].parse().unwrap_or(1);
                        format!("_model.encoder.{}.reparam_conv.{}", i - 1, &n[6..])
                    }
                    _ => format!("_model.decoder.rnn.{}", n.trim_start_matches("lstm_cell.")),
                }
            } else {
                n.to_string()
            };
            let t = map.get(&key).ok_or_else(|| {
                Error::decode(
                    &name,
                    "Silero VAD weights",
                    format!("missing tensor `{key}`"),
                )
            })?;
            if t.dims() != shape {
                return Err(Error::decode(
                    &name,
                    "Silero VAD weights",
                    format!("`{key}` is {:?}, expected {shape:?}", t.dims()),
                ));
            }
            Ok(t.to_dtype(candle_core::DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        let conv = |i: usize, o: usize, inp: usize| -> Result<Conv> {
            Ok(Conv {
                w: get(&format!("conv{i}.weight"), &[o, inp, 3])?,
                b: get(&format!("conv{i}.bias"), &[o])?,
                out_ch: o,
                in_ch: inp,
                k: 3,
            })
        };
        Ok(SileroVad {
            stft: get("stft_conv.weight", &[258, 1, 256])?,
            convs: [
                conv(1, 128, 129)?,
                conv(2, 64, 128)?,
                conv(3, 64, 64)?,
                conv(4, 128, 64)?,
            ],
            w_ih: get("lstm_cell.weight_ih", &[512, 128])?,
            w_hh: get("lstm_cell.weight_hh", &[512, 128])?,
            b_ih: get("lstm_cell.bias_ih", &[512])?,
            b_hh: get("lstm_cell.bias_hh", &[512])?,
            final_w: get("final_conv.weight", &[1, 128, 1])?,
            final_b: get("final_conv.bias", &[1])?[0],
            h: vec![0.0; 128],
            c: vec![0.0; 128],
            context: vec![0.0; CONTEXT],
        })
    }

    /// Clears the recurrent state and the context (start of a new recording).
    pub fn reset(&mut self) {
        self.h.fill(0.0);
        self.c.fill(0.0);
        self.context.fill(0.0);
    }

    /// Speech probability of the next 512-sample window (shorter input is
    /// zero-padded).
    pub fn process(&mut self, window: &[f32]) -> Result<f32> {
        if window.len() > WINDOW {
            return Err(Error::invalid(
                "VAD window",
                format!("{} samples, at most {WINDOW}", window.len()),
            ));
        }
        let mut x = Vec::with_capacity(CONTEXT + WINDOW + CONTEXT);
        x.extend_from_slice(&self.context);
        x.extend_from_slice(window);
        x.resize(CONTEXT + WINDOW, 0.0);
        self.context.copy_from_slice(&x[WINDOW..WINDOW + CONTEXT]);
        // Reflection padding of 64 on the right.
        let n = x.len();
        for i in 0..CONTEXT {
            x.push(x[n - 2 - i]);
        }
        let frames = (x.len() - 256) / 128 + 1;
        let mut mag = vec![0f32; 129 * frames];
        for f in 0..frames {
            let seg = &x[f * 128..f * 128 + 256];
            for k in 0..129 {
                let re: f32 = self.stft[k * 256..(k + 1) * 256]
                    .iter()
                    .zip(seg)
                    .map(|(a, b)| a * b)
                    .sum();
                let im: f32 = self.stft[(k + 129) * 256..(k + 130) * 256]
                    .iter()
                    .zip(seg)
                    .map(|(a, b)| a * b)
                    .sum();
                mag[k * frames + f] = (re * re + im * im).sqrt();
            }
        }
        let (y, t) = self.convs[0].forward(&mag, frames, 1, 1, true);
        let (y, t) = self.convs[1].forward(&y, t, 2, 1, true);
        let (y, t) = self.convs[2].forward(&y, t, 2, 1, true);
        let (y, t) = self.convs[3].forward(&y, t, 1, 1, true);
        if t != 1 {
            return Err(Error::invalid(
                "VAD",
                format!("encoder produced {t} frames, expected 1"),
            ));
        }
        // LSTM cell, gates in PyTorch order i, f, g, o.
        let mut gates = vec![0f32; 512];
        for (g, gate) in gates.iter_mut().enumerate() {
            let wi = &self.w_ih[g * 128..(g + 1) * 128];
            let wh = &self.w_hh[g * 128..(g + 1) * 128];
            *gate = self.b_ih[g]
                + self.b_hh[g]
                + wi.iter().zip(&y).map(|(a, b)| a * b).sum::<f32>()
                + wh.iter().zip(&self.h).map(|(a, b)| a * b).sum::<f32>();
        }
        let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
        for j in 0..128 {
            let i = sig(gates[j]);
            let f = sig(gates[128 + j]);
            let g = gates[256 + j].tanh();
            let o = sig(gates[384 + j]);
            self.c[j] = f * self.c[j] + i * g;
            self.h[j] = o * self.c[j].tanh();
        }
        let logit = self.final_b
            + self
                .final_w
                .iter()
                .zip(&self.h)
                .map(|(w, h)| w * h.max(0.0))
                .sum::<f32>();
        Ok(sig(logit))
    }

    /// Probabilities of every 512-sample window of 16 kHz audio, from a
    /// fresh state.
    pub fn probabilities(&mut self, audio_16k: &[f32]) -> Result<Vec<f32>> {
        self.reset();
        audio_16k.chunks(WINDOW).map(|w| self.process(w)).collect()
    }
}

/// `get_speech_timestamps` settings (the package's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadOptions {
    /// Speech starts at or above this probability.
    pub threshold: f32,
    /// Speech ends below this (default `threshold - 0.15`).
    pub neg_threshold: Option<f32>,
    /// Drop speech shorter than this.
    pub min_speech_ms: f64,
    /// Silence needed to end a segment.
    pub min_silence_ms: f64,
    /// Padding added on both sides of each segment.
    pub speech_pad_ms: f64,
}

impl Default for VadOptions {
    fn default() -> Self {
        VadOptions {
            threshold: 0.5,
            neg_threshold: None,
            min_speech_ms: 250.0,
            min_silence_ms: 100.0,
            speech_pad_ms: 30.0,
        }
    }
}

/// A speech segment in samples `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechSegment {
    /// First sample.
    pub start: usize,
    /// One past the last sample.
    pub end: usize,
}

/// Turns window probabilities into speech segments exactly as
/// `silero_vad.get_speech_timestamps` does at 16 kHz with its default
/// `max_speech_duration_s = inf` (segments are never split by length; the
/// package's splitting of over-long segments is not reproduced).
pub fn speech_segments(probs: &[f32], audio_len: usize, opts: &VadOptions) -> Vec<SpeechSegment> {
    let sr = 16_000f64;
    let w = WINDOW;
    let min_speech = sr * opts.min_speech_ms / 1000.0;
    let pad = sr * opts.speech_pad_ms / 1000.0;
    let min_silence = sr * opts.min_silence_ms / 1000.0;
    let neg = opts
        .neg_threshold
        .unwrap_or((opts.threshold - 0.15).max(0.01));
    let mut triggered = false;
    let mut speeches: Vec<(i64, i64)> = Vec::new();
    let mut cur: Option<(i64, Option<i64>)> = None;
    let mut temp_end = 0i64;
    for (i, &p) in probs.iter().enumerate() {
        let pos = (w * i) as i64;
        if p >= opts.threshold && temp_end != 0 {
            temp_end = 0;
        }
        if p >= opts.threshold && !triggered {
            triggered = true;
            cur = Some((pos, None));
            continue;
        }
        if p < neg && triggered {
            if temp_end == 0 {
                temp_end = pos;
            }
            if ((pos - temp_end) as f64) < min_silence {
                continue;
            }
            if let Some((start, _)) = cur
                && (temp_end - start) as f64 > min_speech
            {
                speeches.push((start, temp_end));
            }
            cur = None;
            temp_end = 0;
            triggered = false;
        }
    }
    if let Some((start, _)) = cur
        && (audio_len as i64 - start) as f64 > min_speech
    {
        speeches.push((start, audio_len as i64));
    }
    // Padding in float samples, truncated like Python's int().
    let n = speeches.len();
    let len = audio_len as f64;
    for i in 0..n {
        if i == 0 {
            speeches[0].0 = (speeches[0].0 as f64 - pad).max(0.0) as i64;
        }
        if i != n - 1 {
            let silence = speeches[i + 1].0 - speeches[i].1;
            if (silence as f64) < 2.0 * pad {
                speeches[i].1 += silence.div_euclid(2);
                speeches[i + 1].0 = (speeches[i + 1].0 - silence.div_euclid(2)).max(0);
            } else {
                speeches[i].1 = (speeches[i].1 as f64 + pad).min(len) as i64;
                speeches[i + 1].0 = (speeches[i + 1].0 as f64 - pad).max(0.0) as i64;
            }
        } else {
            speeches[i].1 = (speeches[i].1 as f64 + pad).min(len) as i64;
        }
    }
    speeches
        .into_iter()
        .map(|(s, e)| SpeechSegment {
            start: s.max(0) as usize,
            end: e.max(0) as usize,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segmentation_pads_and_merges() {
        // 0.5 s silence, 1 s speech, 0.5 s silence, at 512-sample windows.
        let win = |s: f64| (s * 16000.0 / 512.0) as usize;
        let mut p = vec![0.0f32; win(0.5)];
        p.extend(vec![0.9; win(1.0)]);
        p.extend(vec![0.0; win(0.5)]);
        let len = p.len() * 512;
        let s = speech_segments(&p, len, &VadOptions::default());
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].start, win(0.5) * 512 - 480);
        assert_eq!(s[0].end, (win(0.5) + win(1.0)) * 512 + 480);
        // Too short a burst is dropped.
        let mut q = vec![0.0f32; 20];
        q.extend([0.9; 3]);
        q.extend([0.0; 20]);
        assert!(speech_segments(&q, q.len() * 512, &VadOptions::default()).is_empty());
    }
}
