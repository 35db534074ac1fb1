//! Objectives beyond the PyTorch parity: finite-difference gradient checks
//! (f64), the logit-scale clamp, ITM hard-negative mining, gradient
//! reversal, the modality discriminator and multi-task weighting.

mod common;

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor, Var};
use common::{max_diff, noise, scalar};
use mosaic_models::nn::gradcheck::check_gradients;
use mosaic_models::nn::{Init, ParamStore};
use mosaic_train::loss::{self, NegativeMining};
use mosaic_train::optim::{AdamW, Optimizer, ParamGroupBuilder};

fn var(seed: u64, shape: &[usize], scale: f64) -> Var {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = noise(seed, n).into_iter().map(|x| x * scale).collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
}

fn named(vs: &[(&str, &Var)]) -> Vec<(String, Var)> {
    vs.iter()
        .map(|(n, v)| (n.to_string(), (*v).clone()))
        .collect()
}

#[test]
fn contrastive_losses_pass_gradient_checks() {
    let (a, b) = (var(1, &[5, 6], 1.0), var(2, &[5, 6], 1.0));
    let s = Var::from_tensor(&Tensor::new(&[2.0f64], &Device::Cpu).unwrap()).unwrap();
    let bias = Var::from_tensor(&Tensor::new(&[-1.5f64], &Device::Cpu).unwrap()).unwrap();
    let vars = named(&[("a", &a), ("b", &b), ("scale", &s), ("bias", &bias)]);
    let r = check_gradients(
        &vars,
        || {
            loss::siglip_loss_embeddings(
                a.as_tensor(),
                b.as_tensor(),
                s.as_tensor(),
                bias.as_tensor(),
            )
            .map_err(m)
        },
        30,
        1e-6,
        1e-6,
    )
    .unwrap();
    eprintln!(
        "siglip gradcheck: {} elements, max rel {:e}",
        r.checked, r.max_rel
    );
    let vars = named(&[("a", &a), ("b", &b), ("scale", &s)]);
    let r = check_gradients(
        &vars,
        || loss::clip_loss_embeddings(a.as_tensor(), b.as_tensor(), s.as_tensor()).map_err(m),
        30,
        1e-6,
        1e-6,
    )
    .unwrap();
    eprintln!(
        "clip gradcheck: {} elements, max rel {:e}",
        r.checked, r.max_rel
    );
}

fn m(e: mosaic_train::Error) -> mosaic_models::Error {
    mosaic_models::Error::InvalidInput {
        what: "loss".into(),
        message: e.to_string(),
    }
}

#[test]
fn log_sigmoid_is_stable_and_exact_at_zero() {
    let x =
        Var::from_tensor(&Tensor::new(&[-800.0f64, -3.0, 0.0, 2.0, 800.0], &Device::Cpu).unwrap())
            .unwrap();
    let y = loss::log_sigmoid(x.as_tensor()).unwrap();
    let v: Vec<f64> = y.to_vec1().unwrap();
    assert_eq!(v[0], -800.0);
    assert!((v[2] + std::f64::consts::LN_2).abs() < 1e-15);
    assert_eq!(v[4], 0.0);
    let g: Vec<f64> = y
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
        .get(x.as_tensor())
        .unwrap()
        .to_vec1()
        .unwrap();
    // d/dx log σ(x) = σ(-x).
    for (gx, xv) in g.iter().zip([-800.0f64, -3.0, 0.0, 2.0, 800.0]) {
        let want = 1.0 / (1.0 + xv.exp());
        assert!((gx - want).abs() < 1e-15, "at {xv}: {gx} vs {want}");
    }
}

#[test]
fn logit_scale_is_clamped_like_open_clip() {
    let s = Var::from_tensor(&Tensor::new(&[5.0f32], &Device::Cpu).unwrap()).unwrap();
    assert!(loss::clamp_logit_scale(&s).unwrap());
    assert!((scalar(s.as_tensor()) - 100f64.ln()).abs() < 1e-6);
    s.set(&Tensor::new(&[-0.5f32], &Device::Cpu).unwrap())
        .unwrap();
    assert!(loss::clamp_logit_scale(&s).unwrap());
    assert_eq!(scalar(s.as_tensor()), 0.0);
    s.set(&Tensor::new(&[2.5f32], &Device::Cpu).unwrap())
        .unwrap();
    assert!(!loss::clamp_logit_scale(&s).unwrap());
    assert_eq!(scalar(s.as_tensor()), 2.5);
    assert_eq!(loss::MAX_LOGIT_SCALE, 100f64.ln());
}

fn sim() -> Tensor {
    Tensor::new(
        &[
            [9.0f64, 5.0, 1.0, 0.0],
            [2.0, 9.0, 4.0, 3.5],
            [7.0, 0.0, 9.0, 1.0],
            [0.0, 6.0, 2.0, 9.0],
        ],
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn itm_hardest_negatives_are_the_most_similar_non_positives() {
    let n = loss::mine_itm_negatives(&sim(), None, NegativeMining::Hardest).unwrap();
    assert_eq!(n.text_for_image, vec![Some(1), Some(2), Some(0), Some(1)]);
    assert_eq!(n.image_for_text, vec![Some(2), Some(3), Some(1), Some(1)]);
    // Groups: samples 0 and 2 share a class, so they are not negatives of each other.
    let g = [7u64, 1, 7, 2];
    let n = loss::mine_itm_negatives(&sim(), Some(&g), NegativeMining::Hardest).unwrap();
    assert_eq!(n.text_for_image, vec![Some(1), Some(2), Some(3), Some(1)]);
    assert_eq!(n.image_for_text[0], Some(1));
    let p = n.pairs();
    assert_eq!(p.labels.len(), 12);
    assert_eq!(&p.labels[..4], &[1, 1, 1, 1]);
    assert!(p.labels[4..].iter().all(|&l| l == 0));
    assert_eq!((p.image[4], p.text[4]), (0, 1));
    assert_eq!((p.image[8], p.text[8]), (1, 0));
    // A batch of one group has no negatives: rows are skipped, not invented.
    let n = loss::mine_itm_negatives(&sim(), Some(&[3, 3, 3, 3]), NegativeMining::Hardest).unwrap();
    assert!(n.text_for_image.iter().all(|x| x.is_none()));
    assert_eq!(n.pairs().labels, vec![1, 1, 1, 1]);
    // Bad input.
    assert!(
        loss::mine_itm_negatives(
            &sim().narrow(0, 0, 3).unwrap(),
            None,
            NegativeMining::Hardest
        )
        .is_err()
    );
    assert!(loss::mine_itm_negatives(&sim(), Some(&[1, 2]), NegativeMining::Hardest).is_err());
}

#[test]
fn itm_sampled_negatives_follow_the_softmax_and_are_seeded() {
    let s = Tensor::new(
        &[
            [0.0f64, 1.0, 0.0, -1.0],
            [0.0, 0.0, 0.0, 0.0],
            [0.0; 4],
            [0.0; 4],
        ],
        &Device::Cpu,
    )
    .unwrap();
    let a = loss::mine_itm_negatives(&s, None, NegativeMining::Sample { seed: 5 }).unwrap();
    let b = loss::mine_itm_negatives(&s, None, NegativeMining::Sample { seed: 5 }).unwrap();
    assert_eq!(a, b);
    // Row 0 candidates 1, 2, 3 with weights e^1, e^0, e^-1.
    let z = 1f64.exp() + 1.0 + (-1f64).exp();
    let want = [0.0, 1f64.exp() / z, 1.0 / z, (-1f64).exp() / z];
    let mut counts = [0usize; 4];
    let draws = 20_000;
    for seed in 0..draws {
        let n = loss::mine_itm_negatives(&s, None, NegativeMining::Sample { seed }).unwrap();
        counts[n.text_for_image[0].unwrap()] += 1;
        assert!(
            n.text_for_image
                .iter()
                .enumerate()
                .all(|(i, t)| *t != Some(i))
        );
    }
    assert_eq!(counts[0], 0, "the positive is never drawn");
    for k in 1..4 {
        let f = counts[k] as f64 / draws as f64;
        assert!(
            (f - want[k]).abs() < 0.015,
            "candidate {k}: {f} vs {}",
            want[k]
        );
    }
    // The ITM loss over the pairs is an ordinary 2-way cross-entropy.
    let pairs = a.pairs();
    let logits = Tensor::zeros((pairs.labels.len(), 2), DType::F64, &Device::Cpu).unwrap();
    let l = loss::itm_loss(&logits, &pairs).unwrap();
    assert!((scalar(&l) - 2f64.ln()).abs() < 1e-12);
}

#[test]
fn gradient_reversal_is_identity_forward_and_negated_backward() {
    let x = var(3, &[4, 5], 2.0);
    let w = var(4, &[4, 5], 1.0);
    let lambda = 0.7;
    let plain = |x: &Tensor| {
        (x * w.as_tensor())
            .unwrap()
            .tanh()
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let y = loss::gradient_reversal(x.as_tensor(), lambda).unwrap();
    // Forward: bit-exact identity.
    assert_eq!(
        y.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
        x.as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    );
    let g_rev = plain(&y).backward().unwrap();
    let g = plain(x.as_tensor()).backward().unwrap();
    let want = (g.get(x.as_tensor()).unwrap() * (-lambda)).unwrap();
    let d = max_diff(g_rev.get(x.as_tensor()).unwrap(), &want);
    assert!(d < 1e-15, "reversed gradient off by {d:e}");
    // The un-reversed path is right by finite differences ...
    let vars = named(&[("x", &x)]);
    check_gradients(&vars, || Ok(plain(x.as_tensor())), 20, 1e-6, 1e-7).unwrap();
    // ... so the reversed one is -λ × the true derivative, which the
    // checker reports as a mismatch naming the input.
    let err = check_gradients(
        &vars,
        || {
            Ok(plain(
                &loss::gradient_reversal(x.as_tensor(), lambda).map_err(m)?,
            ))
        },
        5,
        1e-6,
        1e-7,
    )
    .unwrap_err();
    assert!(err.to_string().contains("`x`"), "{err}");
    // Parameters after the reversal (the discriminator) get true gradients.
    let vars = named(&[("w", &w)]);
    let r = check_gradients(
        &vars,
        || {
            Ok(plain(
                &loss::gradient_reversal(x.as_tensor(), lambda).map_err(m)?,
            ))
        },
        20,
        1e-6,
        1e-7,
    )
    .unwrap();
    assert!(r.checked == 20);
}

#[test]
fn discriminator_loss_is_bce_on_modality_labels() {
    let la = Tensor::new(&[2.0f64, -1.0, 0.5], &Device::Cpu).unwrap();
    let lb = Tensor::new(&[[0.3f64], [-2.0]], &Device::Cpu).unwrap();
    let l = scalar(&loss::modality_discriminator_loss(&la, &lb).unwrap());
    let sp = |x: f64| (1.0 + (-x).exp()).ln(); // -log σ(x)
    let want = (sp(2.0) + sp(-1.0) + sp(0.5) + sp(-0.3) + sp(2.0)) / 5.0;
    assert!((l - want).abs() < 1e-14, "{l} vs {want}");
    assert!(loss::bce_with_logits(&la, &lb).is_err());
    let a = Tensor::new(&[[1.0f64, 0.0], [1.0, 0.0]], &Device::Cpu).unwrap();
    let b = Tensor::new(&[[0.0f64, 1.0], [0.0, 1.0]], &Device::Cpu).unwrap();
    assert!((loss::modality_gap(&a, &b).unwrap() - 2f64.sqrt()).abs() < 1e-15);
}

/// Adversarial alignment end to end: two linear "encoders" map two
/// modalities with different offsets into one space; a linear
/// discriminator behind gradient reversal drives the modality gap down,
/// which the same steps without the adversary do not.
#[test]
fn adversarial_alignment_lowers_the_modality_gap() {
    let dev = Device::Cpu;
    let n = 64;
    let xa = (Tensor::from_vec(noise(10, n * 4), (n, 4), &dev).unwrap() + 1.5).unwrap();
    let xb = (Tensor::from_vec(noise(11, n * 4), (n, 4), &dev).unwrap() - 1.5).unwrap();
    let run = |adversarial: bool| -> (f64, f64) {
        let p = ParamStore::new(0, DType::F64, &dev);
        let ea = p.linear("enc_a", 4, 3, true).unwrap();
        let eb = p.linear("enc_b", 4, 3, true).unwrap();
        let d1 = p.linear("disc.fc", 3, 1, true).unwrap();
        // Weight decay on the discriminator only: a regularised adversary
        // makes the descent–ascent converge instead of cycling.
        let groups = ParamGroupBuilder::new(0.0)
            .rule("disc", &["disc"], 1.0, Some(1.0))
            .no_decay(&[])
            .build(&p.vars())
            .unwrap();
        let mut opt = AdamW::with_groups(groups, 1e-2).unwrap();
        let gap =
            || loss::modality_gap(&ea.forward(&xa).unwrap(), &eb.forward(&xb).unwrap()).unwrap();
        let before = gap();
        for _ in 0..500 {
            let (fa, fb) = (ea.forward(&xa).unwrap(), eb.forward(&xb).unwrap());
            // A task term that keeps the features alive: unit norm on average.
            let task = ((fa.sqr().unwrap().sum(1).unwrap() - 1.0)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap()
                + (fb.sqr().unwrap().sum(1).unwrap() - 1.0)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .mean_all()
                    .unwrap())
            .unwrap();
            let total = if adversarial {
                let disc = |f: &Tensor| {
                    let r = loss::gradient_reversal(f, 1.0).unwrap();
                    d1.forward(&r).unwrap()
                };
                let adv = loss::modality_discriminator_loss(&disc(&fa), &disc(&fb)).unwrap();
                (task + adv).unwrap()
            } else {
                task
            };
            opt.step(&total.backward().unwrap()).unwrap();
        }
        (before, gap())
    };
    let (b0, plain) = run(false);
    let (b1, adv) = run(true);
    assert_eq!(b0, b1);
    eprintln!("modality gap: start {b0:.3}, task only {plain:.3}, with adversary {adv:.3}");
    assert!(adv < 0.25 * plain, "adversarial {adv} vs plain {plain}");
}

#[test]
fn uncertainty_weighting_learns_log_losses() {
    let p = ParamStore::new(0, DType::F64, &Device::Cpu);
    let uw = loss::UncertaintyWeighting::new(&p, &["caption", "contrastive"]).unwrap();
    let l1 = Tensor::new(4.0f64, &Device::Cpu).unwrap();
    let l2 = Tensor::new(0.25f64, &Device::Cpu).unwrap();
    let losses = BTreeMap::from([("caption".to_string(), l1), ("contrastive".to_string(), l2)]);
    // At s = 0 the sum is the plain sum.
    assert!((scalar(&uw.combine(&losses).unwrap()) - 4.25).abs() < 1e-15);
    let vars: Vec<(String, Var)> = p.vars().into_iter().collect();
    assert_eq!(vars.len(), 2);
    assert!(vars.iter().all(|(n, _)| n.starts_with("loss_weights.")));
    check_gradients(&vars, || uw.combine(&losses).map_err(m), 2, 1e-6, 1e-7).unwrap();
    // exp(-s)·L + s is minimal at s = ln L.
    let mut opt = AdamW::new(p.vars(), 0.05, 0.0);
    for _ in 0..600 {
        opt.step(&uw.combine(&losses).unwrap().backward().unwrap())
            .unwrap();
    }
    let w = uw.weights().unwrap();
    assert!((w["caption"] - 0.25).abs() < 1e-3, "{w:?}");
    assert!((w["contrastive"] - 4.0).abs() < 1e-2, "{w:?}");
    let bad = BTreeMap::from([(
        "other".to_string(),
        Tensor::new(1.0f64, &Device::Cpu).unwrap(),
    )]);
    let err = uw.combine(&bad).unwrap_err().to_string();
    assert!(err.contains("`other`"), "{err}");
    // Fixed weights.
    let fixed = BTreeMap::from([
        ("caption".to_string(), 0.5),
        ("contrastive".to_string(), 2.0),
    ]);
    assert!((scalar(&loss::weighted_sum(&losses, &fixed).unwrap()) - 2.5).abs() < 1e-15);
    let err = loss::weighted_sum(&losses, &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("`caption`"), "{err}");
    let _ = Init::Zeros;
}
