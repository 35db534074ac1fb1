//! BERT and sentence-transformers parity with `transformers` 5.24 /
//! sentence-transformers 6.2 (fixtures from
//! `scripts/reference/make_text_model_fixtures.py`).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mosaic_models::pretrained::{BertModel, SentenceEncoder};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/text")
}

fn load(rel: &str) -> std::collections::HashMap<String, Tensor> {
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
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn random_bert_matches_transformers() {
    let io = load("bert_tiny_io.safetensors");
    for (dir, key) in [("bert_tiny", "gelu"), ("bert_tiny_gelu_new", "gelu_new")] {
        let m = BertModel::from_pretrained(&fixtures().join(dir)).unwrap();
        let out = m
            .forward(
                &io["input_ids"],
                Some(&io["token_type_ids"]),
                Some(&io["attention_mask"]),
            )
            .unwrap();
        let d = max_abs(
            &out.last_hidden_state,
            &io[&format!("{key}/last_hidden_state")],
        );
        assert!(d <= 1e-4, "{dir}: last_hidden_state max abs diff {d}");
        let p = max_abs(
            out.pooler_output.as_ref().unwrap(),
            &io[&format!("{key}/pooler_output")],
        );
        assert!(p <= 1e-4, "{dir}: pooler max abs diff {p}");
        eprintln!("{dir}: hidden {d:e}, pooler {p:e}");
    }
}

fn minilm_dir() -> PathBuf {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("minilm-l6-v2"),
        "fetch minilm-l6-v2 (scripts/test.sh does)"
    );
    store.path("minilm-l6-v2").unwrap()
}

#[test]
fn minilm_hidden_states_and_embeddings_match_sentence_transformers() {
    let dir = minilm_dir();
    let real = load("minilm_real.safetensors");
    let enc = SentenceEncoder::from_pretrained(&dir).unwrap();
    // Token level, first 8 sentences, real positions only (padding rows
    // differ between attention implementations).
    let mask = &real["first8/attention_mask"];
    let out = enc
        .model()
        .forward(
            &real["first8/input_ids"],
            Some(&real["first8/token_type_ids"]),
            Some(mask),
        )
        .unwrap();
    let m = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let diff = (out.last_hidden_state.broadcast_mul(&m).unwrap()
        - real["first8/last_hidden_state"].broadcast_mul(&m).unwrap())
    .unwrap();
    let d = diff
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d <= 1e-4, "last_hidden_state max abs diff {d}");
    // Sentence level: all 590 real sentences.
    let sentences: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../mosaic-data/tests/fixtures/text/sentences.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let texts: Vec<&str> = sentences["real"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let ours = enc.encode(&texts, 32).unwrap();
    let want = &real["embeddings"];
    assert_eq!(ours.dims(), want.dims());
    let cos: Vec<f32> = (ours.mul(want).unwrap().sum(1).unwrap()
        / (ours.sqr().unwrap().sum(1).unwrap().sqrt().unwrap()
            * want.sqr().unwrap().sum(1).unwrap().sqrt().unwrap())
        .unwrap())
    .unwrap()
    .to_vec1()
    .unwrap();
    let worst = cos.iter().copied().fold(f32::INFINITY, f32::min);
    let maxd = max_abs(&ours, want);
    eprintln!(
        "MiniLM: {} sentences, min cosine {worst}, max abs diff {maxd:e}, token-level {d:e}",
        texts.len()
    );
    assert!(worst >= 0.9999, "min cosine {worst}");
    assert!(maxd <= 1e-5, "max abs diff {maxd}");
}

#[test]
fn bad_inputs_are_named() {
    let m = BertModel::from_pretrained(&fixtures().join("bert_tiny")).unwrap();
    let ids = Tensor::new(&[[5u32, 2000]], &Device::Cpu).unwrap();
    let e = m.forward(&ids, None, None).unwrap_err().to_string();
    assert!(e.contains("2000") && e.contains("vocabulary"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("bert_tiny/config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let e = BertModel::from_pretrained(dir.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}
