//! Parity with the reference libraries on the committed fixtures
//! (`scripts/reference/make_eval_fixtures.py`): sacrebleu, rouge-score +
//! NLTK Porter, pycocoevalcap (PTBTokenizer + CIDEr-D), jiwer, torchmetrics
//! CLIPScore, the NumPy retrieval reference and scikit-learn.

use mosaic_eval::classification::{
    accuracy, alignment_entropy, confusion_matrix, expected_calibration_error, macro_f1,
    softmax_rows, top_k_accuracy,
};
use mosaic_eval::clipscore::{clip_score, ref_clip_score};
use mosaic_eval::retrieval::{retrieval_from_embeddings, retrieval_from_similarity};
use mosaic_eval::text::bleu::{BleuConfig, Smoothing, corpus_bleu, sentence_bleu, tokenize_13a};
use mosaic_eval::text::cider::{cider_d, cider_d_tokenized};
use mosaic_eval::text::ptb::coco_tokenize;
use mosaic_eval::text::rouge::{RougeScorer, RougeType};
use mosaic_eval::text::{porter, wer};
use serde_json::Value;

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn json(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(format!("{FIX}/{name}")).unwrap()).unwrap()
}

fn tensors(name: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(format!("{FIX}/{name}")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let data: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (k, v.shape().to_vec(), data)
        })
        .collect()
}

fn tensor(all: &[(String, Vec<usize>, Vec<f32>)], name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = all.iter().find(|t| t.0 == name).unwrap();
    (t.1.clone(), t.2.clone())
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn coco() -> (Vec<String>, Vec<String>, Vec<Vec<String>>) {
    let c = json("coco_debug_captions.json");
    let mut ids: Vec<String> = c["hypotheses"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    ids.sort();
    let hyps = ids
        .iter()
        .map(|i| c["hypotheses"][i][0].as_str().unwrap().to_string())
        .collect();
    let refs = ids.iter().map(|i| strs(&c["references"][i])).collect();
    (ids, hyps, refs)
}

/// (name, reference, whisper) triples in fixture order.
fn asterisk(t: &Value) -> Vec<(String, String, String)> {
    t["wer"]["per_file"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["reference"].as_str().unwrap().to_string(),
                p["hypothesis"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn bleu_equals_sacrebleu() {
    let t = json("text_metrics.json");
    let pairs = asterisk(&t);
    let (_, coco_h, coco_r) = coco();
    let ast_h: Vec<String> = pairs.iter().map(|p| p.2.clone()).collect();
    let ast_r: Vec<Vec<String>> = pairs.iter().map(|p| vec![p.1.clone()]).collect();
    // coco_var: the 4th reference dropped on every other segment.
    let coco_var: Vec<Vec<String>> = coco_r
        .iter()
        .enumerate()
        .map(|(j, r)| {
            if j % 2 == 0 {
                r[..3].to_vec()
            } else {
                r.clone()
            }
        })
        .collect();
    let mut worst: f64 = 0.0;
    let mut n_checked = 0;
    for case in t["bleu"]["cases"].as_array().unwrap() {
        let smooth = case["smooth_method"].as_str().unwrap();
        let value = case["smooth_value"].as_f64();
        let smoothing = match smooth {
            "exp" => Smoothing::Exp,
            "floor" => Smoothing::Floor(value.unwrap()),
            "add-k" => Smoothing::AddK(value.unwrap()),
            _ => Smoothing::None,
        };
        let lowercase = case["lowercase"].as_bool().unwrap();
        let cfg = BleuConfig {
            smoothing,
            lowercase,
            effective_order: false,
        };
        let (hyps, refs) = match case["data"].as_str().unwrap() {
            "asterisk" => (&ast_h, &ast_r),
            "coco" => (&coco_h, &coco_r),
            _ => (&coco_h, &coco_var),
        };
        let s = corpus_bleu(hyps, refs, &cfg).unwrap();
        let c = &case["corpus"];
        let ctx = format!("{} {smooth} {value:?} lc={lowercase}", case["data"]);
        assert!(
            (s.score - f(&c["score"])).abs() < 1e-6,
            "{ctx}: {} vs {}",
            s.score,
            c["score"]
        );
        worst = worst.max((s.score - f(&c["score"])).abs());
        assert_eq!(s.sys_len, c["sys_len"].as_u64().unwrap(), "{ctx}");
        assert_eq!(s.ref_len, c["ref_len"].as_u64().unwrap(), "{ctx}");
        // sacreBLEU reports add-k counts after adding k (orders >= 2);
        // Mosaic reports the raw counts.
        let k_added = |k: usize| match smoothing {
            Smoothing::AddK(v) if k > 0 => v as u64,
            _ => 0,
        };
        for k in 0..4 {
            assert_eq!(
                s.counts[k] + k_added(k),
                c["counts"][k].as_u64().unwrap(),
                "{ctx}"
            );
            assert_eq!(
                s.totals[k] + k_added(k),
                c["totals"][k].as_u64().unwrap(),
                "{ctx}"
            );
            assert!(
                (s.precisions[k] - f(&c["precisions"][k])).abs() < 1e-9,
                "{ctx}"
            );
        }
        assert!((s.bp - f(&c["bp"])).abs() < 1e-12, "{ctx}");
        let scfg = BleuConfig {
            effective_order: true,
            ..cfg
        };
        for (j, sent) in case["sentence_effective_order"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let s = sentence_bleu(&hyps[j], &refs[j], &scfg).unwrap();
            let want = f(&sent[0]);
            worst = worst.max((s.score - want).abs());
            assert!(
                (s.score - want).abs() < 1e-6,
                "{ctx} sentence {j}: {} vs {want}",
                s.score
            );
            assert_eq!(s.sys_len, sent[2].as_u64().unwrap());
            assert_eq!(s.ref_len, sent[3].as_u64().unwrap());
            n_checked += 1;
        }
        n_checked += 1;
    }
    let mut tok = 0;
    for e in t["bleu"]["tokenize_13a"].as_array().unwrap() {
        let text = e["text"].as_str().unwrap();
        let text = text
            .trim_end_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c));
        assert_eq!(
            tokenize_13a(text),
            e["tokens"].as_str().unwrap(),
            "13a of {text:?}"
        );
        tok += 1;
    }
    println!(
        "BLEU: {n_checked} corpus/sentence scores, max |diff| {worst:.3e}; 13a tokens identical on {tok} texts"
    );
}

#[test]
fn rouge_equals_rouge_score() {
    let t = json("text_metrics.json");
    let r = &t["rouge"];
    let types: Vec<RougeType> = strs(&r["types"])
        .iter()
        .map(|s| RougeType::parse(s).unwrap())
        .collect();
    let mut worst: f64 = 0.0;
    let mut n = 0;
    let check = |got: &[(RougeType, mosaic_eval::text::rouge::RougeScore)],
                 want: &Value,
                 ctx: &str,
                 worst: &mut f64| {
        for (ty, s) in got {
            let w = &want[ty.name()];
            for (k, v) in [s.precision, s.recall, s.fmeasure].iter().enumerate() {
                let d = (v - f(&w[k])).abs();
                *worst = worst.max(d);
                assert!(d < 1e-6, "{ctx} {}: {v} vs {}", ty.name(), w[k]);
            }
        }
    };
    for case in r["cases"].as_array().unwrap() {
        let stem = case["use_stemmer"].as_bool().unwrap();
        let sc = RougeScorer::new(&types, stem);
        for (k, (inp, want)) in r["single"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["single"].as_array().unwrap())
            .enumerate()
        {
            let got = sc.score(
                inp["target"].as_str().unwrap(),
                inp["prediction"].as_str().unwrap(),
            );
            check(&got, want, &format!("single {k} stem={stem}"), &mut worst);
            n += 1;
        }
        for (k, (inp, want)) in r["multi"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["multi"].as_array().unwrap())
            .enumerate()
        {
            let got = sc
                .score_multi(&strs(&inp["targets"]), inp["prediction"].as_str().unwrap())
                .unwrap();
            check(&got, want, &format!("multi {k} stem={stem}"), &mut worst);
            n += 1;
        }
        for (k, (inp, want)) in r["lsum"]
            .as_array()
            .unwrap()
            .iter()
            .zip(case["lsum"].as_array().unwrap())
            .enumerate()
        {
            let got = sc.score(
                inp["target"].as_str().unwrap(),
                inp["prediction"].as_str().unwrap(),
            );
            check(&got, want, &format!("lsum {k} stem={stem}"), &mut worst);
            n += 1;
        }
    }
    let stems = r["stems"].as_object().unwrap();
    for (w, s) in stems {
        assert_eq!(porter::stem(w), s.as_str().unwrap(), "Porter stem of {w}");
    }
    println!(
        "ROUGE: {n} scored pairs x 4 types, max |diff| {worst:.3e}; {} Porter stems identical",
        stems.len()
    );
}

#[test]
fn cider_equals_pycocoevalcap() {
    let t = json("text_metrics.json");
    let c = &t["cider"];
    let (ids, hyps, refs) = coco();
    // 1. On pycocoevalcap's own tokenization (Java PTBTokenizer output).
    let ex = &c["example"];
    let tok_h: Vec<String> = ids
        .iter()
        .map(|i| ex["tokenized_hyps"][i][0].as_str().unwrap().to_string())
        .collect();
    let tok_r: Vec<Vec<String>> = ids.iter().map(|i| strs(&ex["tokenized_refs"][i])).collect();
    let s = cider_d_tokenized(&tok_h, &tok_r).unwrap();
    assert!(
        (s.score - f(&ex["score"])).abs() < 1e-6,
        "{} vs {}",
        s.score,
        ex["score"]
    );
    for (a, b) in s.per_image.iter().zip(ex["scores"].as_array().unwrap()) {
        assert!((a - f(b)).abs() < 1e-6);
    }
    // 2. End to end with Mosaic's PTB rules.
    let e2e = cider_d(&hyps, &refs).unwrap();
    assert!(
        (e2e.score - f(&ex["score"])).abs() < 1e-6,
        "end to end {} vs {}",
        e2e.score,
        ex["score"]
    );
    // 3. Leave-one-out on the human captions.
    let loo = &c["leave_one_out"];
    let h2: Vec<String> = refs.iter().map(|r| r[0].clone()).collect();
    let r2: Vec<Vec<String>> = refs.iter().map(|r| r[1..].to_vec()).collect();
    let s2 = cider_d(&h2, &r2).unwrap();
    assert!(
        (s2.score - f(&loo["score"])).abs() < 1e-6,
        "{} vs {}",
        s2.score,
        loo["score"]
    );
    for (a, b) in s2.per_image.iter().zip(loo["scores"].as_array().unwrap()) {
        assert!((a - f(b)).abs() < 1e-6);
    }
    // 4. The tokenizer alone: every caption must agree; report the rest.
    let mut same = 0;
    let mut diffs = Vec::new();
    let ptb = c["ptb"].as_array().unwrap();
    for e in ptb {
        let text = e["text"].as_str().unwrap();
        let want = e["tokens"].as_str().unwrap();
        let got = coco_tokenize(text);
        if got == want {
            same += 1;
        } else {
            diffs.push(format!("{text:?}\n   java: {want:?}\n   rust: {got:?}"));
        }
    }
    let captions: Vec<&String> = refs.iter().flatten().chain(hyps.iter()).collect();
    for cap in &captions {
        let want = ptb
            .iter()
            .find(|e| e["text"].as_str().unwrap() == cap.as_str())
            .unwrap();
        assert_eq!(
            &coco_tokenize(cap),
            want["tokens"].as_str().unwrap(),
            "caption {cap:?}"
        );
    }
    let mut worst = (e2e.score - f(&ex["score"]))
        .abs()
        .max((s2.score - f(&loo["score"])).abs());
    for (a, b) in e2e.per_image.iter().zip(ex["scores"].as_array().unwrap()) {
        worst = worst.max((a - f(b)).abs());
    }
    for (a, b) in s2.per_image.iter().zip(loo["scores"].as_array().unwrap()) {
        worst = worst.max((a - f(b)).abs());
    }
    println!(
        "CIDEr-D: example {} (ref {}), leave-one-out {} (ref {}), max |diff| {worst:.3e}; PTB tokens identical on {same}/{} sentences",
        e2e.score,
        f(&ex["score"]),
        s2.score,
        f(&loo["score"]),
        ptb.len()
    );
    for d in &diffs {
        println!("PTB difference: {d}");
    }
    assert!(
        same * 100 >= ptb.len() * 95,
        "PTB agreement {same}/{}",
        ptb.len()
    );
}

#[test]
fn wer_cer_equal_jiwer() {
    let t = json("text_metrics.json");
    let w = &t["wer"];
    let check = |e: &wer::ErrorRates, want: &Value, ctx: &str| {
        let got = [e.hits, e.substitutions, e.deletions, e.insertions];
        for k in 0..4 {
            assert_eq!(
                got[k] as u64,
                want[k].as_u64().unwrap(),
                "{ctx}: H/S/D/I {got:?} vs {want}"
            );
        }
        assert_eq!(e.error_rate, f(&want[4]), "{ctx}");
    };
    for p in w["per_file"]
        .as_array()
        .unwrap()
        .iter()
        .chain(w["edge"].as_array().unwrap())
    {
        let (r, h) = (
            p["reference"].as_str().unwrap(),
            p["hypothesis"].as_str().unwrap(),
        );
        check(
            &wer::wer(&[r], &[h]).unwrap(),
            &p["words"],
            &format!("words {r:?} / {h:?}"),
        );
        check(
            &wer::cer(&[r], &[h]).unwrap(),
            &p["chars"],
            &format!("chars {r:?} / {h:?}"),
        );
    }
    let pairs = asterisk(&t);
    let refs: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let hyps: Vec<&str> = pairs.iter().map(|p| p.2.as_str()).collect();
    let cw = wer::wer(&refs, &hyps).unwrap();
    check(&cw, &w["corpus_words"], "corpus words");
    assert_eq!(cw.mer, f(&w["corpus_words"][5]));
    assert_eq!(cw.wil, f(&w["corpus_words"][6]));
    assert_eq!(cw.wip, f(&w["corpus_words"][7]));
    let cc = wer::cer(&refs, &hyps).unwrap();
    check(&cc, &w["corpus_chars"], "corpus chars");
    println!(
        "WER {} / CER {} on {} Asterisk prompts: identical to jiwer (H/S/D/I too)",
        cw.error_rate,
        cc.error_rate,
        pairs.len()
    );
}

#[test]
fn clipscore_equals_torchmetrics() {
    let j = json("clipscore.json");
    let t = tensors("clipscore.safetensors");
    let (cs, cand) = tensor(&t, "candidates");
    let (_, img) = tensor(&t, "images");
    let (rs, refs) = tensor(&t, "references");
    let d = cs[1];
    let s = clip_score(&img, &cand, d).unwrap();
    let mut worst: f64 = (s.score - f(&j["torchmetrics_clip_score"])).abs();
    for (a, b) in s
        .per_sample
        .iter()
        .zip(j["torchmetrics_per_sample"].as_array().unwrap())
    {
        worst = worst.max((a - f(b)).abs());
    }
    assert!(worst < 1e-4, "CLIPScore max diff {worst}");
    let r = ref_clip_score(&cand, &img, &refs, rs[1], d).unwrap();
    let mut worst_ref: f64 = 0.0;
    for (a, b) in r
        .ref_clip_s_per_sample
        .iter()
        .zip(j["ref_clip_s"].as_array().unwrap())
    {
        worst_ref = worst_ref.max((a - f(b)).abs());
    }
    for (a, b) in r
        .clip_s_per_sample
        .iter()
        .zip(j["clip_s_w2_5"].as_array().unwrap())
    {
        worst_ref = worst_ref.max((a - f(b)).abs());
    }
    worst_ref = worst_ref.max((r.ref_clip_s - f(&j["mean_ref_clip_s"])).abs());
    assert!(worst_ref < 1e-4, "RefCLIPScore max diff {worst_ref}");
    println!(
        "CLIPScore max |diff| vs torchmetrics {worst:.3e}; RefCLIP-S vs NumPy {worst_ref:.3e}"
    );
}

#[test]
fn retrieval_equals_numpy_exactly() {
    let j = json("ranking.json");
    let t = tensors("ranking.safetensors");
    for case in j["retrieval"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (shape, sim) = tensor(&t, &format!("{name}_sim"));
        let la: Vec<usize> = case["labels_a"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let lb: Vec<usize> = case["labels_b"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let r = retrieval_from_similarity(&sim, shape[0], shape[1], Some(&la), Some(&lb)).unwrap();
        for (got, want) in [(&r.a_to_b, &case["a_to_b"]), (&r.b_to_a, &case["b_to_a"])] {
            let ranks: Vec<usize> = want["ranks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(got.ranks, ranks, "{name}");
            assert_eq!(got.r1, f(&want["r1"]), "{name}");
            assert_eq!(got.r5, f(&want["r5"]), "{name}");
            assert_eq!(got.r10, f(&want["r10"]), "{name}");
            assert_eq!(got.median_rank, f(&want["median_rank"]), "{name}");
            assert_eq!(got.mean_rank, f(&want["mean_rank"]), "{name}");
            assert_eq!(got.map, f(&want["map"]), "{name}");
        }
        if name == "paired" {
            // From embeddings (dot product, as the reference): same ranks.
            let (sa, a) = tensor(&t, "paired_a");
            let (_, b) = tensor(&t, "paired_b");
            let dev = candle_core::Device::Cpu;
            let ta = candle_core::Tensor::from_vec(a, (sa[0], sa[1]), &dev).unwrap();
            let tb = candle_core::Tensor::from_vec(b, (sa[0], sa[1]), &dev).unwrap();
            let e = retrieval_from_embeddings(&ta, &tb, None, None, false).unwrap();
            assert_eq!(e.a_to_b.ranks, r.a_to_b.ranks);
            assert_eq!(e.b_to_a.ranks, r.b_to_a.ranks);
        }
    }
}

#[test]
fn classification_equals_sklearn() {
    let j = json("ranking.json");
    let c = &j["classification"];
    let t = tensors("ranking.safetensors");
    let (shape, logits) = tensor(&t, "cls_logits");
    let classes = shape[1];
    let y: Vec<usize> = c["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let p: Vec<usize> = c["pred"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(accuracy(&y, &p).unwrap(), f(&c["accuracy"]));
    assert_eq!(macro_f1(&y, &p).unwrap(), f(&c["macro_f1"]));
    let cm = confusion_matrix(&y, &p).unwrap();
    let want: Vec<Vec<u64>> = serde_json::from_value(c["confusion"].clone()).unwrap();
    assert_eq!(cm.matrix, want);
    for (k, key) in [(1, "top1"), (3, "top3"), (5, "top5")] {
        assert_eq!(
            top_k_accuracy(&y, &logits, classes, k).unwrap(),
            f(&c[key]),
            "{key}"
        );
    }
    let probs = softmax_rows(&logits, classes, 1.0).unwrap();
    let ece = expected_calibration_error(&probs, classes, &y).unwrap();
    assert!(
        (ece - f(&c["ece_15"])).abs() < 1e-12,
        "ECE {ece} vs {}",
        c["ece_15"]
    );
    let h = alignment_entropy(&logits, classes, 1.0).unwrap();
    assert!((h - f(&c["entropy_logits_t1"])).abs() < 1e-12);
    let (ps, paired) = tensor(&t, "paired_sim");
    let h2 = alignment_entropy(&paired, ps[1], 0.1).unwrap();
    assert!(
        (h2 - f(&c["entropy_paired_t0_1"])).abs() < 1e-10,
        "{h2} vs {}",
        c["entropy_paired_t0_1"]
    );
    let s = &c["string_labels"];
    let (ys, pss) = (strs(&s["y"]), strs(&s["p"]));
    assert_eq!(accuracy(&ys, &pss).unwrap(), f(&s["accuracy"]));
    assert_eq!(macro_f1(&ys, &pss).unwrap(), f(&s["macro_f1"]));
    let cm = confusion_matrix(&ys, &pss).unwrap();
    assert_eq!(cm.labels, strs(&s["labels_sorted"]));
    let want: Vec<Vec<u64>> = serde_json::from_value(s["confusion"].clone()).unwrap();
    assert_eq!(cm.matrix, want);
    println!(
        "classification: accuracy/macro-F1/confusion/top-k identical to sklearn; ECE |diff| {:.1e}",
        (ece - f(&c["ece_15"])).abs()
    );
}
