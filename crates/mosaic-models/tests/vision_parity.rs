//! CLIP, ViT (random checkpoints written by transformers 5.24) and the real
//! EfficientNet-Lite0 (efficientnet-lite-pytorch) against their reference
//! outputs (`scripts/reference/make_vision_model_fixtures.py`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use mosaic_data::image::{
    AlphaMode, DecodeOptions, Filter, ImageProcessor, ResizeTo, decode_image,
};
use mosaic_models::pretrained::{ClipModel, EfficientNetLite, VitModel};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision")
}

fn load(rel: &str) -> HashMap<String, Tensor> {
    mosaic_core::formats::load_tensors(&fixtures().join(rel), &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn clip_and_vit_match_transformers() {
    let io = load("tiny_io.safetensors");
    let clip = ClipModel::from_pretrained(&fixtures().join("clip_tiny")).unwrap();
    let (th, tp) = clip
        .text_features(&io["input_ids"], Some(&io["attention_mask"]))
        .unwrap();
    let (vh, vp) = clip.vision_features(&io["pixel_values"]).unwrap();
    let mask = io["attention_mask"]
        .to_dtype(candle_core::DType::F32)
        .unwrap()
        .unsqueeze(2)
        .unwrap();
    let checks = [
        (
            "text last_hidden_state (real tokens)",
            max_abs(
                &th.broadcast_mul(&mask).unwrap(),
                &io["clip/text/last_hidden_state"]
                    .broadcast_mul(&mask)
                    .unwrap(),
            ),
        ),
        ("text pooler", max_abs(&tp, &io["clip/text/pooler_output"])),
        (
            "vision last_hidden_state",
            max_abs(&vh, &io["clip/vision/last_hidden_state"]),
        ),
        (
            "vision pooler",
            max_abs(&vp, &io["clip/vision/pooler_output"]),
        ),
    ];
    let te = clip
        .text_embeds(&io["input_ids"], Some(&io["attention_mask"]))
        .unwrap();
    let ie = clip.image_embeds(&io["pixel_values"]).unwrap();
    let more = [
        ("text features", max_abs(&te, &io["clip/text_features"])),
        ("image features", max_abs(&ie, &io["clip/image_features"])),
        (
            "logits_per_image",
            max_abs(
                &clip.logits_per_image(&ie, &te).unwrap(),
                &io["clip/logits_per_image"],
            ),
        ),
    ];
    let vit = VitModel::from_pretrained(&fixtures().join("vit_tiny")).unwrap();
    let vo = vit.forward(&io["pixel_values"]).unwrap();
    let vit_checks = [
        (
            "vit last_hidden_state",
            max_abs(&vo.last_hidden_state, &io["vit/last_hidden_state"]),
        ),
        (
            "vit pooler",
            max_abs(vo.pooler_output.as_ref().unwrap(), &io["vit/pooler_output"]),
        ),
    ];
    for (name, d) in checks.iter().chain(&more).chain(&vit_checks) {
        eprintln!("{name}: {d:e}");
        assert!(*d <= 1e-4, "{name}: max abs diff {d}");
    }
}

fn lite_preprocessor() -> ImageProcessor {
    // The TF-trained Lite weights take (x - 127) / 128 on 0-255 values,
    // after a 256 bicubic shortest-edge resize and a 224 center crop.
    ImageProcessor {
        resize: Some(ResizeTo::ShortestEdge {
            shortest_edge: 256,
            longest_edge: None,
        }),
        filter: Filter::Bicubic,
        center_crop: Some((224, 224)),
        rescale_factor: None,
        normalize: Some(([127.0; 3], [128.0; 3])),
    }
}

#[test]
fn efficientnet_lite0_matches_pytorch_on_real_photos() {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    for a in ["efficientnet-lite0", "skimage-photos"] {
        assert!(store.is_fetched(a), "fetch {a} (scripts/test.sh does)");
    }
    let model =
        EfficientNetLite::from_pretrained(&store.path("efficientnet-lite0").unwrap()).unwrap();
    let st = load("efficientnet_lite0.safetensors");
    // The network alone, on the reference's own input tensor.
    let logits = model
        .forward(&st["chelsea/input"])
        .unwrap()
        .squeeze(0)
        .unwrap();
    let d = max_abs(&logits, &st["logits/chelsea"]);
    eprintln!("EfficientNet-Lite0 chelsea logits max abs diff {d:e}");
    assert!(d <= 1e-3, "logits differ by {d}");
    // Decode + preprocess + network on every photo: identical top-5.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("efficientnet_lite0.json")).unwrap())
            .unwrap();
    let photos = store.path("skimage-photos").unwrap();
    let proc_ = lite_preprocessor();
    let mut n = 0;
    let mut worst = 0f32;
    let mut worst_jpeg = 0f32;
    for photo in meta["photos"].as_array().unwrap() {
        let stem = photo["stem"].as_str().unwrap();
        let file = photo["file"].as_str().unwrap();
        let bytes = std::fs::read(photos.join(Path::new(file).file_name().unwrap())).unwrap();
        let img = decode_image(
            &bytes,
            file,
            &DecodeOptions {
                apply_exif_orientation: false,
                alpha: AlphaMode::Drop,
                ..Default::default()
            },
        )
        .unwrap();
        let x = proc_.preprocess(&img).unwrap().unsqueeze(0).unwrap();
        let logits = model.forward(&x).unwrap().squeeze(0).unwrap();
        let v: Vec<f32> = logits.to_vec1().unwrap();
        let mut idx: Vec<i64> = (0..1000).collect();
        idx.sort_by(|a, b| v[*b as usize].total_cmp(&v[*a as usize]));
        let want: Vec<i64> = st[&format!("top5/{stem}/indices")].to_vec1().unwrap();
        assert_eq!(&idx[..5], want.as_slice(), "{file}: top-5");
        let d = max_abs(&logits, &st[&format!("logits/{stem}")]);
        if file.ends_with(".jpg") {
            worst_jpeg = worst_jpeg.max(d);
        } else {
            // Lossless inputs decode and preprocess bit-exactly, so only
            // the network's float rounding remains.
            assert!(d <= 1e-3, "{file}: logits differ by {d}");
            worst = worst.max(d);
        }
        n += 1;
    }
    eprintln!(
        "EfficientNet-Lite0: {n} photos, identical top-5, logits max abs diff {worst:e} (lossless), {worst_jpeg:e} (JPEG: decoder differences)"
    );
    assert!(n >= 28);
}
