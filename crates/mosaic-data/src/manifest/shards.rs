//! WebDataset tar shards: streaming read and write.
//!
//! A shard is a plain tar; the files of one sample share a key (the name
//! up to the first dot of the file name), e.g. `000123.jpg`, `000123.txt`,
//! `000123.json`. Extensions choose the modality: images (`jpg`, `jpeg`,
//! `png`, `webp`, `gif`, `bmp`, `tif`, `tiff`), audio (`wav`, `flac`,
//! `mp3`, `ogg`), video (`mp4`, `webm`, `mkv`, `avi`, `mov`), point clouds
//! (`ply`, `pcd`, `xyz`), sensors (`npy`, `csv`), text (`txt`); `cls` holds
//! a label and `json` the rest of the record (labels, captions, timestamps,
//! boxes, meta).

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use mosaic_core::{Modality, ModalityValue, Sample};

use super::jsonl::ManifestRecord;
use crate::error::{Error, Result};

/// The members of one sample: (extension, bytes).
type Members = Vec<(String, Vec<u8>)>;

/// Largest member accepted in a shard (bytes).
pub const MAX_MEMBER_BYTES: u64 = 1 << 30;

/// The modality of a file extension, if it carries one.
pub fn modality_of_extension(ext: &str) -> Option<Modality> {
    Some(match ext.to_ascii_lowercase().as_str() {
        "jpg" | "jpeg" | "png" | "webp" | "gif" | "bmp" | "tif" | "tiff" => Modality::Image,
        "wav" | "flac" | "mp3" | "ogg" | "oga" => Modality::Audio,
        "mp4" | "webm" | "mkv" | "avi" | "mov" => Modality::Video,
        "ply" | "pcd" | "xyz" => Modality::PointCloud,
        "npy" | "csv" => Modality::Sensor,
        "txt" | "text" | "caption" => Modality::Text,
        _ => return None,
    })
}

/// Streams samples out of one tar shard.
pub struct ShardReader<R: Read> {
    name: String,
    archive: tar::Archive<R>,
}

impl ShardReader<std::io::BufReader<std::fs::File>> {
    /// Opens a shard file.
    pub fn open(path: &Path) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(ShardReader::new(
            std::io::BufReader::with_capacity(1 << 16, f),
            &path.display().to_string(),
        ))
    }
}

impl<R: Read> ShardReader<R> {
    /// Wraps a reader; `name` names the shard in errors.
    pub fn new(reader: R, name: &str) -> Self {
        ShardReader {
            name: name.to_string(),
            archive: tar::Archive::new(reader),
        }
    }

    /// Visits every sample in order. `f` gets each sample or the error for
    /// a bad one; a structural error of the tar itself ends the read.
    pub fn for_each(&mut self, mut f: impl FnMut(Result<Sample>) -> Result<()>) -> Result<usize> {
        let name = self.name.clone();
        let err = |m: String| Error::decode(name.clone(), "WebDataset shard", m);
        let entries = self.archive.entries().map_err(|e| err(e.to_string()))?;
        // The key being assembled and its (extension, bytes) members.
        let mut current: Option<(String, Members)> = None;
        let mut count = 0;
        for entry in entries {
            let mut entry = entry.map_err(|e| err(format!("corrupt tar: {e}")))?;
            let kind = entry.header().entry_type();
            if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
                continue;
            }
            let raw = entry.path_bytes().into_owned();
            let path_s = String::from_utf8_lossy(&raw).into_owned();
            let path = PathBuf::from(&path_s);
            if path.is_absolute()
                || path.components().any(|c| {
                    matches!(
                        c,
                        Component::ParentDir | Component::RootDir | Component::Prefix(_)
                    )
                })
            {
                return Err(err(format!(
                    "member `{path_s}` points outside the shard's root"
                )));
            }
            if !kind.is_file() {
                return Err(err(format!(
                    "member `{path_s}` is not a regular file ({kind:?})"
                )));
            }
            let size = entry.header().size().map_err(|e| err(e.to_string()))?;
            if size > MAX_MEMBER_BYTES {
                return Err(err(format!(
                    "member `{path_s}` is {size} bytes, over the {MAX_MEMBER_BYTES}-byte limit"
                )));
            }
            let file_name = path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dir = path
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (stem, ext) = match file_name.find('.') {
                Some(i) => (&file_name[..i], file_name[i + 1..].to_string()),
                None => (file_name.as_str(), String::new()),
            };
            let key = if dir.is_empty() {
                stem.to_string()
            } else {
                format!("{dir}/{stem}")
            };
            let mut data = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut data)
                .map_err(|e| err(format!("member `{path_s}`: {e}")))?;
            if current.as_ref().is_some_and(|(k, _)| *k != key) {
                let (k, files) = current.take().unwrap();
                f(assemble(&name, &k, files))?;
                count += 1;
            }
            current
                .get_or_insert_with(|| (key, Vec::new()))
                .1
                .push((ext, data));
        }
        if let Some((k, files)) = current {
            f(assemble(&name, &k, files))?;
            count += 1;
        }
        Ok(count)
    }

    /// Reads every sample, stopping at the first bad one.
    pub fn read_all(mut self) -> Result<Vec<Sample>> {
        let mut out = Vec::new();
        self.for_each(|s| {
            out.push(s?);
            Ok(())
        })?;
        Ok(out)
    }
}

fn assemble(shard: &str, key: &str, files: Vec<(String, Vec<u8>)>) -> Result<Sample> {
    let input = format!("{shard}#{key}");
    let mut s = Sample::new(key);
    for (ext, data) in files {
        let last = ext.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
        if last == "json" {
            let rec: ManifestRecord = serde_json::from_slice(&data)
                .map_err(|e| Error::decode(&input, "sample JSON", e.to_string()))?;
            let meta = rec.to_sample(Path::new(""), 0);
            if let Some(id) = rec.id {
                s.id = id;
            }
            s.labels.extend(meta.labels);
            s.captions.extend(meta.captions);
            s.timestamps.extend(meta.timestamps);
            s.boxes.extend(meta.boxes);
            s.extra.extend(meta.extra);
            if let Some(ModalityValue::Text(t)) = meta.modalities.get(&Modality::Text) {
                s.modalities
                    .insert(Modality::Text, ModalityValue::Text(t.clone()));
            }
        } else if last == "cls" || last == "label" {
            let t =
                String::from_utf8(data).map_err(|_| Error::decode(&input, "label", "not UTF-8"))?;
            s.labels.push(t.trim().to_string());
        } else if let Some(m) = modality_of_extension(&last) {
            let v = if m == Modality::Text {
                ModalityValue::Text(String::from_utf8(data).map_err(|e| {
                    Error::decode(
                        &input,
                        "text",
                        format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
                    )
                })?)
            } else {
                ModalityValue::Bytes(data)
            };
            s.modalities.insert(m, v);
            s.extra
                .insert(format!("{m}_ext"), serde_json::Value::String(last));
        } else {
            tracing::debug!("{input}: ignoring member with extension `{ext}`");
        }
    }
    Ok(s)
}

/// Writes samples into numbered shards `PREFIX-000000.tar`, … with at most
/// `max_samples` samples or `max_bytes` bytes each. Each shard is written
/// to a temporary name and renamed when complete.
pub struct ShardWriter {
    dir: PathBuf,
    prefix: String,
    max_samples: usize,
    max_bytes: u64,
    index: usize,
    total: usize,
    current: Option<(
        tempfile::NamedTempFile,
        tar::Builder<std::io::BufWriter<std::fs::File>>,
        usize,
        u64,
    )>,
    written: Vec<PathBuf>,
}

impl std::fmt::Debug for ShardWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWriter")
            .field("dir", &self.dir)
            .field("prefix", &self.prefix)
            .field("index", &self.index)
            .finish()
    }
}

impl ShardWriter {
    /// A writer into `dir` (created if needed).
    pub fn new(dir: &Path, prefix: &str, max_samples: usize, max_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if max_samples == 0 {
            return Err(Error::invalid("shard size", "max_samples must be positive"));
        }
        Ok(ShardWriter {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            max_samples,
            max_bytes,
            index: 0,
            total: 0,
            current: None,
            written: Vec::new(),
        })
    }

    /// Adds one sample. Files referenced by path are read; text goes into
    /// `KEY.txt`, labels and other metadata into `KEY.json`.
    pub fn write(&mut self, sample: &Sample) -> Result<()> {
        // Keys are sequence numbers (unique, sorted); the id lives in KEY.json.
        let key = format!("{:09}", self.total);
        self.total += 1;
        let mut members: Vec<(String, Vec<u8>)> = Vec::new();
        for (m, v) in &sample.modalities {
            match v {
                ModalityValue::Text(t) => members.push(("txt".into(), t.as_bytes().to_vec())),
                ModalityValue::Path(p) => {
                    let ext = p
                        .extension()
                        .and_then(|e| e.to_str())
                        .unwrap_or("bin")
                        .to_ascii_lowercase();
                    let data = std::fs::read(p).map_err(|e| Error::io(p, e))?;
                    members.push((ext, data));
                }
                ModalityValue::Bytes(b) => {
                    let ext = sample
                        .extra
                        .get(&format!("{m}_ext"))
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                        .unwrap_or_else(|| default_ext(*m).to_string());
                    members.push((ext, b.clone()));
                }
                ModalityValue::Tensor(_) => {
                    return Err(Error::invalid(
                        format!("sample `{}` {m}", sample.id),
                        "decoded tensors cannot be written to a shard; keep the encoded bytes",
                    ));
                }
            }
        }
        let mut meta = sample.clone();
        meta.modalities.clear();
        meta.extra.retain(|k, _| !k.ends_with("_ext"));
        let mut rec = ManifestRecord::from_sample(&meta, Path::new(""))?;
        rec.id = Some(sample.id.clone());
        members.push((
            "json".into(),
            serde_json::to_vec(&rec).map_err(|e| Error::invalid("sample JSON", e.to_string()))?,
        ));
        let size: u64 = members.iter().map(|(_, d)| d.len() as u64 + 512).sum();
        let full = self
            .current
            .as_ref()
            .is_some_and(|c| c.2 >= self.max_samples || (c.2 > 0 && c.3 + size > self.max_bytes));
        if full {
            self.finish_shard()?;
        }
        if self.current.is_none() {
            let tmp = tempfile::Builder::new()
                .prefix(".shard-")
                .tempfile_in(&self.dir)
                .map_err(|e| Error::io(&self.dir, e))?;
            let f = tmp.reopen().map_err(|e| Error::io(tmp.path(), e))?;
            let mut b = tar::Builder::new(std::io::BufWriter::new(f));
            b.mode(tar::HeaderMode::Deterministic);
            self.current = Some((tmp, b, 0, 0));
        }
        let cur = self.current.as_mut().unwrap();
        for (ext, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            cur.1
                .append_data(&mut h, format!("{key}.{ext}"), data.as_slice())
                .map_err(|e| Error::io(cur.0.path(), e))?;
        }
        cur.2 += 1;
        cur.3 += size;
        Ok(())
    }

    fn finish_shard(&mut self) -> Result<()> {
        if let Some((tmp, b, _, _)) = self.current.take() {
            let mut w = b.into_inner().map_err(|e| Error::io(tmp.path(), e))?;
            w.flush().map_err(|e| Error::io(tmp.path(), e))?;
            w.get_ref()
                .sync_all()
                .map_err(|e| Error::io(tmp.path(), e))?;
            let dest = self
                .dir
                .join(format!("{}-{:06}.tar", self.prefix, self.index));
            tmp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
            self.written.push(dest);
            self.index += 1;
        }
        Ok(())
    }

    /// Completes the last shard and returns every shard written.
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        self.finish_shard()?;
        Ok(std::mem::take(&mut self.written))
    }
}

fn default_ext(m: Modality) -> &'static str {
    match m {
        Modality::Text => "txt",
        Modality::Image => "png",
        Modality::Audio => "wav",
        Modality::Video => "mp4",
        Modality::PointCloud => "ply",
        Modality::Sensor => "npy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("x.png");
        std::fs::write(&img, b"\x89PNG fake").unwrap();
        let mut w = ShardWriter::new(&dir.path().join("shards"), "train", 2, 1 << 30).unwrap();
        for i in 0..5 {
            let mut s = Sample::new(format!("s.{i}"))
                .with(Modality::Text, ModalityValue::Text(format!("caption {i}")))
                .with(Modality::Image, ModalityValue::Path(img.clone()));
            s.labels.push(format!("c{i}"));
            w.write(&s).unwrap();
        }
        let shards = w.finish().unwrap();
        assert_eq!(shards.len(), 3);
        let mut all = Vec::new();
        for s in &shards {
            all.extend(ShardReader::open(s).unwrap().read_all().unwrap());
        }
        assert_eq!(all.len(), 5);
        assert_eq!(all[3].id, "s.3");
        assert_eq!(all[3].labels, vec!["c3"]);
        assert!(
            matches!(all[3].get(Modality::Text), Some(ModalityValue::Text(t)) if t == "caption 3")
        );
        assert!(
            matches!(all[3].get(Modality::Image), Some(ModalityValue::Bytes(b)) if b.starts_with(b"\x89PNG"))
        );
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("shards"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn path_outside_root_is_refused() {
        let mut buf = Vec::new();
        {
            let mut b = tar::Builder::new(&mut buf);
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_entry_type(tar::EntryType::Regular);
            // Write the name bytes directly: the builder itself refuses `..`.
            h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"../evil.1.txt");
            h.set_cksum();
            b.append(&h, &b"abc"[..]).unwrap();
            b.finish().unwrap();
        }
        let e = ShardReader::new(buf.as_slice(), "bad.tar")
            .read_all()
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.tar") && e.contains("outside"), "{e}");
    }
}
