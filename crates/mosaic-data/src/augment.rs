//! Seeded augmentations for images, text and audio. Every function takes
//! an explicit RNG so that a run is reproducible from its seed.

use std::collections::HashMap;

use image::RgbImage;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};
use crate::image::{Filter, resize_u8};

/// The seeded RNG used by augmentations.
pub type AugRng = rand_chacha::ChaCha8Rng;

/// `torchvision.transforms.RandomResizedCrop`: a crop covering `scale` of
/// the area with aspect ratio in `ratio` (log-uniform), resized to `size`.
pub fn random_resized_crop(
    img: &RgbImage,
    size: (u32, u32),
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut AugRng,
) -> Result<RgbImage> {
    let ok = |r: (f64, f64)| r.0.is_finite() && r.1.is_finite() && r.0 > 0.0 && r.0 <= r.1;
    if !ok(scale)
        || scale.1 > 1.0
        || !ok(ratio)
        || size.0 == 0
        || size.1 == 0
        || img.width() == 0
        || img.height() == 0
    {
        return Err(Error::invalid(
            "random resized crop",
            format!(
                "scale {scale:?} must be 0 < min ≤ max ≤ 1, ratio {ratio:?} 0 < min ≤ max, size {size:?} positive"
            ),
        ));
    }
    let (w, h) = (img.width() as f64, img.height() as f64);
    let area = w * h;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    let mut crop = None;
    for _ in 0..10 {
        let target = area * rng.random_range(scale.0..=scale.1);
        let ar = rng.random_range(lr0..=lr1).exp();
        let cw = (target * ar).sqrt().round();
        let ch = (target / ar).sqrt().round();
        if cw > 0.0 && ch > 0.0 && cw <= w && ch <= h {
            let x = rng.random_range(0..=(w - cw) as u32);
            let y = rng.random_range(0..=(h - ch) as u32);
            crop = Some((x, y, cw as u32, ch as u32));
            break;
        }
    }
    // Fallback: the central crop with the ratio clamped, as torchvision does.
    let (x, y, cw, ch) = crop.unwrap_or_else(|| {
        let in_ratio = w / h;
        let (cw, ch) = if in_ratio < ratio.0 {
            (w, (w / ratio.0).round())
        } else if in_ratio > ratio.1 {
            ((h * ratio.1).round(), h)
        } else {
            (w, h)
        };
        (
            ((w - cw) / 2.0) as u32,
            ((h - ch) / 2.0) as u32,
            cw as u32,
            ch as u32,
        )
    });
    let sub = image::imageops::crop_imm(img, x, y, cw, ch).to_image();
    let px = resize_u8(
        sub.as_raw(),
        cw as usize,
        ch as usize,
        3,
        size.0 as usize,
        size.1 as usize,
        Filter::Bilinear,
    )?;
    Ok(RgbImage::from_raw(size.0, size.1, px).expect("sized"))
}

/// Mirrors left–right with probability `p`.
pub fn random_horizontal_flip(img: &RgbImage, p: f64, rng: &mut AugRng) -> RgbImage {
    if rng.random_bool(p.clamp(0.0, 1.0)) {
        image::imageops::flip_horizontal(img)
    } else {
        img.clone()
    }
}

/// Rotates by a uniform angle in `[-max_degrees, max_degrees]` about the
/// centre (bilinear, black fill, same size).
pub fn random_rotation(img: &RgbImage, max_degrees: f64, rng: &mut AugRng) -> RgbImage {
    let m = if max_degrees.is_finite() {
        max_degrees.abs()
    } else {
        0.0
    };
    let deg = rng.random_range(-m..=m);
    rotate(img, deg)
}

/// Rotates counter-clockwise by `degrees` (bilinear, black fill).
pub fn rotate(img: &RgbImage, degrees: f64) -> RgbImage {
    let (w, h) = (img.width() as f64, img.height() as f64);
    let (cx, cy) = ((w - 1.0) / 2.0, (h - 1.0) / 2.0);
    let (s, c) = degrees.to_radians().sin_cos();
    let mut out = RgbImage::new(img.width(), img.height());
    for (x, y, p) in out.enumerate_pixels_mut() {
        let (dx, dy) = (x as f64 - cx, y as f64 - cy);
        // Inverse map: rotate the output point back into the input.
        let sx = c * dx - s * dy + cx;
        let sy = s * dx + c * dy + cy;
        if sx < 0.0 || sy < 0.0 || sx > w - 1.0 || sy > h - 1.0 {
            continue;
        }
        let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
        let (x1, y1) = (
            (x0 + 1).min(img.width() - 1),
            (y0 + 1).min(img.height() - 1),
        );
        let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
        for ch in 0..3 {
            let v = img.get_pixel(x0, y0)[ch] as f64 * (1.0 - fx) * (1.0 - fy)
                + img.get_pixel(x1, y0)[ch] as f64 * fx * (1.0 - fy)
                + img.get_pixel(x0, y1)[ch] as f64 * (1.0 - fx) * fy
                + img.get_pixel(x1, y1)[ch] as f64 * fx * fy;
            p[ch] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Colour jitter strengths (torchvision semantics: factors drawn from
/// `[1 - s, 1 + s]`, hue shift from `[-hue, hue]` with `hue ≤ 0.5`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ColorJitter {
    /// Brightness strength.
    pub brightness: f64,
    /// Contrast strength.
    pub contrast: f64,
    /// Saturation strength.
    pub saturation: f64,
    /// Hue shift (fraction of the colour circle).
    pub hue: f64,
}

fn gray(p: [f64; 3]) -> f64 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

impl ColorJitter {
    /// Applies the jitter (brightness, contrast, saturation, hue, in that order).
    pub fn apply(&self, img: &RgbImage, rng: &mut AugRng) -> Result<RgbImage> {
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(Error::invalid(
                "color jitter hue",
                format!("{} is outside [0, 0.5]", self.hue),
            ));
        }
        let mut factor = |s: f64| {
            if s > 0.0 {
                rng.random_range((1.0 - s).max(0.0)..=1.0 + s)
            } else {
                1.0
            }
        };
        let (b, c, s) = (
            factor(self.brightness),
            factor(self.contrast),
            factor(self.saturation),
        );
        let hshift = if self.hue > 0.0 {
            rng.random_range(-self.hue..=self.hue)
        } else {
            0.0
        };
        let mut px: Vec<[f64; 3]> = img
            .pixels()
            .map(|p| [p[0] as f64, p[1] as f64, p[2] as f64])
            .collect();
        let clamp = |v: f64| v.clamp(0.0, 255.0);
        for p in px.iter_mut() {
            *p = p.map(|v| clamp(v * b));
        }
        let mean = px.iter().map(|p| gray(*p)).sum::<f64>() / px.len().max(1) as f64;
        for p in px.iter_mut() {
            *p = p.map(|v| clamp(mean + (v - mean) * c));
            let g = gray(*p);
            *p = p.map(|v| clamp(g + (v - g) * s));
            if hshift != 0.0 {
                let (h, sat, val) = rgb_to_hsv(*p);
                *p = hsv_to_rgb(((h + hshift) % 1.0 + 1.0) % 1.0, sat, val);
            }
        }
        let raw = px.iter().flat_map(|p| p.map(|v| v.round() as u8)).collect();
        Ok(RgbImage::from_raw(img.width(), img.height(), raw).expect("sized"))
    }
}

fn rgb_to_hsv(p: [f64; 3]) -> (f64, f64, f64) {
    let (r, g, b) = (p[0] / 255.0, p[1] / 255.0, p[2] / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    let h = if d == 0.0 {
        0.0
    } else if max == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if max == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    (h, if max == 0.0 { 0.0 } else { d / max }, max)
}

fn hsv_to_rgb(h: f64, s: f64, v: f64) -> [f64; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, g, b) = match i as i64 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [r * 255.0, g * 255.0, b * 255.0]
}

/// Drops each whitespace-separated word with probability `p` (at least one
/// word is kept).
pub fn token_dropout(text: &str, p: f64, rng: &mut AugRng) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return String::new();
    }
    let mut kept: Vec<&str> = words
        .iter()
        .copied()
        .filter(|_| !rng.random_bool(p.clamp(0.0, 1.0)))
        .collect();
    if kept.is_empty() {
        kept.push(words[rng.random_range(0..words.len())]);
    }
    kept.join(" ")
}

/// Replaces words found in `synonyms` (lower-cased lookup) with a random
/// synonym, each with probability `p`. Punctuation around a word is kept.
pub fn synonym_swap(
    text: &str,
    synonyms: &HashMap<String, Vec<String>>,
    p: f64,
    rng: &mut AugRng,
) -> String {
    text.split_whitespace()
        .map(|w| {
            let core = w.trim_matches(|c: char| !c.is_alphanumeric());
            match synonyms.get(&core.to_lowercase()).filter(|s| !s.is_empty()) {
                Some(list) if rng.random_bool(p.clamp(0.0, 1.0)) => {
                    let s = &list[rng.random_range(0..list.len())];
                    w.replacen(core, s, 1)
                }
                _ => w.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses a synonym table: one group per line, words separated by commas
/// (each word's synonyms are the others in its groups).
pub fn parse_synonyms(text: &str) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines() {
        let words: Vec<String> = line
            .split(',')
            .map(|w| w.trim().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect();
        for w in &words {
            let e = map.entry(w.clone()).or_default();
            for o in &words {
                if o != w && !e.contains(o) {
                    e.push(o.clone());
                }
            }
        }
    }
    map
}

/// Adds white Gaussian noise so the signal-to-noise ratio is `snr_db`.
pub fn add_noise(signal: &[f32], snr_db: f64, rng: &mut AugRng) -> Vec<f32> {
    let power =
        signal.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / signal.len().max(1) as f64;
    let noise_std = (power / 10f64.powf(snr_db / 10.0)).sqrt();
    signal
        .iter()
        .map(|&v| {
            let n: f64 = StandardNormal.sample(rng);
            (v as f64 + n * noise_std) as f32
        })
        .collect()
}

/// Shifts by a uniform amount in `[-max_shift, max_shift]` samples, filling
/// with zeros (no wrap-around).
pub fn time_shift(signal: &[f32], max_shift: usize, rng: &mut AugRng) -> Vec<f32> {
    let s = rng.random_range(-(max_shift as i64)..=max_shift as i64);
    let n = signal.len() as i64;
    (0..n)
        .map(|i| {
            let j = i - s;
            if j >= 0 && j < n {
                signal[j as usize]
            } else {
                0.0
            }
        })
        .collect()
}

/// Changes speed (and pitch) by `factor` (> 1 = faster, shorter) by
/// band-limited resampling.
pub fn speed(signal: &[f32], sample_rate: u32, factor: f64) -> Result<Vec<f32>> {
    if !(factor > 0.1 && factor < 10.0) {
        return Err(Error::invalid(
            "speed factor",
            format!("{factor} is outside (0.1, 10)"),
        ));
    }
    // Playing `factor` times faster = resampling from rate*factor to rate.
    // Rates are rounded to 100 Hz so the polyphase filter stays small.
    let from = ((sample_rate as f64 * factor / 100.0).round() as u32).max(1) * 100;
    let to = (sample_rate / 100).max(1) * 100;
    crate::audio::resample(signal, from, to)
}

/// SpecAugment masks on features `[n_mels][frames]` (row-major): up to
/// `freq_masks` bands of at most `freq_width` mel bins and `time_masks`
/// spans of at most `time_width` frames are set to `fill`.
#[allow(clippy::too_many_arguments)]
pub fn spec_augment(
    feats: &mut [f32],
    n_mels: usize,
    freq_masks: usize,
    freq_width: usize,
    time_masks: usize,
    time_width: usize,
    fill: f32,
    rng: &mut AugRng,
) -> Result<()> {
    if n_mels == 0 || feats.len() % n_mels != 0 {
        return Err(Error::invalid(
            "SpecAugment",
            format!("{} values are not [{n_mels}, T]", feats.len()),
        ));
    }
    let frames = feats.len() / n_mels;
    for _ in 0..freq_masks {
        let w = rng.random_range(0..=freq_width.min(n_mels));
        let f0 = rng.random_range(0..=n_mels - w);
        for m in f0..f0 + w {
            feats[m * frames..(m + 1) * frames].fill(fill);
        }
    }
    for _ in 0..time_masks {
        let w = rng.random_range(0..=time_width.min(frames));
        let t0 = rng.random_range(0..=frames - w);
        for m in 0..n_mels {
            feats[m * frames + t0..m * frames + t0 + w].fill(fill);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng(s: u64) -> AugRng {
        AugRng::seed_from_u64(s)
    }

    fn test_img() -> RgbImage {
        RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, 100])
        })
    }

    #[test]
    fn image_augs_are_seeded_and_sized() {
        let a = random_resized_crop(
            &test_img(),
            (16, 16),
            (0.08, 1.0),
            (0.75, 4.0 / 3.0),
            &mut rng(1),
        )
        .unwrap();
        let b = random_resized_crop(
            &test_img(),
            (16, 16),
            (0.08, 1.0),
            (0.75, 4.0 / 3.0),
            &mut rng(1),
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.dimensions(), (16, 16));
        let f = random_horizontal_flip(&test_img(), 1.0, &mut rng(0));
        assert_eq!(f.get_pixel(0, 0), test_img().get_pixel(39, 0));
        let r = rotate(&test_img(), 0.0);
        assert_eq!(r, test_img());
        let r180 = rotate(&test_img(), 180.0);
        assert_eq!(r180.get_pixel(0, 0), test_img().get_pixel(39, 29));
        let j = ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
        };
        assert_eq!(
            j.apply(&test_img(), &mut rng(3)).unwrap(),
            j.apply(&test_img(), &mut rng(3)).unwrap()
        );
        assert_ne!(j.apply(&test_img(), &mut rng(3)).unwrap(), test_img());
        assert!(
            ColorJitter {
                hue: 0.7,
                ..Default::default()
            }
            .apply(&test_img(), &mut rng(0))
            .is_err()
        );
        let (h, s, v) = rgb_to_hsv([200.0, 30.0, 90.0]);
        let back = hsv_to_rgb(h, s, v);
        assert!(
            (back[0] - 200.0).abs() < 1e-9
                && (back[1] - 30.0).abs() < 1e-9
                && (back[2] - 90.0).abs() < 1e-9
        );
    }

    #[test]
    fn text_augs() {
        let t = "a small red cat on the mat";
        let d = token_dropout(t, 0.5, &mut rng(2));
        assert!(d.split_whitespace().count() < 7 && !d.is_empty());
        assert_eq!(
            token_dropout(t, 1.0, &mut rng(2))
                .split_whitespace()
                .count(),
            1
        );
        let syn = parse_synonyms("cat, kitty, feline\nsmall, little\n");
        let s = synonym_swap("A small cat.", &syn, 1.0, &mut rng(5));
        assert!(
            s.starts_with("A little ") && s.ends_with('.') && !s.contains("cat"),
            "{s}"
        );
    }

    #[test]
    fn audio_augs() {
        let x: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin()).collect();
        let y = add_noise(&x, 10.0, &mut rng(1));
        let ps: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum();
        let pn: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| ((*b - *a) as f64).powi(2))
            .sum();
        let snr = 10.0 * (ps / pn).log10();
        assert!((snr - 10.0).abs() < 0.3, "{snr}");
        let s = time_shift(&x, 100, &mut rng(4));
        assert_eq!(s.len(), x.len());
        let f = speed(&x, 16000, 2.0).unwrap();
        assert_eq!(f.len(), 8000);
        let mut feats = vec![1.0f32; 80 * 100];
        spec_augment(&mut feats, 80, 2, 10, 2, 20, 0.0, &mut rng(9)).unwrap();
        let zeros = feats.iter().filter(|&&v| v == 0.0).count();
        assert!(zeros > 0 && zeros < feats.len());
        assert!(spec_augment(&mut feats, 7, 1, 1, 1, 1, 0.0, &mut rng(9)).is_err());
    }
}
