//! `mosaic data validate | stats | convert`: checking that every file a
//! manifest references decodes, summarising a data set, and converting
//! between JSONL manifests and WebDataset shards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use mosaic_core::{Modality, ModalityValue, Sample};

use crate::audio::{AudioLimits, decode_audio};
use crate::error::{Error, Result, read_limited};
use crate::image::{DecodeOptions, decode_image};
use crate::loader::Source;
use crate::manifest::jsonl::{ManifestRecord, write_manifest};
use crate::manifest::shards::{ShardWriter, modality_of_extension};

/// Result of `validate`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ValidationReport {
    /// Samples (or manifest lines) seen.
    pub total: usize,
    /// Samples whose every part decoded.
    pub ok: usize,
    /// `(where, error)` for each bad sample, in input order.
    pub bad: Vec<(String, String)>,
}

/// Decodes one modality value fully (the value is discarded): `Ok` means a
/// loader will be able to read it.
pub fn check_value(m: Modality, v: &ModalityValue, sample: &Sample) -> Result<()> {
    let ext_hint = sample
        .extra
        .get(&format!("{m}_ext"))
        .and_then(|e| e.as_str())
        .map(str::to_string);
    let (bytes, name, ext) = match v {
        ModalityValue::Text(t) => {
            return if t.trim().is_empty() {
                Err(Error::invalid(
                    format!("sample `{}` text", sample.id),
                    "empty text",
                ))
            } else {
                Ok(())
            };
        }
        ModalityValue::Tensor(_) => return Ok(()),
        ModalityValue::Path(p) => {
            if m == Modality::Video {
                return check_video(p);
            }
            (
                read_limited(p, 2 << 30)?,
                p.display().to_string(),
                p.extension().and_then(|e| e.to_str()).map(str::to_string),
            )
        }
        ModalityValue::Bytes(b) => (b.clone(), format!("sample `{}` {m}", sample.id), ext_hint),
    };
    match m {
        Modality::Text => {
            std::str::from_utf8(&bytes).map_err(|e| {
                Error::decode(
                    &name,
                    "text",
                    format!("invalid UTF-8 at byte {}", e.valid_up_to()),
                )
            })?;
        }
        Modality::Image => {
            decode_image(&bytes, &name, &DecodeOptions::default())?;
        }
        Modality::Audio => {
            decode_audio(bytes, &name, ext.as_deref(), &AudioLimits::default())?;
        }
        Modality::Video => {
            let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
            let p = dir
                .path()
                .join(format!("clip.{}", ext.unwrap_or_else(|| "mp4".into())));
            std::fs::write(&p, &bytes).map_err(|e| Error::io(&p, e))?;
            check_video(&p).map_err(|e| Error::decode(&name, "video", e.to_string()))?;
        }
        Modality::PointCloud => {
            let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
            let ext = ext.unwrap_or_else(|| {
                if bytes.starts_with(b"ply") {
                    "ply".into()
                } else {
                    "xyz".into()
                }
            });
            let p = dir.path().join(format!("cloud.{ext}"));
            std::fs::write(&p, &bytes).map_err(|e| Error::io(&p, e))?;
            crate::pointcloud::load_point_cloud(&p)
                .map_err(|e| Error::decode(&name, "point cloud", e.to_string()))?;
        }
        Modality::Sensor => {
            let opts = crate::sensor::SensorReadOptions {
                rate: Some(1.0),
                ..Default::default()
            };
            if bytes.starts_with(b"\x93NUMPY") {
                crate::sensor::parse_npy_series(&bytes, &name, &opts)?;
            } else {
                crate::sensor::parse_csv_series(&bytes, &name, &opts)?;
            }
        }
    }
    Ok(())
}

fn check_video(p: &Path) -> Result<()> {
    if p.is_dir() || p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gif")) {
        crate::video::load_frames(
            p,
            &crate::video::VideoOptions {
                sampling: crate::video::FrameSampling::Uniform(1),
                ..Default::default()
            },
        )?;
        return Ok(());
    }
    let info = crate::video::probe(p)?;
    if info.width == 0 || info.height == 0 {
        return Err(Error::decode(
            p.display().to_string(),
            "video",
            "no frame size",
        ));
    }
    Ok(())
}

/// Checks every sample: the manifest line parses and every referenced file
/// decodes. Keeps going after errors; uses `threads` workers.
pub fn validate(input: &Path, threads: usize) -> Result<ValidationReport> {
    // (position, location, sample): manifests are located by `file:line`,
    // shards by `shard#index`.
    type Item = (usize, String, Result<Sample>);
    let stream: Box<dyn Iterator<Item = Item> + Send> =
        if !input.is_dir() && input.extension().is_some_and(|e| e != "tar") {
            let reader = crate::manifest::ManifestReader::open(input)?;
            let base = reader.base_dir();
            let name = input.display().to_string();
            Box::new(reader.enumerate().map(move |(i, (line, rec))| {
                (
                    i,
                    format!("{name}:{line}"),
                    rec.map(|r| r.to_sample(&base, line)),
                )
            }))
        } else {
            let source = Source::open_path(input)?;
            let name = input.display().to_string();
            Box::new(
                raw_stream(&source)
                    .enumerate()
                    .map(move |(i, s)| (i, format!("{name}#{i}"), s)),
            )
        };
    let (tx, rx) = sync_channel::<Item>(256);
    let rx = Arc::new(Mutex::new(rx));
    let report = Arc::new(Mutex::new((0usize, Vec::<(usize, String, String)>::new())));
    std::thread::scope(|s| {
        s.spawn(move || {
            for item in stream {
                if tx.send(item).is_err() {
                    return;
                }
            }
        });
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            let report = report.clone();
            s.spawn(move || {
                loop {
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok((i, at, item))) = next else { return };
                    let res = item.and_then(|smp| {
                        if smp.modalities.is_empty() {
                            return Err(Error::invalid(
                                format!("sample `{}`", smp.id),
                                "has no modality",
                            ));
                        }
                        // A panic in a decoder is reported for this sample.
                        crate::error::guard(&at, "sample", || {
                            for (m, v) in &smp.modalities {
                                check_value(*m, v, &smp)?;
                            }
                            Ok(())
                        })
                    });
                    let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
                    r.0 += 1;
                    if let Err(e) = res {
                        r.1.push((i, at, e.to_string()));
                    }
                }
            });
        }
    });
    let (total, mut bad) = Arc::try_unwrap(report)
        .map_err(|_| Error::invalid("validate", "worker still running"))?
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    bad.sort_by_key(|b| b.0);
    Ok(ValidationReport {
        total,
        ok: total - bad.len(),
        bad: bad.into_iter().map(|(_, a, m)| (a, m)).collect(),
    })
}

fn raw_stream(source: &Source) -> Box<dyn Iterator<Item = Result<Sample>> + Send> {
    source.open_stream()
}

/// Summary statistics of a data set.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DataStats {
    /// Samples read.
    pub samples: usize,
    /// Lines that could not be read.
    pub unreadable: usize,
    /// Samples per modality.
    pub modalities: BTreeMap<String, usize>,
    /// Samples per label.
    pub labels: BTreeMap<String, usize>,
    /// Samples per value of `meta.split` (if any).
    pub splits: BTreeMap<String, usize>,
    /// Text length in characters: min, mean, max.
    pub text_chars: Option<(usize, f64, usize)>,
    /// Captions in total.
    pub captions: usize,
}

/// Counts samples, modalities, labels and text lengths (no decoding).
pub fn stats(input: &Path) -> Result<DataStats> {
    let source = Source::open_path(input)?;
    let mut st = DataStats::default();
    let (mut tmin, mut tsum, mut tmax, mut tn) = (usize::MAX, 0usize, 0usize, 0usize);
    for item in raw_stream(&source) {
        let Ok(s) = item else {
            st.unreadable += 1;
            continue;
        };
        st.samples += 1;
        for (m, v) in &s.modalities {
            *st.modalities.entry(m.to_string()).or_default() += 1;
            if let ModalityValue::Text(t) = v {
                let n = t.chars().count();
                tmin = tmin.min(n);
                tmax = tmax.max(n);
                tsum += n;
                tn += 1;
            }
        }
        for l in &s.labels {
            *st.labels.entry(l.clone()).or_default() += 1;
        }
        if let Some(sp) = s.extra.get("split").and_then(|v| v.as_str()) {
            *st.splits.entry(sp.to_string()).or_default() += 1;
        }
        st.captions += s.captions.len();
    }
    if tn > 0 {
        st.text_chars = Some((tmin, tsum as f64 / tn as f64, tmax));
    }
    Ok(st)
}

/// Converts a JSONL manifest into shards (`out` is a folder), or shards
/// into a JSONL manifest (`out` ends in `.jsonl`; member files are written
/// under `<out stem>_files/`). Returns the paths written.
pub fn convert(
    input: &Path,
    out: &Path,
    samples_per_shard: usize,
    strict: bool,
) -> Result<(Vec<PathBuf>, Vec<String>)> {
    let source = Source::open_path(input)?;
    let mut skipped = Vec::new();
    let to_jsonl = out.extension().is_some_and(|e| e == "jsonl");
    if to_jsonl {
        let base = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let stem = out
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let files_dir = base.join(format!("{stem}_files"));
        std::fs::create_dir_all(&files_dir).map_err(|e| Error::io(&files_dir, e))?;
        let mut recs = Vec::new();
        for (index, item) in raw_stream(&source).enumerate() {
            let mut s = match item {
                Ok(s) => s,
                Err(e) if !strict => {
                    skipped.push(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            // File names from the position, not the id: ids may collide
            // once made file-safe, and each modality gets its own file.
            let key = format!("{index:09}");
            let mods: Vec<Modality> = s.modalities.keys().copied().collect();
            for m in mods {
                if let Some(ModalityValue::Bytes(b)) = s.modalities.get(&m) {
                    let ext = s
                        .extra
                        .get(&format!("{m}_ext"))
                        .and_then(|v| v.as_str())
                        .unwrap_or("bin")
                        .to_string();
                    let p = files_dir.join(format!("{key}_{m}.{ext}"));
                    mosaic_core::atomic::write_bytes_atomic(&p, b)?;
                    s.modalities.insert(m, ModalityValue::Path(p));
                }
            }
            s.extra.retain(|k, _| !k.ends_with("_ext"));
            recs.push(ManifestRecord::from_sample(&s, &base)?);
        }
        write_manifest(out, &recs)?;
        Ok((vec![out.to_path_buf()], skipped))
    } else {
        if out.is_dir()
            && std::fs::read_dir(out)
                .map_err(|e| Error::io(out, e))?
                .next()
                .is_some()
        {
            return Err(Error::invalid(
                out.display().to_string(),
                "output folder is not empty (shards from an earlier run would mix with these)",
            ));
        }
        let prefix = input
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut w = ShardWriter::new(out, &prefix, samples_per_shard, 1 << 30)?;
        for item in raw_stream(&source) {
            let r = item.and_then(|s| w.write(&s));
            match r {
                Ok(()) => {}
                Err(e) if !strict => skipped.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        Ok((w.finish()?, skipped))
    }
}

/// Whether a file extension is one the data layer reads.
pub fn is_known_extension(ext: &str) -> bool {
    modality_of_extension(ext).is_some()
}
