//! Strategies: frozen parameters never move, LiT locks one tower, prompt
//! tuning trains only the prompts, LoRA trains only adapters and merges
//! into a plain checkpoint with identical outputs, EWC's penalty is
//! differentiable and reduces forgetting, distillation objectives pass
//! gradient checks.

mod common;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use common::{late_batch, late_model, max_diff, noise, scalar};
use mosaic_core::Modality;
use mosaic_models::nn::gradcheck::check_gradients;
use mosaic_models::nn::{BlockSpec, Embedding, LoraSpec, ParamStore, Transformer};
use mosaic_train::loss;
use mosaic_train::optim::{AdamW, Optimizer, Sgd};
use mosaic_train::strategy::{
    Ewc, distill_cosine, distill_kl, distill_mse, freeze, lit, load_base_weights, merge_lora,
    prompt_tuning, select, set_lora, trainable_lora_vars,
};

fn me(e: mosaic_train::Error) -> mosaic_models::Error {
    mosaic_models::Error::InvalidInput {
        what: "loss".into(),
        message: e.to_string(),
    }
}

fn snapshot(vars: &BTreeMap<String, Var>) -> BTreeMap<String, Vec<f64>> {
    vars.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_tensor()
                    .to_dtype(DType::F64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap(),
            )
        })
        .collect()
}

fn clip_objective(
    model: &mosaic_models::arch::MultimodalModel,
    batch: &mosaic_core::Batch,
) -> Tensor {
    loss::clip_loss(&model.forward(batch).unwrap().heads["clip"]).unwrap()
}

#[test]
fn frozen_parameters_never_change_and_lit_locks_a_tower() {
    let model = late_model(None);
    let all = model.params().vars();
    let batch = late_batch(6, 4);
    let trainable = lit(&model, Modality::Image).unwrap();
    assert!(trainable.keys().all(|k| !k.starts_with("encoders.image.")));
    assert!(trainable.contains_key("fusion.proj.image.weight"));
    assert_eq!(
        trainable.keys().collect::<Vec<_>>(),
        freeze(&all, &["encoders.image"])
            .unwrap()
            .keys()
            .collect::<Vec<_>>()
    );
    let before = snapshot(&all);
    let mut opt = AdamW::new(trainable.clone(), 1e-2, 0.1);
    for _ in 0..3 {
        opt.step(&clip_objective(&model, &batch).backward().unwrap())
            .unwrap();
    }
    let after = snapshot(&all);
    for (k, v) in &before {
        if k.starts_with("encoders.image.") {
            assert_eq!(v, &after[k], "{k} moved while frozen");
        } else {
            assert_ne!(v, &after[k], "{k} did not train");
        }
    }
    // Unknown names are errors that name them.
    let err = freeze(&all, &["encoders.imag"]).unwrap_err().to_string();
    assert!(err.contains("`encoders.imag`"), "{err}");
    let err = lit(&model, Modality::Audio).unwrap_err().to_string();
    assert!(err.contains("audio"), "{err}");
    let only = select(&all, &["*.attn.q.*"]).unwrap();
    assert_eq!(only.len(), 4);
    assert!(select(&all, &["*.nothing"]).is_err());
}

#[test]
fn prompt_tuning_trains_only_the_prompts() {
    let dev = Device::Cpu;
    let p = ParamStore::new(3, DType::F64, &dev);
    let emb = Embedding::new(&p, "enc.embed", 50, 16).unwrap();
    let body = Transformer::new(&p, "enc.body", 1, BlockSpec::new(16, 4)).unwrap();
    let head = p.linear("enc.head", 16, 3, true).unwrap();
    let frozen = p.vars();
    let pt = prompt_tuning(&p, "prompt", 4, 16).unwrap();
    assert_eq!(pt.vars.keys().collect::<Vec<_>>(), vec!["prompt.tokens"]);
    assert!(
        prompt_tuning(&p, "prompt", 4, 16).is_err(),
        "the name is taken"
    );
    let ids = Tensor::new(&[[1u32, 5, 9, 2], [7, 7, 3, 0]], &dev).unwrap();
    let y = Tensor::new(&[2u32, 0], &dev).unwrap();
    let objective = || -> mosaic_train::Result<Tensor> {
        let (x, _) = pt.prepend(&emb.forward(&ids)?, None)?;
        let h = body.forward(&x, None, None)?;
        // Read out at the first prompt position.
        let logits = head.forward(&h.narrow(1, 0, 1)?.squeeze(1)?)?;
        loss::cross_entropy(&logits, &y, 0.0)
    };
    let vars: Vec<(String, Var)> = pt.vars.clone().into_iter().collect();
    let r = check_gradients(&vars, || objective().map_err(me), 16, 1e-6, 1e-6).unwrap();
    assert_eq!(r.checked, 16);
    let before = snapshot(&frozen);
    let p0 = snapshot(&pt.vars);
    let first = scalar(&objective().unwrap());
    let mut opt = AdamW::new(pt.vars.clone(), 5e-2, 0.0);
    for _ in 0..30 {
        opt.step(&objective().unwrap().backward().unwrap()).unwrap();
    }
    let last = scalar(&objective().unwrap());
    assert!(last < 0.5 * first, "prompt tuning: {first} → {last}");
    assert_eq!(before, snapshot(&frozen), "encoder moved");
    assert_ne!(p0, snapshot(&pt.vars));
}

fn lora_spec() -> LoraSpec {
    LoraSpec {
        rank: 4,
        alpha: 8.0,
        targets: vec!["*.attn.q".into(), "*.attn.v".into(), "fusion.proj.*".into()],
    }
}

#[test]
fn lora_trains_adapters_only_and_merges_into_a_plain_model() {
    let dir = tempfile::tempdir().unwrap();
    let base = late_model(None);
    let base_file = dir.path().join("base.safetensors");
    base.params().save(&base_file).unwrap();
    let batch = late_batch(6, 8);

    // The LoRA model starts from the base weights (B = 0: same outputs).
    let store = ParamStore::new(99, DType::F64, &Device::Cpu);
    set_lora(&store, lora_spec()).unwrap();
    let model = late_model(Some(store.clone()));
    load_base_weights(&store, &base_file).unwrap();
    let d0 = max_diff(
        &base.forward(&batch).unwrap().heads["clip"],
        &model.forward(&batch).unwrap().heads["clip"],
    );
    assert_eq!(d0, 0.0);

    let trainable = trainable_lora_vars(&store).unwrap();
    assert_eq!(trainable.len(), 2 * (2 * 2 + 2));
    assert!(
        trainable
            .keys()
            .all(|k| k.ends_with(".lora_a") || k.ends_with(".lora_b"))
    );
    let base_vars: BTreeMap<String, Var> = store
        .vars()
        .into_iter()
        .filter(|(k, _)| !trainable.contains_key(k))
        .collect();
    let before = snapshot(&base_vars);
    let mut opt = AdamW::new(trainable.clone(), 1e-2, 0.0);
    let first = scalar(&clip_objective(&model, &batch));
    for _ in 0..10 {
        opt.step(&clip_objective(&model, &batch).backward().unwrap())
            .unwrap();
    }
    assert!(scalar(&clip_objective(&model, &batch)) < first);
    assert_eq!(before, snapshot(&base_vars), "a base weight moved");

    // Adapter gradients are right.
    let some: Vec<(String, Var)> = trainable
        .iter()
        .filter(|(k, _)| k.starts_with("encoders.text"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    check_gradients(&some, || Ok(clip_objective(&model, &batch)), 6, 1e-6, 1e-6).unwrap();

    // Merge: no adapter tensors, W + scale·BA, and a plain model loads it
    // with the LoRA model's outputs.
    let merged = merge_lora(&model).unwrap();
    assert!(merged.keys().all(|k| !k.contains("lora")));
    assert_eq!(merged.len(), base.params().vars().len());
    let t = store.tensors();
    let l = "encoders.text.body.blocks.0.attn.q";
    let want = (&t[&format!("{l}.weight")]
        + (t[&format!("{l}.lora_b")]
            .matmul(&t[&format!("{l}.lora_a")])
            .unwrap()
            * 2.0)
            .unwrap())
    .unwrap();
    assert_eq!(max_diff(&merged[&format!("{l}.weight")], &want), 0.0);
    let merged_file = dir.path().join("merged.safetensors");
    let map: std::collections::HashMap<String, Tensor> = merged.into_iter().collect();
    mosaic_core::checkpoint::save_safetensors(&merged_file, &map).unwrap();
    let plain = late_model(None);
    plain.params().load(&merged_file).unwrap();
    let d = max_diff(
        &plain.forward(&batch).unwrap().heads["clip"],
        &model.forward(&batch).unwrap().heads["clip"],
    );
    eprintln!("merged LoRA vs adapters: max logit diff {d:e}");
    assert!(d < 1e-10, "merged model differs by {d:e}");

    // Misconfigured targets and specs name the key / pattern.
    let s2 = ParamStore::new(0, DType::F64, &Device::Cpu);
    set_lora(
        &s2,
        LoraSpec {
            rank: 2,
            alpha: 2.0,
            targets: vec!["*.attn.q".into(), "*.attn.qq".into()],
        },
    )
    .unwrap();
    let _ = late_model(Some(s2.clone()));
    let err = trainable_lora_vars(&s2).unwrap_err().to_string();
    assert!(err.contains("`*.attn.qq`"), "{err}");
    let mut bad = lora_spec();
    bad.rank = 0;
    assert!(set_lora(&s2, bad).unwrap_err().to_string().contains("rank"));
    // Base weights with a missing tensor are refused.
    let partial = dir.path().join("partial.safetensors");
    let mut m: std::collections::HashMap<String, Tensor> =
        base.params().tensors().into_iter().collect();
    m.remove("heads.clip.logit_scale");
    mosaic_core::checkpoint::save_safetensors(&partial, &m).unwrap();
    let err = load_base_weights(&store, &partial).unwrap_err().to_string();
    assert!(err.contains("heads.clip.logit_scale"), "{err}");
}

/// Noisy linear regression tasks sharing weights: task A uses inputs on
/// dims 0–2, task B on dims 1–3, with conflicting targets on the shared
/// dims. `chunk`: the loss of samples `4·chunk .. 4·chunk + 4` only (the
/// Fisher needs small batches: the gradient of a large batch's mean
/// vanishes at the optimum).
fn task_part(which: u64, w: &Var, chunk: Option<usize>) -> Tensor {
    let dev = Device::Cpu;
    let n = 32;
    let mut x = noise(100 + which, n * 4);
    for r in 0..n {
        x[r * 4 + if which == 0 { 3 } else { 0 }] = 0.0;
    }
    let x = Tensor::from_vec(x, (n, 4), &dev).unwrap();
    let truth = if which == 0 {
        Tensor::new(&[[1.0f64], [2.0], [-1.0], [0.0]], &dev).unwrap()
    } else {
        Tensor::new(&[[0.0f64], [-1.0], [1.5], [2.0]], &dev).unwrap()
    };
    let eps = (Tensor::from_vec(noise(200 + which, n), (n, 1), &dev).unwrap() * 0.5).unwrap();
    let y = (x.matmul(&truth).unwrap() + eps).unwrap();
    let (x, y) = match chunk {
        Some(c) => (
            x.narrow(0, 4 * c, 4).unwrap(),
            y.narrow(0, 4 * c, 4).unwrap(),
        ),
        None => (x, y),
    };
    (x.matmul(w.as_tensor()).unwrap() - y)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
}

fn task(which: u64, w: &Var) -> Tensor {
    task_part(which, w, None)
}

#[test]
fn ewc_penalty_is_differentiable_saved_and_reduces_forgetting() {
    let dev = Device::Cpu;
    let run = |lambda: Option<f64>| -> (f64, f64, Option<Ewc>) {
        let w = Var::from_tensor(&Tensor::zeros((4, 1), DType::F64, &dev).unwrap()).unwrap();
        let vars = BTreeMap::from([("w".to_string(), w.clone())]);
        let mut opt = Sgd::new(vars.clone(), 0.1, 0.0, 0.0).unwrap();
        for _ in 0..300 {
            opt.step(&task(0, &w).backward().unwrap()).unwrap();
        }
        let ewc =
            lambda.map(|l| Ewc::from_task(&vars, 8, |i| Ok(task_part(0, &w, Some(i))), l).unwrap());
        for _ in 0..300 {
            let mut l = task(1, &w);
            if let Some(e) = &ewc {
                l = (l + e.penalty(&vars).unwrap()).unwrap();
            }
            opt.step(&l.backward().unwrap()).unwrap();
        }
        (scalar(&task(0, &w)), scalar(&task(1, &w)), ewc)
    };
    let (a_plain, b_plain, _) = run(None);
    let (a_ewc, b_ewc, ewc) = run(Some(100.0));
    eprintln!(
        "EWC: task-A loss after B {a_plain:.4} → {a_ewc:.4} (task B {b_plain:.4} → {b_ewc:.4})"
    );
    assert!(a_ewc < 0.5 * a_plain, "EWC did not reduce forgetting");
    let ewc = ewc.unwrap();

    // The Fisher is the mean squared gradient.
    let w = Var::from_tensor(&Tensor::from_vec(noise(3, 4), (4, 1), &dev).unwrap()).unwrap();
    let vars = BTreeMap::from([("w".to_string(), w.clone())]);
    let f = Ewc::estimate_fisher(&vars, 2, |i| Ok(task(i as u64, &w))).unwrap();
    let g0 = task(0, &w)
        .backward()
        .unwrap()
        .get(w.as_tensor())
        .unwrap()
        .sqr()
        .unwrap();
    let g1 = task(1, &w)
        .backward()
        .unwrap()
        .get(w.as_tensor())
        .unwrap()
        .sqr()
        .unwrap();
    let want = ((g0 + g1).unwrap() * 0.5).unwrap();
    assert!(max_diff(&f["w"], &want) < 1e-15);

    // Penalty: value and gradient.
    let e = Ewc::new(&vars, f.clone(), 3.0).unwrap();
    assert_eq!(scalar(&e.penalty(&vars).unwrap()), 0.0);
    w.set(&Tensor::from_vec(noise(4, 4), (4, 1), &dev).unwrap())
        .unwrap();
    let d = (w.as_tensor() - &e.anchor()["w"]).unwrap();
    let manual = scalar(&(d.sqr().unwrap() * &f["w"]).unwrap().sum_all().unwrap()) * 1.5;
    assert!((scalar(&e.penalty(&vars).unwrap()) - manual).abs() < 1e-14);
    let named = vec![("w".to_string(), w.clone())];
    check_gradients(&named, || e.penalty(&vars).map_err(me), 4, 1e-6, 1e-7).unwrap();

    // Save / load.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ewc.safetensors");
    ewc.save(&path).unwrap();
    let back = Ewc::load(&path, 100.0, &dev).unwrap();
    assert_eq!(max_diff(&back.fisher()["w"], &ewc.fisher()["w"]), 0.0);
    assert_eq!(max_diff(&back.anchor()["w"], &ewc.anchor()["w"]), 0.0);
    assert_eq!(
        scalar(&back.penalty(&vars).unwrap()),
        scalar(&ewc.penalty(&vars).unwrap())
    );
    // Errors name the parameter.
    let other = BTreeMap::from([("v".to_string(), w.clone())]);
    assert!(ewc.penalty(&other).unwrap_err().to_string().contains("`w`"));
    assert!(
        Ewc::new(&other, f, 1.0)
            .unwrap_err()
            .to_string()
            .contains("`w`")
    );
    assert!(Ewc::estimate_fisher(&vars, 0, |_| unreachable!()).is_err());
}

#[test]
fn distillation_objectives_pass_gradient_checks() {
    let dev = Device::Cpu;
    let s = Var::from_tensor(&Tensor::from_vec(noise(1, 24), (4, 6), &dev).unwrap()).unwrap();
    let t = Tensor::from_vec(noise(2, 24), (4, 6), &dev).unwrap();
    let vars = vec![("student".to_string(), s.clone())];
    check_gradients(
        &vars,
        || distill_kl(s.as_tensor(), &t, 3.0).map_err(me),
        24,
        1e-6,
        1e-6,
    )
    .unwrap();
    check_gradients(
        &vars,
        || distill_cosine(s.as_tensor(), &t).map_err(me),
        24,
        1e-6,
        1e-6,
    )
    .unwrap();
    check_gradients(
        &vars,
        || distill_mse(s.as_tensor(), &t).map_err(me),
        24,
        1e-6,
        1e-6,
    )
    .unwrap();
    // A student equal to the teacher has zero loss; the teacher gets no gradient.
    let tv = Var::from_tensor(&t).unwrap();
    let l = distill_kl(&t, tv.as_tensor(), 2.0).unwrap();
    assert!(scalar(&l).abs() < 1e-15);
    assert!(l.backward().unwrap().get(tv.as_tensor()).is_none());
    assert!(distill_kl(s.as_tensor(), &t, 0.0).is_err());
    assert!(distill_mse(s.as_tensor(), &t.narrow(0, 0, 2).unwrap()).is_err());
}
