//! `mosaic eval` end to end: text metrics of the committed Whisper tiny.en
//! transcripts of the Asterisk prompts (with a fairness breakdown and a typo
//! sweep), retrieval from .npy/.safetensors embeddings against the NumPy
//! reference, MiniLM sentence retrieval on real sentence halves, `compare`,
//! and the input errors (empty file, length mismatch, non-UTF-8).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mosaic_core::candle::Device;

fn mosaic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mosaic"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// Every plot the report lists exists and decodes as a PNG.
fn check_plots(dir: &Path, at_least: usize) {
    let r = report(dir);
    let plots = r["plots"].as_array().unwrap();
    assert!(plots.len() >= at_least, "{plots:?}");
    for p in plots {
        let f = dir.join(p.as_str().unwrap());
        let img = image::open(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(img.width() > 100 && img.height() > 100);
        assert_eq!(
            image::ImageFormat::from_path(&f).unwrap(),
            image::ImageFormat::Png
        );
    }
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.starts_with("# Evaluation"));
}

/// Predictions (Whisper tiny.en via faster-whisper, committed with
/// mosaic-models, the transcripts Mosaic's own decoder reproduces), the
/// Asterisk transcripts as references, and a manifest whose `meta.folder` is
/// the prompt's sub-folder.
fn whisper_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf, usize) {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("asterisk-sounds"),
        "fetch asterisk-sounds (scripts/test.sh does)"
    );
    let gz = store
        .path("asterisk-sounds")
        .unwrap()
        .join("core-sounds-en.txt.gz");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(gz).unwrap()),
        &mut text,
    )
    .unwrap();
    let refs: std::collections::HashMap<&str, &str> = text
        .lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| l.split_once(": "))
        .collect();
    let w: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("mosaic-models/tests/fixtures/audio/whisper_tiny_en.json"))
            .unwrap(),
    )
    .unwrap();
    let (mut p, mut r, mut m) = (String::new(), String::new(), String::new());
    let mut n = 0;
    for f in w["files"].as_array().unwrap() {
        if f["set"] != "asterisk" {
            continue;
        }
        let file = f["file"].as_str().unwrap();
        let name = file.split_once("en_US_f_Allison/").unwrap().1;
        let name = name.strip_suffix(".wav").unwrap();
        let Some(reference) = refs.get(name) else {
            continue;
        };
        let folder = name.split_once('/').map(|x| x.0).unwrap_or("(top)");
        p.push_str(&serde_json::json!({"prediction": f["text"]}).to_string());
        p.push('\n');
        r.push_str(reference);
        r.push('\n');
        m.push_str(&serde_json::json!({"id": name, "meta": {"folder": folder}}).to_string());
        m.push('\n');
        n += 1;
    }
    let (pp, rp, mp) = (
        dir.join("pred.jsonl"),
        dir.join("ref.txt"),
        dir.join("m.jsonl"),
    );
    std::fs::write(&pp, p).unwrap();
    std::fs::write(&rp, r).unwrap();
    std::fs::write(&mp, m).unwrap();
    (pp, rp, mp, n)
}

#[test]
fn text_metrics_of_whisper_on_asterisk() {
    let dir = tempfile::tempdir().unwrap();
    let (pred, refs, manifest, n) = whisper_files(dir.path());
    let out = dir.path().join("whisper-asterisk");
    let o = mosaic(&[
        "eval",
        "--metrics",
        "wer,cer,bleu,rouge,cider",
        "--predictions",
        pred.to_str().unwrap(),
        "--references",
        refs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--group-by",
        "folder",
        "--typo-sweep",
        "0,0.05,0.1,0.2",
    ]);
    ok(&o);
    let r = report(&out);
    // The same pairs as the parity fixture: jiwer's corpus WER/CER exactly.
    let t: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("mosaic-eval/tests/fixtures/text_metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(t["asterisk_pairs"].as_u64().unwrap() as usize, n);
    assert_eq!(r["metrics"]["wer"], t["wer"]["corpus_words"][4]);
    assert_eq!(r["metrics"]["cer"], t["wer"]["corpus_chars"][4]);
    let bleu_exp = t["bleu"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["data"] == "asterisk" && c["smooth_method"] == "exp" && c["lowercase"] == false)
        .unwrap();
    let d = r["metrics"]["bleu"].as_f64().unwrap() - bleu_exp["corpus"]["score"].as_f64().unwrap();
    assert!(d.abs() < 1e-9, "BLEU differs from sacrebleu by {d}");
    for k in [
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
        "cider",
        "wer_gap_by_folder",
    ] {
        assert!(r["metrics"][k].is_number(), "{k}");
    }
    // Fairness: one group per folder, the gap is max - min.
    let f = &r["fairness"][0];
    assert_eq!(f["field"], "folder");
    let vals: Vec<f64> = f["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["value"].as_f64().unwrap())
        .collect();
    let gap = vals.iter().cloned().fold(f64::MIN, f64::max)
        - vals.iter().cloned().fold(f64::MAX, f64::min);
    assert_eq!(f["gap"].as_f64().unwrap(), gap);
    assert!(
        f["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "digits")
    );
    // Robustness: WER grows with the typo rate, starting from the clean WER.
    let pts = r["sweeps"][0]["points"].as_array().unwrap();
    assert_eq!(pts[0][1], r["metrics"]["wer"]);
    let ys: Vec<f64> = pts.iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert!(ys.windows(2).all(|w| w[1] > w[0]), "{ys:?}");
    // metrics + 5 fairness + 1 sweep plots.
    check_plots(&out, 7);
    // compare: a second run on a subset of metrics.
    let out2 = dir.path().join("wer-only");
    ok(&mosaic(&[
        "eval",
        "--metrics",
        "wer",
        "--predictions",
        pred.to_str().unwrap(),
        "--references",
        refs.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
        "--lowercase",
    ]));
    let o = mosaic(&[
        "eval",
        "compare",
        out.to_str().unwrap(),
        out2.to_str().unwrap(),
    ]);
    ok(&o);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("wer") && s.contains("+0.000000") && s.contains("bleu"),
        "{s}"
    );
}

#[test]
fn input_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pred.txt");
    let r = dir.path().join("ref.txt");
    let out = dir.path().join("o");
    let run = |p: &Path, r: &Path| {
        mosaic(&[
            "eval",
            "--metrics",
            "wer",
            "--predictions",
            p.to_str().unwrap(),
            "--references",
            r.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    std::fs::write(&r, "a b\nc d\n").unwrap();
    std::fs::write(&p, "").unwrap();
    let o = run(&p, &r);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("pred.txt") && e.contains("empty prediction file"),
        "{e}"
    );
    std::fs::write(&p, "a b\n").unwrap();
    let o = run(&p, &r);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("pred.txt has 1 predictions") && e.contains("ref.txt has 2 references"),
        "{e}"
    );
    std::fs::write(&p, b"a b\nc \xe9\n").unwrap();
    let o = run(&p, &r);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("pred.txt:2") && e.contains("UTF-8"), "{e}");
    let j = dir.path().join("pred.jsonl");
    std::fs::write(&j, "{\"prediction\": \"a\"}\n{\"nope\": 1}\n").unwrap();
    let o = run(&j, &r);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("pred.jsonl:2"), "{e}");
    assert!(!out.join("report.json").exists());
}

fn write_npy(path: &Path, rows: usize, cols: usize, v: &[f32]) {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    for x in v {
        b.extend(x.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

fn write_safetensors(path: &Path, name: &str, rows: usize, cols: usize, v: &[f32]) {
    let mut h = serde_json::json!({name: {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, v.len() * 4]}})
        .to_string();
    while h.len() % 8 != 0 {
        h.push(' ');
    }
    let mut b = (h.len() as u64).to_le_bytes().to_vec();
    b.extend(h.as_bytes());
    for x in v {
        b.extend(x.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn retrieval_from_embedding_files_equals_numpy() {
    let fx = root().join("mosaic-eval/tests/fixtures");
    let t: std::collections::HashMap<_, _> =
        mosaic_core::formats::load_tensors(&fx.join("ranking.safetensors"), &Device::Cpu)
            .unwrap()
            .into_iter()
            .collect();
    let a: Vec<Vec<f32>> = t["paired_a"].to_vec2().unwrap();
    let b: Vec<Vec<f32>> = t["paired_b"].to_vec2().unwrap();
    let (n, d) = (a.len(), a[0].len());
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.npy"), dir.path().join("b.safetensors"));
    write_npy(&pa, n, d, &a.concat());
    write_safetensors(&pb, "embeddings", n, d, &b.concat());
    let out = dir.path().join("ret");
    ok(&mosaic(&[
        "eval",
        "retrieval",
        "--a",
        pa.to_str().unwrap(),
        "--b",
        pb.to_str().unwrap(),
        "--a-name",
        "image",
        "--b-name",
        "text",
        "--dot",
        "--out",
        out.to_str().unwrap(),
    ]));
    let r = report(&out);
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.join("ranking.json")).unwrap()).unwrap();
    let case = &j["retrieval"][0];
    assert_eq!(case["name"], "paired");
    for (dir_name, want) in [
        ("image2text", &case["a_to_b"]),
        ("text2image", &case["b_to_a"]),
    ] {
        for (k, w) in [
            ("r@1", "r1"),
            ("r@5", "r5"),
            ("r@10", "r10"),
            ("medr", "median_rank"),
            ("map", "map"),
        ] {
            assert_eq!(
                r["metrics"][format!("{dir_name}_{k}")],
                want[w],
                "{dir_name}_{k}"
            );
        }
        assert_eq!(r["details"][format!("{dir_name}_ranks")], want["ranks"]);
    }
    check_plots(&out, 2);
    // Rows that do not pair up are refused.
    write_npy(&pa, n - 1, d, &a[..n - 1].concat());
    let o = mosaic(&[
        "eval",
        "retrieval",
        "--a",
        pa.to_str().unwrap(),
        "--b",
        pb.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("rows"));
}

#[test]
fn minilm_sentence_retrieval_report() {
    let store = mosaic_core::assets::AssetStore::from_env().unwrap();
    assert!(
        store.is_fetched("minilm-l6-v2"),
        "fetch minilm-l6-v2 (scripts/test.sh does)"
    );
    // Pairs: every distinct real sentence of 6+ words split into its first
    // and second half (query = first half, pair = second half); meta.length
    // buckets the sentence's word count.
    let s: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("mosaic-data/tests/fixtures/text/sentences.json")).unwrap(),
    )
    .unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut lines = String::new();
    let mut n = 0;
    for (i, t) in s["real"].as_array().unwrap().iter().enumerate() {
        let t = t.as_str().unwrap();
        let w: Vec<&str> = t.split_whitespace().collect();
        if w.len() < 6 || !seen.insert(t) {
            continue;
        }
        let h = w.len() / 2;
        let bucket = match w.len() {
            0..10 => "6-9 words",
            10..15 => "10-14 words",
            _ => "15+ words",
        };
        lines.push_str(
            &serde_json::json!({"id": format!("s{i}"), "text": w[..h].join(" "), "captions": [w[h..].join(" ")], "meta": {"length": bucket}})
                .to_string(),
        );
        lines.push('\n');
        n += 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    std::fs::write(&pairs, lines).unwrap();
    let out = dir.path().join("minilm-halves");
    let o = mosaic(&[
        "eval",
        "sentences",
        "--model",
        "minilm-l6-v2",
        "--pairs",
        pairs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--group-by",
        "length",
        "--typo-sweep",
        "0,0.1,0.3",
    ]);
    ok(&o);
    println!("{}", String::from_utf8_lossy(&o.stdout));
    let r = report(&out);
    assert_eq!(r["inputs"]["count"], n.to_string());
    for dir_name in ["query2pair", "pair2query"] {
        let m = |k: &str| r["metrics"][format!("{dir_name}_{k}")].as_f64().unwrap();
        assert!(m("r@1") <= m("r@5") && m("r@5") <= m("r@10") && m("r@10") <= 1.0);
        assert!(m("medr") >= 1.0 && m("map") > 0.0);
        let ranks = r["details"][format!("{dir_name}_ranks")]
            .as_array()
            .unwrap();
        assert_eq!(ranks.len(), n);
        let r1 = ranks.iter().filter(|x| x.as_u64() == Some(1)).count() as f64 / n as f64;
        assert_eq!(r1, m("r@1"));
    }
    let pts = r["sweeps"][0]["points"].as_array().unwrap();
    assert_eq!(pts.len(), 3);
    assert_eq!(pts[0][1], r["metrics"]["query2pair_r@1"]);
    assert_eq!(r["fairness"][0]["groups"].as_array().unwrap().len(), 3);
    // metrics, R@K curve, fairness bars, typo sweep.
    check_plots(&out, 4);
}

/// `mosaic eval model` on a saved Mosaic model (configs/arch/fmnist_clip.toml,
/// seeded weights) and a PNG manifest: the zero-shot top-1 in the report
/// equals the accuracy computed here through the library (same
/// preprocessing: grey, x/127.5 - 1; prompt ensembling), the sweep's clean
/// level equals it too, the group breakdown and plots are written, and bad
/// inputs name the line.
#[test]
fn eval_model_zero_shot_report_matches_the_library() {
    use mosaic_core::candle::{D, DType, Tensor};
    use mosaic_core::{Batch, Modality, ModalityBatch};
    use mosaic_models::arch::{ArchConfig, MultimodalModel};

    let tmp = tempfile::tempdir().unwrap();
    let cfg = ArchConfig::from_file(&root().join("../configs/arch/fmnist_clip.toml")).unwrap();
    let model = MultimodalModel::from_config(&cfg, DType::F32, &Device::Cpu).unwrap();
    let model_dir = tmp.path().join("model");
    model.save(&model_dir).unwrap();
    let classes = ["square", "cross", "ring"];
    std::fs::create_dir_all(tmp.path().join("img")).unwrap();
    let mut lines = String::new();
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for i in 0..24u32 {
        let c = (i % 3) as usize;
        let img = image::GrayImage::from_fn(28, 28, |x, y| {
            let v = (x * 7 + y * 3 + i * 11) % 255;
            image::Luma([if c == 0 {
                v as u8
            } else {
                (255 - v) as u8 / (c as u8)
            }])
        });
        img.save(tmp.path().join(format!("img/{i}.png"))).unwrap();
        pixels.extend(img.pixels().map(|p| p.0[0] as f32 / 127.5 - 1.0));
        labels.push(c as u32);
        lines.push_str(&format!(
            "{{\"image\": \"img/{i}.png\", \"label\": \"{}\", \"meta\": {{\"half\": \"{}\"}}}}\n",
            classes[c],
            if i < 12 { "first" } else { "second" }
        ));
    }
    let manifest = tmp.path().join("m.jsonl");
    std::fs::write(&manifest, &lines).unwrap();
    let tok = root().join("mosaic-data/tests/fixtures/text/clip_bpe_tokenizer.json");
    let templates = ["a photo of a {}", "a drawing of a {}"];
    let out = tmp.path().join("run");
    let o = mosaic(&[
        "eval",
        "model",
        "--model",
        model_dir.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--classes",
        &classes.join(","),
        "--template",
        templates[0],
        "--template",
        templates[1],
        "--noise",
        "0,0.3",
        "--occlusion",
        "0,0.5",
        "--group-by",
        "half",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(&o);

    // The same numbers through the library.
    let text = mosaic_data::text::TextTokenizer::from_file(
        &tok,
        mosaic_data::text::TextConfig {
            max_length: Some(16),
            padding: mosaic_data::text::Padding::Fixed(16),
            add_special_tokens: true,
        },
    )
    .unwrap();
    let prompts: Vec<String> = classes
        .iter()
        .flat_map(|c| templates.iter().map(move |t| t.replace("{}", c)))
        .collect();
    let enc = text.encode_batch(&prompts).unwrap();
    let mut tb = Batch::new(Vec::new());
    tb.modalities.insert(
        Modality::Text,
        ModalityBatch::new(enc.ids, Some(enc.attention_mask), vec![true; prompts.len()]).unwrap(),
    );
    let te = model.embed(&tb, "clip", Modality::Text).unwrap();
    let te = te
        .reshape((3, 2, te.dim(1).unwrap()))
        .unwrap()
        .mean(1)
        .unwrap();
    let te = te
        .broadcast_div(&te.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap())
        .unwrap();
    let mut ib = Batch::new(Vec::new());
    ib.modalities.insert(
        Modality::Image,
        ModalityBatch::new(
            Tensor::from_vec(pixels, (24, 1, 28, 28), &Device::Cpu).unwrap(),
            None,
            vec![true; 24],
        )
        .unwrap(),
    );
    let ie = model.embed(&ib, "clip", Modality::Image).unwrap();
    let pred: Vec<u32> = ie
        .matmul(&te.t().unwrap())
        .unwrap()
        .argmax(D::Minus1)
        .unwrap()
        .to_vec1()
        .unwrap();
    let acc = pred.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64 / 24.0;

    let r = report(&out);
    let top1 = r["metrics"]["zero_shot_top1"].as_f64().unwrap();
    assert!((top1 - acc).abs() < 1e-12, "report {top1} vs library {acc}");
    assert_eq!(r["metrics"]["zero_shot_top5"].as_f64().unwrap(), 1.0);
    let sweeps = r["sweeps"].as_array().unwrap();
    assert_eq!(sweeps.len(), 2);
    for s in sweeps {
        let clean = s["points"][0][1].as_f64().unwrap();
        assert!(
            (clean - acc).abs() < 1e-12,
            "sweep clean level {clean} vs {acc}"
        );
    }
    assert_eq!(r["fairness"][0]["groups"].as_array().unwrap().len(), 2);
    assert!(r["details"]["confusion_matrix"]["matrix"].is_array());
    check_plots(&out, 4);

    // A label outside the classes names the manifest line.
    std::fs::write(
        &manifest,
        format!("{lines}{{\"image\": \"img/0.png\", \"label\": \"star\"}}\n"),
    )
    .unwrap();
    let o = mosaic(&[
        "eval",
        "model",
        "--model",
        model_dir.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--tokenizer",
        tok.to_str().unwrap(),
        "--classes",
        &classes.join(","),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("m.jsonl:25") && err.contains("star"), "{err}");
}
