//! Band-limited resampling that reproduces `torchaudio.functional.resample`
//! (windowed sinc, Hann window, `lowpass_filter_width = 6`, `rolloff = 0.99`).
//!
//! Why our own rather than `rubato`: the `transformers` speech-recognition
//! pipeline resamples with torchaudio, so Whisper features of 8 kHz audio
//! only match the reference if the resampler is the same filter. The kernel
//! is built with torchaudio's float32 arithmetic in the same order; the
//! convolution accumulates in f64 (torchaudio's conv1d sums in f32, so the
//! two agree to ~1e-7).

use crate::error::{Error, Result};

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A resampler between two fixed rates; reuse it for many signals.
#[derive(Debug, Clone)]
pub struct Resampler {
    orig: usize,
    new: usize,
    width: usize,
    /// `new` kernels of `2 * width + orig` taps each.
    kernels: Vec<f32>,
    from_rate: u32,
    to_rate: u32,
}

impl Resampler {
    /// Builds the filter for `from_rate` → `to_rate` Hz.
    pub fn new(from_rate: u32, to_rate: u32) -> Result<Self> {
        if from_rate == 0 || to_rate == 0 {
            return Err(Error::invalid(
                "sample rate",
                format!("cannot resample {from_rate} Hz to {to_rate} Hz"),
            ));
        }
        let g = gcd(from_rate, to_rate);
        let orig = (from_rate / g) as usize;
        let new = (to_rate / g) as usize;
        if orig * new > 1 << 26 {
            return Err(Error::invalid(
                "sample rate",
                format!(
                    "{from_rate} Hz → {to_rate} Hz needs a {orig}x{new}-phase filter; use rates with a larger common divisor"
                ),
            ));
        }
        let lowpass_width = 6.0f64;
        let rolloff = 0.99f64;
        let base_freq = orig.min(new) as f64 * rolloff;
        let width = (lowpass_width * orig as f64 / base_freq).ceil() as usize;
        let taps = 2 * width + orig;
        let mut kernels = vec![0f32; new * taps];
        let base_f32 = base_freq as f32;
        let lw = lowpass_width as f32;
        let pi = std::f64::consts::PI as f32;
        let scale = (base_freq / orig as f64) as f32;
        for j in 0..new {
            let phase = -(j as f32) / new as f32;
            for i in 0..taps {
                let idx = (i as f32 - width as f32) / orig as f32;
                let mut t = phase + idx;
                t *= base_f32;
                t = t.clamp(-lw, lw);
                let c = (t * pi / lw / 2.0).cos();
                let window = c * c;
                let tp = t * pi;
                let k = if tp == 0.0 { 1.0 } else { tp.sin() / tp };
                kernels[j * taps + i] = k * (window * scale);
            }
        }
        Ok(Resampler {
            orig,
            new,
            width,
            kernels,
            from_rate,
            to_rate,
        })
    }

    /// Input rate.
    pub fn from_rate(&self) -> u32 {
        self.from_rate
    }

    /// Output rate.
    pub fn to_rate(&self) -> u32 {
        self.to_rate
    }

    /// Output length for `len` input samples: `ceil(new * len / orig)`.
    pub fn output_len(&self, len: usize) -> usize {
        (self.new * len).div_ceil(self.orig)
    }

    /// Resamples one channel.
    pub fn process(&self, input: &[f32]) -> Vec<f32> {
        if self.orig == self.new {
            return input.to_vec();
        }
        let taps = 2 * self.width + self.orig;
        let len = input.len();
        let out_len = self.output_len(len);
        let mut out = Vec::with_capacity(out_len);
        // Conceptually: pad `width` zeros left and `width + orig` right, then
        // a strided conv1d (stride `orig`) with `new` output channels whose
        // outputs are interleaved.
        let at = |p: isize| -> f64 {
            if p < 0 || p as usize >= len {
                0.0
            } else {
                input[p as usize] as f64
            }
        };
        'outer: for block in 0.. {
            let start = (block * self.orig) as isize - self.width as isize;
            for j in 0..self.new {
                if out.len() == out_len {
                    break 'outer;
                }
                let k = &self.kernels[j * taps..(j + 1) * taps];
                let mut acc = 0f64;
                if start >= 0 && start as usize + taps <= len {
                    let s = &input[start as usize..start as usize + taps];
                    for (a, b) in s.iter().zip(k) {
                        acc += *a as f64 * *b as f64;
                    }
                } else {
                    for (i, &w) in k.iter().enumerate() {
                        acc += at(start + i as isize) * w as f64;
                    }
                }
                out.push(acc as f32);
            }
        }
        out
    }
}

/// One-shot resampling of a mono signal.
pub fn resample(input: &[f32], from_rate: u32, to_rate: u32) -> Result<Vec<f32>> {
    if from_rate == to_rate {
        return Ok(input.to_vec());
    }
    Ok(Resampler::new(from_rate, to_rate)?.process(input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_and_sine_preserved() {
        let sr = 8000u32;
        let x: Vec<f32> = (0..8000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / sr as f32).sin())
            .collect();
        let y = resample(&x, 8000, 16000).unwrap();
        assert_eq!(y.len(), 16000);
        // Away from the edges the upsampled signal is the same sine.
        for (i, v) in y.iter().enumerate().take(15800).skip(200) {
            let want = (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin();
            assert!((v - want).abs() < 2e-3, "{i}: {v} vs {want}");
        }
        let z = resample(&y, 16000, 8000).unwrap();
        assert_eq!(z.len(), 8000);
    }

    #[test]
    fn rejects_zero_rate() {
        assert!(Resampler::new(0, 16000).is_err());
    }
}
