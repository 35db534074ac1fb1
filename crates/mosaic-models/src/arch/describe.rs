//! `mosaic model describe`: the module tree with parameter counts, and an
//! analytic count of floating-point operations per sample (multiply–adds
//! ×2 of every matmul, convolution and attention product; elementwise ops
//! and norms are not counted).

use crate::arch::encoders::{
    AudioConfig, CnnConfig, PointTransformerConfig, PointnetConfig, PretrainedConfig, SensorConfig,
    TextTransformerConfig, VideoConfig, VitConfig,
};
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::arch::config::{ArchConfig, EncoderConfig, FusionConfig, HeadConfig, VideoAttention};
use crate::arch::model::MultimodalModel;

/// Points per cloud assumed by the FLOP count of point-cloud encoders.
pub const ASSUMED_POINTS: usize = 1024;

/// FLOPs of one transformer block over `t` tokens of width `d` attending to
/// `s` keys, MLP ×`r`, plus cross-attention to `c` tokens of width `cd`.
fn block(t: usize, s: usize, d: usize, r: usize, cross: Option<(usize, usize)>) -> u64 {
    let (t, s, d, r) = (t as u64, s as u64, d as u64, r as u64);
    let mut f = 2 * t * d * d * 4 + 4 * t * s * d + 4 * t * d * r * d;
    if let Some((c, cd)) = cross {
        let (c, cd) = (c as u64, cd as u64);
        f += 2 * t * d * d * 2 + 2 * c * cd * d * 2 + 4 * t * c * d;
    }
    f
}

/// `(tokens, flops)` of one sample through an encoder.
pub fn encoder_cost(e: &EncoderConfig) -> (usize, u64) {
    match e {
        EncoderConfig::TextTransformer(TextTransformerConfig {
            max_len,
            dim,
            layers,
            mlp_ratio,
            ..
        }) => (
            *max_len,
            *layers as u64 * block(*max_len, *max_len, *dim, *mlp_ratio, None),
        ),
        EncoderConfig::BagOfWords(_) => (1, 0),
        EncoderConfig::Vit(VitConfig {
            image_size,
            patch_size,
            channels,
            dim,
            layers,
            mlp_ratio,
            ..
        }) => {
            let n = (image_size / patch_size).pow(2);
            let patch = 2 * (n * channels * patch_size * patch_size * dim) as u64;
            (
                n + 1,
                patch + *layers as u64 * block(n + 1, n + 1, *dim, *mlp_ratio, None),
            )
        }
        EncoderConfig::Cnn(CnnConfig {
            image_size,
            channels,
            widths,
            dim,
        }) => {
            let (mut side, mut cin, mut f) = (*image_size, *channels, 0u64);
            for &w in widths {
                side = side.div_ceil(2);
                f += 2 * (w * cin * 9 * side * side) as u64;
                cin = w;
            }
            f += 2 * (side * side * cin * dim) as u64;
            (side * side, f)
        }
        EncoderConfig::Audio(AudioConfig {
            n_mels,
            max_frames,
            dim,
            layers,
            ..
        }) => {
            let t = max_frames.div_ceil(2);
            let f = 2 * (dim * n_mels * 3 * max_frames + dim * dim * 3 * t) as u64;
            (t, f + *layers as u64 * block(t, t, *dim, 4, None))
        }
        EncoderConfig::Video(VideoConfig {
            frames,
            image_size,
            patch_size,
            channels,
            dim,
            layers,
            temporal_layers,
            attention,
            ..
        }) => {
            let n = (image_size / patch_size).pow(2);
            let patch = 2 * (n * channels * patch_size * patch_size * dim) as u64 * *frames as u64;
            match attention {
                VideoAttention::Factorized => {
                    let spatial =
                        *frames as u64 * *layers as u64 * block(n + 1, n + 1, *dim, 4, None);
                    (
                        *frames,
                        patch
                            + spatial
                            + *temporal_layers as u64 * block(*frames, *frames, *dim, 4, None),
                    )
                }
                VideoAttention::Divided => {
                    let (f, nn, d) = (*frames as u64, n as u64, *dim as u64);
                    let time = nn * (2 * f * d * d * 4 + 4 * f * f * d);
                    let space = f * block(n, n, *dim, 4, None);
                    (frames * n, patch + *layers as u64 * (time + space))
                }
            }
        }
        EncoderConfig::Pointnet(PointnetConfig {
            in_features,
            widths,
            dim,
        }) => {
            let mut cin = *in_features;
            let mut f = 0u64;
            for &w in widths.iter().chain(std::iter::once(dim)) {
                f += 2 * (ASSUMED_POINTS * cin * w) as u64;
                cin = w;
            }
            (ASSUMED_POINTS, f)
        }
        EncoderConfig::PointTransformer(PointTransformerConfig {
            in_features,
            groups,
            group_size,
            dim,
            layers,
            ..
        }) => {
            let local = 2 * (groups * group_size * (in_features * dim + dim * dim)) as u64;
            let centre = 2 * (groups * (3 * dim + dim * dim)) as u64;
            (
                *groups,
                local + centre + *layers as u64 * block(*groups, *groups, *dim, 4, None),
            )
        }
        // Not counted: the cost is the checkpoint's (see `describe`).
        EncoderConfig::Pretrained(PretrainedConfig { max_len, .. }) => (max_len.unwrap_or(1), 0),
        EncoderConfig::Sensor(SensorConfig {
            channels,
            max_len,
            dim,
            layers,
            kernel,
            ..
        }) => {
            let conv = 2 * (dim * channels * kernel * max_len) as u64;
            (
                *max_len,
                conv + *layers as u64 * block(*max_len, *max_len, *dim, 4, None),
            )
        }
    }
}

/// FLOPs per sample of the fusion.
pub fn fusion_cost(cfg: &ArchConfig) -> u64 {
    let d = cfg.dim;
    let tokens: BTreeMap<_, _> = cfg
        .encoders
        .iter()
        .map(|(m, e)| (*m, encoder_cost(e).0))
        .collect();
    let proj_all: u64 = cfg
        .encoders
        .iter()
        .map(|(m, e)| 2 * (tokens[m] * e.dim() * d) as u64)
        .sum();
    match &cfg.fusion {
        FusionConfig::Early { hidden, layers } => {
            let input: usize = cfg.encoders.values().map(|e| e.dim()).sum();
            2 * (input * hidden + (layers - 1) * hidden * hidden + hidden * d) as u64
        }
        FusionConfig::Late {} => cfg
            .encoders
            .values()
            .map(|e| 2 * (e.dim() * d) as u64)
            .sum(),
        FusionConfig::CrossAttention {
            query,
            context,
            layers,
            ..
        } => {
            let (t, c) = (tokens[query], tokens[context]);
            *layers as u64 * block(t, t, d, 4, Some((c, cfg.encoders[context].dim())))
        }
        FusionConfig::SingleStream { layers, .. } | FusionConfig::MultiStream { layers, .. } => {
            let t: usize = tokens.values().sum::<usize>() + 1;
            proj_all + *layers as u64 * block(t, t, d, 4, None)
        }
        FusionConfig::Gated {} => {
            let m = cfg.encoders.len();
            cfg.encoders
                .values()
                .map(|e| 2 * (e.dim() * d) as u64)
                .sum::<u64>()
                + 2 * (m * d * m) as u64
        }
        FusionConfig::Generative {
            prefix,
            prefix_tokens,
            vocab_size,
            max_len,
            layers,
            ..
        } => {
            let pools: u64 = prefix
                .iter()
                .map(|m| {
                    let t = tokens[m] as u64;
                    2 * t * (cfg.encoders[m].dim() * d) as u64
                        + *prefix_tokens as u64
                            * (2 * t * (d * d * 2) as u64 + 4 * t * d as u64 + 4 * (d * d) as u64)
                })
                .sum();
            pools
                + *layers as u64 * block(*max_len, *max_len, d, 4, None)
                + 2 * (max_len * d * vocab_size) as u64
        }
    }
}

fn head_cost(cfg: &ArchConfig, h: &HeadConfig) -> u64 {
    match h {
        HeadConfig::Contrastive { project: false, .. } => 0,
        HeadConfig::Contrastive {
            modalities, dim, ..
        } => modalities
            .iter()
            .map(|m| 2 * (cfg.encoders[m].dim().max(cfg.dim) * dim) as u64)
            .sum(),
        HeadConfig::Classifier { classes } => 2 * (cfg.dim * classes) as u64,
        HeadConfig::Itm {} => 2 * (cfg.dim * 2) as u64,
        HeadConfig::Lm {} => 0,
    }
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// The description: a tree of parameter counts down to `depth` name
/// levels, then FLOPs per sample per part and in total.
pub fn describe(model: &MultimodalModel, depth: usize) -> String {
    let cfg = model.config();
    let mut tree: BTreeMap<String, usize> = BTreeMap::new();
    for (name, v) in model.params().vars() {
        let parts: Vec<&str> = name.split('.').collect();
        for k in 1..=parts.len().min(depth) {
            *tree.entry(parts[..k].join(".")).or_default() += v.elem_count();
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "model `{}`: fusion {}, {} parameters",
        cfg.name,
        cfg.fusion.kind(),
        human(model.params().num_params() as u64)
    );
    let _ = writeln!(s, "\n{:<48} {:>12}", "module", "parameters");
    for (name, n) in &tree {
        let level = name.matches('.').count();
        let leaf = name.rsplit('.').next().unwrap_or(name);
        let _ = writeln!(
            s,
            "{:<48} {:>12}",
            format!("{}{}", "  ".repeat(level), leaf),
            n
        );
    }
    let _ = writeln!(s, "\n{:<48} {:>12}", "FLOPs per sample", "");
    let mut total = 0u64;
    for (m, e) in &cfg.encoders {
        let (t, f) = encoder_cost(e);
        total += f;
        let _ = writeln!(
            s,
            "{:<48} {:>12}",
            format!("encoders.{m} ({}, {t} tokens)", e.kind()),
            human(f)
        );
    }
    let f = fusion_cost(cfg);
    total += f;
    let _ = writeln!(
        s,
        "{:<48} {:>12}",
        format!("fusion ({})", cfg.fusion.kind()),
        human(f)
    );
    for (name, h) in &cfg.heads {
        let f = head_cost(cfg, h);
        total += f;
        let _ = writeln!(
            s,
            "{:<48} {:>12}",
            format!("heads.{name} ({})", h.kind()),
            human(f)
        );
    }
    let _ = writeln!(s, "{:<48} {:>12}", "total", human(total));
    if cfg.encoders.values().any(|e| {
        matches!(
            e,
            EncoderConfig::Pointnet(_) | EncoderConfig::PointTransformer(_)
        )
    }) {
        let _ = writeln!(s, "(point clouds counted at {ASSUMED_POINTS} points)");
    }
    if cfg
        .encoders
        .values()
        .any(|e| matches!(e, EncoderConfig::Pretrained(_)))
    {
        let _ = writeln!(s, "(pretrained towers not counted)");
    }
    s
}
