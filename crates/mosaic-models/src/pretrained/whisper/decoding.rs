//! Decoding one 30 s window the way CTranslate2 4.8.5 does it for
//! faster-whisper 1.2.1: Whisper's logits rules (suppressed ids, the
//! timestamp rules), then greedy search, beam search (CTranslate2's
//! `BeamSearch`: `2 × beam_size` candidates per step, finished hypotheses
//! replaced by the next unfinished candidate, stop after
//! `round(beam_size × patience)` finished hypotheses, scores divided by
//! `length ^ length_penalty`) or random sampling at a temperature
//! (`best_of` independent samples, the best score kept); and faster-whisper's
//! temperature fallback ([`generate_with_fallback`]).
//!
//! All searches keep one KV-cache row per live hypothesis; the rows are
//! replicated and reordered with [`DecoderState::reorder`] after every step,
//! the encoder keys are shared by all rows.

use std::io::Write;
use std::path::Path;

use candle_core::Tensor;

use super::{DecoderState, WhisperModel};
use crate::error::{Error, Result};

/// Special token ids of a Whisper vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhisperTokens {
    /// `<|endoftext|>`.
    pub eot: u32,
    /// `<|startoftranscript|>`.
    pub sot: u32,
    /// `<|startofprev|>` (opens the previous-text prompt).
    pub sot_prev: u32,
    /// `<|nospeech|>` / `<|nocaptions|>`: the no-speech probability is
    /// read at this id.
    pub no_speech: u32,
    /// `<|notimestamps|>`.
    pub no_timestamps: u32,
    /// `<|0.00|>`; timestamps go up by 0.02 s per id.
    pub timestamp_begin: u32,
}

impl WhisperTokens {
    /// The English-only layout (tiny.en … medium.en: 51864 ids).
    pub const ENGLISH: WhisperTokens = WhisperTokens {
        eot: 50256,
        sot: 50257,
        sot_prev: 50360,
        no_speech: 50361,
        no_timestamps: 50362,
        timestamp_begin: 50363,
    };
}

/// Settings for decoding one window (faster-whisper's names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// Ids never generated (the model config's `suppress_ids`, i.e.
    /// faster-whisper's `suppress_tokens=[-1]`).
    pub suppress: Vec<u32>,
    /// Ids not generated as the first token (`suppress_ids_begin`, from
    /// `suppress_blank=True`).
    pub suppress_begin: Vec<u32>,
    /// Produce timestamp tokens (with Whisper's timestamp rules); false
    /// appends `<|notimestamps|>` to the prompt.
    pub timestamps: bool,
    /// Largest first timestamp, in seconds (1.0).
    pub max_initial_timestamp: f64,
    /// Most new tokens: `None` (default) is CTranslate2's
    /// `min(448 / 2, 448 − (prompt − 1))`; `Some(n)` sets the total length
    /// to `prompt + n`, which CTranslate2 then halves the same way.
    pub max_new_tokens: Option<usize>,
    /// Beam width at temperature 0 (1 = greedy; faster-whisper's default 5).
    pub beam_size: usize,
    /// Beam search stops after `round(beam_size × patience)` finished
    /// hypotheses (1.0).
    pub patience: f64,
    /// Scores are divided by `length ^ length_penalty` (1.0).
    pub length_penalty: f64,
    /// Independent samples at a temperature above 0; the best score wins (5).
    pub best_of: usize,
}

impl Default for DecodeOptions {
    /// faster-whisper's defaults with empty suppress lists.
    fn default() -> Self {
        DecodeOptions {
            suppress: Vec::new(),
            suppress_begin: Vec::new(),
            timestamps: true,
            max_initial_timestamp: 1.0,
            max_new_tokens: None,
            beam_size: 5,
            patience: 1.0,
            length_penalty: 1.0,
            best_of: 5,
        }
    }
}

impl DecodeOptions {
    /// Greedy decoding (beam 1) with faster-whisper's other defaults and
    /// `suppress_ids` / `suppress_ids_begin` read from a CTranslate2
    /// folder's `config.json`, or `suppress_tokens` /
    /// `begin_suppress_tokens` from a Hugging Face folder's
    /// `generation_config.json` (or `config.json`); lists that are missing
    /// stay empty.
    pub fn from_config(dir: &Path) -> Result<Self> {
        let mut o = DecodeOptions {
            beam_size: 1,
            ..Default::default()
        };
        let read = |name: &str| -> Result<Option<serde_json::Value>> {
            let file = dir.join(name);
            if !file.exists() {
                return Ok(None);
            }
            let text =
                std::fs::read_to_string(&file).map_err(|e| mosaic_core::Error::io(&file, e))?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::Config {
                    source_name: file.display().to_string(),
                    message: e.to_string(),
                })
        };
        let ids = |v: &serde_json::Value, k: &str| -> Option<Vec<u32>> {
            v[k].as_array().map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64().map(|n| n as u32))
                    .collect()
            })
        };
        for (file, s, b) in [
            ("config.json", "suppress_ids", "suppress_ids_begin"),
            (
                "generation_config.json",
                "suppress_tokens",
                "begin_suppress_tokens",
            ),
            ("config.json", "suppress_tokens", "begin_suppress_tokens"),
        ] {
            if let Some(v) = read(file)? {
                if o.suppress.is_empty()
                    && let Some(x) = ids(&v, s)
                {
                    o.suppress = x;
                }
                if o.suppress_begin.is_empty()
                    && let Some(x) = ids(&v, b)
                {
                    o.suppress_begin = x;
                }
            }
        }
        Ok(o)
    }
}

/// A decoded window.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Generated ids (no prompt, no end-of-text).
    pub ids: Vec<u32>,
    /// CTranslate2's score: the summed log-probabilities of every step
    /// (the end-of-text step included) divided by `len(ids) ^ length_penalty`.
    pub score: f64,
    /// faster-whisper's `avg_logprob`: summed log-probabilities / (`len(ids)` + 1).
    pub avg_logprob: f64,
    /// Probability of the no-speech id at the first step (raw logits).
    pub no_speech_prob: f64,
}

/// Number of decoding steps CTranslate2 allows after `prompt_len` prompt
/// ids: `min(total / 2, total − (prompt_len − 1))`.
fn max_steps(model: &WhisperModel, prompt_len: usize, opts: &DecodeOptions) -> usize {
    let total = match opts.max_new_tokens {
        Some(n) => prompt_len + n,
        None => model.max_target_positions(),
    };
    (total / 2)
        .min((total + 1).saturating_sub(prompt_len))
        .min((model.max_target_positions() + 1).saturating_sub(prompt_len))
}

fn log_sum_exp(v: &[f32]) -> f64 {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln()
}

/// Whisper's logits rules for one hypothesis, in CTranslate2's order:
/// suppressed ids, begin-suppressed ids (first step), then the timestamp
/// rules (see the fixtures README, "Decoding procedure"). Disabled ids get
/// `-inf`. `seq` is what this hypothesis generated so far (no prompt).
pub fn apply_rules(logits: &mut [f32], seq: &[u32], tokens: WhisperTokens, opts: &DecodeOptions) {
    let neg = f32::NEG_INFINITY;
    let vocab = logits.len();
    for &s in &opts.suppress {
        if (s as usize) < vocab {
            logits[s as usize] = neg;
        }
    }
    if seq.is_empty() {
        for &s in &opts.suppress_begin {
            if (s as usize) < vocab {
                logits[s as usize] = neg;
            }
        }
    }
    if !opts.timestamps {
        return;
    }
    let ts = (tokens.timestamp_begin as usize).min(vocab);
    if (tokens.no_timestamps as usize) < vocab {
        logits[tokens.no_timestamps as usize] = neg;
    }
    let last_ts = seq.last().is_some_and(|&t| t >= tokens.timestamp_begin);
    let penult_ts = seq.len() < 2 || seq[seq.len() - 2] >= tokens.timestamp_begin;
    let eot = (tokens.eot as usize).min(vocab);
    if last_ts {
        if penult_ts {
            logits[ts..].iter_mut().for_each(|l| *l = neg);
        } else {
            logits[..eot].iter_mut().for_each(|l| *l = neg);
        }
    }
    if let Some(&last) = seq.iter().rev().find(|&&t| t >= tokens.timestamp_begin) {
        // Timestamps never decrease (and a closing one moves on).
        let floor = if last_ts && !penult_ts {
            last
        } else {
            last + 1
        };
        logits[ts..(floor as usize).min(vocab)]
            .iter_mut()
            .for_each(|l| *l = neg);
    }
    if seq.is_empty() {
        logits[..ts].iter_mut().for_each(|l| *l = neg);
        let max_initial = ts + (opts.max_initial_timestamp / 0.02).round() as usize;
        if max_initial + 1 < vocab {
            logits[max_initial + 1..].iter_mut().for_each(|l| *l = neg);
        }
    }
    // If the timestamps together are likelier than any text token, emit a timestamp.
    let total = log_sum_exp(logits);
    let ts_lp = log_sum_exp(&logits[ts..]) - total;
    let text_max = logits[..ts].iter().copied().fold(neg, f32::max) as f64 - total;
    if ts_lp > text_max {
        logits[..ts].iter_mut().for_each(|l| *l = neg);
    }
}

/// `log_softmax` of masked logits (disabled ids stay `-inf`).
fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let lse = log_sum_exp(logits);
    logits.iter().map(|&v| (v as f64 - lse) as f32).collect()
}

/// Probability of the no-speech id under the raw logits of one row.
fn no_speech_prob(raw: &[f32], tokens: WhisperTokens) -> f64 {
    let i = tokens.no_speech as usize;
    if i >= raw.len() {
        return 0.0;
    }
    (raw[i] as f64 - log_sum_exp(raw)).exp()
}

/// A small seeded random generator (xoshiro256** seeded through
/// SplitMix64) for sampling at temperatures above 0.
#[derive(Debug, Clone)]
pub struct SampleRng {
    s: [u64; 4],
}

impl SampleRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        SampleRng {
            s: [next(), next(), next(), next()],
        }
    }

    fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draws an id from `softmax(log_probs / temperature)` (disabled ids,
/// `-inf`, are never drawn).
fn sample(log_probs: &[f32], temperature: f64, rng: &mut SampleRng) -> u32 {
    let m = log_probs.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let w: Vec<f64> = log_probs
        .iter()
        .map(|&v| ((v as f64 - m) / temperature).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut u = rng.uniform() * total;
    let mut last = 0;
    for (i, &p) in w.iter().enumerate() {
        if p > 0.0 {
            last = i;
            if u < p {
                return i as u32;
            }
            u -= p;
        }
    }
    last as u32
}

fn finalize(cum: f64, len: usize, length_penalty: f64) -> f64 {
    let s = cum / (len as f64).powf(length_penalty);
    if s.is_nan() { f64::NEG_INFINITY } else { s }
}

impl WhisperModel {
    /// Feeds the prompt (batch 1): returns the raw logits after its last id
    /// and the no-speech probability (at the `<|startoftranscript|>`
    /// position, as CTranslate2 reads it).
    fn first_step(
        &self,
        encoder_out: &Tensor,
        prompt: &[u32],
        tokens: WhisperTokens,
    ) -> Result<(DecoderState, Vec<f32>, f64)> {
        if prompt.is_empty() {
            return Err(Error::InvalidInput {
                what: "prompt".into(),
                message: "empty; it needs <|startoftranscript|>".into(),
            });
        }
        if encoder_out.dim(0)? != 1 {
            return Err(Error::InvalidInput {
                what: "encoder output".into(),
                message: format!("batch {}, decoding takes one window", encoder_out.dim(0)?),
            });
        }
        let mut state = self.start(encoder_out)?;
        let input = Tensor::new(prompt, encoder_out.device())?.unsqueeze(0)?;
        let sot_at = prompt.iter().position(|&t| t == tokens.sot);
        let last = prompt.len() - 1;
        let (logits, ns_row) = match sot_at {
            Some(p) if p != last => {
                let all = self.decode_all(&input, &mut state)?.squeeze(0)?;
                (
                    all.get(last)?.to_vec1::<f32>()?,
                    all.get(p)?.to_vec1::<f32>()?,
                )
            }
            _ => {
                let l = self
                    .decode(&input, &mut state)?
                    .squeeze(0)?
                    .to_vec1::<f32>()?;
                (l.clone(), l)
            }
        };
        Ok((state, logits, no_speech_prob(&ns_row, tokens)))
    }

    /// Greedy decoding of one window: returns the generated ids (after
    /// the prompt, without the final end-of-text).
    pub fn generate_greedy(
        &self,
        encoder_out: &Tensor,
        prompt: &[u32],
        tokens: WhisperTokens,
        opts: &DecodeOptions,
    ) -> Result<Vec<u32>> {
        Ok(self
            .generate_greedy_scored(encoder_out, prompt, tokens, opts)?
            .ids)
    }

    /// Greedy decoding (CTranslate2 `GreedySearch` with the best sampler)
    /// with the statistics faster-whisper's fallback and no-speech filter use.
    pub fn generate_greedy_scored(
        &self,
        encoder_out: &Tensor,
        prompt: &[u32],
        tokens: WhisperTokens,
        opts: &DecodeOptions,
    ) -> Result<Generated> {
        let argmax = |lp: &[f32], _: &mut SampleRng| {
            lp.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
                .map(|(i, _)| i as u32)
                .unwrap_or(0)
        };
        let mut rng = SampleRng::new(0);
        let mut out = self.generate_rows(encoder_out, prompt, tokens, opts, 1, &mut rng, argmax)?;
        Ok(out.remove(0))
    }

    /// Sampling at `temperature` > 0 (CTranslate2 `GreedySearch` with its
    /// random sampler over the whole vocabulary, `sampling_topk=0`):
    /// `opts.best_of` hypotheses decoded side by side, each id drawn from
    /// `softmax(log_softmax(masked logits) / temperature)`; returns the one
    /// with the best score (scores use the unscaled log-probabilities).
    pub fn generate_sampled(
        &self,
        encoder_out: &Tensor,
        prompt: &[u32],
        tokens: WhisperTokens,
        opts: &DecodeOptions,
        temperature: f64,
        rng: &mut SampleRng,
    ) -> Result<Generated> {
        if temperature <= 0.0 || !temperature.is_finite() {
            return Err(Error::InvalidInput {
                what: "temperature".into(),
                message: format!("{temperature}: sampling needs a temperature above 0"),
            });
        }
        let n = opts.best_of.max(1);
        let draw = move |lp: &[f32], rng: &mut SampleRng| sample(lp, temperature, rng);
        let out = self.generate_rows(encoder_out, prompt, tokens, opts, n, rng, draw)?;
        // CTranslate2 sorts the hypotheses by score (best first).
        Ok(out
            .into_iter()
            .enumerate()
            .max_by(|a, b| a.1.score.total_cmp(&b.1.score).then(b.0.cmp(&a.0)))
            .map(|(_, g)| g)
            .expect("at least one hypothesis"))
    }

    /// `rows` independent hypotheses decoded as one batch, each step choosing
    /// an id per row with `choose(log_probs, rng)`; finished rows leave the
    /// batch (their cache rows are dropped).
    #[allow(clippy::too_many_arguments)]
    fn generate_rows<F>(
        &self,
        encoder_out: &Tensor,
        prompt: &[u32],
        tokens: WhisperTokens,
        opts: &DecodeOptions,
        rows: usize,
        rng: &mut SampleRng,
        mut choose: F,
    ) -> Result<Vec<Generated>>
    where
        F: FnMut(&[f32], &mut SampleRng) -> u32,
    {
        let steps = max_steps(self, prompt.len(), opts);
        let (mut state, first, no_speech) = self.first_step(encoder_out, prompt, tokens)?;
        let mut seqs: Vec<Vec<u32>> = vec![Vec::new(); rows];
        let mut cum = vec![0f64; rows];
        let mut done = vec![false; rows];
        let mut alive: Vec<usize> = (0..rows).collect();
        let mut logits: Vec<Vec<f32>> = vec![first; rows];
        let mut expanded = rows == 1;
        for step in 0..steps {
            let mut next = Vec::with_capacity(alive.len());
            let mut keep = Vec::with_capacity(alive.len());
            for (slot, &r) in alive.iter().enumerate() {
                let row = &mut logits[slot];
                apply_rules(row, &seqs[r], tokens, opts);
                let lp = log_softmax(row);
                let id = choose(&lp, rng);
                cum[r] += lp[id as usize] as f64;
                let last = step + 1 == steps;
                if id != tokens.eot {
                    seqs[r].push(id);
                }
                if id == tokens.eot || last {
                    done[r] = true;
                } else {
                    next.push(id);
                    keep.push(slot as u32);
                }
            }
            alive.retain(|&r| !done[r]);
            if alive.is_empty() {
                break;
            }
            if !expanded {
                // Rows start from the one prompt row.
                keep.iter_mut().for_each(|k| *k = 0);
                expanded = true;
            }
            if keep.len() != state.rows() || keep.iter().enumerate().any(|(i, &k)| i as u32 != k) {
                state.reorder(&keep)?;
            }
            let input = Tensor::new(next.as_slice(), encoder_out.device())?.unsqueeze(1)?;
            let l = self.decode(&input, &mut state)?;
            logits = l.to_vec2::<f32>()?;
        }
        Ok((0..rows)
            .map(|r| {
                let len = seqs[r].len();
                Generated {
                    ids: std::mem::take(&mut seqs[r]),
                    score: finalize(cum[r], len, opts.length_penalty),
                    avg_logprob: cum[r] / (len + 1) as f64,
                    no_speech_prob: no_speech,
                }
            })
            .collect())
    }

    /// Beam search as CTranslate2's `BeamSearch` (CPU) runs it for
    /// faster-whisper: the first step expands the single prompt row into
    /// `beam_size` rows; every step takes the `2 × beam_size` best
    /// (cumulative log-probability, row, id) candidates over all rows;
    /// of the first `beam_size`, those that end (end-of-text, or the last
    /// allowed step) become finished hypotheses and are replaced by the next
    /// unfinished candidates; decoding stops once `round(beam_size ×
    /// patience)` hypotheses are finished. The best finished hypothesis by
    /// `cumulative / length ^ length_penalty` wins.
    pub fn generate_beam(
        &self,
        encoder_out: &Tensor,
        prompt: &[u32],
        tokens: WhisperTokens,
        opts: &DecodeOptions,
    ) -> Result<Generated> {
        let beam = opts.beam_size.max(1);
        let n_cand = 2 * beam;
        let max_hyps = ((beam as f64 * opts.patience).round() as usize).max(1);
        let steps = max_steps(self, prompt.len(), opts);
        let (mut state, first, no_speech) = self.first_step(encoder_out, prompt, tokens)?;
        // Live rows: (ids so far, cumulative log-probability).
        let mut rows: Vec<(Vec<u32>, f32)> = vec![(Vec::new(), 0.0)];
        let mut logits = vec![first];
        let mut finished: Vec<(Vec<u32>, f32)> = Vec::new();
        for step in 0..steps {
            // Candidates: the n_cand best of every row's log-probs + its score.
            let mut cands: Vec<(f32, usize, u32)> = Vec::with_capacity(n_cand + 1);
            for (r, row) in logits.iter_mut().enumerate() {
                apply_rules(row, &rows[r].0, tokens, opts);
                let lp = log_softmax(row);
                let base = rows[r].1;
                for (id, &v) in lp.iter().enumerate() {
                    let s = v + base;
                    if cands.len() == n_cand {
                        let worst = cands[n_cand - 1].0;
                        if s.is_nan() || s <= worst {
                            continue;
                        }
                        cands.pop();
                    }
                    let at = cands.partition_point(|c| c.0 >= s);
                    cands.insert(at, (s, r, id as u32));
                }
            }
            let last = step + 1 == steps;
            let mut chosen = Vec::with_capacity(beam);
            let mut secondary = beam;
            for k in 0..beam.min(cands.len()) {
                let (score, r, id) = cands[k];
                let mut pick = k;
                if id == tokens.eot || last {
                    let mut hyp = rows[r].0.clone();
                    if id != tokens.eot {
                        hyp.push(id);
                    }
                    finished.push((hyp, score));
                    for (j, c) in cands.iter().enumerate().take(n_cand).skip(secondary) {
                        if c.2 != tokens.eot {
                            pick = j;
                            secondary = j + 1;
                            break;
                        }
                    }
                }
                chosen.push(cands[pick]);
            }
            if last || finished.len() >= max_hyps {
                break;
            }
            let origins: Vec<u32> = chosen.iter().map(|c| c.1 as u32).collect();
            state.reorder(&origins)?;
            rows = chosen
                .iter()
                .map(|&(s, r, id)| {
                    let mut seq = rows[r].0.clone();
                    seq.push(id);
                    (seq, s)
                })
                .collect();
            let ids: Vec<u32> = chosen.iter().map(|c| c.2).collect();
            let input = Tensor::new(ids.as_slice(), encoder_out.device())?.unsqueeze(1)?;
            logits = self.decode(&input, &mut state)?.to_vec2::<f32>()?;
        }
        let best = finished
            .into_iter()
            .map(|(ids, cum)| {
                let len = ids.len();
                let score = finalize(cum as f64, len, opts.length_penalty);
                (ids, cum as f64, score)
            })
            .enumerate()
            .max_by(|a, b| a.1.2.total_cmp(&b.1.2).then(b.0.cmp(&a.0)))
            .map(|(_, h)| h)
            .ok_or_else(|| Error::InvalidInput {
                what: "beam search".into(),
                message: "no hypothesis finished".into(),
            })?;
        let len = best.0.len();
        Ok(Generated {
            ids: best.0,
            score: best.2,
            avg_logprob: best.1 / (len + 1) as f64,
            no_speech_prob: no_speech,
        })
    }

    /// One decoding pass at `temperature`: sampling above 0, otherwise
    /// beam search (`beam_size` > 1) or greedy.
    pub fn generate(
        &self,
        encoder_out: &Tensor,
        prompt: &[u32],
        tokens: WhisperTokens,
        opts: &DecodeOptions,
        temperature: f64,
        rng: &mut SampleRng,
    ) -> Result<Generated> {
        if temperature > 0.0 {
            self.generate_sampled(encoder_out, prompt, tokens, opts, temperature, rng)
        } else if opts.beam_size > 1 {
            self.generate_beam(encoder_out, prompt, tokens, opts)
        } else {
            self.generate_greedy_scored(encoder_out, prompt, tokens, opts)
        }
    }
}

/// `len(utf8) / len(zlib.compress(utf8))` of `text`, as faster-whisper
/// computes it: the compressed size is zlib 1.2's at level 6, reproduced
/// exactly (other deflate implementations choose other matches); texts
/// over 16 000 bytes fall back to this crate's deflate. A high ratio means
/// repetitive text.
pub fn compression_ratio(text: &str) -> f64 {
    let bytes = text.as_bytes();
    let z = super::zlib::compressed_len(bytes).unwrap_or_else(|| {
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
        // Writing to a Vec cannot fail.
        let _ = enc.write_all(bytes);
        enc.finish().map(|v| v.len()).unwrap_or(0)
    });
    if z == 0 {
        return 0.0;
    }
    bytes.len() as f64 / z as f64
}

/// faster-whisper's temperature fallback settings (its defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackOptions {
    /// Temperatures tried in order (0.0, 0.2, …, 1.0).
    pub temperatures: Vec<f64>,
    /// A result whose text compresses better than this is too repetitive
    /// (2.4); `None` disables the check.
    pub compression_ratio_threshold: Option<f64>,
    /// A result with a lower `avg_logprob` failed (−1.0); `None` disables.
    pub log_prob_threshold: Option<f64>,
    /// A window with a higher no-speech probability (and a low
    /// `avg_logprob`) is silence: no fallback, and it is skipped (0.6).
    pub no_speech_threshold: Option<f64>,
}

impl Default for FallbackOptions {
    fn default() -> Self {
        FallbackOptions {
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            log_prob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
        }
    }
}

/// One decoding attempt, as the fallback judges it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The decoded window.
    pub generated: Generated,
    /// [`compression_ratio`] of its stripped text.
    pub compression_ratio: f64,
    /// The temperature it was decoded at.
    pub temperature: f64,
}

/// faster-whisper's `generate_with_fallback`: decodes at each temperature
/// in turn (`decode(t)` returns the result and the compression ratio of its
/// text) until one passes: a compression ratio above the threshold or an
/// `avg_logprob` below the threshold asks for the next temperature, except
/// when the no-speech probability is above its threshold and the
/// `avg_logprob` below its own (silence: kept as is). If every temperature
/// fails, the best `avg_logprob` among the results under the compression
/// threshold (or among all, if none is) is returned. The second value is the
/// temperature faster-whisper reports (the last one tried when all failed).
pub fn generate_with_fallback<F>(opts: &FallbackOptions, mut decode: F) -> Result<(Attempt, f64)>
where
    F: FnMut(f64) -> Result<(Generated, f64)>,
{
    let temps: &[f64] = if opts.temperatures.is_empty() {
        &[0.0]
    } else {
        &opts.temperatures
    };
    let mut all: Vec<Attempt> = Vec::new();
    let mut below_cr: Vec<usize> = Vec::new();
    for &t in temps {
        let (g, cr) = decode(t)?;
        let attempt = Attempt {
            generated: g,
            compression_ratio: cr,
            temperature: t,
        };
        let avg = attempt.generated.avg_logprob;
        let mut needs_fallback = false;
        if let Some(th) = opts.compression_ratio_threshold {
            if cr > th {
                needs_fallback = true;
            } else {
                below_cr.push(all.len());
            }
        }
        if let Some(th) = opts.log_prob_threshold
            && avg < th
        {
            needs_fallback = true;
        }
        if let (Some(ns), Some(lp)) = (opts.no_speech_threshold, opts.log_prob_threshold)
            && attempt.generated.no_speech_prob > ns
            && avg < lp
        {
            needs_fallback = false;
        }
        if !needs_fallback {
            return Ok((attempt, t));
        }
        all.push(attempt);
    }
    let pool: Vec<usize> = if below_cr.is_empty() {
        (0..all.len()).collect()
    } else {
        below_cr
    };
    // Python's max(): the first of equal maxima.
    let mut best = pool[0];
    for &i in &pool[1..] {
        if all[i].generated.avg_logprob > all[best].generated.avg_logprob {
            best = i;
        }
    }
    let last = *temps.last().unwrap_or(&0.0);
    Ok((all.swap_remove(best), last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(avg: f64, ns: f64) -> Generated {
        Generated {
            ids: vec![1, 2, 3],
            score: avg * 4.0 / 3.0,
            avg_logprob: avg,
            no_speech_prob: ns,
        }
    }

    #[test]
    fn compression_ratio_matches_zlib() {
        // Python: len(b) / len(zlib.compress(b)) for these strings.
        assert_eq!(compression_ratio(""), 0.0);
        assert_eq!(compression_ratio("abc"), 3.0 / 11.0);
        let rep = "the the the the the the the the the the the the the the the the";
        assert!(compression_ratio(rep) > 2.4, "{}", compression_ratio(rep));
        let plain = "He might even have been made amiable himself.";
        assert!(compression_ratio(plain) < 1.5);
    }

    #[test]
    fn repetitive_text_triggers_the_next_temperature() {
        let opts = FallbackOptions::default();
        let mut tried = Vec::new();
        let (a, t) = generate_with_fallback(&opts, |t| {
            tried.push(t);
            // Greedy result: repetitive (ratio 3.1); at 0.2: fine.
            Ok(if t == 0.0 {
                (mk(-0.2, 0.01), 3.1)
            } else {
                (mk(-0.4, 0.01), 1.2)
            })
        })
        .unwrap();
        assert_eq!(tried, vec![0.0, 0.2]);
        assert_eq!((a.temperature, t), (0.2, 0.2));
        assert_eq!(a.compression_ratio, 1.2);
    }

    #[test]
    fn low_log_prob_triggers_fallback_unless_silence() {
        let opts = FallbackOptions::default();
        let mut tried = Vec::new();
        let (_, t) = generate_with_fallback(&opts, |t| {
            tried.push(t);
            Ok((mk(if t < 0.39 { -1.5 } else { -0.5 }, 0.1), 1.0))
        })
        .unwrap();
        assert_eq!(tried, vec![0.0, 0.2, 0.4]);
        assert_eq!(t, 0.4);
        // Same low log-prob, but the window is silence: kept at 0.0.
        let mut tried = Vec::new();
        let (a, t) = generate_with_fallback(&opts, |t| {
            tried.push(t);
            Ok((mk(-1.5, 0.9), 1.0))
        })
        .unwrap();
        assert_eq!((tried.len(), t, a.temperature), (1, 0.0, 0.0));
        // Thresholds off: the first result is always kept.
        let off = FallbackOptions {
            compression_ratio_threshold: None,
            log_prob_threshold: None,
            ..Default::default()
        };
        let (a, _) = generate_with_fallback(&off, |_| Ok((mk(-9.0, 0.0), 9.0))).unwrap();
        assert_eq!(a.temperature, 0.0);
    }

    #[test]
    fn all_failing_picks_best_log_prob_below_compression_threshold() {
        let opts = FallbackOptions::default();
        // avg_logprob per temperature; odd ones are repetitive.
        let avg = [-1.9, -1.1, -1.5, -1.05, -1.7, -1.3];
        let (a, t) = generate_with_fallback(&opts, |t| {
            let i = (t / 0.2).round() as usize;
            Ok((mk(avg[i], 0.0), if i % 2 == 1 { 2.6 } else { 1.1 }))
        })
        .unwrap();
        // Among 0.0, 0.4, 0.8 (not repetitive) the best is 0.4 (-1.5)... not -1.05 (repetitive).
        assert_eq!(a.temperature, 0.4);
        assert_eq!(t, 1.0);
        // All repetitive: best of all.
        let (a, _) = generate_with_fallback(&opts, |t| {
            let i = (t / 0.2).round() as usize;
            Ok((mk(avg[i], 0.0), 2.5))
        })
        .unwrap();
        assert_eq!(a.temperature, 0.6);
    }

    #[test]
    fn sampling_is_seeded_and_follows_temperature() {
        let lp = log_softmax(&[0.0, 1.0, f32::NEG_INFINITY, 2.0]);
        let draw = |seed, t| {
            let mut rng = SampleRng::new(seed);
            (0..2000)
                .map(|_| sample(&lp, t, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 1.0), draw(7, 1.0));
        assert_ne!(draw(7, 1.0), draw(8, 1.0));
        let d = draw(3, 1.0);
        assert!(!d.contains(&2), "disabled id drawn");
        let share = |v: &[u32], id| v.iter().filter(|&&x| x == id).count() as f64 / v.len() as f64;
        // softmax([0, 1, 2]) = 0.090, 0.245, 0.665
        assert!((share(&d, 3) - 0.665).abs() < 0.04, "{}", share(&d, 3));
        // Low temperature: nearly always the best id.
        assert!(share(&draw(3, 0.05), 3) > 0.99);
    }

    #[test]
    fn timestamp_rules() {
        let t = WhisperTokens {
            eot: 5,
            sot: 6,
            sot_prev: 7,
            no_speech: 8,
            no_timestamps: 9,
            timestamp_begin: 10,
        };
        let opts = DecodeOptions {
            suppress: vec![6, 7, 8],
            suppress_begin: vec![5],
            max_initial_timestamp: 0.04,
            ..Default::default()
        };
        let fresh = || vec![0f32; 20];
        // First step: only timestamps 0.00..0.04.
        let mut l = fresh();
        apply_rules(&mut l, &[], t, &opts);
        let allowed: Vec<usize> = (0..20).filter(|&i| l[i].is_finite()).collect();
        assert_eq!(allowed, vec![10, 11, 12]);
        // After <|0.02|> text: timestamps > 0.02 (or text/EOT).
        let mut l = fresh();
        l[0] = 10.0; // text is far likelier
        apply_rules(&mut l, &[11, 0], t, &opts);
        assert!(l[11].is_infinite() && l[12].is_finite() && l[5].is_finite() && l[7].is_infinite());
        // After text + closing timestamp: EOT or a timestamp >= it, no text.
        let mut l = fresh();
        l[5] = 5.0; // EOT likelier than all timestamps together
        apply_rules(&mut l, &[11, 0, 13], t, &opts);
        let allowed: Vec<usize> = (0..20).filter(|&i| l[i].is_finite()).collect();
        assert_eq!(allowed, [5].into_iter().chain(13..20).collect::<Vec<_>>());
        // ... and when the timestamps together are likelier, EOT goes too.
        let mut l = fresh();
        apply_rules(&mut l, &[11, 0, 13], t, &opts);
        assert!(l[5].is_infinite() && l[13].is_finite());
        // A pair: text or EOT next.
        let mut l = fresh();
        l[0] = 10.0;
        apply_rules(&mut l, &[11, 0, 13, 13], t, &opts);
        assert!((10..20).all(|i| l[i].is_infinite()) && l[0].is_finite());
    }
}
