//! Multimodal JSONL manifests: one sample per line.
//!
//! ```json
//! {"id": "img-1", "image": "images/cat.jpg", "text": "a cat on a mat", "labels": ["cat"],
//!  "audio": "speech/cat.wav", "timestamps": [{"start": 0.0, "end": 1.2, "text": "a cat"}],
//!  "meta": {"split": "train"}}
//! ```
//!
//! File fields (`image`, `audio`, `video`, `point_cloud`, `sensor`) are
//! paths relative to the manifest's folder (or absolute). `text` is inline
//! text, or `{"path": "file.txt"}`. `label` (one) and `labels` (several)
//! may be strings or integers. Unknown keys are errors naming the key and
//! the line; put free-form metadata under `meta`.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use mosaic_core::{BoundingBox, Modality, ModalityValue, Sample, TimeSpan};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest manifest line accepted (bytes); a longer line is reported as bad
/// instead of being buffered without bound.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Inline text or a text file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TextField {
    /// The text itself.
    Inline(String),
    /// A UTF-8 text file.
    File {
        /// Path to the file.
        path: String,
    },
}

/// A label given as a string or an integer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelValue {
    /// Class name.
    Name(String),
    /// Class index.
    Index(i64),
}

impl LabelValue {
    fn into_string(self) -> String {
        match self {
            LabelValue::Name(s) => s,
            LabelValue::Index(i) => i.to_string(),
        }
    }
}

/// One manifest line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRecord {
    /// Sample id (default: `line-N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextField>,
    /// Image file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Audio file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<String>,
    /// Video file, image-sequence folder, or GIF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    /// Point-cloud file.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "pointcloud")]
    pub point_cloud: Option<String>,
    /// Sensor-stream file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
    /// One label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<LabelValue>,
    /// Several labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<LabelValue>,
    /// Captions or transcripts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captions: Vec<String>,
    /// Timed segments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timestamps: Vec<TimeSpan>,
    /// Boxes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boxes: Vec<BoundingBox>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, serde_json::Value>,
}

impl ManifestRecord {
    /// The file fields, by modality.
    pub fn files(&self) -> Vec<(Modality, &str)> {
        let mut v = Vec::new();
        if let Some(TextField::File { path }) = &self.text {
            v.push((Modality::Text, path.as_str()));
        }
        for (m, f) in [
            (Modality::Image, &self.image),
            (Modality::Audio, &self.audio),
            (Modality::Video, &self.video),
            (Modality::PointCloud, &self.point_cloud),
            (Modality::Sensor, &self.sensor),
        ] {
            if let Some(p) = f {
                v.push((m, p.as_str()));
            }
        }
        v
    }

    /// Converts to a [`Sample`] whose files are resolved against `base`
    /// (left unread as [`ModalityValue::Path`]).
    pub fn to_sample(&self, base: &Path, line: usize) -> Sample {
        let mut s = Sample::new(self.id.clone().unwrap_or_else(|| format!("line-{line}")));
        match &self.text {
            Some(TextField::Inline(t)) => {
                s.modalities
                    .insert(Modality::Text, ModalityValue::Text(t.clone()));
            }
            Some(TextField::File { .. }) | None => {}
        }
        for (m, p) in self.files() {
            s.modalities
                .insert(m, ModalityValue::Path(resolve(base, p)));
        }
        s.labels = self
            .label
            .iter()
            .chain(&self.labels)
            .cloned()
            .map(LabelValue::into_string)
            .collect();
        s.captions = self.captions.clone();
        s.timestamps = self.timestamps.clone();
        s.boxes = self.boxes.clone();
        s.extra = self.meta.clone();
        s
    }

    /// Builds a record from a sample: paths are written relative to `base`
    /// when they are inside it.
    pub fn from_sample(s: &Sample, base: &Path) -> Result<Self> {
        let mut r = ManifestRecord {
            id: Some(s.id.clone()),
            labels: s.labels.iter().cloned().map(LabelValue::Name).collect(),
            captions: s.captions.clone(),
            timestamps: s.timestamps.clone(),
            boxes: s.boxes.clone(),
            meta: s.extra.clone(),
            ..Default::default()
        };
        for (m, v) in &s.modalities {
            let path = match v {
                ModalityValue::Text(t) if *m == Modality::Text => {
                    r.text = Some(TextField::Inline(t.clone()));
                    continue;
                }
                ModalityValue::Path(p) => relative(base, p),
                _ => {
                    return Err(Error::invalid(
                        format!("sample `{}` {m}", s.id),
                        "only text and file references can be written to a JSONL manifest; write bytes to files first",
                    ));
                }
            };
            match m {
                Modality::Text => r.text = Some(TextField::File { path }),
                Modality::Image => r.image = Some(path),
                Modality::Audio => r.audio = Some(path),
                Modality::Video => r.video = Some(path),
                Modality::PointCloud => r.point_cloud = Some(path),
                Modality::Sensor => r.sensor = Some(path),
            }
        }
        Ok(r)
    }
}

/// Resolves a manifest path against the manifest's folder.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn relative(base: &Path, p: &Path) -> String {
    p.strip_prefix(base)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// One line of a manifest: its number and either the record or why it is bad.
pub type ManifestLine = (usize, Result<ManifestRecord>);

/// Streams a JSONL manifest line by line. A bad line (not UTF-8, not JSON,
/// an unknown key, too long) yields an error naming the file and line, and
/// reading goes on with the next line.
pub struct ManifestReader {
    path: PathBuf,
    reader: std::io::BufReader<Box<dyn std::io::Read + Send>>,
    line: usize,
    buf: Vec<u8>,
    done: bool,
}

impl std::fmt::Debug for ManifestReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestReader")
            .field("path", &self.path)
            .field("line", &self.line)
            .finish()
    }
}

impl ManifestReader {
    /// Opens a manifest file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Self::from_reader(path, Box::new(file)))
    }

    /// Reads from any buffered reader; `path` names it in errors and is the
    /// base for relative file paths.
    pub fn from_reader(path: &Path, reader: Box<dyn std::io::Read + Send>) -> Self {
        ManifestReader {
            path: path.to_path_buf(),
            reader: std::io::BufReader::with_capacity(1 << 16, reader),
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// The folder relative paths are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Reads the whole manifest, failing on the first bad line.
    pub fn read_all(path: &Path) -> Result<Vec<(usize, ManifestRecord)>> {
        Self::open(path)?.map(|(n, r)| r.map(|r| (n, r))).collect()
    }

    fn bad(&self, msg: String) -> Error {
        Error::decode(
            format!("{}:{}", self.path.display(), self.line),
            "JSONL manifest line",
            msg,
        )
    }
}

impl Iterator for ManifestReader {
    type Item = ManifestLine;

    fn next(&mut self) -> Option<ManifestLine> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            self.line += 1;
            // Read at most MAX_LINE_BYTES + 1 so one huge line cannot exhaust memory.
            let mut limited = (&mut self.reader).take(MAX_LINE_BYTES as u64 + 1);
            match limited.read_until(b'\n', &mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some((self.line, Err(Error::io(&self.path, e))));
                }
            }
            if self.buf.len() > MAX_LINE_BYTES
                && !(self.buf.len() == MAX_LINE_BYTES + 1 && self.buf.ends_with(b"\n"))
            {
                // Skip the rest of the long line.
                let mut sink = Vec::new();
                loop {
                    sink.clear();
                    let mut t = (&mut self.reader).take(1 << 20);
                    match t.read_until(b'\n', &mut sink) {
                        Ok(0) => break,
                        Ok(_) if sink.ends_with(b"\n") => break,
                        Ok(_) => continue,
                        Err(_) => break,
                    }
                }
                return Some((
                    self.line,
                    Err(self.bad(format!("longer than {MAX_LINE_BYTES} bytes"))),
                ));
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t.trim(),
                Err(e) => {
                    return Some((
                        self.line,
                        Err(self.bad(format!(
                            "invalid UTF-8 at byte {} of the line",
                            e.valid_up_to()
                        ))),
                    ));
                }
            };
            if text.is_empty() {
                continue;
            }
            let mut de = serde_json::Deserializer::from_str(text);
            let rec: std::result::Result<ManifestRecord, _> =
                serde_path_to_error::deserialize(&mut de);
            return Some((
                self.line,
                match rec {
                    Ok(r) => Ok(r),
                    Err(e) => {
                        let path = e.path().to_string();
                        let inner = e.into_inner();
                        let msg = if inner.is_syntax() || inner.is_eof() {
                            format!("not valid JSON: {inner}")
                        } else if path == "." {
                            inner.to_string()
                        } else {
                            format!("field `{path}`: {inner}")
                        };
                        Err(self.bad(msg))
                    }
                },
            ));
        }
    }
}

/// Writes a manifest atomically (temporary file, then rename).
pub fn write_manifest<'a>(
    path: &Path,
    records: impl IntoIterator<Item = &'a ManifestRecord>,
) -> Result<usize> {
    let mut n = 0;
    mosaic_core::atomic::write_atomic(path, |w| {
        for r in records {
            serde_json::to_writer(&mut *w, r)
                .map_err(std::io::Error::other)
                .and_then(|_| w.write_all(b"\n"))
                .map_err(|e| mosaic_core::Error::io(path, e))?;
            n += 1;
        }
        Ok(())
    })?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<ManifestLine> {
        ManifestReader::from_reader(
            Path::new("m.jsonl"),
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
        )
        .collect()
    }

    #[test]
    fn bad_lines_are_named_and_reading_goes_on() {
        let lines = read(
            "{\"image\": \"a.png\", \"label\": 3}\nnot json\n\n{\"imgae\": \"b.png\"}\n{\"text\": \"ok\"}\n",
        );
        assert_eq!(lines.len(), 4);
        assert!(lines[0].1.is_ok());
        let e = lines[1].1.as_ref().unwrap_err().to_string();
        assert!(
            e.contains("m.jsonl:2") && e.contains("not valid JSON"),
            "{e}"
        );
        let e = lines[2].1.as_ref().unwrap_err().to_string();
        assert!(e.contains("m.jsonl:4") && e.contains("imgae"), "{e}");
        assert_eq!(lines[3].0, 5);
    }

    #[test]
    fn invalid_utf8_line() {
        let mut bytes = b"{\"text\": \"caf".to_vec();
        bytes.extend([0xff, 0xfe]);
        bytes.extend(b"\"}\n");
        let lines: Vec<_> = ManifestReader::from_reader(
            Path::new("u.jsonl"),
            Box::new(std::io::Cursor::new(bytes)),
        )
        .collect();
        let e = lines[0].1.as_ref().unwrap_err().to_string();
        assert!(e.contains("u.jsonl:1") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn record_round_trips_through_sample() {
        let r: ManifestRecord = serde_json::from_str(
            r#"{"id":"x","image":"i/a.png","text":"hello","labels":["cat",2],"meta":{"split":"test"},"timestamps":[{"start":0,"end":1}]}"#,
        )
        .unwrap();
        let s = r.to_sample(Path::new("/data"), 1);
        assert_eq!(s.labels, vec!["cat", "2"]);
        assert!(
            matches!(s.get(Modality::Image), Some(ModalityValue::Path(p)) if p == Path::new("/data/i/a.png"))
        );
        let back = ManifestRecord::from_sample(&s, Path::new("/data")).unwrap();
        assert_eq!(back.image.as_deref(), Some("i/a.png"));
        assert_eq!(back.text, Some(TextField::Inline("hello".into())));
    }
}
