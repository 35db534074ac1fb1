//! Pretrained towers behind the one `Encoder` interface: the same numbers
//! as their own entry points, padding-invariant pooled outputs, clear
//! errors on the wrong input kind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use mosaic_core::{Modality, ModalityBatch};
use mosaic_models::Encoder;
use mosaic_models::encoder::{ClipTextEncoder, ClipVisionEncoder, SiglipVisionEncoder};
use mosaic_models::pretrained::{ClipModel, ResNetModel, SentenceEncoder, SiglipModel};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn io(rel: &str) -> std::collections::HashMap<String, Tensor> {
    mosaic_core::formats::load_tensors(&fixtures().join(rel), &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn batch(values: &Tensor, mask: Option<&Tensor>) -> ModalityBatch {
    let b = values.dim(0).unwrap();
    ModalityBatch::new(values.clone(), mask.cloned(), vec![true; b]).unwrap()
}

#[test]
fn clip_towers_as_encoders_match_transformers() {
    let t = io("vision/tiny_io.safetensors");
    let clip = Arc::new(ClipModel::from_pretrained(&fixtures().join("vision/clip_tiny")).unwrap());
    let text = ClipTextEncoder(clip.clone());
    let vision = ClipVisionEncoder(clip.clone());
    assert_eq!(
        (text.modality(), vision.modality()),
        (Modality::Text, Modality::Image)
    );
    let mask = t["attention_mask"].to_dtype(DType::U8).unwrap();
    let f = text.encode(&batch(&t["input_ids"], Some(&mask))).unwrap();
    assert_eq!(
        f.pooled.dims(),
        &[t["input_ids"].dim(0).unwrap(), text.pooled_dim()]
    );
    let direct = clip
        .text_embeds(&t["input_ids"], Some(&t["attention_mask"]))
        .unwrap();
    assert!(max_abs(&f.pooled, &direct) <= 1e-6);
    // Tokens live in the joint space too: the end-of-text token's row is
    // the pooled embedding.
    assert_eq!(f.tokens.dim(2).unwrap(), text.token_dim());
    assert_eq!(text.token_dim(), text.pooled_dim());
    let ids: Vec<Vec<u32>> = t["input_ids"]
        .to_dtype(DType::U32)
        .unwrap()
        .to_vec2()
        .unwrap();
    let eos = clip.config().text_config.eos_token_id;
    for (i, row) in ids.iter().enumerate() {
        let pos = row.iter().position(|&v| v == eos).unwrap();
        let tok = f.tokens.get(i).unwrap().get(pos).unwrap();
        assert!(max_abs(&tok, &f.pooled.get(i).unwrap()) <= 1e-6);
    }
    let v = vision.encode(&batch(&t["pixel_values"], None)).unwrap();
    assert_eq!(v.tokens.dim(2).unwrap(), vision.token_dim());
    assert!(max_abs(&v.pooled, &clip.image_embeds(&t["pixel_values"]).unwrap()) <= 1e-6);
    assert!(
        max_abs(
            &v.tokens.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(),
            &v.pooled
        ) <= 1e-6
    );
    // Pixels given to the text tower: a clear error, not a panic.
    let e = text
        .encode(&batch(&t["pixel_values"], None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("text batch") && e.contains("token ids"), "{e}");
}

#[test]
fn siglip_and_resnet_as_encoders() {
    let t = io("families/siglip_tiny_io.safetensors");
    let m =
        Arc::new(SiglipModel::from_pretrained(&fixtures().join("families/siglip_tiny")).unwrap());
    let f = SiglipVisionEncoder(m)
        .encode(&batch(&t["pixel_values"], None))
        .unwrap();
    assert!(max_abs(&f.pooled, &t["image_features"]) <= 1e-4);

    let t = io("families/resnet_tiny_io.safetensors");
    let r = ResNetModel::from_pretrained(&fixtures().join("families/resnet_tiny")).unwrap();
    let f = r.encode(&batch(&t["pixel_values"], None)).unwrap();
    // [B, 64, 2, 2] map → [B, 4, 64] tokens; pooled = their mean.
    assert_eq!(f.tokens.dims(), &[2, 4, 64]);
    assert!(max_abs(&f.pooled, &t["pooler_output"].reshape((2, 64)).unwrap()) <= 1e-5);
    assert!(max_abs(&f.tokens.mean(1).unwrap(), &f.pooled) <= 1e-5);
    let e = r
        .encode(&batch(
            &Tensor::zeros((2, 5), DType::U32, &Device::Cpu).unwrap(),
            None,
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("image batch"), "{e}");
}

#[test]
fn sentence_encoder_pooled_output_ignores_padding() {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("minilm-l6-v2"),
        "fetch minilm-l6-v2 (scripts/test.sh does)"
    );
    let enc = SentenceEncoder::from_pretrained(&store.path("minilm-l6-v2").unwrap()).unwrap();
    let texts = [
        "A short one.",
        "A considerably longer sentence that needs many more word pieces.",
    ];
    let tb = enc.tokenizer().encode_batch(&texts).unwrap();
    let f = Encoder::encode(&enc, &batch(&tb.ids, Some(&tb.attention_mask))).unwrap();
    // The short sentence alone (no padding) gives the same embedding.
    let alone = enc.tokenizer().encode_batch(&texts[..1]).unwrap();
    let g = Encoder::encode(&enc, &batch(&alone.ids, Some(&alone.attention_mask))).unwrap();
    let d = max_abs(&f.pooled.get(0).unwrap(), &g.pooled.get(0).unwrap());
    assert!(d <= 1e-5, "padding changed the pooled output by {d}");
    assert_eq!(
        max_abs(
            &f.pooled,
            &SentenceEncoder::encode(&enc, &texts, 8).unwrap()
        ),
        0.0
    );
}
