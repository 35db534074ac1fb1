//! Mosaic's evaluation suite: metrics that equal the reference libraries'
//! numbers, robustness and fairness sweeps, and run reports with plots.
//!
//! | metric | module | reference it equals (fixtures: `tests/parity.rs`) |
//! |---|---|---|
//! | BLEU (13a, exp/floor/add-k/none, corpus + sentence, multi-reference) | [`text::bleu`] | sacrebleu 2.6 |
//! | ROUGE-1/2/L/Lsum, with/without Porter stemming | [`text::rouge`], [`text::porter`] | rouge-score 0.1.2 + NLTK 3.10 |
//! | CIDEr-D (PTB tokenisation rules, σ = 6, clipping, ×10) | [`text::cider`], [`text::ptb`] | pycocoevalcap 1.2 |
//! | WER / CER (default transforms, H/S/D/I) | [`text::wer`] | jiwer 4.0 |
//! | CLIPScore, RefCLIPScore (w = 2.5) | [`clipscore`] | torchmetrics 1.9 / Hessel et al. |
//! | R@1/5/10, median rank, mAP, both ways | [`retrieval`] | NumPy reference (stable sort) |
//! | top-k, accuracy, macro-F1, confusion, entropy, ECE (15 bins) | [`classification`] | scikit-learn / NumPy |
//!
//! [`robustness`] perturbs images, audio and text at levels and records the
//! metric per level; [`fairness`] breaks any metric down by a manifest
//! field; [`report`] writes a run folder (`report.json`, `report.md`, PNGs
//! from [`plot`]) and compares runs; [`io`] reads prediction, reference and
//! embedding files with errors that name the file and line.
//!
//! ```
//! use mosaic_eval::report::{compare, Report};
//! use mosaic_eval::robustness::{sweep, typos};
//! use mosaic_eval::suite::{evaluate_text, TextOptions};
//! use mosaic_eval::text::wer;
//!
//! # fn main() -> mosaic_eval::Result<()> {
//! let refs = vec![
//!     vec!["Please enter your password followed by the pound key.".to_string()],
//!     vec!["Goodbye.".to_string()],
//! ];
//! let preds = vec![
//!     "Please enter your password, followed by the pound key.".to_string(),
//!     "Goodbye.".to_string(),
//! ];
//! let mut run = Report::new("whisper on two prompts");
//! let metrics: Vec<String> = ["bleu", "rouge", "wer", "cer"].map(String::from).to_vec();
//! evaluate_text(&metrics, &preds, &refs, &TextOptions::default(), &mut run)?;
//! assert_eq!(run.metrics["wer"], 1.0 / 10.0); // "password," vs "password"
//!
//! // Robustness: WER as typos are added to the predictions.
//! let r0: Vec<&str> = refs.iter().map(|r| r[0].as_str()).collect();
//! run.sweeps.push(sweep("typo rate", "wer", &[0.0, 0.05, 0.2], |rate| {
//!     let noisy: Vec<String> = preds.iter().map(|p| typos(p, rate, 0)).collect::<Result<_, _>>()?;
//!     Ok(wer::wer(&r0, &noisy)?.error_rate)
//! })?);
//!
//! let dir = tempfile::tempdir().unwrap();
//! run.write(&dir.path().join("run"))?; // report.json, report.md, metrics.png, sweep_1_*.png
//! let back = Report::load(&dir.path().join("run"))?;
//! println!("{}", compare(&run, &back));
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod classification;
pub mod clipscore;
pub mod error;
pub mod fairness;
pub mod io;
pub mod numeric;
pub mod plot;
pub mod report;
pub mod retrieval;
pub mod robustness;
pub mod suite;
pub mod text;

pub use error::{Error, Result};
