//! Robustness sweeps: perturb the inputs at increasing levels, evaluate a
//! metric at each level, report a table and a curve.
//!
//! Perturbations (all seeded, so a sweep is reproducible):
//! * images ([`ImagePerturbation`]): additive Gaussian noise with standard
//!   deviation σ on the 0–1 scale, Gaussian blur (σ in pixels, the `image`
//!   crate's blur), JPEG re-encoding at a quality (the `image` crate's
//!   encoder, then decoded again), occlusion by a mid-grey square covering a
//!   share of the area at a seeded position;
//! * audio ([`AudioPerturbation`]): white noise at an SNR in dB and speed
//!   change by a factor — both `mosaic_data::augment` (`add_noise`, `speed`);
//! * text ([`typos`]): each letter is, with probability `rate`, deleted,
//!   swapped with the next letter, replaced or doubled (uniformly at random).
//!
//! [`sweep`] runs any closure `level → metric` over the levels.

use std::io::Cursor;
use std::path::Path;

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One image perturbation at one level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "level")]
pub enum ImagePerturbation {
    /// Additive Gaussian noise, σ on the 0–1 pixel scale.
    GaussianNoise(f64),
    /// Gaussian blur with σ in pixels (0 = unchanged).
    Blur(f32),
    /// JPEG re-encoding at this quality (1–100).
    Jpeg(u8),
    /// A mid-grey square covering this share of the image area (0–1).
    Occlusion(f64),
}

impl ImagePerturbation {
    /// The perturbation kind `noise`, `blur`, `jpeg` or `occlusion` at `level`.
    pub fn parse(kind: &str, level: f64) -> Result<Self> {
        Ok(match kind {
            "noise" => ImagePerturbation::GaussianNoise(level),
            "blur" => ImagePerturbation::Blur(level as f32),
            "jpeg" => {
                if !(1.0..=100.0).contains(&level) {
                    return Err(Error::invalid(
                        "JPEG quality",
                        format!("{level} is not in 1..=100"),
                    ));
                }
                ImagePerturbation::Jpeg(level.round() as u8)
            }
            "occlusion" => ImagePerturbation::Occlusion(level),
            other => {
                return Err(Error::invalid(
                    "image perturbation",
                    format!("unknown kind `{other}` (noise, blur, jpeg, occlusion)"),
                ));
            }
        })
    }
}

/// Applies `p` to `img` (seeded).
pub fn perturb_image(img: &RgbImage, p: ImagePerturbation, seed: u64) -> Result<RgbImage> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Ok(match p {
        ImagePerturbation::GaussianNoise(sigma) => {
            if sigma.is_nan() || sigma < 0.0 {
                return Err(Error::invalid("noise σ", format!("{sigma} must be ≥ 0")));
            }
            let mut out = img.clone();
            for v in out.iter_mut() {
                let n: f64 = StandardNormal.sample(&mut rng);
                let x = *v as f64 / 255.0 + sigma * n;
                *v = (x.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
            out
        }
        ImagePerturbation::Blur(sigma) => {
            if sigma.is_nan() || sigma < 0.0 {
                return Err(Error::invalid("blur σ", format!("{sigma} must be ≥ 0")));
            }
            if sigma == 0.0 {
                img.clone()
            } else {
                image::imageops::blur(img, sigma)
            }
        }
        ImagePerturbation::Jpeg(q) => {
            if q == 0 || q > 100 {
                return Err(Error::invalid(
                    "JPEG quality",
                    format!("{q} is not in 1..=100"),
                ));
            }
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, q)
                .encode_image(img)
                .map_err(|e| Error::invalid("JPEG encode", e.to_string()))?;
            image::load(Cursor::new(bytes), image::ImageFormat::Jpeg)
                .map_err(|e| Error::invalid("JPEG decode", e.to_string()))?
                .to_rgb8()
        }
        ImagePerturbation::Occlusion(share) => {
            if !(0.0..=1.0).contains(&share) {
                return Err(Error::invalid(
                    "occlusion share",
                    format!("{share} is not in 0..=1"),
                ));
            }
            let mut out = img.clone();
            let (w, h) = img.dimensions();
            let side = ((share * w as f64 * h as f64).sqrt().round() as u32)
                .min(w)
                .min(h);
            if side > 0 {
                let x0 = rng.random_range(0..=w - side);
                let y0 = rng.random_range(0..=h - side);
                for y in y0..y0 + side {
                    for x in x0..x0 + side {
                        out.put_pixel(x, y, image::Rgb([128, 128, 128]));
                    }
                }
            }
            out
        }
    })
}

/// One audio perturbation at one level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "level")]
pub enum AudioPerturbation {
    /// White noise at this signal-to-noise ratio (dB).
    NoiseSnrDb(f64),
    /// Speed (and pitch) change by this factor (> 1 = faster).
    Speed(f64),
}

/// Applies `p` to a mono signal (seeded), via `mosaic_data::augment`.
pub fn perturb_audio(
    signal: &[f32],
    sample_rate: u32,
    p: AudioPerturbation,
    seed: u64,
) -> Result<Vec<f32>> {
    let mut rng = mosaic_data::augment::AugRng::seed_from_u64(seed);
    Ok(match p {
        AudioPerturbation::NoiseSnrDb(db) => mosaic_data::augment::add_noise(signal, db, &mut rng),
        AudioPerturbation::Speed(f) => {
            if f == 1.0 {
                signal.to_vec()
            } else {
                mosaic_data::augment::speed(signal, sample_rate, f)?
            }
        }
    })
}

/// Seeded typos: each alphabetic character is, with probability `rate`,
/// deleted, swapped with the next character, replaced by a random letter or
/// doubled.
pub fn typos(text: &str, rate: f64, seed: u64) -> Result<String> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(Error::invalid(
            "typo rate",
            format!("{rate} is not in 0..=1"),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() && rng.random::<f64>() < rate {
            match rng.random_range(0..4u8) {
                0 => {}
                1 if i + 1 < chars.len() => {
                    out.push(chars[i + 1]);
                    out.push(c);
                    i += 1;
                }
                2 => {
                    let l = (b'a' + rng.random_range(0..26u8)) as char;
                    out.push(if c.is_uppercase() {
                        l.to_ascii_uppercase()
                    } else {
                        l
                    });
                }
                _ => {
                    out.push(c);
                    out.push(c);
                }
            }
        } else {
            out.push(c);
        }
        i += 1;
    }
    Ok(out)
}

/// A metric measured at each level of one perturbation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// What was perturbed and how (`image noise σ`, `typo rate`, ...).
    pub perturbation: String,
    /// The metric's name.
    pub metric: String,
    /// `(level, value)` in the order run.
    pub points: Vec<(f64, f64)>,
}

impl Sweep {
    /// The value at the first level (usually the clean input).
    pub fn baseline(&self) -> Option<f64> {
        self.points.first().map(|p| p.1)
    }

    /// A Markdown table: level, value, change from the first level.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "| {} | {} | change |\n|---|---|---|\n",
            self.perturbation, self.metric
        );
        let base = self.baseline().unwrap_or(f64::NAN);
        for (l, v) in &self.points {
            s.push_str(&format!("| {l} | {v:.6} | {:+.6} |\n", v - base));
        }
        s
    }

    /// The curve as a PNG.
    pub fn plot(&self, path: &Path) -> Result<()> {
        crate::plot::line_chart(
            path,
            &format!("{} vs {}", self.metric, self.perturbation),
            &self.perturbation,
            &self.metric,
            &[(self.metric.clone(), self.points.clone())],
        )
    }
}

/// Evaluates `eval(level)` at every level.
pub fn sweep(
    perturbation: &str,
    metric: &str,
    levels: &[f64],
    mut eval: impl FnMut(f64) -> Result<f64>,
) -> Result<Sweep> {
    if levels.is_empty() {
        return Err(Error::invalid("sweep levels", "none given"));
    }
    let mut points = Vec::with_capacity(levels.len());
    for &l in levels {
        let v = eval(l)?;
        tracing::info!(perturbation, metric, level = l, value = v, "sweep point");
        points.push((l, v));
    }
    Ok(Sweep {
        perturbation: perturbation.to_string(),
        metric: metric.to_string(),
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 100])
        })
    }

    #[test]
    fn image_perturbations_grow_with_level() {
        let base = img();
        let diff = |a: &RgbImage| -> f64 {
            a.iter()
                .zip(base.iter())
                .map(|(&p, &q)| (p as f64 - q as f64).abs())
                .sum::<f64>()
        };
        let n1 = diff(&perturb_image(&base, ImagePerturbation::GaussianNoise(0.02), 1).unwrap());
        let n2 = diff(&perturb_image(&base, ImagePerturbation::GaussianNoise(0.2), 1).unwrap());
        assert!(n1 > 0.0 && n2 > n1);
        let j90 = diff(&perturb_image(&base, ImagePerturbation::Jpeg(90), 0).unwrap());
        let j10 = diff(&perturb_image(&base, ImagePerturbation::Jpeg(10), 0).unwrap());
        assert!(j10 > j90);
        let o = perturb_image(&base, ImagePerturbation::Occlusion(0.25), 3).unwrap();
        let grey = o.pixels().filter(|p| p.0 == [128, 128, 128]).count();
        assert!((grey as f64 - 0.25 * 64.0 * 48.0).abs() < 100.0);
        assert_eq!(
            perturb_image(&base, ImagePerturbation::Blur(0.0), 0).unwrap(),
            base
        );
        assert!(perturb_image(&base, ImagePerturbation::Jpeg(0), 0).is_err());
    }

    #[test]
    fn typos_are_seeded() {
        let t = "the quick brown fox jumps over the lazy dog";
        assert_eq!(typos(t, 0.0, 1).unwrap(), t);
        assert_eq!(typos(t, 0.3, 7).unwrap(), typos(t, 0.3, 7).unwrap());
        assert_ne!(typos(t, 0.3, 7).unwrap(), t);
    }

    #[test]
    fn audio_noise_and_speed() {
        let s: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin()).collect();
        let n = perturb_audio(&s, 16000, AudioPerturbation::NoiseSnrDb(10.0), 0).unwrap();
        assert_eq!(n.len(), s.len());
        let f = perturb_audio(&s, 16000, AudioPerturbation::Speed(2.0), 0).unwrap();
        assert!((f.len() as i64 - 8000).abs() < 50);
    }
}
