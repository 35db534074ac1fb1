//! Image preprocessing built from a checkpoint's `preprocessor_config.json`,
//! reproducing the `transformers` image processors (CLIP, SigLIP, ViT, BLIP,
//! BiT, ...): convert to RGB, resize through Pillow's resampler, center
//! crop, rescale, normalise, channels first.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde_json::Value;

use super::resize::{Filter, resize_u8};
use crate::error::{Error, Result};

/// How the image is resized before cropping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResizeTo {
    /// Scale so the shorter side equals `shortest_edge` (aspect kept; the
    /// longer side is truncated like Python's `int()`); if `longest_edge` is
    /// set and the long side would exceed it, scale down so it fits.
    ShortestEdge {
        /// Target of the shorter side.
        shortest_edge: usize,
        /// Optional cap on the longer side.
        longest_edge: Option<usize>,
    },
    /// Resize to exactly this height and width (aspect not kept).
    Exact {
        /// Output height.
        height: usize,
        /// Output width.
        width: usize,
    },
}

/// A complete image preprocessing recipe. Build it from a
/// `preprocessor_config.json` with [`ImageProcessor::from_pretrained`] or
/// by hand.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// Resize step; `None` keeps the decoded size.
    pub resize: Option<ResizeTo>,
    /// Resampling filter of the resize.
    pub filter: Filter,
    /// Center crop `(height, width)`; pads with zeros where the image is smaller.
    pub center_crop: Option<(usize, usize)>,
    /// Multiplier applied to the 0–255 values (usually 1/255).
    pub rescale_factor: Option<f64>,
    /// Per-channel mean and std for `(x - mean) / std`.
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

/// Per-channel mean of the OpenAI CLIP preprocessing.
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// Per-channel std of the OpenAI CLIP preprocessing.
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// ImageNet per-channel mean.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet per-channel std.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl ImageProcessor {
    /// CLIP ViT-B/32's processor: shortest edge 224 bicubic, crop 224, OpenAI mean/std.
    pub fn clip(size: usize) -> Self {
        ImageProcessor {
            resize: Some(ResizeTo::ShortestEdge {
                shortest_edge: size,
                longest_edge: None,
            }),
            filter: Filter::Bicubic,
            center_crop: Some((size, size)),
            rescale_factor: Some(1.0 / 255.0),
            normalize: Some((OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)),
        }
    }

    /// SigLIP's processor: square bicubic resize, mean/std 0.5.
    pub fn siglip(size: usize) -> Self {
        ImageProcessor {
            resize: Some(ResizeTo::Exact {
                height: size,
                width: size,
            }),
            filter: Filter::Bicubic,
            center_crop: None,
            rescale_factor: Some(1.0 / 255.0),
            normalize: Some(([0.5; 3], [0.5; 3])),
        }
    }

    /// Reads `preprocessor_config.json` from a checkpoint folder (or the
    /// file itself).
    pub fn from_pretrained(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            path.join("preprocessor_config.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::config(file.display().to_string(), e.to_string()))?;
        Self::from_config_value(&value, &file.display().to_string())
    }

    /// Builds the recipe from a parsed `preprocessor_config.json`. Keys the
    /// image path does not use (tokenizer or video settings) are ignored;
    /// keys it uses are checked and named in errors.
    pub fn from_config_value(cfg: &Value, source: &str) -> Result<Self> {
        let err = |key: &str, m: &str| Error::config(source, format!("key `{key}`: {m}"));
        let obj = cfg
            .as_object()
            .ok_or_else(|| Error::config(source, "expected a JSON object"))?;
        let flag = |key: &str, default: bool| -> Result<bool> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(_) => Err(err(key, "expected true or false")),
            }
        };
        let kind = obj
            .get("image_processor_type")
            .or_else(|| obj.get("feature_extractor_type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        // Processors whose integer `size` means "shortest edge" (transformers'
        // `default_to_square=False`).
        let int_is_shortest = [
            "CLIP",
            "ChineseCLIP",
            "Bit",
            "ConvNext",
            "MobileNet",
            "LevitImage",
        ]
        .iter()
        .any(|p| kind.starts_with(p));
        let resize = if flag("do_resize", true)? {
            match obj.get("size") {
                None | Some(Value::Null) => None,
                Some(v) => Some(parse_size(v, int_is_shortest).map_err(|m| err("size", &m))?),
            }
        } else {
            None
        };
        let filter = match obj.get("resample") {
            None | Some(Value::Null) => Filter::Bicubic,
            Some(v) => {
                let code = v
                    .as_i64()
                    .ok_or_else(|| err("resample", "expected a PIL resample code 0-5"))?;
                Filter::from_pil_code(code).map_err(|e| err("resample", &e.to_string()))?
            }
        };
        let center_crop = if flag("do_center_crop", false)? {
            match obj.get("crop_size") {
                None | Some(Value::Null) => {
                    return Err(err(
                        "crop_size",
                        "do_center_crop is set but crop_size is missing",
                    ));
                }
                Some(v) => match parse_size(v, false).map_err(|m| err("crop_size", &m))? {
                    ResizeTo::Exact { height, width } => Some((height, width)),
                    ResizeTo::ShortestEdge { shortest_edge, .. } => {
                        Some((shortest_edge, shortest_edge))
                    }
                },
            }
        } else {
            None
        };
        let rescale_factor = if flag("do_rescale", true)? {
            Some(match obj.get("rescale_factor") {
                None | Some(Value::Null) => 1.0 / 255.0,
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| err("rescale_factor", "expected a number"))?,
            })
        } else {
            None
        };
        let normalize = if flag("do_normalize", true)? {
            let triple = |key: &str, default: [f32; 3]| -> Result<[f32; 3]> {
                match obj.get(key) {
                    None | Some(Value::Null) => Ok(default),
                    Some(Value::Number(n)) => Ok([n.as_f64().unwrap_or(0.0) as f32; 3]),
                    Some(Value::Array(a)) if a.len() == 3 => {
                        let mut out = [0f32; 3];
                        for (o, v) in out.iter_mut().zip(a) {
                            *o = v.as_f64().ok_or_else(|| err(key, "expected numbers"))? as f32;
                        }
                        Ok(out)
                    }
                    Some(_) => Err(err(key, "expected a number or 3 numbers")),
                }
            };
            let mean = triple("image_mean", IMAGENET_MEAN)?;
            let std = triple("image_std", IMAGENET_STD)?;
            if std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
                return Err(err("image_std", "every std must be finite and non-zero"));
            }
            Some((mean, std))
        } else {
            None
        };
        Ok(ImageProcessor {
            resize,
            filter,
            center_crop,
            rescale_factor,
            normalize,
        })
    }

    /// The `(height, width)` of the output for an input of `(height, width)`.
    pub fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        if let Some(c) = self.center_crop {
            return c;
        }
        self.resized_size(height, width)
    }

    fn resized_size(&self, height: usize, width: usize) -> (usize, usize) {
        match self.resize {
            None => (height, width),
            Some(ResizeTo::Exact { height, width }) => (height, width),
            Some(ResizeTo::ShortestEdge {
                shortest_edge,
                longest_edge,
            }) => {
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                let mut new_short = shortest_edge;
                // Python: int(requested_new_short * long / short), float division.
                let mut new_long = (shortest_edge as f64 * long as f64 / short as f64) as usize;
                if let Some(max) = longest_edge
                    && new_long > max
                {
                    new_short = (max as f64 * new_short as f64 / new_long as f64) as usize;
                    new_long = max;
                }
                if width <= height {
                    (new_long, new_short)
                } else {
                    (new_short, new_long)
                }
            }
        }
    }

    /// Preprocesses one RGB image into a `[3, H, W]` f32 tensor.
    pub fn preprocess(&self, image: &RgbImage) -> Result<Tensor> {
        let (h, w, data) = self.preprocess_to_vec(image)?;
        Ok(Tensor::from_vec(data, (3, h, w), &Device::Cpu)?)
    }

    /// Preprocesses a batch of images into `[B, 3, H, W]`. Every output has
    /// the same size only when the recipe fixes it (crop or exact resize).
    pub fn preprocess_batch(&self, images: &[RgbImage]) -> Result<Tensor> {
        let mut all = Vec::new();
        let mut shape = None;
        for (i, img) in images.iter().enumerate() {
            let (h, w, data) = self.preprocess_to_vec(img)?;
            match shape {
                None => shape = Some((h, w)),
                Some(s) if s != (h, w) => {
                    return Err(Error::invalid(
                        "image batch",
                        format!(
                            "image {i} preprocesses to {h}x{w}, the first to {}x{}: set a crop or an exact size",
                            s.0, s.1
                        ),
                    ));
                }
                _ => {}
            }
            all.extend(data);
        }
        let (h, w) = shape.unwrap_or((0, 0));
        Ok(Tensor::from_vec(
            all,
            (images.len(), 3, h, w),
            &Device::Cpu,
        )?)
    }

    /// The preprocessing arithmetic on plain buffers: `(height, width, CHW data)`.
    pub fn preprocess_to_vec(&self, image: &RgbImage) -> Result<(usize, usize, Vec<f32>)> {
        let (w0, h0) = (image.width() as usize, image.height() as usize);
        let (rh, rw) = self.resized_size(h0, w0);
        // An extreme aspect ratio (1×16384 under shortest-edge 224) would
        // resize to gigabytes before the crop.
        if rh.saturating_mul(rw) > 1 << 26 {
            return Err(Error::invalid(
                "image",
                format!(
                    "{w0}x{h0} image would resize to {rw}x{rh} pixels; its aspect ratio is too extreme"
                ),
            ));
        }
        if rh == 0 || rw == 0 {
            return Err(Error::invalid(
                "image",
                format!("{w0}x{h0} image resizes to an empty {rw}x{rh}"),
            ));
        }
        let resized;
        let pixels: &[u8] = if (rh, rw) != (h0, w0) {
            resized = resize_u8(image.as_raw(), w0, h0, 3, rw, rh, self.filter)?;
            &resized
        } else {
            image.as_raw()
        };
        let (oh, ow) = self.center_crop.unwrap_or((rh, rw));
        // transformers' center_crop: floor-division offsets, zero padding
        // (centred with ceil) where the crop is larger than the image.
        let top = (rh as i64 - oh as i64).div_euclid(2);
        let left = (rw as i64 - ow as i64).div_euclid(2);
        let plane = oh * ow;
        let mut out = vec![0f32; 3 * plane];
        let scale = self.rescale_factor;
        let (mean, std) = self.normalize.unwrap_or(([0.0; 3], [1.0; 3]));
        let do_norm = self.normalize.is_some();
        // Padding value: zeros in u8 space, then rescaled and normalised
        // like real pixels, as transformers pads before rescaling.
        let pad_top = if oh > rh {
            (oh - rh).div_ceil(2) as i64
        } else {
            0
        };
        let pad_left = if ow > rw {
            (ow - rw).div_ceil(2) as i64
        } else {
            0
        };
        let (top, left) = if oh > rh || ow > rw {
            (top + pad_top, left + pad_left)
        } else {
            (top, left)
        };
        for y in 0..oh {
            let sy = y as i64 + top - pad_top;
            for x in 0..ow {
                let sx = x as i64 + left - pad_left;
                for c in 0..3 {
                    let raw = if sy >= 0 && sy < rh as i64 && sx >= 0 && sx < rw as i64 {
                        pixels[(sy as usize * rw + sx as usize) * 3 + c]
                    } else {
                        0
                    };
                    // rescale: float64 multiply, then float32 (numpy semantics);
                    // normalise in float32.
                    let mut v = match scale {
                        Some(s) => (raw as f64 * s) as f32,
                        None => raw as f32,
                    };
                    if do_norm {
                        v = (v - mean[c]) / std[c];
                    }
                    out[c * plane + y * ow + x] = v;
                }
            }
        }
        Ok((oh, ow, out))
    }
}

fn parse_size(v: &Value, int_is_shortest: bool) -> std::result::Result<ResizeTo, String> {
    let as_usize = |v: &Value| -> std::result::Result<usize, String> {
        v.as_u64()
            .filter(|&n| n > 0 && n <= 65_536)
            .map(|n| n as usize)
            .ok_or_else(|| format!("expected a positive integer, got {v}"))
    };
    match v {
        Value::Number(_) => {
            let n = as_usize(v)?;
            Ok(if int_is_shortest {
                ResizeTo::ShortestEdge {
                    shortest_edge: n,
                    longest_edge: None,
                }
            } else {
                ResizeTo::Exact {
                    height: n,
                    width: n,
                }
            })
        }
        Value::Object(o) => {
            if let Some(s) = o.get("shortest_edge") {
                let longest_edge = match o.get("longest_edge") {
                    None | Some(Value::Null) => None,
                    Some(l) => Some(as_usize(l)?),
                };
                Ok(ResizeTo::ShortestEdge {
                    shortest_edge: as_usize(s)?,
                    longest_edge,
                })
            } else if let (Some(h), Some(w)) = (o.get("height"), o.get("width")) {
                Ok(ResizeTo::Exact {
                    height: as_usize(h)?,
                    width: as_usize(w)?,
                })
            } else {
                Err(format!(
                    "expected {{\"shortest_edge\"}} or {{\"height\", \"width\"}}, got {v}"
                ))
            }
        }
        Value::Array(a) if a.len() == 2 => Ok(ResizeTo::Exact {
            height: as_usize(&a[0])?,
            width: as_usize(&a[1])?,
        }),
        _ => Err(format!("unsupported size {v}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_truncates_like_python_int() {
        let p = ImageProcessor::clip(224);
        // 512x300 (w x h): short = 300 → long = int(224*512/300) = 382.
        let mut q = p.clone();
        q.center_crop = None;
        assert_eq!(q.output_size(300, 512), (224, 382));
        assert_eq!(q.output_size(512, 300), (382, 224));
        assert_eq!(p.output_size(300, 512), (224, 224));
    }

    #[test]
    fn config_errors_name_the_key() {
        let cfg = serde_json::json!({"size": {"foo": 3}});
        let e = ImageProcessor::from_config_value(&cfg, "x.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`size`") && e.contains("x.json"), "{e}");
        let cfg = serde_json::json!({"do_center_crop": true});
        let e = ImageProcessor::from_config_value(&cfg, "x.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("crop_size"), "{e}");
        let cfg = serde_json::json!({"image_std": [1, 0, 1]});
        assert!(ImageProcessor::from_config_value(&cfg, "x.json").is_err());
    }

    #[test]
    fn crop_larger_than_image_pads_with_normalised_zero() {
        let img = RgbImage::from_pixel(2, 2, image::Rgb([255, 255, 255]));
        let p = ImageProcessor {
            resize: None,
            filter: Filter::Bicubic,
            center_crop: Some((4, 4)),
            rescale_factor: Some(1.0 / 255.0),
            normalize: None,
        };
        let (h, w, v) = p.preprocess_to_vec(&img).unwrap();
        assert_eq!((h, w), (4, 4));
        assert_eq!(v[0], 0.0);
        assert_eq!(v[5], 1.0);
    }
}
