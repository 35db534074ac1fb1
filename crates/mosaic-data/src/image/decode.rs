//! Image decoding: JPEG, PNG, WebP, GIF (first frame), BMP, TIFF (first
//! page), with EXIF orientation and conversion to 8-bit RGB.
//!
//! JPEG pixels come from libjpeg-turbo's decoder (the `mozjpeg` crate, with
//! the defaults Pillow uses: integer IDCT, fancy upsampling), so they equal
//! Pillow's byte for byte; the `image` crate's own JPEG decoder differs from
//! it by a level or two, which moved CLIP pixel values by about 1e-3.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::{Error, Result, read_limited};

/// Bounds on what a decode may cost. A PNG header may declare 100000×100000
/// pixels in a few bytes; these limits turn that into an error before any
/// pixel buffer is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest width or height accepted.
    pub max_side: u32,
    /// Largest decoded buffer in bytes.
    pub max_alloc: u64,
    /// Largest encoded file in bytes.
    pub max_file_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_side: 16_384,
            max_alloc: 512 << 20,
            max_file_bytes: 256 << 20,
        }
    }
}

/// What to do with an alpha channel when converting to RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlphaMode {
    /// Composite over opaque white (what `transformers` 5's `convert_rgb`
    /// does; the default).
    #[default]
    CompositeWhite,
    /// Drop alpha without compositing (PIL's plain `convert("RGB")`).
    Drop,
}

/// Options for [`decode_image`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Alpha handling.
    pub alpha: AlphaMode,
    /// Rotate/flip by the EXIF orientation tag (default on). Note that
    /// `transformers` does not do this (PIL's `Image.open` ignores the tag),
    /// so parity with it on a rotated JPEG needs this off.
    pub apply_exif_orientation: bool,
    /// Resource limits.
    pub limits: DecodeLimits,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            alpha: AlphaMode::default(),
            apply_exif_orientation: true,
            limits: DecodeLimits::default(),
        }
    }
}

/// Decodes an image file into 8-bit RGB.
pub fn load_image(path: &Path, options: &DecodeOptions) -> Result<RgbImage> {
    let bytes = read_limited(path, options.limits.max_file_bytes)?;
    decode_image(&bytes, &path.display().to_string(), options)
}

/// Decodes encoded image bytes into 8-bit RGB. `name` identifies the input
/// in errors.
///
/// Grayscale is replicated to three channels; alpha is composited over
/// white or dropped per [`AlphaMode`]; 16-bit samples are reduced to 8 bits.
pub fn decode_image(bytes: &[u8], name: &str, options: &DecodeOptions) -> Result<RgbImage> {
    decode_dynamic(bytes, name, options).map(|img| to_rgb(img, options.alpha))
}

/// Converts any decoded image to 8-bit RGB with the given alpha handling.
pub fn to_rgb(img: DynamicImage, alpha: AlphaMode) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other if other.color().has_alpha() && alpha == AlphaMode::CompositeWhite => {
            let rgba = other.to_rgba8();
            let (w, h) = rgba.dimensions();
            let mut out = Vec::with_capacity((w * h * 3) as usize);
            for p in rgba.pixels() {
                let a = p[3] as u32;
                for c in 0..3 {
                    // transformers' integer alpha blend onto white (PIL
                    // `alpha_composite` arithmetic), exactly.
                    let v = if a == 0 {
                        255
                    } else {
                        let tmp = 128 * (p[c] as u32 * a + 255 * (255 - a)) + 16384;
                        ((((tmp >> 8) + tmp) >> 8) >> 7).min(255)
                    };
                    out.push(v as u8);
                }
            }
            RgbImage::from_raw(w, h, out).expect("sized")
        }
        other => other.to_rgb8(),
    }
}

/// Decodes into whatever pixel type the file has (after orientation).
pub fn decode_dynamic(bytes: &[u8], name: &str, options: &DecodeOptions) -> Result<DynamicImage> {
    crate::error::guard(name, "image", || decode_dynamic_inner(bytes, name, options))
}

fn decode_dynamic_inner(bytes: &[u8], name: &str, options: &DecodeOptions) -> Result<DynamicImage> {
    let err = |m: String| Error::decode(name, "image", m);
    if bytes.is_empty() {
        return Err(err("the file is empty".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    if reader.format().is_none() {
        return Err(err(
            "unrecognised format (expected JPEG, PNG, WebP, GIF, BMP or TIFF)".into(),
        ));
    }
    let reader_format = reader.format();
    let mut limits = Limits::default();
    limits.max_image_width = Some(options.limits.max_side);
    limits.max_image_height = Some(options.limits.max_side);
    limits.max_alloc = Some(options.limits.max_alloc);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| err(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(err(format!("zero-sized image {w}x{h}")));
    }
    let orientation = if options.apply_exif_orientation {
        // A broken EXIF block is not a reason to lose the picture.
        decoder.orientation().ok()
    } else {
        None
    };
    let mut img = match reader_format {
        Some(ImageFormat::Jpeg) => match decode_jpeg_like_pillow(bytes, name)? {
            Some(img) => img,
            None => DynamicImage::from_decoder(decoder).map_err(|e| err(e.to_string()))?,
        },
        _ => DynamicImage::from_decoder(decoder).map_err(|e| err(e.to_string()))?,
    };
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img)
}

/// Decodes a JPEG as Pillow does (libjpeg-turbo, `JDCT_ISLOW`, fancy
/// upsampling): grayscale stays one channel, YCbCr and RGB files become
/// RGB. `None` for CMYK/YCCK files, which the `image` crate converts.
/// Dimensions and allocation were checked by the caller.
fn decode_jpeg_like_pillow(bytes: &[u8], name: &str) -> Result<Option<DynamicImage>> {
    use mozjpeg::{ColorSpace, Decompress};
    let err = |m: String| Error::decode(name, "JPEG", m);
    // libjpeg fills a truncated scan with grey and only warns; Pillow
    // refuses such a file, and so does this. Entropy-coded data stuffs
    // every 0xFF, so the last SOS marker is the main image's last scan
    // (an EXIF thumbnail's SOS and EOI come before it).
    let scan = bytes
        .windows(2)
        .rposition(|w| w == [0xFF, 0xDA])
        .ok_or_else(|| err("no image data (no SOS marker)".into()))?;
    if !bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err(err("the file is truncated (no end-of-image marker)".into()));
    }
    let io = |e: std::io::Error| err(e.to_string());
    let d = Decompress::new_mem(bytes).map_err(io)?;
    let (w, h) = (d.width() as u32, d.height() as u32);
    let img = match d.color_space() {
        ColorSpace::JCS_GRAYSCALE => {
            let mut s = d.grayscale().map_err(io)?;
            let px = s.read_scanlines::<u8>().map_err(io)?;
            s.finish().map_err(io)?;
            DynamicImage::ImageLuma8(
                GrayImage::from_raw(w, h, px)
                    .ok_or_else(|| err("short grayscale scanlines".into()))?,
            )
        }
        ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB => {
            let mut s = d.rgb().map_err(io)?;
            let px = s.read_scanlines::<u8>().map_err(io)?;
            s.finish().map_err(io)?;
            DynamicImage::ImageRgb8(
                RgbImage::from_raw(w, h, px).ok_or_else(|| err("short RGB scanlines".into()))?,
            )
        }
        _ => return Ok(None),
    };
    Ok(Some(img))
}
