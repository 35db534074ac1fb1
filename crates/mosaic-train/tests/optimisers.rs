//! Parameter groups, optimiser state round trips, gradient clipping and
//! accumulation, optimiser / schedule validation.

mod common;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use common::{late_batch, late_model, max_diff, noise};
use mosaic_train::loss;
use mosaic_train::optim::{
    AdamW, GradAccumulator, Lion, Optimizer, OptimizerKind, ParamGroupBuilder, Sgd,
    build_optimizer, clip_grad_norm, grad_norm,
};
use mosaic_train::schedule::{Schedule, ScheduleKind};

#[test]
fn default_groups_exclude_biases_norms_and_logit_scale_from_decay() {
    let model = late_model(None);
    let vars = model.params().vars();
    let groups = ParamGroupBuilder::new(0.05)
        .rule("text", &["encoders.text"], 0.1, None)
        .build(&vars)
        .unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["text", "text.no_decay", "default", "default.no_decay"]
    );
    let total: usize = groups.iter().map(|g| g.vars.len()).sum();
    assert_eq!(total, vars.len());
    for g in &groups {
        let no_decay = g.name.ends_with("no_decay");
        assert_eq!(g.weight_decay, if no_decay { 0.0 } else { 0.05 });
        assert_eq!(
            g.lr_scale,
            if g.name.starts_with("text") { 0.1 } else { 1.0 }
        );
        for n in g.vars.keys() {
            let exempt = n.ends_with(".bias") || n.contains("norm") || n.ends_with("logit_scale");
            assert_eq!(exempt, no_decay, "{n} in {}", g.name);
            assert_eq!(
                n.starts_with("encoders.text."),
                g.name.starts_with("text"),
                "{n}"
            );
        }
    }
    // Embeddings, positions and the class token do decay.
    let decayed = &groups.iter().find(|g| g.name == "default").unwrap().vars;
    assert!(decayed.contains_key("encoders.image.cls"));
    assert!(groups[0].vars.contains_key("encoders.text.embed.weight"));
    // A rule pattern that matches nothing is an error naming it.
    let err = ParamGroupBuilder::new(0.0)
        .rule("x", &["encoders.audio"], 1.0, None)
        .build(&vars)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`encoders.audio`"), "{err}");
    let err = ParamGroupBuilder::new(-1.0)
        .build(&vars)
        .unwrap_err()
        .to_string();
    assert!(err.contains("weight_decay"), "{err}");
}

#[test]
fn groups_scale_the_learning_rate_and_decay() {
    // Zero gradients: only decoupled decay moves the weights, by lr·scale·wd.
    let dev = Device::Cpu;
    let w = |v: f64| Var::from_tensor(&Tensor::new(&[v, v], &dev).unwrap()).unwrap();
    let vars = BTreeMap::from([
        ("a.weight".to_string(), w(1.0)),
        ("a.bias".to_string(), w(1.0)),
        ("b.weight".to_string(), w(1.0)),
    ]);
    let groups = ParamGroupBuilder::new(0.1)
        .rule("b", &["b.*"], 3.0, None)
        .build(&vars)
        .unwrap();
    let mut opt = Lion::with_groups(groups, 0.01).unwrap();
    let zero = vars
        .values()
        .map(|v| {
            let z = v.as_tensor().zeros_like().unwrap();
            (v.as_tensor() * z).unwrap().sum_all().unwrap()
        })
        .reduce(|a, b| (a + b).unwrap())
        .unwrap();
    opt.step(&zero.backward().unwrap()).unwrap();
    let v = |n: &str| vars[n].as_tensor().to_vec1::<f64>().unwrap()[0];
    assert!((v("a.weight") - (1.0 - 0.01 * 0.1)).abs() < 1e-15);
    assert_eq!(v("a.bias"), 1.0);
    assert!((v("b.weight") - (1.0 - 0.03 * 0.1)).abs() < 1e-15);
}

/// A linear regression whose gradient depends on the parameters.
fn quad_loss(vars: &BTreeMap<String, Var>) -> Tensor {
    let x = Tensor::from_vec(noise(5, 24), (6, 4), &Device::Cpu).unwrap();
    let y = Tensor::from_vec(noise(6, 6), (6, 1), &Device::Cpu).unwrap();
    let pred = x
        .matmul(vars["w"].as_tensor())
        .unwrap()
        .broadcast_add(vars["b"].as_tensor())
        .unwrap();
    (pred - y).unwrap().sqr().unwrap().mean_all().unwrap()
}

fn fresh() -> BTreeMap<String, Var> {
    let dev = Device::Cpu;
    BTreeMap::from([
        (
            "w".to_string(),
            Var::from_tensor(&Tensor::from_vec(noise(1, 4), (4, 1), &dev).unwrap()).unwrap(),
        ),
        (
            "b".to_string(),
            Var::from_tensor(&Tensor::zeros(1, DType::F64, &dev).unwrap()).unwrap(),
        ),
    ])
}

#[test]
fn optimiser_state_round_trips_exactly() {
    type Make = fn(BTreeMap<String, Var>) -> Box<dyn Optimizer>;
    let makers: Vec<(&str, Make)> = vec![
        ("adamw", |v| Box::new(AdamW::new(v, 0.05, 0.01))),
        ("lion", |v| Box::new(Lion::new(v, 0.01, 0.1).unwrap())),
        ("sgd", |v| {
            Box::new(Sgd::new(v, 0.05, 0.9, 0.0).unwrap().with_nesterov(true))
        }),
    ];
    for (name, make) in makers {
        let a = fresh();
        let mut oa = make(a.clone());
        for _ in 0..4 {
            oa.step(&quad_loss(&a).backward().unwrap()).unwrap();
        }
        assert_eq!(oa.steps_taken(), 4);
        // Resume: same parameter values, a new optimiser loaded from the state.
        let b = fresh();
        for (k, v) in &b {
            v.set(&a[k].as_tensor().copy().unwrap()).unwrap();
        }
        let mut ob = make(b.clone());
        let state = oa.state().unwrap();
        assert!(state.contains_key("step"));
        ob.load_state(&state).unwrap();
        assert_eq!(ob.steps_taken(), 4);
        for _ in 0..5 {
            oa.step(&quad_loss(&a).backward().unwrap()).unwrap();
            ob.step(&quad_loss(&b).backward().unwrap()).unwrap();
        }
        for k in a.keys() {
            assert_eq!(
                a[k].as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap(),
                b[k].as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap(),
                "{name}: {k} diverged after resume"
            );
        }
        // Bad states are refused, naming the entry.
        let mut bad = state.clone();
        let key = bad.keys().find(|k| k.starts_with("w.")).unwrap().clone();
        bad.insert(
            key.clone(),
            Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap(),
        );
        let err = make(fresh()).load_state(&bad).err().unwrap().to_string();
        assert!(err.contains(&key), "{name}: {err}");
        let mut extra = state.clone();
        extra.insert(
            "nope.exp_avg".into(),
            Tensor::zeros(1, DType::F64, &Device::Cpu).unwrap(),
        );
        assert!(make(fresh()).load_state(&extra).is_err());
    }
}

#[test]
fn clipping_follows_clip_grad_norm() {
    let vars = fresh();
    let mut g = quad_loss(&vars).backward().unwrap();
    let n = grad_norm(&g, &vars).unwrap();
    let before: Vec<Tensor> = vars
        .values()
        .map(|v| g.get(v.as_tensor()).unwrap().clone())
        .collect();
    // Above the norm: unchanged.
    assert_eq!(clip_grad_norm(&mut g, &vars, n * 2.0).unwrap(), n);
    for (v, b) in vars.values().zip(&before) {
        assert_eq!(max_diff(g.get(v.as_tensor()).unwrap(), b), 0.0);
    }
    // Below: scaled to max_norm / (n + 1e-6) · n.
    let pre = clip_grad_norm(&mut g, &vars, n / 4.0).unwrap();
    assert_eq!(pre, n);
    let after = grad_norm(&g, &vars).unwrap();
    assert!((after - n / 4.0 * n / (n + 1e-6)).abs() < 1e-14, "{after}");
    assert!(clip_grad_norm(&mut g, &vars, 0.0).is_err());
}

#[test]
fn accumulated_micro_batches_give_the_full_batch_gradient() {
    let model = late_model(None);
    let vars = model.params().vars();
    let batch = late_batch(6, 2);
    let parts = mosaic_train::gradcache::split_batch(&batch, 3).unwrap();
    // Per-sample-mean objective: classification-like loss on the embeddings.
    let obj = |b: &mosaic_core::Batch| {
        let out = model.forward(b).unwrap();
        let (a, t) = &out.embeddings["clip"];
        (a * t)
            .unwrap()
            .sum(1)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
    };
    let full = obj(&batch).backward().unwrap();
    let mut acc = GradAccumulator::new(&vars);
    for p in &parts {
        acc.add(&obj(p).backward().unwrap()).unwrap();
    }
    assert_eq!(acc.micro_batches(), 2);
    let g = acc.finish().unwrap();
    let mut worst = 0f64;
    for (n, v) in &vars {
        let Some(want) = full.get(v.as_tensor()) else {
            assert!(g.get(v.as_tensor()).is_none(), "{n}");
            continue;
        };
        worst = worst.max(max_diff(want, g.get(v.as_tensor()).unwrap()));
    }
    assert!(worst < 1e-12, "accumulated gradient off by {worst:e}");
    assert_eq!(acc.micro_batches(), 0);
    assert!(acc.finish().is_err());
}

#[test]
fn optimisers_by_name_and_bad_values() {
    assert_eq!(
        "AdamW".parse::<OptimizerKind>().unwrap(),
        OptimizerKind::AdamW
    );
    assert_eq!(
        "lion".parse::<OptimizerKind>().unwrap(),
        OptimizerKind::Lion
    );
    let err = "adam".parse::<OptimizerKind>().unwrap_err().to_string();
    assert!(err.contains("unknown optimiser `adam`"), "{err}");
    let vars = fresh();
    let groups = ParamGroupBuilder::new(0.0).build(&vars).unwrap();
    for kind in [
        OptimizerKind::AdamW,
        OptimizerKind::Lion,
        OptimizerKind::Sgd,
    ] {
        let mut opt = build_optimizer(kind, groups.clone(), 0.01).unwrap();
        let l0 = quad_loss(&vars).to_scalar::<f64>().unwrap();
        opt.step(&quad_loss(&vars).backward().unwrap()).unwrap();
        assert!(
            quad_loss(&vars).to_scalar::<f64>().unwrap() < l0,
            "{kind:?}"
        );
        let err = build_optimizer(kind, groups.clone(), -1.0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("`lr`"), "{err}");
    }
    let mut s = Sgd::new(vars.clone(), 0.1, 0.0, 0.0)
        .unwrap()
        .with_nesterov(true);
    let err = s
        .step(&quad_loss(&vars).backward().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nesterov"), "{err}");
    // A parameter in two groups.
    let g = ParamGroupBuilder::new(0.0).build(&vars).unwrap();
    let twice = vec![g[0].clone(), g[0].clone()];
    assert!(AdamW::with_groups(twice, 0.1).is_err());
    // Schedules.
    let err = Schedule::new(ScheduleKind::Linear, 1e-3, 0, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("total_steps"), "{err}");
    let err = Schedule::new(ScheduleKind::Constant, f64::NAN, 0, 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`lr`"), "{err}");
    let s = Schedule::new(ScheduleKind::Constant, 1e-3, 4, 0).unwrap();
    assert_eq!(s.lr(2), 5e-4);
    assert_eq!(s.lr(1000), 1e-3);
    let s = Schedule::new(ScheduleKind::Linear, 1e-3, 0, 10).unwrap();
    assert_eq!(s.lr(10), 0.0);
    assert_eq!(s.lr(20), 0.0);
    let _ = loss::MAX_LOGIT_SCALE;
}

#[test]
fn schedule_parses_from_config() {
    let s: Schedule = serde_json::from_str(
        r#"{"kind": {"kind": "cosine"}, "base_lr": 0.001, "warmup_steps": 10, "total_steps": 100}"#,
    )
    .unwrap();
    assert_eq!(s.kind, ScheduleKind::Cosine { num_cycles: 0.5 });
    let bad = serde_json::from_str::<Schedule>(
        r#"{"kind": {"kind": "cosine", "cycles": 2}, "base_lr": 0.001, "warmup_steps": 10, "total_steps": 100}"#,
    );
    assert!(bad.is_err());
}

/// Large parameter sets take the multi-threaded update path; the first
/// AdamW step must still equal, on every element of every parameter, the
/// update written out here in f64 (β = (0.9, 0.999), ε = 1e-8), to the bit.
#[test]
fn threaded_adamw_first_step_matches_the_formula_on_every_element() {
    let dev = Device::Cpu;
    let mk = |seed: u64, n: usize| -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    };
    let shapes = [(300usize, 400usize), (257, 300), (5, 7)];
    let mut vars = BTreeMap::new();
    let mut targets = Vec::new();
    for (k, &(r, c)) in shapes.iter().enumerate() {
        let w = Tensor::from_vec(mk(k as u64 + 1, r * c), (r, c), &dev).unwrap();
        vars.insert(format!("p{k}"), Var::from_tensor(&w).unwrap());
        targets.push(Tensor::from_vec(mk(k as u64 + 11, r * c), (r, c), &dev).unwrap());
    }
    // loss = Σ w·t, so the gradient of each parameter is its target.
    let loss = vars
        .values()
        .zip(&targets)
        .map(|(v, t)| (v.as_tensor() * t).unwrap().sum_all().unwrap())
        .reduce(|a, b| (a + b).unwrap())
        .unwrap();
    let before: Vec<Vec<f32>> = vars
        .values()
        .map(|v| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
        .collect();
    let (lr, wd) = (1e-2, 0.1);
    let mut opt = AdamW::new(vars.clone(), lr, wd);
    opt.step(&loss.backward().unwrap()).unwrap();
    for ((v, w0), t) in vars.values().zip(&before).zip(&targets) {
        let w1: Vec<f32> = v.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let g: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let (c1, c2) = (1.0 - 0.9f64, 1.0 - 0.999f64);
        for i in 0..w1.len() {
            let (w, g) = (w0[i] as f64, g[i] as f64);
            let (m, v) = ((1.0 - 0.9) * g, (1.0 - 0.999) * g * g);
            let want = (w * (1.0 - lr * wd) - lr * (m / c1) / ((v / c2).sqrt() + 1e-8)) as f32;
            assert_eq!(w1[i], want, "element {i}");
        }
    }
    assert!(vars.values().map(|v| v.elem_count()).sum::<usize>() > 1 << 16);
}
