//! Parity with the PyTorch references (fixtures written by
//! `scripts/reference/make_train_fixtures.py`): objectives and their
//! gradients (open_clip's CLIP / SigLIP losses, cross-entropy with label
//! smoothing, BCE, distillation), optimisers over 20 steps
//! (`torch.optim.AdamW` with groups + clipping + schedule, `torch.optim.SGD`
//! momentum / Nesterov / dampening, `lion_pytorch.Lion`) and schedules
//! (transformers). Everything in f64, within 1e-6 (measured: ~1e-15).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use mosaic_train::loss;
use mosaic_train::optim::{self, AdamW, Lion, Optimizer, ParamGroup, Sgd, clip_grad_norm};
use mosaic_train::schedule::{Schedule, ScheduleKind};
use mosaic_train::strategy::{distill_cosine, distill_kl, distill_mse};
use serde_json::Value;

const TOL: f64 = 1e-6;

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// `{"shape": [...], "data": [...]}` or a flat list.
fn tensor(v: &Value) -> Tensor {
    if let Some(shape) = v.get("shape") {
        let shape: Vec<usize> = shape
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        Tensor::from_vec(floats(&v["data"]), shape, &Device::Cpu).unwrap()
    } else {
        let d = floats(v);
        let n = d.len();
        Tensor::from_vec(d, n, &Device::Cpu).unwrap()
    }
}

fn var(v: &Value) -> Var {
    Var::from_tensor(&tensor(v)).unwrap()
}

fn scalar_var(x: f64) -> Var {
    Var::from_tensor(&Tensor::new(&[x], &Device::Cpu).unwrap()).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    let a: Vec<f64> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f64> = b.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn scalar(t: &Tensor) -> f64 {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()[0]
}

fn check(name: &str, got: f64, want: f64) -> f64 {
    let d = (got - want).abs();
    assert!(d <= TOL, "{name}: {got} vs {want} (diff {d:e})");
    d
}

#[test]
fn cross_entropy_with_label_smoothing_matches_pytorch() {
    let f = &fixture("losses.json")["cross_entropy"];
    let x = var(&f["logits"]);
    let t: Vec<u32> = f["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let t = Tensor::new(t.as_slice(), &Device::Cpu).unwrap();
    let l = loss::cross_entropy(x.as_tensor(), &t, f["smoothing"].as_f64().unwrap()).unwrap();
    let d = check("ce", scalar(&l), f["loss"].as_f64().unwrap());
    let g = l.backward().unwrap();
    let dg = max_diff(g.get(x.as_tensor()).unwrap(), &tensor(&f["grad_logits"]));
    assert!(dg <= TOL, "ce grad {dg:e}");
    eprintln!("cross_entropy(smoothing 0.1): loss diff {d:e}, grad diff {dg:e}");
}

#[test]
fn clip_loss_matches_open_clip() {
    let f = &fixture("losses.json")["clip"];
    let (a, b) = (var(&f["a"]), var(&f["b"]));
    let s = scalar_var(f["logit_scale"].as_f64().unwrap());
    let l = loss::clip_loss_embeddings(a.as_tensor(), b.as_tensor(), s.as_tensor()).unwrap();
    let d = check("clip", scalar(&l), f["loss"].as_f64().unwrap());
    let g = l.backward().unwrap();
    let da = max_diff(g.get(a.as_tensor()).unwrap(), &tensor(&f["grad_a"]));
    let db = max_diff(g.get(b.as_tensor()).unwrap(), &tensor(&f["grad_b"]));
    let ds = check(
        "clip grad scale",
        scalar(g.get(s.as_tensor()).unwrap()),
        f["grad_logit_scale"].as_f64().unwrap(),
    );
    assert!(da <= TOL && db <= TOL, "clip grads {da:e} {db:e}");
    eprintln!("clip: loss diff {d:e}, grad diffs a {da:e} b {db:e} scale {ds:e}");
}

#[test]
fn siglip_loss_matches_open_clip() {
    for key in ["siglip_init", "siglip"] {
        let f = &fixture("losses.json")[key];
        let (a, b) = (var(&f["a"]), var(&f["b"]));
        let s = scalar_var(f["logit_scale"].as_f64().unwrap());
        let bias = scalar_var(f["logit_bias"].as_f64().unwrap());
        let l = loss::siglip_loss_embeddings(
            a.as_tensor(),
            b.as_tensor(),
            s.as_tensor(),
            bias.as_tensor(),
        )
        .unwrap();
        let d = check(key, scalar(&l), f["loss"].as_f64().unwrap());
        let g = l.backward().unwrap();
        let da = max_diff(g.get(a.as_tensor()).unwrap(), &tensor(&f["grad_a"]));
        let db = max_diff(g.get(b.as_tensor()).unwrap(), &tensor(&f["grad_b"]));
        let ds = check(
            "siglip grad scale",
            scalar(g.get(s.as_tensor()).unwrap()),
            f["grad_logit_scale"].as_f64().unwrap(),
        );
        let dbias = check(
            "siglip grad bias",
            scalar(g.get(bias.as_tensor()).unwrap()),
            f["grad_logit_bias"].as_f64().unwrap(),
        );
        assert!(da <= TOL && db <= TOL, "siglip grads {da:e} {db:e}");
        eprintln!(
            "{key}: loss diff {d:e}, grad diffs a {da:e} b {db:e} scale {ds:e} bias {dbias:e}"
        );
    }
}

#[test]
fn bce_with_logits_matches_pytorch() {
    let f = &fixture("losses.json")["bce"];
    let x = var(&f["logits"]);
    let y = tensor(&f["targets"]);
    let l = loss::bce_with_logits(x.as_tensor(), &y).unwrap();
    let d = check("bce", scalar(&l), f["loss"].as_f64().unwrap());
    let g = l.backward().unwrap();
    let dg = max_diff(g.get(x.as_tensor()).unwrap(), &tensor(&f["grad_logits"]));
    assert!(dg <= TOL, "bce grad {dg:e}");
    eprintln!("bce_with_logits: loss diff {d:e}, grad diff {dg:e}");
}

#[test]
fn distillation_matches_pytorch() {
    let l = fixture("losses.json");
    for (key, which) in [("kd_kl", 0), ("kd_mse", 1), ("kd_cosine", 2)] {
        let f = &l[key];
        let s = var(&f["student"]);
        let t = tensor(&f["teacher"]);
        let out = match which {
            0 => distill_kl(s.as_tensor(), &t, f["temperature"].as_f64().unwrap()),
            1 => distill_mse(s.as_tensor(), &t),
            _ => distill_cosine(s.as_tensor(), &t),
        }
        .unwrap();
        let d = check(key, scalar(&out), f["loss"].as_f64().unwrap());
        let g = out.backward().unwrap();
        let dg = max_diff(g.get(s.as_tensor()).unwrap(), &tensor(&f["grad_student"]));
        assert!(dg <= TOL, "{key} grad {dg:e}");
        eprintln!("{key}: loss diff {d:e}, grad diff {dg:e}");
    }
}

/// Runs `opt` for the fixture's 20 steps on its fixed gradients and
/// compares every step's parameters.
fn run_case(
    case: &str,
    vars: &BTreeMap<String, Var>,
    opt: &mut dyn Optimizer,
    clip: Option<f64>,
    sched: Option<Schedule>,
) {
    let f = fixture("optim.json");
    let c = &f["cases"][case];
    let steps = f["steps"].as_u64().unwrap() as usize;
    let mut worst = 0f64;
    for k in 0..steps {
        let mut total: Option<Tensor> = None;
        for name in ["p0", "p1"] {
            let g = Tensor::from_vec(
                floats(&f["grads"][name][k]),
                vars[name].dims(),
                &Device::Cpu,
            )
            .unwrap();
            let term = (vars[name].as_tensor() * g).unwrap().sum_all().unwrap();
            total = Some(match total {
                Some(t) => (t + term).unwrap(),
                None => term,
            });
        }
        let mut grads = total.unwrap().backward().unwrap();
        if let Some(max) = clip {
            let n = clip_grad_norm(&mut grads, vars, max).unwrap();
            check("clip norm", n, c["clip_norms"][k].as_f64().unwrap());
        }
        if let Some(s) = &sched {
            opt.set_learning_rate(s.lr(k));
            check("lr", s.lr(k), c["lrs"][k].as_f64().unwrap());
        }
        opt.step(&grads).unwrap();
        for name in ["p0", "p1"] {
            let want = floats(&c["trajectory"][name][k]);
            let got: Vec<f64> = vars[name]
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (x, y) in got.iter().zip(&want) {
                worst = worst.max((x - y).abs());
            }
        }
        assert!(worst <= TOL, "{case}: step {k} differs by {worst:e}");
    }
    eprintln!("{case}: 20 steps, max parameter diff {worst:e}");
}

fn init_vars() -> BTreeMap<String, Var> {
    let f = fixture("optim.json");
    ["p0", "p1"]
        .into_iter()
        .map(|n| (n.to_string(), var(&f["init"][n])))
        .collect()
}

fn split(vars: &BTreeMap<String, Var>, wd0: f64, wd1: f64, s1: f64) -> Vec<ParamGroup> {
    let one = |n: &str| BTreeMap::from([(n.to_string(), vars[n].clone())]);
    vec![
        ParamGroup::new("p0", one("p0"), 1.0, wd0),
        ParamGroup::new("p1", one("p1"), s1, wd1),
    ]
}

#[test]
fn adamw_with_groups_clipping_and_schedule_matches_torch() {
    let vars = init_vars();
    let mut opt = AdamW::with_groups(split(&vars, 0.1, 0.0, 0.5), 1e-2).unwrap();
    let s = Schedule::new(ScheduleKind::Cosine { num_cycles: 0.5 }, 1e-2, 3, 20).unwrap();
    run_case("adamw", &vars, &mut opt, Some(1.0), Some(s));
}

#[test]
fn sgd_matches_torch() {
    let vars = init_vars();
    let mut opt = Sgd::new(vars.clone(), 0.05, 0.9, 1e-2).unwrap();
    run_case("sgd_momentum", &vars, &mut opt, None, None);
    let vars = init_vars();
    let mut opt = Sgd::new(vars.clone(), 0.05, 0.9, 1e-2)
        .unwrap()
        .with_nesterov(true);
    run_case("sgd_nesterov", &vars, &mut opt, None, None);
    let vars = init_vars();
    let mut opt = Sgd::new(vars.clone(), 0.05, 0.8, 0.0)
        .unwrap()
        .with_dampening(0.3);
    run_case("sgd_dampening", &vars, &mut opt, None, None);
}

#[test]
fn lion_matches_lion_pytorch() {
    let vars = init_vars();
    let mut opt = Lion::with_groups(split(&vars, 0.1, 0.0, 2.0), 1e-3).unwrap();
    run_case("lion", &vars, &mut opt, None, None);
}

#[test]
fn schedules_match_transformers() {
    let f = fixture("schedules.json");
    let base = f["base_lr"].as_f64().unwrap();
    let mut worst = 0f64;
    for (name, c) in f["cases"].as_object().unwrap() {
        let cycles = c.get("num_cycles").and_then(|v| v.as_f64());
        let kind = match name.as_str() {
            "constant" => ScheduleKind::Constant,
            "linear" => ScheduleKind::Linear,
            "cosine_with_min_lr" => ScheduleKind::CosineWithMinLr {
                num_cycles: cycles.unwrap(),
                min_lr_ratio: c["min_lr_ratio"].as_f64().unwrap(),
            },
            _ => ScheduleKind::Cosine {
                num_cycles: cycles.unwrap(),
            },
        };
        let s = Schedule::new(
            kind,
            base,
            c["warmup_steps"].as_u64().unwrap() as usize,
            c["total_steps"].as_u64().unwrap() as usize,
        )
        .unwrap();
        for (k, want) in floats(&c["lrs"]).into_iter().enumerate() {
            let d = (s.lr(k) - want).abs();
            assert!(d <= 1e-15, "{name} step {k}: {} vs {want}", s.lr(k));
            worst = worst.max(d);
        }
    }
    eprintln!("schedules: max lr diff {worst:e}");
}

#[test]
fn fixtures_are_f64() {
    // The parity above runs in f64: a parameter in another dtype would be
    // a weaker check.
    assert_eq!(init_vars()["p0"].dtype(), DType::F64);
    let _ = optim::DEFAULT_NO_DECAY;
}
