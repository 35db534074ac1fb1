//! Shared helpers of the mosaic-train tests: the late-fusion model of
//! `configs/arch/late.toml` in f64 and seeded batches for it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mosaic_core::{Batch, Modality, ModalityBatch};
use mosaic_models::arch::{ArchConfig, MultimodalModel};
use mosaic_models::nn::ParamStore;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `configs/arch/late.toml` (ViT 28×28 + text transformer, dim 32, one
/// layer each, CLIP head).
pub fn late_config() -> ArchConfig {
    ArchConfig::from_file(&repo().join("configs/arch/late.toml")).unwrap()
}

/// The late model in f64 on `store` (fresh when `None`).
pub fn late_model(store: Option<ParamStore>) -> MultimodalModel {
    let cfg = late_config();
    match store {
        Some(s) => MultimodalModel::with_params(&cfg, s).unwrap(),
        None => MultimodalModel::from_config(&cfg, DType::F64, &Device::Cpu).unwrap(),
    }
}

/// xorshift values in [-1, 1).
pub fn noise(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// A batch of `b` image–text pairs for the late model: f64 images
/// `[b, 1, 28, 28]`, token ids `[b, 16]` with varying lengths and masks.
pub fn late_batch(b: usize, seed: u64) -> Batch {
    let dev = Device::Cpu;
    let img = Tensor::from_vec(noise(seed, b * 28 * 28), (b, 1, 28, 28), &dev).unwrap();
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for i in 0..b {
        let len = 4 + (i * 5 + seed as usize) % 12;
        for t in 0..16 {
            ids.push(if t < len {
                ((i * 131 + t * 17 + seed as usize * 7) % 713 + 1) as u32
            } else {
                0
            });
            mask.push((t < len) as u8);
        }
    }
    let ids = Tensor::from_vec(ids, (b, 16), &dev).unwrap();
    let mask = Tensor::from_vec(mask, (b, 16), &dev).unwrap();
    let mut batch = Batch::new((0..b).map(|i| format!("s{i}")).collect());
    batch
        .insert(
            Modality::Image,
            ModalityBatch::new(img, None, vec![true; b]).unwrap(),
        )
        .unwrap();
    batch
        .insert(
            Modality::Text,
            ModalityBatch::new(ids, Some(mask), vec![true; b]).unwrap(),
        )
        .unwrap();
    batch
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f64> = a
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f64> = b
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The scalar value of a one-element tensor.
pub fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0]
}
