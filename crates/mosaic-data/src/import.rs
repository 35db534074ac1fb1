//! Data set importers: Fashion-MNIST (IDX), image folders (`class/*.jpg`),
//! COCO-captions JSON, and Asterisk-style `path: transcript` lists. Each
//! writes a JSONL manifest (atomically).

use std::io::Read;

use image::ImageEncoder;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::manifest::jsonl::{LabelValue, ManifestRecord, TextField, write_manifest};

/// Fashion-MNIST class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// An IDX array (the MNIST family's format): shape and raw u8 data.
#[derive(Debug, Clone, PartialEq)]
pub struct Idx {
    /// Dimensions.
    pub dims: Vec<usize>,
    /// Values (only unsigned-byte IDX files are accepted).
    pub data: Vec<u8>,
}

/// Reads a file, gunzipping it if it starts with the gzip magic; both the
/// file and the decompressed data are bounded.
fn read_maybe_gzip(path: &Path, file_limit: u64, out_limit: u64) -> Result<Vec<u8>> {
    let raw = crate::error::read_limited(path, file_limit)?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .take(out_limit)
        .read_to_end(&mut out)
        .map_err(|e| Error::decode(path.display().to_string(), "gzip", e.to_string()))?;
    Ok(out)
}

/// Reads an IDX file, gunzipping `.gz`.
pub fn read_idx(path: &Path) -> Result<Idx> {
    let name = path.display().to_string();
    let bytes = read_maybe_gzip(path, 1 << 30, 1 << 31)?;
    parse_idx(&bytes, &name)
}

/// Parses IDX bytes.
pub fn parse_idx(bytes: &[u8], name: &str) -> Result<Idx> {
    let err = |m: String| Error::decode(name, "IDX", m);
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(err("bad magic".into()));
    }
    if bytes[2] != 0x08 {
        return Err(err(format!(
            "element type 0x{:02x} is not unsigned byte",
            bytes[2]
        )));
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        return Err(err("truncated header".into()));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err("dimensions overflow".into()))?;
    if bytes.len() - header != count {
        return Err(err(format!(
            "dimensions {dims:?} need {count} bytes of data, the file has {}",
            bytes.len() - header
        )));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Summary of an import.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    /// The manifests written (the first holds every sample).
    pub manifests: Vec<PathBuf>,
    /// Samples written.
    pub samples: usize,
    /// Entries skipped, with the reason (e.g. a listed file that is missing).
    pub skipped: Vec<String>,
}

/// Moves a finished staging folder into place. `out` must not exist unless
/// `force`, in which case the old one is removed only after the new one is complete.
fn publish_dir(staging: &Path, out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        if !force {
            return Err(Error::invalid(
                out.display().to_string(),
                "already exists (use --force to replace it)",
            ));
        }
        let old = out.with_extension(format!("old-{}", std::process::id()));
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
        if let Err(e) = std::fs::rename(staging, out) {
            // Put the previous data set back; the new one stays in staging.
            let _ = std::fs::rename(&old, out);
            let _ = std::fs::remove_dir_all(staging);
            return Err(Error::io(out, e));
        }
        // The import itself succeeded; a leftover old folder is only logged.
        if let Err(e) = std::fs::remove_dir_all(&old) {
            tracing::warn!(
                "could not remove the replaced data set {}: {e}",
                old.display()
            );
        }
    } else {
        if let Err(e) = std::fs::rename(staging, out) {
            let _ = std::fs::remove_dir_all(staging);
            return Err(Error::io(out, e));
        }
    }
    Ok(())
}

/// Imports Fashion-MNIST from the folder holding the four
/// `*-ubyte.gz` files into `out/`: PNG images under `images/{train,test}/`,
/// and `manifest.jsonl` (70,000 samples, `meta.split` = train/test),
/// `train.jsonl`, `test.jsonl`. Work happens in a staging folder that is
/// renamed into place when complete.
pub fn import_fashion_mnist(src: &Path, out: &Path, force: bool) -> Result<ImportReport> {
    if out.exists() && !force {
        return Err(Error::invalid(
            out.display().to_string(),
            "already exists (use --force to replace it)",
        ));
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let mut all = Vec::new();
    let mut per_split = Vec::new();
    for (split, prefix) in [("train", "train"), ("test", "t10k")] {
        let images = read_idx(&src.join(format!("{prefix}-images-idx3-ubyte.gz")))?;
        let labels = read_idx(&src.join(format!("{prefix}-labels-idx1-ubyte.gz")))?;
        if images.dims.len() != 3 || labels.dims.len() != 1 || images.dims[0] != labels.dims[0] {
            return Err(Error::decode(
                src.display().to_string(),
                "Fashion-MNIST",
                format!(
                    "{split}: images {:?} vs labels {:?}",
                    images.dims, labels.dims
                ),
            ));
        }
        let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
        let dir = staging.path().join("images").join(split);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        // Encode PNGs on all cores: this is the slow part of the import.
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let chunk = n.div_ceil(threads);
        std::thread::scope(|s| -> Result<()> {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (dir, images) = (&dir, &images);
                    s.spawn(move || -> Result<()> {
                        for i in t * chunk..((t + 1) * chunk).min(n) {
                            let px = &images.data[i * h * w..(i + 1) * h * w];
                            let mut png = Vec::with_capacity(1024);
                            image::codecs::png::PngEncoder::new(&mut png)
                                .write_image(px, w as u32, h as u32, image::ExtendedColorType::L8)
                                .map_err(|e| Error::invalid("PNG encoding", e.to_string()))?;
                            let p = dir.join(format!("{i:05}.png"));
                            std::fs::write(&p, &png).map_err(|e| Error::io(&p, e))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| Error::invalid("import", "a worker thread panicked"))??;
            }
            Ok(())
        })?;
        let mut recs = Vec::with_capacity(n);
        for i in 0..n {
            let class = labels.data[i] as usize;
            let name = FASHION_MNIST_CLASSES.get(class).ok_or_else(|| {
                Error::decode(
                    src.display().to_string(),
                    "Fashion-MNIST",
                    format!("{split} label {i} is {class}, not 0-9"),
                )
            })?;
            let mut r = ManifestRecord {
                id: Some(format!("{split}-{i:05}")),
                image: Some(format!("images/{split}/{i:05}.png")),
                label: Some(LabelValue::Name(name.to_string())),
                ..Default::default()
            };
            r.meta.insert("split".into(), split.into());
            r.meta.insert("class_index".into(), class.into());
            recs.push(r);
        }
        write_manifest(&staging.path().join(format!("{split}.jsonl")), &recs)?;
        per_split.push(split);
        all.extend(recs);
    }
    write_manifest(&staging.path().join("manifest.jsonl"), &all)?;
    std::fs::write(
        staging.path().join("classes.txt"),
        FASHION_MNIST_CLASSES.join("\n") + "\n",
    )
    .map_err(|e| Error::io(staging.path(), e))?;
    let staging = staging.keep();
    publish_dir(&staging, out, force)?;
    let mut manifests = vec![out.join("manifest.jsonl")];
    manifests.extend(per_split.iter().map(|s| out.join(format!("{s}.jsonl"))));
    Ok(ImportReport {
        manifests,
        samples: all.len(),
        skipped: Vec::new(),
    })
}

fn rel_or_abs(base: &Path, p: &Path) -> String {
    let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
    abs.strip_prefix(&base)
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|_| abs.to_string_lossy().into_owned())
}

fn manifest_base(out: &Path) -> PathBuf {
    out.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Imports `root/<class>/<image>` folders into a manifest at `out`.
pub fn import_image_folder(root: &Path, out: &Path) -> Result<ImportReport> {
    let base = manifest_base(out);
    std::fs::create_dir_all(&base).map_err(|e| Error::io(&base, e))?;
    let mut classes: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Err(Error::invalid(
            root.display().to_string(),
            "no class sub-folders",
        ));
    }
    let mut recs = Vec::new();
    let mut skipped = Vec::new();
    for c in &classes {
        let class = c.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(c)
            .map_err(|e| Error::io(c, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for f in files {
            let ext = f
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            if !matches!(
                ext.as_str(),
                "jpg" | "jpeg" | "png" | "webp" | "gif" | "bmp" | "tif" | "tiff"
            ) {
                skipped.push(format!("{}: not an image extension", f.display()));
                continue;
            }
            let stem = f
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            recs.push(ManifestRecord {
                id: Some(format!("{class}/{stem}")),
                image: Some(rel_or_abs(&base, &f)),
                label: Some(LabelValue::Name(class.clone())),
                ..Default::default()
            });
        }
    }
    let n = write_manifest(out, &recs)?;
    Ok(ImportReport {
        manifests: vec![out.to_path_buf()],
        samples: n,
        skipped,
    })
}

/// Imports COCO-captions JSON (`images[].{id,file_name}`,
/// `annotations[].{image_id,caption}`) with images under `images_dir`:
/// one sample per image, all its captions, `text` = the first caption.
pub fn import_coco_captions(json: &Path, images_dir: &Path, out: &Path) -> Result<ImportReport> {
    let text = std::fs::read_to_string(json).map_err(|e| Error::io(json, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Error::decode(
            json.display().to_string(),
            "COCO captions JSON",
            e.to_string(),
        )
    })?;
    let err = |m: &str| {
        Error::decode(
            json.display().to_string(),
            "COCO captions JSON",
            m.to_string(),
        )
    };
    let images = v["images"]
        .as_array()
        .ok_or_else(|| err("no `images` array"))?;
    let anns = v["annotations"]
        .as_array()
        .ok_or_else(|| err("no `annotations` array"))?;
    let mut caps: std::collections::HashMap<i64, Vec<String>> = Default::default();
    for (i, a) in anns.iter().enumerate() {
        let id = a["image_id"]
            .as_i64()
            .ok_or_else(|| err(&format!("annotations[{i}] has no integer image_id")))?;
        let c = a["caption"]
            .as_str()
            .ok_or_else(|| err(&format!("annotations[{i}] has no caption string")))?;
        caps.entry(id).or_default().push(c.trim().to_string());
    }
    let base = manifest_base(out);
    std::fs::create_dir_all(&base).map_err(|e| Error::io(&base, e))?;
    let mut recs = Vec::new();
    let mut skipped = Vec::new();
    for (i, im) in images.iter().enumerate() {
        let id = im["id"]
            .as_i64()
            .ok_or_else(|| err(&format!("images[{i}] has no integer id")))?;
        let file = im["file_name"]
            .as_str()
            .ok_or_else(|| err(&format!("images[{i}] has no file_name")))?;
        let Some(c) = caps.remove(&id) else {
            skipped.push(format!("image {id} ({file}): no captions"));
            continue;
        };
        recs.push(ManifestRecord {
            id: Some(id.to_string()),
            image: Some(rel_or_abs(&base, &images_dir.join(file))),
            text: c.first().cloned().map(TextField::Inline),
            captions: c,
            ..Default::default()
        });
    }
    let n = write_manifest(out, &recs)?;
    Ok(ImportReport {
        manifests: vec![out.to_path_buf()],
        samples: n,
        skipped,
    })
}

/// Imports an Asterisk-style transcript list (`digits/7: seven`, one per
/// line, optionally gzipped) with audio files under `audio_root` (the
/// path gets `.wav` when it has no extension). Lines whose audio file is
/// missing are skipped and reported.
pub fn import_transcript_list(list: &Path, audio_root: &Path, out: &Path) -> Result<ImportReport> {
    let bytes = read_maybe_gzip(list, 256 << 20, 1 << 30)?;
    let text = String::from_utf8_lossy(&bytes);
    let base = manifest_base(out);
    std::fs::create_dir_all(&base).map_err(|e| Error::io(&base, e))?;
    let mut recs = Vec::new();
    let mut skipped = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((path, transcript)) = line.split_once(':') else {
            skipped.push(format!(
                "{}:{}: no `path: transcript` separator",
                list.display(),
                ln + 1
            ));
            continue;
        };
        let (path, transcript) = (path.trim(), transcript.trim());
        if path.is_empty() || path.contains(' ') || transcript.is_empty() {
            skipped.push(format!(
                "{}:{}: not a `path: transcript` line",
                list.display(),
                ln + 1
            ));
            continue;
        }
        let mut file = audio_root.join(path);
        if file.extension().is_none() {
            file.set_extension("wav");
        }
        if !file.is_file() {
            skipped.push(format!(
                "{}:{}: {} does not exist",
                list.display(),
                ln + 1,
                file.display()
            ));
            continue;
        }
        recs.push(ManifestRecord {
            id: Some(path.to_string()),
            audio: Some(rel_or_abs(&base, &file)),
            text: Some(TextField::Inline(transcript.to_string())),
            captions: vec![transcript.to_string()],
            ..Default::default()
        });
    }
    let n = write_manifest(out, &recs)?;
    Ok(ImportReport {
        manifests: vec![out.to_path_buf()],
        samples: n,
        skipped,
    })
}

/// How [`import_wordnet_supersenses`] samples WordNet.
#[derive(Debug, Clone, PartialEq)]
pub struct SupersenseOptions {
    /// Training synsets per class.
    pub train_per_class: usize,
    /// Held-out synsets per class.
    pub eval_per_class: usize,
    /// Seed of the per-class sampling.
    pub seed: u64,
}

impl Default for SupersenseOptions {
    fn default() -> Self {
        SupersenseOptions {
            train_per_class: 200,
            eval_per_class: 40,
            seed: 0,
        }
    }
}

/// Imports a supersense-classification data set of real English text from
/// WordNet's `data.noun` (under `wordnet_dir`): each sample's text is a
/// noun synset's first lemma and its definition (`bat: nocturnal mouselike
/// mammal …`), its label the synset's lexicographer file (`noun.animal`).
/// Every noun class with enough synsets for both splits is kept (24 of 26
/// in WordNet 3.0: `noun.Tops` and `noun.motive` are too small); synsets
/// are drawn per class with a seeded shuffle, disjoint between
/// `out/train.jsonl` and `out/eval.jsonl` (written in a staging folder,
/// renamed into place when complete).
pub fn import_wordnet_supersenses(
    wordnet_dir: &Path,
    out: &Path,
    opts: &SupersenseOptions,
    force: bool,
) -> Result<ImportReport> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    if opts.train_per_class == 0 || opts.eval_per_class == 0 {
        return Err(Error::invalid(
            "supersense options",
            "train_per_class and eval_per_class must be at least 1",
        ));
    }
    if out.exists() && !force {
        return Err(Error::invalid(
            out.display().to_string(),
            "already exists (use --force to replace it)",
        ));
    }
    let synsets = crate::wordnet::read_data_file(&wordnet_dir.join("data.noun"))?;
    let mut by_class: std::collections::BTreeMap<&str, Vec<&crate::wordnet::Synset>> =
        Default::default();
    for s in &synsets {
        if s.pos == crate::wordnet::Pos::Noun && !s.definition().is_empty() {
            by_class.entry(s.lexname()).or_default().push(s);
        }
    }
    let need = opts.train_per_class + opts.eval_per_class;
    let mut skipped = Vec::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for (class, mut members) in by_class {
        if members.len() < need {
            skipped.push(format!(
                "class {class}: {} synsets, fewer than the {need} both splits need",
                members.len()
            ));
            continue;
        }
        members.sort_by_key(|s| s.offset);
        members.shuffle(&mut rng);
        for (k, s) in members[..need].iter().enumerate() {
            let text = format!("{}: {}", s.lemma(0).unwrap_or_default(), s.definition());
            let rec = ManifestRecord {
                id: Some(format!("wn-{:08}-n", s.offset)),
                text: Some(TextField::Inline(text)),
                label: Some(LabelValue::Name(class.to_string())),
                ..Default::default()
            };
            if k < opts.eval_per_class {
                eval.push(rec);
            } else {
                train.push(rec);
            }
        }
    }
    if train.is_empty() {
        return Err(Error::invalid(
            wordnet_dir.display().to_string(),
            format!("no noun class has {need} synsets"),
        ));
    }
    // Class-interleaved order, so a manifest prefix is never one class.
    train.shuffle(&mut rng);
    eval.shuffle(&mut rng);
    let parent = manifest_base(out);
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".wordnet-import-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    // Removed on an error until kept.
    let n = write_manifest(&staging.path().join("train.jsonl"), &train)?
        + write_manifest(&staging.path().join("eval.jsonl"), &eval)?;
    publish_dir(&staging.keep(), out, force)?;
    Ok(ImportReport {
        manifests: vec![out.join("train.jsonl"), out.join("eval.jsonl")],
        samples: n,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_checks_sizes() {
        let mut b = vec![0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3];
        assert_eq!(parse_idx(&b, "x").unwrap().data, vec![1, 2, 3]);
        b.pop();
        assert!(
            parse_idx(&b, "x")
                .unwrap_err()
                .to_string()
                .contains("need 3 bytes")
        );
        assert!(parse_idx(&[0, 0, 0x0d, 1], "x").is_err());
    }

    #[test]
    fn transcript_list_skips_missing_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/digits")).unwrap();
        std::fs::write(d.path().join("a/digits/7.wav"), b"RIFF").unwrap();
        std::fs::write(
            d.path().join("list.txt"),
            "digits/7: seven\ndigits/8: eight\ngarbage line\n",
        )
        .unwrap();
        let r = import_transcript_list(
            &d.path().join("list.txt"),
            &d.path().join("a"),
            &d.path().join("m.jsonl"),
        )
        .unwrap();
        assert_eq!(r.samples, 1);
        assert_eq!(r.skipped.len(), 2);
        let recs = crate::manifest::ManifestReader::read_all(&d.path().join("m.jsonl")).unwrap();
        assert_eq!(recs[0].1.audio.as_deref(), Some("a/digits/7.wav"));
    }

    #[test]
    fn coco_and_folders() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("c.json"), r#"{"images":[{"id":1,"file_name":"a.jpg"},{"id":2,"file_name":"b.jpg"}],"annotations":[{"image_id":1,"caption":"A cat. "},{"image_id":1,"caption":"a kitten"}]}"#).unwrap();
        let r = import_coco_captions(
            &d.path().join("c.json"),
            d.path(),
            &d.path().join("m.jsonl"),
        )
        .unwrap();
        assert_eq!((r.samples, r.skipped.len()), (1, 1));
        std::fs::create_dir_all(d.path().join("f/cat")).unwrap();
        std::fs::write(d.path().join("f/cat/1.png"), b"x").unwrap();
        std::fs::write(d.path().join("f/cat/readme.md"), b"x").unwrap();
        let r = import_image_folder(&d.path().join("f"), &d.path().join("f.jsonl")).unwrap();
        assert_eq!((r.samples, r.skipped.len()), (1, 1));
    }
}
