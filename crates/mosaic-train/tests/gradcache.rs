//! GradCache gives the full-batch gradient: on the late-fusion model (f64),
//! the gradients of every parameter from sub-batches of 2 equal those of
//! one backward pass over the whole batch.

mod common;

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};
use common::{late_batch, late_model, max_diff, scalar};
use mosaic_train::gradcache::{contrastive_grad_cache, grad_cache, logit_scale_of, split_batch};
use mosaic_train::loss;

#[test]
fn gradcache_equals_full_batch_gradients_clip() {
    let model = late_model(None);
    let batch = late_batch(6, 3);
    let vars = model.params().vars();
    let scale = logit_scale_of(&model, "clip").unwrap();

    // Reference: one pass over the whole batch.
    let out = model.forward(&batch).unwrap();
    let (a, b) = &out.embeddings["clip"];
    let full = loss::clip_loss_embeddings(a, b, &scale).unwrap();
    let gf = full.backward().unwrap();

    for chunk in [1, 2, 4] {
        let gc = contrastive_grad_cache(&model, &batch, "clip", chunk, &vars, |a, b| {
            loss::clip_loss_embeddings(a, b, &scale)
        })
        .unwrap();
        let dl = (scalar(&gc.loss) - scalar(&full)).abs();
        assert!(dl < 1e-12, "loss differs by {dl:e}");
        let mut worst = 0f64;
        for (name, v) in &vars {
            let want = gf
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no full grad for {name}"));
            let got = gc
                .grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("no cached grad for {name}"));
            let d = max_diff(want, got);
            assert!(d <= 1e-6, "chunk {chunk}: {name} differs by {d:e}");
            worst = worst.max(d);
        }
        eprintln!(
            "gradcache chunk {chunk}: {} parameters, max grad diff {worst:e}",
            vars.len()
        );
    }
}

#[test]
fn gradcache_equals_full_batch_gradients_siglip_with_extra_param() {
    // A loss with its own parameter (the SigLIP bias) outside the model.
    let model = late_model(None);
    let batch = late_batch(5, 9);
    let bias = Var::from_tensor(&Tensor::new(&[-2.0f64], &Device::Cpu).unwrap()).unwrap();
    let mut vars = model.params().vars();
    vars.insert("siglip_bias".into(), bias.clone());
    let scale = logit_scale_of(&model, "clip").unwrap();

    let out = model.forward(&batch).unwrap();
    let (a, b) = &out.embeddings["clip"];
    let full = loss::siglip_loss_embeddings(a, b, &scale, bias.as_tensor()).unwrap();
    let gf = full.backward().unwrap();

    let parts = split_batch(&batch, 2).unwrap();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    let gc = grad_cache(
        &vars,
        parts.len(),
        |k| {
            let o = model.forward(&parts[k])?;
            let (a, b) = &o.embeddings["clip"];
            Ok(vec![a.clone(), b.clone()])
        },
        |e| loss::siglip_loss_embeddings(&e[0], &e[1], &scale, bias.as_tensor()),
    )
    .unwrap();
    let mut worst = 0f64;
    for (name, v) in &vars {
        let d = max_diff(
            gf.get(v.as_tensor()).unwrap(),
            gc.grads.get(v.as_tensor()).unwrap(),
        );
        assert!(d <= 1e-6, "{name} differs by {d:e}");
        worst = worst.max(d);
    }
    eprintln!("gradcache siglip (5 = 2+2+1): max grad diff {worst:e}");
}

#[test]
fn split_batch_keeps_masks_and_ids() {
    let batch = late_batch(7, 1);
    let parts = split_batch(&batch, 3).unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[2].ids, vec!["s6".to_string()]);
    let m = parts[1].get(mosaic_core::Modality::Text).unwrap();
    let whole = batch.get(mosaic_core::Modality::Text).unwrap();
    let want = whole.mask.as_ref().unwrap().narrow(0, 3, 3).unwrap();
    assert_eq!(
        m.mask.as_ref().unwrap().to_vec2::<u8>().unwrap(),
        want.to_vec2::<u8>().unwrap()
    );
    assert!(split_batch(&batch, 0).is_err());
    let empty: BTreeMap<String, Var> = BTreeMap::new();
    assert!(grad_cache(&empty, 0, |_| Ok(vec![]), |_| unreachable!()).is_err());
}
