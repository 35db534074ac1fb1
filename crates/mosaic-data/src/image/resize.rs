//! Resampling that reproduces Pillow's `Image.resize` bit for bit on 8-bit
//! images.
//!
//! Why our own and not `image::imageops::resize` or `fast_image_resize`:
//! reference preprocessing (`transformers` image processors) resizes through
//! Pillow, whose convolution resampler scales the filter support with the
//! reduction factor (antialiasing), computes coefficients in `f64`, converts
//! them to 22-bit fixed point, and rounds to `u8` between the horizontal and
//! the vertical pass. Any other resampler differs by a grey level or more,
//! which is ~0.015 after CLIP normalisation. This is a transcription of
//! Pillow's `libImaging/Resample.c` (same formulas, same order).

use crate::error::{Error, Result};

/// Resampling filters, with Pillow's numbering (`Image.Resampling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// 0: nearest neighbour.
    Nearest,
    /// 1: Lanczos (a = 3).
    Lanczos,
    /// 2: bilinear (triangle).
    Bilinear,
    /// 3: bicubic (a = -0.5).
    Bicubic,
    /// 4: box.
    Box,
    /// 5: Hamming.
    Hamming,
}

impl Filter {
    /// The filter for Pillow's integer code (as in `preprocessor_config.json`'s `resample`).
    pub fn from_pil_code(code: i64) -> Result<Self> {
        Ok(match code {
            0 => Filter::Nearest,
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => {
                return Err(Error::invalid(
                    "resample",
                    format!("unknown PIL resample code {code} (expected 0-5)"),
                ));
            }
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn eval(self, x: f64) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Fixed-point coefficients of one axis: per output pixel the first input
/// index, the tap count and `ksize` weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

fn precompute_coeffs(
    in_size: usize,
    in0: f64,
    in1: f64,
    out_size: usize,
    filter: Filter,
) -> Coeffs {
    let scale = (in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // Pillow truncates toward zero here ((int) cast), then clamps.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64)
            .min(in_size as i64)
            .max(xmin as i64) as usize;
        let n = (xmax - xmin).min(ksize);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(n) {
            let w = filter.eval((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..xx * ksize + ksize];
        for x in 0..n {
            let v = if ww != 0.0 { k[x] / ww } else { k[x] };
            let scaled = v * (1u32 << PRECISION_BITS) as f64;
            row[x] = if v < 0.0 {
                (scaled - 0.5) as i32
            } else {
                (scaled + 0.5) as i32
            };
        }
        bounds.push((xmin, n));
    }
    Coeffs {
        ksize,
        bounds,
        weights,
    }
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an interleaved 8-bit image with `channels` channels from
/// `(width, height)` to `(out_w, out_h)` exactly as Pillow's
/// `Image.resize((out_w, out_h), filter)` does (no `reducing_gap`, whole-image box).
pub fn resize_u8(
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Result<Vec<u8>> {
    if pixels.len() != width * height * channels {
        return Err(Error::invalid(
            "image buffer",
            format!("{} bytes for {width}x{height}x{channels}", pixels.len()),
        ));
    }
    if out_w == 0 || out_h == 0 || width == 0 || height == 0 {
        return Err(Error::invalid(
            "resize",
            format!("cannot resize {width}x{height} to {out_w}x{out_h}"),
        ));
    }
    if filter == Filter::Nearest {
        return Ok(resize_nearest(
            pixels, width, height, channels, out_w, out_h,
        ));
    }
    let need_h = out_w != width;
    let need_v = out_h != height;
    if !need_h && !need_v {
        return Ok(pixels.to_vec());
    }
    let horiz = precompute_coeffs(width, 0.0, width as f64, out_w, filter);
    let vert = precompute_coeffs(height, 0.0, height as f64, out_h, filter);
    // Pillow ≥ 12.3 runs the vertical pass first when the height shrinks by
    // more than twice as much as the width (fewer rows to resample); the
    // intermediate rounding to u8 makes the order visible in the output.
    let dh = height as i64 - out_h as i64;
    let dw = width as i64 - out_w as i64;
    let vertical_first = need_v && dh > 0 && dh > 2 * dw;
    if vertical_first {
        // Only the columns the horizontal pass reads are resampled vertically.
        let (first, last) = if need_h {
            (
                horiz.bounds[0].0,
                horiz.bounds[out_w - 1].0 + horiz.bounds[out_w - 1].1,
            )
        } else {
            (0, width)
        };
        let cols = last - first;
        let mut tmp = vec![0u8; cols * out_h * channels];
        let mut acc = vec![0i32; cols * channels];
        for (yy, &(ymin, n)) in vert.bounds.iter().enumerate() {
            let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + n];
            acc.fill(1 << (PRECISION_BITS - 1));
            for (y, &w) in k.iter().enumerate() {
                let row = (y + ymin) * width * channels;
                let in_row = &pixels[row + first * channels..row + last * channels];
                for (a, &p) in acc.iter_mut().zip(in_row) {
                    *a = a.wrapping_add(p as i32 * w);
                }
            }
            for (o, &a) in tmp[yy * cols * channels..(yy + 1) * cols * channels]
                .iter_mut()
                .zip(&acc)
            {
                *o = clip8(a);
            }
        }
        if !need_h {
            return Ok(tmp);
        }
        let mut shifted = horiz;
        for b in shifted.bounds.iter_mut() {
            b.0 -= first;
        }
        return Ok(horizontal_pass(
            &tmp, cols, out_h, channels, &shifted, out_w,
        ));
    }
    let mut vert = vert;
    let (mut src, mut src_h) = (std::borrow::Cow::Borrowed(pixels), height);
    if need_h {
        // Only the rows the vertical pass reads are resampled horizontally.
        let (first, last) = if need_v {
            (
                vert.bounds[0].0,
                vert.bounds[out_h - 1].0 + vert.bounds[out_h - 1].1,
            )
        } else {
            (0, height)
        };
        let rows = last - first;
        let tmp = horizontal_pass(
            &pixels[first * width * channels..last * width * channels],
            width,
            rows,
            channels,
            &horiz,
            out_w,
        );
        if need_v {
            for b in vert.bounds.iter_mut() {
                b.0 -= first;
            }
        }
        src = std::borrow::Cow::Owned(tmp);
        src_h = rows;
    }
    if !need_v {
        return Ok(src.into_owned());
    }
    let row_len = out_w * channels;
    debug_assert_eq!(src.len(), row_len * src_h);
    let mut out = vec![0u8; row_len * out_h];
    let mut acc = vec![0i32; row_len];
    for (yy, &(ymin, n)) in vert.bounds.iter().enumerate() {
        let k = &vert.weights[yy * vert.ksize..yy * vert.ksize + n];
        acc.fill(1 << (PRECISION_BITS - 1));
        // Row-major accumulation: same sums as Pillow's column loop (integer
        // addition is exact), but streams through memory.
        for (y, &w) in k.iter().enumerate() {
            let in_row = &src[(y + ymin) * row_len..(y + ymin + 1) * row_len];
            for (a, &p) in acc.iter_mut().zip(in_row) {
                *a = a.wrapping_add(p as i32 * w);
            }
        }
        for (o, &a) in out[yy * row_len..(yy + 1) * row_len].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    Ok(out)
}

/// Resamples every row of `pixels` (`width` × `rows`) to `out_w` columns.
fn horizontal_pass(
    pixels: &[u8],
    width: usize,
    rows: usize,
    channels: usize,
    horiz: &Coeffs,
    out_w: usize,
) -> Vec<u8> {
    let mut tmp = vec![0u8; out_w * rows * channels];
    for y in 0..rows {
        let in_row = &pixels[y * width * channels..(y + 1) * width * channels];
        let out_row = &mut tmp[y * out_w * channels..(y + 1) * out_w * channels];
        for (xx, &(xmin, n)) in horiz.bounds.iter().enumerate() {
            let k = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + n];
            for c in 0..channels {
                let mut ss: i32 = 1 << (PRECISION_BITS - 1);
                for (x, &w) in k.iter().enumerate() {
                    ss = ss.wrapping_add(in_row[(x + xmin) * channels + c] as i32 * w);
                }
                out_row[xx * channels + c] = clip8(ss);
            }
        }
    }
    tmp
}

/// Pillow's nearest-neighbour resize (`ImagingTransform` affine sampling at
/// pixel centres).
fn resize_nearest(
    pixels: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    let sx = width as f64 / out_w as f64;
    let sy = height as f64 / out_h as f64;
    let mut out = vec![0u8; out_w * out_h * channels];
    for y in 0..out_h {
        let iy = (((y as f64 + 0.5) * sy) as usize).min(height - 1);
        for x in 0..out_w {
            let ix = (((x as f64 + 0.5) * sx) as usize).min(width - 1);
            let src = (iy * width + ix) * channels;
            let dst = (y * out_w + x) * channels;
            out[dst..dst + channels].copy_from_slice(&pixels[src..src + channels]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy() {
        let px: Vec<u8> = (0..48).map(|i| (i * 5) as u8).collect();
        assert_eq!(resize_u8(&px, 4, 4, 3, 4, 4, Filter::Bicubic).unwrap(), px);
    }

    #[test]
    fn constant_image_stays_constant() {
        let px = vec![77u8; 30 * 20 * 3];
        for f in [
            Filter::Bilinear,
            Filter::Bicubic,
            Filter::Lanczos,
            Filter::Box,
            Filter::Hamming,
        ] {
            let out = resize_u8(&px, 30, 20, 3, 7, 11, f).unwrap();
            assert!(out.iter().all(|&v| v == 77), "{f:?}");
        }
    }

    #[test]
    fn rejects_wrong_buffer() {
        assert!(resize_u8(&[0; 5], 2, 2, 3, 1, 1, Filter::Bilinear).is_err());
        assert!(Filter::from_pil_code(9).is_err());
    }
}
