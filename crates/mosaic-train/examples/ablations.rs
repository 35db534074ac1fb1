//! Strategy ablations on Fashion-MNIST (the numbers in BENCHMARKS.md):
//!
//! 1. **EWC**: task A = classes 0–4, then task B = classes 5–9, the same
//!    seed and steps with EWC at several λ and without (λ = 0); task-A
//!    accuracy after B (5-way among A's classes) is the forgetting measure.
//! 2. **Frozen vs LoRA vs prompt tuning**: the task-A model adapted to
//!    task B: frozen (zero-shot, nothing trains), LoRA adapters on every
//!    encoder linear layer alone, learnable prompt tokens in the text
//!    encoder alone; then frozen encoders with the contrastive head's
//!    projections and temperature trainable, and LoRA / prompts with that
//!    same head; 5-way accuracy on B's test images.
//! 3. **Adversarial alignment**: the image–text model trained on all ten
//!    classes with and without a modality discriminator behind gradient
//!    reversal; the modality gap (distance between the image and text
//!    embedding centroids on test pairs) and zero-shot accuracy.
//!
//! The model is `configs/arch/fmnist_clip.toml`, the captions the
//! quickstart's templates, accuracy is zero-shot prompt classification
//! with template ensembling. Writes `OUT/ablations-<parts>.json`.
//!
//! ```text
//! cargo run --release -p mosaic-train --example ablations -- OUT [--steps N]
//!     [--only ewc,adapt,adversarial] [--adv-weights 0,0.1,0.3] [--prompt-tokens 8]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use mosaic_core::assets::AssetStore;
use mosaic_core::{Batch, Modality, ModalityBatch};
use mosaic_models::arch::encoders::ArchEncoder;
use mosaic_models::arch::{ArchConfig, MultimodalModel};
use mosaic_models::nn::{LoraSpec, ParamStore, PromptTokens};
use mosaic_train::optim::{AdamW, Optimizer, ParamGroupBuilder};
use mosaic_train::quickstart::{CLASSES, FashionMnist, TEMPLATES, fashion_mnist, minilm_tokenizer};
use mosaic_train::strategy::ewc::Ewc;
use mosaic_train::strategy::{freeze, lora, prompt};
use mosaic_train::{Result, loss};

const BATCH: usize = 128;
const LR: f64 = 2e-3;

struct Data {
    train: FashionMnist,
    test: FashionMnist,
    /// Caption ids `[10 · templates, 16]` and mask, row `class · templates + t`.
    captions: (Tensor, Tensor),
}

fn mb(values: Tensor, mask: Option<Tensor>) -> Result<ModalityBatch> {
    let b = values.dim(0)?;
    Ok(ModalityBatch::new(values, mask, vec![true; b])?)
}

/// A seeded Fisher–Yates permutation (SplitMix64), so runs are reproducible.
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// Training batches of `classes`: step `k` takes the k-th slice of a
/// seeded permutation per epoch; each image gets a caption template chosen by
/// position.
struct Stream<'a> {
    data: &'a Data,
    idx: Vec<u32>,
    seed: u64,
}

impl<'a> Stream<'a> {
    fn new(data: &'a Data, classes: &[u32], seed: u64) -> Self {
        let idx = (0..data.train.labels.len() as u32)
            .filter(|&i| classes.contains(&data.train.labels[i as usize]))
            .collect();
        Stream { data, idx, seed }
    }

    /// (images `[B,1,28,28]`, caption ids, caption mask).
    fn batch(&self, step: usize, size: usize) -> Result<(Tensor, Tensor, Tensor)> {
        let per_epoch = self.idx.len() / size;
        let perm = permutation(self.idx.len(), self.seed * 1000 + (step / per_epoch) as u64);
        let k = step % per_epoch;
        let pick: Vec<u32> = perm[k * size..(k + 1) * size]
            .iter()
            .map(|&p| self.idx[p])
            .collect();
        let it = Tensor::new(pick.as_slice(), &Device::Cpu)?;
        let rows: Vec<u32> = pick
            .iter()
            .enumerate()
            .map(|(i, &j)| {
                let t = (step * 31 + i * 7) % TEMPLATES.len();
                self.data.train.labels[j as usize] * TEMPLATES.len() as u32 + t as u32
            })
            .collect();
        let rt = Tensor::new(rows.as_slice(), &Device::Cpu)?;
        Ok((
            self.data.train.images.index_select(&it, 0)?,
            self.data.captions.0.index_select(&rt, 0)?,
            self.data.captions.1.index_select(&rt, 0)?,
        ))
    }
}

fn image_batch(images: Tensor) -> Result<Batch> {
    let mut b = Batch::new(Vec::new());
    b.modalities.insert(Modality::Image, mb(images, None)?);
    Ok(b)
}

fn pair_batch(images: Tensor, ids: Tensor, mask: Tensor) -> Result<Batch> {
    let mut b = image_batch(images)?;
    b.modalities.insert(Modality::Text, mb(ids, Some(mask))?);
    Ok(b)
}

/// Text embeddings of the contrastive head, through prompts when given.
fn text_embed(
    model: &MultimodalModel,
    ids: &Tensor,
    mask: &Tensor,
    prompts: Option<&PromptTokens>,
) -> Result<Tensor> {
    let m = mb(ids.clone(), Some(mask.clone()))?;
    let Some(ArchEncoder::Text(enc)) = model.encoders().get(&Modality::Text) else {
        unreachable!("fmnist_clip has a text transformer")
    };
    let f = enc.encode_prompted(&m, prompts)?;
    Ok(model.embed_features("clip", Modality::Text, &f)?)
}

fn clip_loss(
    model: &MultimodalModel,
    batch: (Tensor, Tensor, Tensor),
    prompts: Option<&PromptTokens>,
) -> Result<Tensor> {
    let (images, ids, mask) = batch;
    if prompts.is_none() {
        let out = model.forward(&pair_batch(images, ids, mask)?)?;
        return loss::clip_loss(&out.heads["clip"]);
    }
    let a = model.embed(&image_batch(images)?, "clip", Modality::Image)?;
    let b = text_embed(model, &ids, &mask, prompts)?;
    let scale = model.params().vars()["heads.clip.logit_scale"]
        .as_tensor()
        .clone();
    loss::clip_loss_embeddings(&a, &b, &scale)
}

/// Zero-shot accuracy on the test images of `classes`, choosing among them.
fn accuracy(
    model: &MultimodalModel,
    data: &Data,
    classes: &[u32],
    prompts: Option<&PromptTokens>,
) -> Result<f64> {
    let t = TEMPLATES.len();
    let rows: Vec<u32> = classes
        .iter()
        .flat_map(|&c| (0..t as u32).map(move |k| c * t as u32 + k))
        .collect();
    let rt = Tensor::new(rows.as_slice(), &Device::Cpu)?;
    let te = text_embed(
        model,
        &data.captions.0.index_select(&rt, 0)?,
        &data.captions.1.index_select(&rt, 0)?,
        prompts,
    )?
    .detach();
    let te = mosaic_models::zeroshot::ensemble_templates(&te, classes.len())?;
    let keep: Vec<u32> = (0..data.test.labels.len() as u32)
        .filter(|&i| classes.contains(&data.test.labels[i as usize]))
        .collect();
    let mut hits = 0usize;
    for chunk in keep.chunks(1000) {
        let it = Tensor::new(chunk, &Device::Cpu)?;
        let ie = model
            .embed(
                &image_batch(data.test.images.index_select(&it, 0)?)?,
                "clip",
                Modality::Image,
            )?
            .detach();
        let pred = mosaic_models::zeroshot::predict(&ie, &te)?;
        hits += pred
            .iter()
            .zip(chunk)
            .filter(|(p, i)| classes[**p as usize] == data.test.labels[**i as usize])
            .count();
    }
    Ok(hits as f64 / keep.len() as f64)
}

fn build(arch: &ArchConfig, lora_spec: Option<LoraSpec>) -> Result<MultimodalModel> {
    match lora_spec {
        None => Ok(MultimodalModel::from_config(
            arch,
            DType::F32,
            &Device::Cpu,
        )?),
        Some(spec) => {
            let store = ParamStore::new(arch.seed, DType::F32, &Device::Cpu);
            lora::set_lora(&store, spec)?;
            Ok(MultimodalModel::with_params(arch, store)?)
        }
    }
}

/// `steps` AdamW steps (constant LR, clip 1.0) of `loss(step)` on `vars`.
fn train(
    vars: BTreeMap<String, Var>,
    steps: usize,
    step_loss: impl FnMut(usize) -> Result<Tensor>,
) -> Result<f64> {
    train_groups(ParamGroupBuilder::new(0.01), vars, steps, step_loss)
}

/// [`train`] with explicit parameter groups.
fn train_groups(
    builder: ParamGroupBuilder,
    vars: BTreeMap<String, Var>,
    steps: usize,
    mut step_loss: impl FnMut(usize) -> Result<Tensor>,
) -> Result<f64> {
    let groups = builder.build(&vars)?;
    let mut opt = AdamW::with_groups(groups, LR)?;
    let mut last = f64::NAN;
    for s in 0..steps {
        let l = step_loss(s)?;
        last = l.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let mut grads = l.backward()?;
        mosaic_train::optim::clip_grad_norm(&mut grads, &vars, 1.0)?;
        opt.step(&grads)?;
    }
    Ok(last)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(args.first().map(String::as_str).unwrap_or("runs/ablations"));
    let steps: usize = args
        .iter()
        .position(|a| a == "--steps")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse().expect("--steps N"))
        .unwrap_or(400);
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // `--only ewc,adapt,adversarial` (default: all three).
    let only: Vec<String> = flag("--only")
        .map(|v| v.split(',').map(String::from).collect())
        .unwrap_or_else(|| vec!["ewc".into(), "adapt".into(), "adversarial".into()]);
    let run = |name: &str| only.iter().any(|o| o == name);
    let adv_weights: Vec<f64> = flag("--adv-weights")
        .unwrap_or_else(|| "0,0.1,0.3".into())
        .split(',')
        .map(|v| v.parse().expect("--adv-weights w,w,..."))
        .collect();
    let prompt_tokens: usize = flag("--prompt-tokens")
        .map(|v| v.parse().expect("--prompt-tokens N"))
        .unwrap_or(8);
    std::fs::create_dir_all(&out).expect("create the output folder");
    let store = AssetStore::from_env()?;
    let (train_split, test_split) = fashion_mnist(&store, true)?;
    let tok = minilm_tokenizer(&store, true)?;
    let texts: Vec<String> = CLASSES
        .iter()
        .flat_map(|c| TEMPLATES.iter().map(move |t| t.replace("{}", c)))
        .collect();
    let enc = tok.encode_batch(&texts)?;
    let data = Data {
        train: train_split,
        test: test_split,
        captions: (enc.ids, enc.attention_mask),
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let arch = ArchConfig::from_file(&repo.join("configs/arch/fmnist_clip.toml"))?;
    let task_a: Vec<u32> = (0..5).collect();
    let task_b: Vec<u32> = (5..10).collect();
    let all: Vec<u32> = (0..10).collect();
    let mut results = serde_json::Map::new();
    let t_all = std::time::Instant::now();

    if run("ewc") || run("adapt") {
        // Task A.
        let t0 = std::time::Instant::now();
        let model = build(&arch, None)?;
        let sa = Stream::new(&data, &task_a, 1);
        train(model.params().vars(), steps, |s| {
            clip_loss(&model, sa.batch(s, BATCH)?, None)
        })?;
        let acc_a = accuracy(&model, &data, &task_a, None)?;
        let snapshot = out.join("task_a.safetensors");
        model.params().save(&snapshot)?;
        println!(
            "task A: {steps} steps, A accuracy {acc_a:.4} ({:.0} s)",
            t0.elapsed().as_secs_f64()
        );

        let sb = Stream::new(&data, &task_b, 2);
        // 1. EWC. Fisher from 64 single-class-mix batches of 16 task-A pairs.
        if run("ewc") {
            let vars = model.params().vars();
            let fisher = Ewc::estimate_fisher(&vars, 64, |i| {
                clip_loss(&model, sa.batch(10_000 + i, 16)?, None)
            })?;
            let mut ewc_rows = Vec::new();
            for lambda in [0.0, 1e2, 1e3, 1e4, 1e5] {
                let t0 = std::time::Instant::now();
                model.params().load(&snapshot)?;
                let ewc = Ewc::new(&vars, fisher.clone(), lambda)?;
                train(vars.clone(), steps, |s| {
                    let l = clip_loss(&model, sb.batch(s, BATCH)?, None)?;
                    if lambda == 0.0 {
                        Ok(l)
                    } else {
                        Ok((l + ewc.penalty(&vars)?)?)
                    }
                })?;
                let a = accuracy(&model, &data, &task_a, None)?;
                let b = accuracy(&model, &data, &task_b, None)?;
                let ten = accuracy(&model, &data, &all, None)?;
                println!(
                    "EWC λ={lambda:e}: A after B {a:.4}, B {b:.4}, 10-way {ten:.4} ({:.0} s)",
                    t0.elapsed().as_secs_f64()
                );
                ewc_rows.push(serde_json::json!({
                    "lambda": lambda, "task_a_accuracy_after_b": a, "task_b_accuracy": b,
                    "ten_way_accuracy": ten,
                }));
            }
            results.insert(
                "ewc".into(),
                serde_json::json!({
                    "steps_per_task": steps, "batch": BATCH, "task_a_accuracy_before_b": acc_a,
                    "fisher_batches": 64, "fisher_batch_size": 16, "runs": ewc_rows,
                }),
            );
        }
        // 2. Adapting the task-A model to task B: zero-shot, frozen encoders,
        // LoRA, prompt tuning (the last three train the same head).
        if run("adapt") {
            let head = ["heads.*"];
            let mut adapt = serde_json::Map::new();
            model.params().load(&snapshot)?;
            adapt.insert(
                "zero_shot".into(),
                accuracy(&model, &data, &task_b, None)?.into(),
            );
            {
                model.params().load(&snapshot)?;
                let v = freeze::select(&model.params().vars(), &head)?;
                train(v, steps, |s| clip_loss(&model, sb.batch(s, BATCH)?, None))?;
                let acc = accuracy(&model, &data, &task_b, None)?;
                println!("frozen encoders + head: B {acc:.4}");
                adapt.insert("frozen_encoders_head".into(), acc.into());
            }
            // LoRA and prompt tuning alone (everything else frozen, the
            // CoOp comparison against the zero-shot model), then each with
            // the head trainable too (against frozen encoders + head).
            for with_head in [false, true] {
                let suffix = if with_head { "head" } else { "only" };
                let spec = LoraSpec {
                    rank: 4,
                    alpha: 8.0,
                    targets: vec!["encoders.*".into()],
                };
                let m = build(&arch, Some(spec))?;
                lora::load_base_weights(m.params(), &snapshot)?;
                let mut v = lora::trainable_lora_vars(m.params())?;
                let n_lora: usize = v.values().map(|x| x.elem_count()).sum();
                if with_head {
                    v.extend(freeze::select(&m.params().vars(), &head)?);
                }
                train(v, steps, |s| clip_loss(&m, sb.batch(s, BATCH)?, None))?;
                let acc = accuracy(&m, &data, &task_b, None)?;
                println!("LoRA (rank 4, {n_lora} adapter weights), {suffix}: B {acc:.4}");
                adapt.insert(format!("lora_{suffix}"), acc.into());
                adapt.insert("lora_parameters".into(), n_lora.into());

                let m = build(&arch, None)?;
                m.params().load(&snapshot)?;
                let text_dim = arch.encoders[&Modality::Text].dim();
                let pt = prompt::prompt_tuning(m.params(), "prompt", prompt_tokens, text_dim)?;
                let mut v = pt.vars.clone();
                if with_head {
                    v.extend(freeze::select(&m.params().vars(), &head)?);
                }
                train(v, steps, |s| {
                    clip_loss(&m, sb.batch(s, BATCH)?, Some(&pt.prompts))
                })?;
                let acc = accuracy(&m, &data, &task_b, Some(&pt.prompts))?;
                println!("prompt tuning ({prompt_tokens} tokens), {suffix}: B {acc:.4}");
                adapt.insert(format!("prompt_tuning_{suffix}"), acc.into());
            }
            adapt.insert("steps".into(), steps.into());
            adapt.insert("prompt_tokens".into(), prompt_tokens.into());
            results.insert("adaptation_to_task_b".into(), adapt.into());
        }
    }

    // 3. Adversarial modality alignment on all ten classes: the
    // discriminator (an MLP on the joint embeddings) gets weight decay 1.0,
    // which keeps the descent–ascent game from cycling, and the encoders
    // see its reversed gradient scaled by `weight`.
    if run("adversarial") {
        let sall = Stream::new(&data, &all, 3);
        let mut adv_rows = Vec::new();
        for &weight in &adv_weights {
            let model = build(&arch, None)?;
            let disc_store = ParamStore::new(7, DType::F32, &Device::Cpu);
            let d1 = disc_store.linear("disc.fc1", 64, 64, true)?;
            let d2 = disc_store.linear("disc.fc2", 64, 1, true)?;
            let mut v = model.params().vars();
            if weight > 0.0 {
                v.extend(disc_store.vars());
            }
            let builder = if weight > 0.0 {
                ParamGroupBuilder::new(0.01).rule("disc", &["disc"], 1.0, Some(1.0))
            } else {
                ParamGroupBuilder::new(0.01)
            };
            train_groups(builder, v, steps, |s| {
                let (images, ids, mask) = sall.batch(s, BATCH)?;
                let out = model.forward(&pair_batch(images, ids, mask)?)?;
                let l = loss::clip_loss(&out.heads["clip"])?;
                if weight == 0.0 {
                    return Ok(l);
                }
                let (ea, eb) = &out.embeddings["clip"];
                let disc = |e: &Tensor| -> Result<Tensor> {
                    let r = loss::gradient_reversal(e, 1.0)?;
                    Ok(d2.forward(&d1.forward(&r)?.relu()?)?)
                };
                let adv = loss::modality_discriminator_loss(&disc(ea)?, &disc(eb)?)?;
                Ok((l + (adv * weight)?)?)
            })?;
            // The gap on 2000 test images and their first-template captions.
            let n = 2000u32;
            let it = Tensor::new((0..n).collect::<Vec<_>>().as_slice(), &Device::Cpu)?;
            let ie = model.embed(
                &image_batch(data.test.images.index_select(&it, 0)?)?,
                "clip",
                Modality::Image,
            )?;
            let rows: Vec<u32> = (0..n as usize)
                .map(|i| data.test.labels[i] * TEMPLATES.len() as u32)
                .collect();
            let rt = Tensor::new(rows.as_slice(), &Device::Cpu)?;
            let te = text_embed(
                &model,
                &data.captions.0.index_select(&rt, 0)?,
                &data.captions.1.index_select(&rt, 0)?,
                None,
            )?;
            let gap = loss::modality_gap(&ie, &te)?;
            let acc = accuracy(&model, &data, &all, None)?;
            println!("adversarial weight {weight}: modality gap {gap:.4}, zero-shot {acc:.4}");
            adv_rows.push(serde_json::json!({
                "adversarial_weight": weight, "modality_gap": gap, "zero_shot_accuracy": acc,
            }));
        }
        results.insert(
        "adversarial".into(),
        serde_json::json!({ "steps": steps, "gap_pairs": 2000, "discriminator_weight_decay": 1.0, "runs": adv_rows }),
    );
    }
    results.insert("total_seconds".into(), t_all.elapsed().as_secs_f64().into());
    let text = serde_json::to_vec_pretty(&serde_json::Value::Object(results)).expect("json");
    let name = format!("ablations-{}.json", only.join("-"));
    mosaic_core::atomic::write_bytes_atomic(&out.join(&name), &text)?;
    println!("{}", out.join(&name).display());
    Ok(())
}
