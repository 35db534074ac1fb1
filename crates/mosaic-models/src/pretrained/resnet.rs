//! ResNet (basic and bottleneck blocks) matching `transformers.ResNetModel`
//! and `ResNetForImageClassification`; BatchNorm is folded into the
//! convolutions at load time (inference).

use std::path::Path;

use candle_core::Tensor;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::nn::{Activation, CheckpointMode, ConvBatchNorm, Linear, ParamStore};
use crate::pretrained::read_config;

/// A ResNet `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ResNetConfig {
    /// Input channels.
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Stem output channels.
    #[serde(default = "emb")]
    pub embedding_size: usize,
    /// Output channels per stage.
    #[serde(default = "hidden")]
    pub hidden_sizes: Vec<usize>,
    /// Blocks per stage.
    #[serde(default = "depths")]
    pub depths: Vec<usize>,
    /// `basic` or `bottleneck`.
    #[serde(default = "bottleneck")]
    pub layer_type: String,
    /// Activation.
    #[serde(default = "relu")]
    pub hidden_act: String,
    /// Whether the first stage halves the resolution.
    #[serde(default)]
    pub downsample_in_first_stage: bool,
    /// Whether bottleneck blocks stride in their first 1×1 conv (v1) rather
    /// than the 3×3 (v1.5).
    #[serde(default)]
    pub downsample_in_bottleneck: bool,
    /// Class names by index (classification checkpoints).
    #[serde(default)]
    pub id2label: Option<std::collections::BTreeMap<String, String>>,
}

fn three() -> usize {
    3
}
fn emb() -> usize {
    64
}
fn hidden() -> Vec<usize> {
    vec![256, 512, 1024, 2048]
}
fn depths() -> Vec<usize> {
    vec![3, 4, 6, 3]
}
fn bottleneck() -> String {
    "bottleneck".into()
}
fn relu() -> String {
    "relu".into()
}

/// A convolution with its BatchNorm folded in, and an optional activation.
#[derive(Debug, Clone)]
struct ConvLayer {
    conv: ConvBatchNorm,
    stride: usize,
    padding: usize,
    act: Option<Activation>,
}

impl ConvLayer {
    #[allow(clippy::too_many_arguments)]
    fn load(
        w: &ParamStore,
        prefix: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        act: Option<Activation>,
    ) -> Result<Self> {
        let conv = ConvBatchNorm::load(
            w,
            &format!("{prefix}.convolution.weight"),
            &[cout, cin, k, k],
            &format!("{prefix}.normalization"),
            1e-5,
        )?;
        Ok(ConvLayer {
            conv,
            stride,
            padding: k / 2,
            act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (weight, bias) = self.conv.weight_bias()?;
        let (k, cout) = (weight.dim(2)?, weight.dim(0)?);
        let y = if k == 1 && self.stride == 1 {
            // Pointwise: one matmul over all pixels.
            let (b, c, h, wd) = x.dims4()?;
            weight
                .reshape((cout, c))?
                .broadcast_matmul(&x.reshape((b, c, h * wd))?)?
                .reshape((b, cout, h, wd))?
        } else {
            x.conv2d(&weight, self.padding, self.stride, 1, 1)?
        };
        let y = y.broadcast_add(&bias.reshape((1, cout, 1, 1))?)?;
        match self.act {
            Some(a) => a.forward(&y),
            None => Ok(y),
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    shortcut: Option<ConvLayer>,
    layers: Vec<ConvLayer>,
    act: Activation,
}

impl Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = x.clone();
        for l in &self.layers {
            y = l.forward(&y)?;
        }
        let skip = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        self.act.forward(&(y + skip)?)
    }
}

/// Outputs of [`ResNetModel::forward`].
#[derive(Debug, Clone)]
pub struct ResNetOutput {
    /// `[B, C, H/32, W/32]`: the last stage's feature map.
    pub last_hidden_state: Tensor,
    /// `[B, C]`: its spatial mean (transformers keeps it as `[B, C, 1, 1]`).
    pub pooler_output: Tensor,
    /// `[B, num_labels]` when the checkpoint has a classifier.
    pub logits: Option<Tensor>,
}

/// A ResNet backbone, with the classifier when the checkpoint has one.
#[derive(Debug)]
pub struct ResNetModel {
    config: ResNetConfig,
    stem: ConvLayer,
    blocks: Vec<Block>,
    classifier: Option<Linear>,
}

impl ResNetModel {
    /// Loads `config.json` + weights (f32, CPU) of a `ResNetModel` or
    /// `ResNetForImageClassification` folder.
    pub fn from_pretrained(dir: &Path) -> Result<Self> {
        Self::load(dir, &super::inference_store(), CheckpointMode::Frozen)
    }

    /// Loads a folder's checkpoint into `store` (at its prefix, in its
    /// dtype and device), trainable or frozen.
    pub fn load(dir: &Path, store: &ParamStore, mode: CheckpointMode) -> Result<Self> {
        let config: ResNetConfig = read_config(dir)?;
        super::attach(dir, store, mode, &["resnet."])?;
        let model = Self::new(config, store)?;
        store.check_unused(&["*num_batches_tracked"])?;
        Ok(model)
    }

    /// Builds from a config and weights named as in `ResNetModel`
    /// (`classifier.1.*` optional).
    pub fn new(config: ResNetConfig, w: &ParamStore) -> Result<Self> {
        let src = || w.source().to_string();
        if config.hidden_sizes.len() != config.depths.len() || config.depths.is_empty() {
            return Err(Error::Config {
                source_name: src(),
                message: format!(
                    "keys `hidden_sizes` ({}) and `depths` ({}) must have the same, non-zero length",
                    config.hidden_sizes.len(),
                    config.depths.len()
                ),
            });
        }
        let bottleneck = match config.layer_type.as_str() {
            "bottleneck" => true,
            "basic" => false,
            other => {
                return Err(Error::Config {
                    source_name: src(),
                    message: format!("key `layer_type`: `{other}` is not `basic` or `bottleneck`"),
                });
            }
        };
        let act = Activation::from_name(&config.hidden_act, &w.source())?;
        let stem = ConvLayer::load(
            w,
            "embedder.embedder",
            config.num_channels,
            config.embedding_size,
            7,
            2,
            Some(act),
        )?;
        let mut blocks = Vec::new();
        let mut cin = config.embedding_size;
        for (s, (&cout, &depth)) in config.hidden_sizes.iter().zip(&config.depths).enumerate() {
            let stage_stride = if s == 0 && !config.downsample_in_first_stage {
                1
            } else {
                2
            };
            for j in 0..depth {
                let p = format!("encoder.stages.{s}.layers.{j}");
                let (inp, stride) = if j == 0 {
                    (cin, stage_stride)
                } else {
                    (cout, 1)
                };
                let shortcut = if inp != cout || stride != 1 {
                    Some(ConvLayer::load(
                        w,
                        &format!("{p}.shortcut"),
                        inp,
                        cout,
                        1,
                        stride,
                        None,
                    )?)
                } else {
                    None
                };
                let l =
                    |i: usize, a: usize, b: usize, k: usize, st: usize, ac: Option<Activation>| {
                        ConvLayer::load(w, &format!("{p}.layer.{i}"), a, b, k, st, ac)
                    };
                let layers = if bottleneck {
                    let r = cout / 4;
                    let (s1, s2) = if config.downsample_in_bottleneck {
                        (stride, 1)
                    } else {
                        (1, stride)
                    };
                    vec![
                        l(0, inp, r, 1, s1, Some(act))?,
                        l(1, r, r, 3, s2, Some(act))?,
                        l(2, r, cout, 1, 1, None)?,
                    ]
                } else {
                    vec![
                        l(0, inp, cout, 3, stride, Some(act))?,
                        l(1, cout, cout, 3, 1, None)?,
                    ]
                };
                blocks.push(Block {
                    shortcut,
                    layers,
                    act,
                });
            }
            cin = cout;
        }
        let classifier = if w.contains("classifier.1.weight") {
            let n = config.id2label.as_ref().map_or(0, |m| m.len());
            if n == 0 {
                return Err(Error::Config {
                    source_name: src(),
                    message:
                        "key `id2label` is missing or empty, but the checkpoint has a classifier"
                            .into(),
                });
            }
            Some(Linear::load(w, "classifier.1", cin, n)?)
        } else {
            None
        };
        Ok(ResNetModel {
            config,
            stem,
            blocks,
            classifier,
        })
    }

    /// The config.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Runs the network on `[B, C, H, W]` pixels.
    pub fn forward(&self, pixels: &Tensor) -> Result<ResNetOutput> {
        let (_, c, h, wd) = pixels.dims4()?;
        if c != self.config.num_channels || h < 8 || wd < 8 {
            return Err(Error::InvalidInput {
                what: "pixel_values".into(),
                message: format!(
                    "got {:?}, the model takes [B, {}, H ≥ 8, W ≥ 8]",
                    pixels.dims(),
                    self.config.num_channels
                ),
            });
        }
        let mut x = max_pool_3x3_s2(&self.stem.forward(pixels)?)?;
        for b in &self.blocks {
            x = b.forward(&x)?;
        }
        let pooled = x.mean(3)?.mean(2)?;
        let logits = match &self.classifier {
            Some(c) => Some(c.forward(&pooled)?),
            None => None,
        };
        Ok(ResNetOutput {
            last_hidden_state: x,
            pooler_output: pooled,
            logits,
        })
    }
}

/// `MaxPool2d(kernel_size=3, stride=2, padding=1)`: padding never wins.
fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let neg = |shape: (usize, usize, usize, usize)| {
        Tensor::full(f32::NEG_INFINITY, shape, x.device())?.to_dtype(x.dtype())
    };
    let x = Tensor::cat(&[&neg((b, c, 1, w))?, x, &neg((b, c, 1, w))?], 2)?;
    let x = Tensor::cat(&[&neg((b, c, h + 2, 1))?, &x, &neg((b, c, h + 2, 1))?], 3)?;
    if !x.track_op() {
        return Ok(x.max_pool2d_with_stride(3, 2)?);
    }
    // candle's max_pool2d has no backward when the window exceeds the
    // stride: under autograd, the max of the nine strided window shifts.
    let (oh, ow) = ((h + 2 - 3) / 2 + 1, (w + 2 - 3) / 2 + 1);
    // One more -inf row and column so every shift has 2·out elements.
    let x = Tensor::cat(&[&x, &neg((b, c, 1, w + 2))?], 2)?;
    let x = Tensor::cat(&[&x, &neg((b, c, h + 3, 1))?], 3)?;
    let mut out: Option<Tensor> = None;
    for dy in 0..3 {
        for dx in 0..3 {
            let s = x
                .narrow(2, dy, 2 * oh)?
                .narrow(3, dx, 2 * ow)?
                .reshape((b, c, oh, 2, ow, 2))?
                .narrow(3, 0, 1)?
                .narrow(5, 0, 1)?
                .reshape((b, c, oh, ow))?;
            out = Some(match out {
                Some(o) => o.maximum(&s)?,
                None => s,
            });
        }
    }
    Ok(out.expect("nine shifts"))
}
