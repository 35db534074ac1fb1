//! The parallel loader: a seeded shuffle buffer over a streamed source,
//! decoding on worker threads, batches in a deterministic order, bounded
//! memory, and bad samples skipped and counted (or fatal with `strict`).
//!
//! Order is deterministic for a seed whatever the thread count: the
//! shuffle happens on the single reader thread, every sample carries its
//! sequence number, and the consumer re-orders decoded samples by it. The
//! reader needs a credit per sample, returned when the consumer emits that
//! sample, so at most `queue_depth` samples sit between the reader and the
//! consumer (plus the shuffle buffer), however slow one sample is. A panic
//! inside a decoder becomes an error for that sample.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mosaic_core::Sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::manifest::{ManifestReader, ShardReader};
use crate::pipeline::{DataBatch, Pipeline, Prepared};

/// A re-startable stream of samples (one pass per epoch).
pub type SourceFn = dyn Fn() -> Box<dyn Iterator<Item = Result<Sample>> + Send> + Send + Sync;

/// Where samples come from.
#[derive(Clone)]
pub struct Source {
    open: Arc<SourceFn>,
    name: String,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("name", &self.name).finish()
    }
}

impl Source {
    /// Samples held in memory.
    pub fn samples(samples: Vec<Sample>) -> Self {
        let samples = Arc::new(samples);
        Source {
            name: format!("{} in-memory samples", samples.len()),
            open: Arc::new(move || {
                let s = samples.clone();
                Box::new((0..s.len()).map(move |i| Ok(s[i].clone())))
            }),
        }
    }

    /// A JSONL manifest, streamed.
    pub fn manifest(path: &Path) -> Self {
        let path = path.to_path_buf();
        Source {
            name: path.display().to_string(),
            open: Arc::new(move || match ManifestReader::open(&path) {
                Ok(r) => {
                    let base = r.base_dir();
                    Box::new(r.map(move |(line, rec)| rec.map(|rec| rec.to_sample(&base, line))))
                }
                Err(e) => Box::new(std::iter::once(Err(e))),
            }),
        }
    }

    /// WebDataset shards, streamed one after another (each shard is read by
    /// a helper thread into a small bounded queue).
    pub fn shards(paths: Vec<PathBuf>) -> Self {
        Source {
            name: format!("{} shards", paths.len()),
            open: Arc::new(move || {
                let paths = paths.clone();
                let (tx, rx) = sync_channel::<Result<Sample>>(64);
                std::thread::spawn(move || {
                    for p in paths {
                        let r = ShardReader::open(&p).and_then(|mut r| {
                            r.for_each(|s| {
                                tx.send(s).map_err(|_| Error::invalid("loader", "stopped"))
                            })
                        });
                        if let Err(e) = r
                            && tx.send(Err(e)).is_err()
                        {
                            return;
                        }
                    }
                });
                Box::new(rx.into_iter())
            }),
        }
    }

    /// A fresh pass over the raw samples (no decoding).
    pub fn open_stream(&self) -> Box<dyn Iterator<Item = Result<Sample>> + Send> {
        (self.open)()
    }

    /// Any closure that starts a fresh pass.
    pub fn from_fn(name: &str, open: Arc<SourceFn>) -> Self {
        Source {
            open,
            name: name.to_string(),
        }
    }

    /// Picks JSONL or shards by extension (`.jsonl`, `.json`, `.tar`), or
    /// every `*.tar` in a folder.
    pub fn open_path(path: &Path) -> Result<Self> {
        if path.is_dir() {
            let mut tars: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "tar"))
                .collect();
            tars.sort();
            if tars.is_empty() {
                return Err(Error::invalid(
                    path.display().to_string(),
                    "folder has no .tar shards",
                ));
            }
            return Ok(Source::shards(tars));
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("tar") => Ok(Source::shards(vec![path.to_path_buf()])),
            Some("jsonl") | Some("json") | Some("ndjson") => {
                if !path.is_file() {
                    return Err(Error::io(
                        path,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no such manifest"),
                    ));
                }
                Ok(Source::manifest(path))
            }
            _ => Err(Error::invalid(
                path.display().to_string(),
                "expected a .jsonl manifest, a .tar shard or a folder of shards",
            )),
        }
    }
}

/// An item with its position in the stream.
type Numbered<T> = (usize, T);

/// Loader settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Shuffle with a buffer of this many samples (0 = keep order).
    pub shuffle_buffer: usize,
    /// Seed of the shuffle (epoch `e` uses `seed + e`).
    pub seed: u64,
    /// Drop a last, smaller batch.
    pub drop_last: bool,
    /// Decoding threads.
    pub num_workers: usize,
    /// Samples in flight between reader, workers and consumer.
    pub queue_depth: usize,
    /// Fail on the first bad sample instead of skipping it.
    pub strict: bool,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 32,
            shuffle_buffer: 0,
            seed: 0,
            drop_last: false,
            num_workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            queue_depth: 256,
            strict: false,
        }
    }
}

/// Counts of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoaderStats {
    /// Samples prepared and batched.
    pub ok: usize,
    /// Samples skipped because they failed to read or decode.
    pub skipped: usize,
    /// The first errors (at most 100), one line each.
    pub errors: Vec<String>,
}

/// The loader.
#[derive(Debug)]
pub struct Loader {
    source: Source,
    pipeline: Arc<Pipeline>,
    config: LoaderConfig,
}

impl Loader {
    /// A loader over `source` with `pipeline`.
    pub fn new(source: Source, pipeline: Pipeline, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 || config.num_workers == 0 || config.queue_depth == 0 {
            return Err(Error::invalid(
                "loader config",
                "batch_size, num_workers and queue_depth must be positive",
            ));
        }
        Ok(Loader {
            source,
            pipeline: Arc::new(pipeline),
            config,
        })
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Starts one pass over the data.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        let cfg = self.config.clone();
        let depth = cfg.queue_depth.max(cfg.num_workers);
        let (raw_tx, raw_rx) = sync_channel::<(usize, Result<Sample>)>(depth / 2 + 1);
        let (done_tx, done_rx) = sync_channel::<(usize, Result<Prepared>)>(depth / 2 + 1);
        // Credits bound the samples between the reader and the consumer's
        // in-order output (queues plus the re-order buffer), even when one
        // slow sample holds up the order: the reader takes a credit per
        // sample and the consumer returns it when that sample is emitted.
        let (credit_tx, credit_rx) = sync_channel::<()>(depth);
        for _ in 0..depth {
            credit_tx.send(()).expect("fresh channel");
        }
        let open = self.source.open.clone();
        let seed = cfg.seed.wrapping_add(epoch);
        let shuffle = cfg.shuffle_buffer;
        let mut threads = Vec::new();
        threads.push(std::thread::spawn(move || {
            read_and_shuffle(open, shuffle, seed, raw_tx, credit_rx)
        }));
        let raw_rx = Arc::new(Mutex::new(raw_rx));
        for _ in 0..cfg.num_workers {
            let rx = raw_rx.clone();
            let tx = done_tx.clone();
            let pipe = self.pipeline.clone();
            threads.push(std::thread::spawn(move || work(rx, tx, pipe)));
        }
        drop(done_tx);
        EpochIter {
            rx: Some(done_rx),
            credits: Some(credit_tx),
            pipeline: self.pipeline.clone(),
            config: cfg,
            next_seq: 0,
            pending: BTreeMap::new(),
            stats: LoaderStats::default(),
            threads,
            finished: false,
        }
    }
}

fn read_and_shuffle(
    open: Arc<SourceFn>,
    buffer: usize,
    seed: u64,
    tx: SyncSender<(usize, Result<Sample>)>,
    credits: Receiver<()>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf: Vec<Result<Sample>> = Vec::with_capacity(buffer);
    let mut seq = 0usize;
    let mut send = |item: Result<Sample>| -> bool {
        if credits.recv().is_err() {
            return false;
        }
        let ok = tx.send((seq, item)).is_ok();
        seq += 1;
        ok
    };
    for item in open() {
        if buffer <= 1 {
            if !send(item) {
                return;
            }
            continue;
        }
        if buf.len() < buffer {
            buf.push(item);
            continue;
        }
        let i = rng.random_range(0..buf.len());
        let out = std::mem::replace(&mut buf[i], item);
        if !send(out) {
            return;
        }
    }
    // Drain the buffer in random order.
    while !buf.is_empty() {
        let i = rng.random_range(0..buf.len());
        if !send(buf.swap_remove(i)) {
            return;
        }
    }
}

fn work(
    rx: Arc<Mutex<Receiver<Numbered<Result<Sample>>>>>,
    tx: SyncSender<Numbered<Result<Prepared>>>,
    pipe: Arc<Pipeline>,
) {
    loop {
        let next = { rx.lock().map(|r| r.recv()) };
        let Ok(Ok((seq, item))) = next else { return };
        let out = item.and_then(|s| prepare_guarded(&pipe, &s));
        if tx.send((seq, out)).is_err() {
            return;
        }
    }
}

/// Prepares a sample; a panic inside a decoder becomes an error naming the
/// sample, so one bad file can neither kill a worker nor vanish uncounted.
pub(crate) fn prepare_guarded(pipe: &Pipeline, s: &Sample) -> Result<Prepared> {
    let id = s.id.clone();
    crate::error::guard(&format!("sample `{id}`"), "sample", || {
        pipe.prepare(s).map_err(|e| match e {
            // Name the sample when the error does not already.
            Error::InvalidArgument { what, message } if !what.contains(&id) => {
                Error::InvalidArgument {
                    what: format!("sample `{id}` {what}"),
                    message,
                }
            }
            other => other,
        })
    })
}

/// One epoch's batches. Dropping it stops the threads.
pub struct EpochIter {
    rx: Option<Receiver<(usize, Result<Prepared>)>>,
    credits: Option<SyncSender<()>>,
    pipeline: Arc<Pipeline>,
    config: LoaderConfig,
    next_seq: usize,
    pending: BTreeMap<usize, Result<Prepared>>,
    stats: LoaderStats,
    threads: Vec<JoinHandle<()>>,
    finished: bool,
}

impl std::fmt::Debug for EpochIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochIter")
            .field("stats", &self.stats)
            .finish()
    }
}

impl EpochIter {
    /// Counts so far.
    pub fn stats(&self) -> &LoaderStats {
        &self.stats
    }

    /// The next prepared sample in sequence order, or `None` at the end.
    fn next_prepared(&mut self) -> Option<Result<Prepared>> {
        loop {
            if let Some(item) = self.pending.remove(&self.next_seq) {
                self.next_seq += 1;
                if let Some(c) = &self.credits {
                    let _ = c.try_send(());
                }
                match item {
                    Ok(p) => {
                        self.stats.ok += 1;
                        return Some(Ok(p));
                    }
                    Err(e) => {
                        if self.config.strict {
                            return Some(Err(e));
                        }
                        tracing::warn!("skipping bad sample: {e}");
                        self.stats.skipped += 1;
                        if self.stats.errors.len() < 100 {
                            self.stats.errors.push(e.to_string());
                        }
                        continue;
                    }
                }
            }
            let rx = self.rx.as_ref()?;
            match rx.recv() {
                Ok((seq, item)) => {
                    self.pending.insert(seq, item);
                }
                Err(_) => {
                    // Every sender is gone: whatever is pending is complete.
                    self.rx = None;
                    if let Some((&k, _)) = self.pending.iter().next() {
                        self.next_seq = k;
                        continue;
                    }
                    return None;
                }
            }
        }
    }
}

impl Iterator for EpochIter {
    type Item = Result<DataBatch>;

    fn next(&mut self) -> Option<Result<DataBatch>> {
        if self.finished {
            return None;
        }
        let mut items = Vec::with_capacity(self.config.batch_size);
        while items.len() < self.config.batch_size {
            match self.next_prepared() {
                Some(Ok(p)) => items.push(p),
                Some(Err(e)) => {
                    self.finished = true;
                    return Some(Err(e));
                }
                None => break,
            }
        }
        if items.is_empty() || (self.config.drop_last && items.len() < self.config.batch_size) {
            self.finished = true;
            return None;
        }
        Some(self.pipeline.collate(&items))
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        // Closing our receiver and the credits makes workers and the reader
        // stop at their next send or credit wait.
        self.rx = None;
        self.credits = None;
        self.pending.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosaic_core::{Modality, ModalityValue};

    fn samples(n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let mut s = Sample::new(format!("s{i}"));
                s.labels.push(format!("{}", i % 3));
                if i % 7 != 3 {
                    s.modalities
                        .insert(Modality::Text, ModalityValue::Text(format!("{i}")));
                } else {
                    // A bad sample: invalid UTF-8 bytes as text.
                    s.modalities
                        .insert(Modality::Text, ModalityValue::Bytes(vec![0xff, 0xfe]));
                }
                s
            })
            .collect()
    }

    fn tok() -> crate::text::TextTokenizer {
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":{"[UNK]":0,"0":1,"1":2,"2":3,"3":4,"4":5,"5":6,"6":7,"7":8,"8":9,"9":10},"unk_token":"[UNK]"}}"#;
        crate::text::TextTokenizer::from_bytes(json.as_bytes(), "t.json", Default::default())
            .unwrap()
    }

    fn ids(cfg: LoaderConfig) -> (Vec<String>, LoaderStats) {
        let pipe = Pipeline {
            text: Some(tok()),
            classes: Some(vec!["0".into(), "1".into(), "2".into()]),
            ..Default::default()
        };
        let l = Loader::new(Source::samples(samples(50)), pipe, cfg).unwrap();
        let mut it = l.epoch(0);
        let mut out = Vec::new();
        for b in it.by_ref() {
            out.extend(b.unwrap().batch.ids);
        }
        (out, it.stats().clone())
    }

    #[test]
    fn deterministic_shuffle_skips_bad_samples() {
        let base = LoaderConfig {
            batch_size: 4,
            shuffle_buffer: 16,
            seed: 7,
            num_workers: 1,
            ..Default::default()
        };
        let (a, st) = ids(base.clone());
        let (b, _) = ids(LoaderConfig {
            num_workers: 4,
            queue_depth: 3,
            ..base.clone()
        });
        assert_eq!(a, b, "same seed, different thread counts");
        assert_eq!(st.skipped, 7);
        assert_eq!(st.ok, 43);
        assert_eq!(a.len(), 43);
        let (c, _) = ids(LoaderConfig {
            seed: 8,
            ..base.clone()
        });
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 43);
        let (d, _) = ids(LoaderConfig {
            drop_last: true,
            ..base.clone()
        });
        assert_eq!(d.len(), 40);
        let (e, _) = ids(LoaderConfig {
            shuffle_buffer: 0,
            ..base
        });
        assert_eq!(e[..3], ["s0".to_string(), "s1".into(), "s2".into()]);
    }

    #[test]
    fn strict_stops_at_the_first_bad_sample() {
        let pipe = Pipeline {
            text: Some(tok()),
            ..Default::default()
        };
        let l = Loader::new(
            Source::samples(samples(10)),
            pipe,
            LoaderConfig {
                batch_size: 2,
                strict: true,
                num_workers: 2,
                ..Default::default()
            },
        )
        .unwrap();
        let res: Vec<_> = l.epoch(0).collect();
        let err = res
            .iter()
            .find_map(|r| r.as_ref().err())
            .unwrap()
            .to_string();
        assert!(err.contains("UTF-8"), "{err}");
    }
}
