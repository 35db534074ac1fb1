//! The trainer stops on a non-finite loss: the error names the step, the
//! parameters are not updated by it, and the last checkpoint written before
//! it stays complete and pointed at by `latest`.

use candle_core::{DType, Device, Tensor};
use mosaic_models::nn::{Init, ParamStore};
use mosaic_train::optim::AdamW;
use mosaic_train::trainer::{Task, Trainer, TrainerOptions};

/// Loss `Σ (w - 1)²`, turned into NaN from step `bad` on.
struct Quadratic {
    w: Tensor,
    bad: usize,
}

impl Task for Quadratic {
    fn loss(&mut self, step: usize, _micro: usize) -> mosaic_train::Result<Tensor> {
        let l = (&self.w - 1.0)?.sqr()?.sum_all()?;
        Ok(if step >= self.bad { (l * f64::NAN)? } else { l })
    }
}

#[test]
fn nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    let w = store.get("w", &[4], Init::Normal(1.0)).unwrap();
    let opts = TrainerOptions {
        out_dir: tmp.path().to_path_buf(),
        steps: 20,
        log_every: 1,
        eval_every: 0,
        eval_at_start: false,
        checkpoint_every: 3,
        grad_clip: None,
        best_metric: None,
        keep_checkpoints: 2,
        progress: false,
    };
    let mut trainer = Trainer::new(
        store.clone(),
        Box::new(AdamW::new(store.vars(), 0.1, 0.0)),
        None,
        opts,
    )
    .unwrap();
    // Steps are 0-based in the task: step index 7 is the 8th step.
    let mut task = Quadratic {
        w: w.clone(),
        bad: 7,
    };
    let err = trainer.run(&mut task, false).unwrap_err().to_string();
    assert!(
        err.contains("non-finite loss") && err.contains("step 8"),
        "{err}"
    );
    let latest = std::fs::read_to_string(tmp.path().join("checkpoints").join("latest")).unwrap();
    assert_eq!(latest.trim(), "step-00000006", "{latest}");
    let ck = tmp.path().join("checkpoints").join(latest.trim());
    let names: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    // The parameters are finite: the NaN step never reached the optimiser.
    let v: Vec<f32> = w.to_vec1().unwrap();
    assert!(v.iter().all(|x| x.is_finite()), "{v:?}");
}

/// Reports `Σ (w - 1)²` as its evaluation, counting calls.
struct Evaluated {
    w: Tensor,
    evals: Vec<usize>,
}

impl Task for Evaluated {
    fn loss(&mut self, _step: usize, _micro: usize) -> mosaic_train::Result<Tensor> {
        Ok((&self.w - 1.0)?.sqr()?.sum_all()?)
    }
    fn evaluate(
        &mut self,
        step: usize,
    ) -> mosaic_train::Result<std::collections::BTreeMap<String, f64>> {
        self.evals.push(step);
        let d = (&self.w - 1.0)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
        Ok([("distance".to_string(), d as f64)].into())
    }
}

#[test]
fn eval_at_start_measures_the_untrained_model_once() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ParamStore::new(0, DType::F32, &Device::Cpu);
    let w = store.get("w", &[4], Init::Normal(1.0)).unwrap();
    let before = (&w - 1.0)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    let opts = |steps: usize| TrainerOptions {
        out_dir: tmp.path().to_path_buf(),
        steps,
        log_every: 1,
        eval_every: 0,
        eval_at_start: true,
        checkpoint_every: 2,
        grad_clip: None,
        best_metric: None,
        keep_checkpoints: 2,
        progress: false,
    };
    let trainer = |steps: usize| {
        Trainer::new(
            store.clone(),
            Box::new(AdamW::new(store.vars(), 0.1, 0.0)),
            None,
            opts(steps),
        )
        .unwrap()
    };
    let mut task = Evaluated {
        w: w.clone(),
        evals: Vec::new(),
    };
    let s = trainer(4).run(&mut task, false).unwrap();
    assert_eq!(task.evals, vec![0, 4]);
    assert_eq!(s.initial_eval["distance"], before);
    assert!(s.last_eval["distance"] < before);
    let metrics = std::fs::read_to_string(tmp.path().join("metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert_eq!(first["step"], 0);
    assert_eq!(first["eval"]["distance"].as_f64().unwrap(), before);
    // A resumed run does not measure the baseline again.
    task.evals.clear();
    let s = trainer(6).run(&mut task, true).unwrap();
    assert_eq!(task.evals, vec![6]);
    assert!(s.initial_eval.is_empty());
    let metrics = std::fs::read_to_string(tmp.path().join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().filter(|l| l.contains("\"step\":0")).count(),
        1
    );
}
