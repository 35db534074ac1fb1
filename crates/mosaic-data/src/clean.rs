//! Cleaning: exact and near-duplicate detection (perceptual hash for
//! images, MinHash for text, a spectral-band fingerprint for audio), and
//! size / aspect / duration / caption filters.

use std::collections::{BTreeSet, HashMap};

use image::RgbImage;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::image::{Filter, resize_u8};

/// SHA-256 of bytes (exact duplicates of files).
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Groups of ids whose keys are equal (exact duplicates), each group sorted,
/// groups in order of first appearance.
pub fn exact_duplicates<K: std::hash::Hash + Eq>(
    items: impl IntoIterator<Item = (String, K)>,
) -> Vec<Vec<String>> {
    let mut groups: HashMap<K, Vec<String>> = HashMap::new();
    let mut order = Vec::new();
    for (id, k) in items {
        let g = groups.entry(k).or_default();
        if g.is_empty() {
            order.push(id.clone());
        }
        g.push(id);
    }
    let mut out: Vec<Vec<String>> = groups.into_values().filter(|g| g.len() > 1).collect();
    out.sort_by_key(|g| order.iter().position(|o| *o == g[0]));
    out
}

/// 64-bit DCT perceptual hash (the `imagehash.phash` recipe: 32×32
/// grayscale with Lanczos, 2-D DCT-II, top-left 8×8, bits above the median).
pub fn phash(img: &RgbImage) -> Result<u64> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    // Pillow's "L" conversion (Convert.c, L24): fixed-point ITU-R 601-2.
    let gray: Vec<u8> = img
        .pixels()
        .map(|p| {
            ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
        })
        .collect();
    let small = resize_u8(&gray, w, h, 1, 32, 32, Filter::Lanczos)?;
    let n = 32;
    let dct_1d = |v: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|k| {
                2.0 * (0..n)
                    .map(|i| {
                        v[i] * (std::f64::consts::PI * k as f64 * (2 * i + 1) as f64
                            / (2 * n) as f64)
                            .cos()
                    })
                    .sum::<f64>()
            })
            .collect()
    };
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|y| {
            dct_1d(
                &small[y * n..(y + 1) * n]
                    .iter()
                    .map(|&v| v as f64)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let mut low = Vec::with_capacity(64);
    let cols: Vec<Vec<f64>> = (0..8)
        .map(|x| dct_1d(&(0..n).map(|y| rows[y][x]).collect::<Vec<_>>()))
        .collect();
    for y in 0..8 {
        for col in &cols {
            low.push(col[y]);
        }
    }
    let mut sorted = low.clone();
    sorted.sort_by(f64::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    Ok(low.iter().enumerate().fold(0u64, |acc, (i, &v)| {
        if v > median {
            acc | (1 << (63 - i))
        } else {
            acc
        }
    }))
}

/// Hamming distance of two 64-bit hashes.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// Pairs `(i, j)` (i < j) of hashes within `max_distance` bits.
pub fn near_duplicate_images(hashes: &[u64], max_distance: u32) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for i in 0..hashes.len() {
        for j in i + 1..hashes.len() {
            if hamming(hashes[i], hashes[j]) <= max_distance {
                out.push((i, j));
            }
        }
    }
    out
}

/// A 64-bit mixing hash (splitmix64 finaliser over FNV-1a). Why our own:
/// MinHash needs many independent, seeded, *stable* hash functions, and
/// std's `DefaultHasher` is not guaranteed stable across Rust releases.
fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// MinHash signatures over character `shingle`-grams of normalised text
/// (lower-cased, whitespace collapsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinHasher {
    /// Number of hash functions (signature length).
    pub num_perm: usize,
    /// Shingle length in characters.
    pub shingle: usize,
}

impl Default for MinHasher {
    fn default() -> Self {
        MinHasher {
            num_perm: 128,
            shingle: 5,
        }
    }
}

impl MinHasher {
    /// The signature of `text`.
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let norm: Vec<char> = text
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .collect();
        let k = self.shingle.max(1);
        let shingles: BTreeSet<String> = if norm.len() <= k {
            std::iter::once(norm.iter().collect()).collect()
        } else {
            norm.windows(k).map(|w| w.iter().collect()).collect()
        };
        (0..self.num_perm as u64)
            .map(|seed| {
                shingles
                    .iter()
                    .map(|s| hash64(s.as_bytes(), seed))
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .collect()
    }

    /// Estimated Jaccard similarity of two signatures.
    pub fn similarity(a: &[u64], b: &[u64]) -> f64 {
        let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
        same as f64 / a.len().max(1) as f64
    }

    /// Pairs of texts with estimated Jaccard ≥ `threshold`, found with LSH
    /// banding (`bands` × rows = `num_perm`) and then checked on the full
    /// signature.
    pub fn near_duplicates(
        &self,
        texts: &[&str],
        threshold: f64,
        bands: usize,
    ) -> Result<Vec<(usize, usize, f64)>> {
        if bands == 0 || self.num_perm % bands != 0 {
            return Err(Error::invalid(
                "MinHash bands",
                format!("{bands} bands do not divide {} permutations", self.num_perm),
            ));
        }
        let rows = self.num_perm / bands;
        let sigs: Vec<Vec<u64>> = texts.iter().map(|t| self.signature(t)).collect();
        let mut candidates = BTreeSet::new();
        for b in 0..bands {
            let mut buckets: HashMap<&[u64], Vec<usize>> = HashMap::new();
            for (i, s) in sigs.iter().enumerate() {
                buckets
                    .entry(&s[b * rows..(b + 1) * rows])
                    .or_default()
                    .push(i);
            }
            for v in buckets.values().filter(|v| v.len() > 1) {
                for x in 0..v.len() {
                    for y in x + 1..v.len() {
                        candidates.insert((v[x], v[y]));
                    }
                }
            }
        }
        Ok(candidates
            .into_iter()
            .map(|(i, j)| (i, j, Self::similarity(&sigs[i], &sigs[j])))
            .filter(|c| c.2 >= threshold)
            .collect())
    }
}

/// An audio fingerprint: per frame, 32 bits from the signs of energy
/// differences between adjacent mel bands across adjacent frames (the
/// Haitsma–Kalker scheme), on 16 kHz mono audio.
pub fn audio_fingerprint(samples_16k: &[f32]) -> Result<Vec<u32>> {
    let cfg = crate::audio::MelConfig {
        n_fft: 2048,
        hop: 512,
        n_mels: 33,
        f_min: 300.0,
        f_max: Some(2000.0),
        ..crate::audio::MelConfig::librosa(16000)
    };
    if samples_16k.len() < cfg.n_fft {
        return Err(Error::invalid(
            "audio fingerprint",
            "audio shorter than one 2048-sample frame",
        ));
    }
    let mel = crate::audio::mel_spectrogram(samples_16k, &cfg)?;
    let frames = mel[0].len();
    let e = |b: usize, t: usize| (mel[b][t] + 1e-10).ln();
    Ok((1..frames)
        .map(|t| {
            (0..32).fold(0u32, |acc, b| {
                let d = (e(b, t) - e(b + 1, t)) - (e(b, t - 1) - e(b + 1, t - 1));
                if d > 0.0 { acc | (1 << b) } else { acc }
            })
        })
        .collect())
}

/// Bit error rate between two fingerprints at the best offset within
/// `max_offset` frames (0 = identical, ~0.5 = unrelated).
pub fn fingerprint_distance(a: &[u32], b: &[u32], max_offset: usize) -> f64 {
    let mut best = 1.0f64;
    for off in -(max_offset as i64)..=max_offset as i64 {
        let (mut bits, mut n) = (0u64, 0u64);
        for (i, &x) in a.iter().enumerate() {
            let j = i as i64 + off;
            if j >= 0 && (j as usize) < b.len() {
                bits += (x ^ b[j as usize]).count_ones() as u64;
                n += 32;
            }
        }
        if n >= 32 * (a.len().min(b.len()) as u64 / 2).max(1) {
            best = best.min(bits as f64 / n as f64);
        }
    }
    best
}

/// Sample filters; `None` means no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// Smallest image side in pixels.
    pub min_side: Option<u32>,
    /// Largest image side in pixels.
    pub max_side: Option<u32>,
    /// Largest aspect ratio (long / short side).
    pub max_aspect: Option<f64>,
    /// Shortest audio in seconds.
    pub min_seconds: Option<f64>,
    /// Longest audio in seconds.
    pub max_seconds: Option<f64>,
    /// Fewest words in a caption.
    pub min_words: Option<usize>,
    /// Most words in a caption.
    pub max_words: Option<usize>,
    /// Require captions to look like English.
    pub english_only: bool,
}

impl Filters {
    /// Why an image of `w`×`h` fails, if it does.
    pub fn check_image(&self, w: u32, h: u32) -> Option<String> {
        let (short, long) = (w.min(h), w.max(h));
        if self.min_side.is_some_and(|m| short < m) {
            return Some(format!(
                "image {w}x{h} has a side under {}",
                self.min_side.unwrap()
            ));
        }
        if self.max_side.is_some_and(|m| long > m) {
            return Some(format!(
                "image {w}x{h} has a side over {}",
                self.max_side.unwrap()
            ));
        }
        if let Some(a) = self.max_aspect
            && short > 0
            && long as f64 / short as f64 > a
        {
            return Some(format!(
                "image {w}x{h} aspect {:.2} over {a}",
                long as f64 / short as f64
            ));
        }
        None
    }

    /// Why audio of `seconds` fails, if it does.
    pub fn check_duration(&self, seconds: f64) -> Option<String> {
        if self.min_seconds.is_some_and(|m| seconds < m) {
            return Some(format!(
                "{seconds:.2} s is shorter than {} s",
                self.min_seconds.unwrap()
            ));
        }
        if self.max_seconds.is_some_and(|m| seconds > m) {
            return Some(format!(
                "{seconds:.2} s is longer than {} s",
                self.max_seconds.unwrap()
            ));
        }
        None
    }

    /// Why a caption fails, if it does.
    pub fn check_caption(&self, caption: &str) -> Option<String> {
        let words = caption.split_whitespace().count();
        if self.min_words.is_some_and(|m| words < m) {
            return Some(format!(
                "caption has {words} words, under {}",
                self.min_words.unwrap()
            ));
        }
        if self.max_words.is_some_and(|m| words > m) {
            return Some(format!(
                "caption has {words} words, over {}",
                self.max_words.unwrap()
            ));
        }
        if let Some(why) = caption_problem(caption) {
            return Some(why);
        }
        if self.english_only && english_score(caption) < 0.5 {
            return Some("caption does not look like English".into());
        }
        None
    }
}

/// Obvious caption junk: URLs only, a character repeated 5+ times, no letters.
pub fn caption_problem(caption: &str) -> Option<String> {
    let t = caption.trim();
    if t.is_empty() {
        return Some("empty caption".into());
    }
    if !t.chars().any(char::is_alphabetic) {
        return Some("caption has no letters".into());
    }
    if t.split_whitespace()
        .all(|w| w.starts_with("http://") || w.starts_with("https://") || w.starts_with("www."))
    {
        return Some("caption is only URLs".into());
    }
    let chars: Vec<char> = t.chars().collect();
    if chars
        .windows(5)
        .any(|w| w.iter().all(|&c| c == w[0] && !c.is_whitespace()))
    {
        return Some("caption repeats a character 5 or more times".into());
    }
    None
}

const EN_STOPWORDS: &[&str] = &[
    "a", "an", "the", "of", "and", "or", "in", "on", "at", "to", "with", "for", "is", "are", "was",
    "it", "this", "that", "by", "from", "as", "his", "her", "their", "its", "be", "has", "have",
    "two", "one", "man", "woman", "people", "there", "some", "up", "down", "next", "near", "into",
    "over", "while",
];

/// A crude "is this English" score in [0, 1]: the share of ASCII letters
/// among letters, times a bonus for common English function words. Good
/// enough to drop captions in other scripts or languages from an English set.
pub fn english_score(text: &str) -> f64 {
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.is_empty() {
        return 0.0;
    }
    let ascii = letters.iter().filter(|c| c.is_ascii()).count() as f64 / letters.len() as f64;
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    if words.len() < 4 {
        return ascii;
    }
    let stop = words
        .iter()
        .filter(|w| EN_STOPWORDS.contains(&w.as_str()))
        .count() as f64
        / words.len() as f64;
    ascii * (0.5 + (stop * 2.5).min(0.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(shift: u8) -> RgbImage {
        RgbImage::from_fn(64, 48, |x, y| {
            let v = ((x as f32 / 64.0 * 6.0).sin() * 80.0
                + (y as f32 / 48.0 * 4.0).cos() * 60.0
                + 120.0) as u8;
            image::Rgb([v.saturating_add(shift), v, 255 - v])
        })
    }

    #[test]
    fn phash_is_robust_to_small_changes() {
        let a = phash(&photo(0)).unwrap();
        let b = phash(&photo(6)).unwrap();
        let flipped = phash(&image::imageops::flip_vertical(&photo(0))).unwrap();
        assert!(hamming(a, b) <= 6, "{}", hamming(a, b));
        assert!(hamming(a, flipped) > 12, "{}", hamming(a, flipped));
        assert_eq!(near_duplicate_images(&[a, b, flipped], 8), vec![(0, 1)]);
    }

    #[test]
    fn minhash_finds_near_duplicate_captions() {
        let texts = [
            "A dog runs across the green field.",
            "a dog runs across the green  field",
            "Two cats sleep on a red sofa today.",
            "A dog runs across a green field!",
        ];
        let m = MinHasher::default();
        let pairs = m.near_duplicates(&texts, 0.6, 32).unwrap();
        let ids: Vec<(usize, usize)> = pairs.iter().map(|p| (p.0, p.1)).collect();
        assert!(
            ids.contains(&(0, 1))
                && ids.contains(&(0, 3))
                && !ids.iter().any(|p| p.0 == 2 || p.1 == 2),
            "{pairs:?}"
        );
        assert!(m.near_duplicates(&texts, 0.5, 7).is_err());
        assert_eq!(
            exact_duplicates(vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]),
            vec![vec!["a".to_string(), "c".into()]]
        );
    }

    #[test]
    fn audio_fingerprint_matches_noisy_copy() {
        use rand::SeedableRng;
        // Tones inside the 300-2000 Hz band switching on and off like syllables.
        let tone = |i: usize, f: f32| (2.0 * std::f32::consts::PI * f * i as f32 / 16000.0).sin();
        let x: Vec<f32> = (0..32000)
            .map(|i| {
                let seg = i / 1200;
                0.3 * tone(i, 400.0 + 97.0 * (seg % 13) as f32)
                    + 0.2 * tone(i, 1500.0 - 61.0 * (seg % 7) as f32) * ((seg % 3) as f32)
            })
            .collect();
        let y = crate::augment::add_noise(&x, 30.0, &mut crate::augment::AugRng::seed_from_u64(1));
        let z: Vec<f32> = (0..32000)
            .map(|i| (i as f32 * 0.05).sin() * ((i / 800) % 2) as f32)
            .collect();
        let (fx, fy, fz) = (
            audio_fingerprint(&x).unwrap(),
            audio_fingerprint(&y).unwrap(),
            audio_fingerprint(&z).unwrap(),
        );
        let same = fingerprint_distance(&fx, &fy, 3);
        let other = fingerprint_distance(&fx, &fz, 3);
        // Haitsma–Kalker call a match below a bit error rate of 0.35.
        assert!(same < 0.3 && other > 0.4, "{same} {other}");
    }

    #[test]
    fn filters() {
        let f = Filters {
            min_side: Some(32),
            max_aspect: Some(3.0),
            min_seconds: Some(0.5),
            min_words: Some(2),
            english_only: true,
            ..Default::default()
        };
        assert!(f.check_image(20, 100).is_some());
        assert!(f.check_image(400, 100).is_some());
        assert!(f.check_image(300, 200).is_none());
        assert!(f.check_duration(0.2).is_some());
        assert!(f.check_caption("cat").is_some());
        assert!(f.check_caption("a cat is sitting on the mat").is_none());
        assert!(f.check_caption("一只猫坐在垫子上 一只猫").is_some());
        assert!(f.check_caption("aaaaaaa bbbbb").is_some());
        assert!(caption_problem("https://x.y").is_some());
    }
}
