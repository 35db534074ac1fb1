//! Every pretrained family is trainable: loaded with
//! [`CheckpointMode::Trainable`] into an f64 [`ParamStore`], its full forward
//! on the tiny random checkpoints written by transformers (and the real
//! EfficientNet-Lite0) gives autograd gradients equal to central finite
//! differences for every parameter, and the trainable load computes the
//! same outputs as the frozen inference load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use mosaic_models::nn::gradcheck::check_gradients;
use mosaic_models::nn::{CheckpointMode, LoraSpec, ParamStore};
use mosaic_models::pretrained::bert::BertModel;
use mosaic_models::pretrained::blip::BlipModel;
use mosaic_models::pretrained::clip::ClipModel;
use mosaic_models::pretrained::efficientnet::EfficientNetLite;
use mosaic_models::pretrained::llama::KvCache;
use mosaic_models::pretrained::llava::LlavaModel;
use mosaic_models::pretrained::resnet::ResNetModel;
use mosaic_models::pretrained::siglip::SiglipModel;
use mosaic_models::pretrained::vit::VitModel;
use mosaic_models::pretrained::whisper::WhisperModel;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture's inputs, floats as f64.
fn inputs(rel: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(rel), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let v = if v.dtype() == DType::F32 {
                v.to_dtype(DType::F64).unwrap()
            } else {
                v
            };
            (k, v)
        })
        .collect()
}

fn trainable_store() -> ParamStore {
    ParamStore::new(0, DType::F64, &Device::Cpu)
}

/// `Σ t · sin(0.37 i + seed)`: a loss whose gradient reaches every output
/// element with a different weight.
fn weighted_sum(t: &Tensor, seed: u64) -> mosaic_models::Result<Tensor> {
    let n = t.elem_count();
    let w: Vec<f64> = (0..n)
        .map(|i| (0.37 * i as f64 + seed as f64).sin())
        .collect();
    let w = Tensor::from_vec(w, t.dims(), t.device())?;
    Ok(t.to_dtype(DType::F64)?.mul(&w)?.sum_all()?)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Checks `per_var` elements of every parameter of `store`; fails unless
/// the store holds `min_vars` or more (so a loader that silently froze a
/// part would be caught).
fn check(
    family: &str,
    store: &ParamStore,
    min_vars: usize,
    per_var: usize,
    loss: impl Fn() -> mosaic_models::Result<Tensor>,
) {
    check_except(family, store, &[], min_vars, per_var, loss)
}

/// [`check`], leaving out the parameters under the `unused` prefixes
/// (which the forward, like transformers', never reads).
fn check_except(
    family: &str,
    store: &ParamStore,
    unused: &[&str],
    min_vars: usize,
    per_var: usize,
    loss: impl Fn() -> mosaic_models::Result<Tensor>,
) {
    let vars: Vec<(String, Var)> = store
        .vars()
        .into_iter()
        .filter(|(k, _)| !unused.iter().any(|u| k.starts_with(u)))
        .collect();
    assert!(
        vars.len() >= min_vars,
        "{family}: {} trainable tensors, expected at least {min_vars}",
        vars.len()
    );
    let rep = check_gradients(&vars, loss, per_var, 1e-5, 1e-5)
        .unwrap_or_else(|e| panic!("{family}: {e}"));
    eprintln!(
        "{family}: {} tensors, {} elements, max relative error {:e} at {}",
        vars.len(),
        rep.checked,
        rep.max_rel,
        rep.worst
    );
}

#[test]
fn bert_gradients_match_finite_differences() {
    let dir = fixtures().join("text/bert_tiny");
    let store = trainable_store();
    let m = BertModel::load(&dir, &store, CheckpointMode::Trainable).unwrap();
    let io = inputs("text/bert_tiny_io.safetensors");
    let ids = io["input_ids"].narrow(0, 0, 2).unwrap();
    let types = io["token_type_ids"].narrow(0, 0, 2).unwrap();
    let mask = io["attention_mask"].narrow(0, 0, 2).unwrap();
    let out = m.forward(&ids, Some(&types), Some(&mask)).unwrap();
    let want = io["gelu/last_hidden_state"].narrow(0, 0, 2).unwrap();
    let d = max_abs(&out.last_hidden_state, &want);
    assert!(d < 1e-4, "trainable BERT differs from transformers by {d}");
    check("bert", &store, 20, 2, || {
        let o = m.forward(&ids, Some(&types), Some(&mask))?;
        Ok((weighted_sum(&o.last_hidden_state, 1)?
            + weighted_sum(o.pooler_output.as_ref().unwrap(), 2)?)?)
    });
}

#[test]
fn clip_text_and_vision_gradients_match_finite_differences() {
    let dir = fixtures().join("vision/clip_tiny");
    let io = inputs("vision/tiny_io.safetensors");
    let store = trainable_store();
    let m = ClipModel::load(&dir, &store, CheckpointMode::Trainable).unwrap();
    let px = io["pixel_values"].narrow(0, 0, 1).unwrap();
    let want = io["clip/image_features"].narrow(0, 0, 1).unwrap();
    let d = max_abs(&m.image_embeds(&px).unwrap(), &want);
    assert!(d < 1e-4, "trainable CLIP image embeds differ by {d}");
    let (ids, mask) = (&io["input_ids"], &io["attention_mask"]);
    check("clip", &store, 30, 1, || {
        let t = m.text_embeds(ids, Some(mask))?;
        let i = m.image_embeds(&px)?;
        // The logits reach the learned temperature too.
        Ok((weighted_sum(&m.logits_per_image(&i, &t)?, 3)? + weighted_sum(&t, 4)?)?)
    });
}

#[test]
fn siglip_gradients_match_finite_differences() {
    let dir = fixtures().join("families/siglip_tiny");
    let io = inputs("families/siglip_tiny_io.safetensors");
    let store = trainable_store();
    let m = SiglipModel::load(&dir, &store, CheckpointMode::Trainable).unwrap();
    let px = io["pixel_values"].narrow(0, 0, 1).unwrap();
    let ids = io["input_ids"].narrow(0, 0, 2).unwrap();
    let want = io["image_features"].narrow(0, 0, 1).unwrap();
    let d = max_abs(&m.image_embeds(&px).unwrap(), &want);
    assert!(d < 1e-4, "trainable SigLIP image embeds differ by {d}");
    check("siglip", &store, 30, 1, || {
        let t = m.text_embeds(&ids)?;
        let i = m.image_embeds(&px)?;
        Ok((weighted_sum(&m.logits_per_image(&i, &t)?, 5)? + weighted_sum(&i, 6)?)?)
    });
}

#[test]
fn vit_gradients_match_finite_differences() {
    let dir = fixtures().join("vision/vit_tiny");
    let io = inputs("vision/tiny_io.safetensors");
    let store = trainable_store();
    let m = VitModel::load(&dir, &store, CheckpointMode::Trainable).unwrap();
    let px = io["pixel_values"].narrow(0, 0, 1).unwrap();
    let out = m.forward(&px).unwrap();
    let want = io["vit/last_hidden_state"].narrow(0, 0, 1).unwrap();
    let d = max_abs(&out.last_hidden_state, &want);
    assert!(d < 1e-4, "trainable ViT differs by {d}");
    check("vit", &store, 20, 2, || {
        let o = m.forward(&px)?;
        Ok((weighted_sum(&o.last_hidden_state, 7)?
            + weighted_sum(o.pooler_output.as_ref().unwrap(), 8)?)?)
    });
}

#[test]
fn resnet_gradients_reach_convolutions_and_batch_norm_scales() {
    let dir = fixtures().join("families/resnet_tiny");
    let io = inputs("families/resnet_tiny_io.safetensors");
    let store = trainable_store();
    let m = ResNetModel::load(&dir, &store, CheckpointMode::Trainable).unwrap();
    let px = io["pixel_values"].narrow(0, 0, 1).unwrap();
    let out = m.forward(&px).unwrap();
    let want = io["logits"].narrow(0, 0, 1).unwrap();
    let d = max_abs(out.logits.as_ref().unwrap(), &want);
    assert!(d < 1e-4, "trainable ResNet logits differ by {d}");
    // Running statistics are buffers, not parameters.
    assert!(!store.vars().keys().any(|k| k.contains("running_")));
    check("resnet", &store, 20, 1, || {
        weighted_sum(m.forward(&px)?.logits.as_ref().unwrap(), 9)
    });
}

#[test]
fn efficientnet_lite0_gradients_match_finite_differences() {
    // No transformers port of the Lite family exists; the real lukemelas
    // checkpoint is the tiniest one there is (fetched by scripts/test.sh).
    let assets = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        assets.is_fetched("efficientnet-lite0"),
        "fetch efficientnet-lite0 (scripts/test.sh does)"
    );
    let store = trainable_store();
    let m = EfficientNetLite::load(
        &assets.path("efficientnet-lite0").unwrap(),
        &store,
        CheckpointMode::Trainable,
    )
    .unwrap();
    let frozen =
        EfficientNetLite::from_pretrained(&assets.path("efficientnet-lite0").unwrap()).unwrap();
    let px: Vec<f64> = (0..3 * 32 * 32)
        .map(|i| ((i as f64) * 0.013).sin())
        .collect();
    let px = Tensor::from_vec(px, (1, 3, 32, 32), &Device::Cpu).unwrap();
    let d = max_abs(
        &m.forward(&px).unwrap(),
        &frozen.forward(&px.to_dtype(DType::F32).unwrap()).unwrap(),
    );
    assert!(
        d < 1e-3,
        "trainable f64 and frozen f32 logits differ by {d}"
    );
    check("efficientnet-lite0", &store, 100, 1, || {
        weighted_sum(&m.forward(&px)?, 10)
    });
}

#[test]
fn whisper_encoder_and_decoder_gradients_match_finite_differences() {
    let dir = fixtures().join("audio/whisper_hf_tiny");
    let io = inputs("audio/whisper_hf_tiny_io.safetensors");
    let store = trainable_store();
    let m = WhisperModel::load_hf(&dir, &store, CheckpointMode::Trainable).unwrap();
    let mel = io["input_features"].narrow(0, 0, 1).unwrap();
    let ids = io["decoder_input_ids"].narrow(0, 0, 1).unwrap();
    let enc = m.encode(&mel).unwrap();
    let want = io["encoder_last_hidden_state"].narrow(0, 0, 1).unwrap();
    let d = max_abs(&enc, &want);
    assert!(d < 1e-4, "trainable Whisper encoder differs by {d}");
    check("whisper", &store, 30, 1, || {
        let enc = m.encode(&mel)?;
        let mut state = m.start(&enc)?;
        let logits = m.decode_all(&ids, &mut state)?;
        Ok((weighted_sum(&logits, 11)? + weighted_sum(&enc, 12)?)?)
    });
}

#[test]
fn blip_itm_and_caption_gradients_match_finite_differences() {
    let io = inputs("families/blip_itm_tiny_io.safetensors");
    let store = trainable_store();
    let m = BlipModel::load(
        &fixtures().join("families/blip_itm_tiny"),
        &store,
        CheckpointMode::Trainable,
    )
    .unwrap();
    let px = io["pixel_values"].narrow(0, 0, 1).unwrap();
    let ids = io["input_ids"].narrow(0, 0, 1).unwrap();
    let mask = io["attention_mask"].narrow(0, 0, 1).unwrap();
    check("blip-itm", &store, 30, 1, || {
        let itm = m.itm_logits(&ids, &mask, &px)?;
        let i = m.image_embeds(&px)?;
        let t = m.text_embeds(&ids, &mask)?;
        Ok((weighted_sum(&itm, 13)? + (weighted_sum(&i, 14)? + weighted_sum(&t, 15)?)?)?)
    });

    let io = inputs("families/blip_caption_tiny_io.safetensors");
    let store = trainable_store();
    let m = BlipModel::load(
        &fixtures().join("families/blip_caption_tiny"),
        &store,
        CheckpointMode::Trainable,
    )
    .unwrap();
    let px = io["pixel_values"].narrow(0, 0, 1).unwrap();
    let ids = io["teacher_forced/input_ids"].narrow(0, 0, 1).unwrap();
    let want = io["teacher_forced/logits"].narrow(0, 0, 1).unwrap();
    let d = max_abs(&m.caption_logits(&ids, &px).unwrap(), &want);
    assert!(d < 1e-4, "trainable BLIP caption logits differ by {d}");
    check("blip-caption", &store, 30, 1, || {
        weighted_sum(&m.caption_logits(&ids, &px)?, 16)
    });
}

#[test]
fn llava_and_its_llama_gradients_match_finite_differences() {
    let io = inputs("families/llava_tiny_io.safetensors");
    let store = trainable_store();
    let m = LlavaModel::load(
        &fixtures().join("families/llava_tiny"),
        &store,
        CheckpointMode::Trainable,
    )
    .unwrap();
    let (ids, px) = (&io["input_ids"], &io["pixel_values"]);
    let d = max_abs(&m.forward(ids, px).unwrap(), &io["logits"]);
    assert!(d < 1e-4, "trainable LLaVA logits differ by {d}");
    // The Llama language model on its own (text only, RoPE and RMSNorm).
    let text = ids.narrow(1, 0, 6).unwrap();
    let llama_vars: Vec<String> = store
        .vars()
        .into_keys()
        .filter(|k| k.starts_with("language_model") || k.contains(".language_model."))
        .collect();
    assert!(!llama_vars.is_empty(), "no language-model parameters");
    // vision_feature_layer = -2: the tower's last layer and post-norm feed
    // nothing (as in transformers).
    let unused = [
        "vision_tower.encoder.layers.1.",
        "vision_tower.post_layernorm.",
    ];
    check_except("llava", &store, &unused, 30, 1, || {
        let lm = m.language_model();
        let mut cache = KvCache::default();
        let text_logits = lm.forward_embeds(&lm.embed(&text)?, &mut cache)?;
        Ok((weighted_sum(&m.forward(ids, px)?, 17)? + weighted_sum(&text_logits, 18)?)?)
    });
}

#[test]
fn lora_adapts_a_frozen_pretrained_tower_by_name() {
    let dir = fixtures().join("text/bert_tiny");
    let io = inputs("text/bert_tiny_io.safetensors");
    let (ids, types, mask) = (
        &io["input_ids"],
        &io["token_type_ids"],
        &io["attention_mask"],
    );
    let store = trainable_store();
    store.set_lora(Some(LoraSpec {
        rank: 2,
        alpha: 4.0,
        targets: vec![
            "*.attention.self.query".into(),
            "*.attention.self.value".into(),
        ],
    }));
    let m = BertModel::load(&dir, &store, CheckpointMode::Frozen).unwrap();
    let names: Vec<String> = store.vars().into_keys().collect();
    let layers = 2;
    assert_eq!(
        names.len(),
        layers * 2 * 2,
        "only the adapters train: {names:?}"
    );
    assert!(
        names
            .iter()
            .all(|n| n.ends_with(".lora_a") || n.ends_with(".lora_b"))
    );
    assert!(
        names
            .iter()
            .all(|n| n.contains(".query.") || n.contains(".value."))
    );
    // B starts at zero: the adapted model is the pretrained one.
    let base = m
        .forward(ids, Some(types), Some(mask))
        .unwrap()
        .last_hidden_state;
    let want = &io["gelu/last_hidden_state"];
    assert!(max_abs(&base, want) < 1e-4);
    let loss = || -> mosaic_models::Result<Tensor> {
        weighted_sum(
            &m.forward(ids, Some(types), Some(mask))?.last_hidden_state,
            19,
        )
    };
    check("bert-lora", &store, 8, 4, loss);
    // A step on B changes the output (the adapter is live).
    let (name, b) = store
        .vars()
        .into_iter()
        .find(|(k, _)| k.ends_with("layer.0.attention.self.value.lora_b"))
        .unwrap();
    b.set(&(b.as_tensor().ones_like().unwrap() * 0.1).unwrap())
        .unwrap();
    let moved = m
        .forward(ids, Some(types), Some(mask))
        .unwrap()
        .last_hidden_state;
    assert!(
        max_abs(&moved, &base) > 1e-3,
        "{name} did not reach the output"
    );
}
