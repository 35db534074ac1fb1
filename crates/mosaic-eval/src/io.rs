//! Reading evaluation inputs with errors that name the file and line:
//! predictions and references (TXT, one per line, or JSONL) and embeddings
//! (`.npy` or `.safetensors`).
//!
//! * TXT: one entry per line (`\n` or `\r\n`); a final newline adds no
//!   entry; an empty line is an empty prediction.
//! * JSONL: one JSON value per non-blank line — a string, an array of
//!   strings (several references), or an object with `prediction` /
//!   `hypothesis` / `text` / `caption` (predictions) or `references` /
//!   `reference` / `captions` / `text` (references; manifest lines work).
//! * Errors: a file that is not UTF-8 (names the line of the first bad
//!   byte), an empty file, a bad JSON line, a line without a usable field.

use std::path::Path;

use crate::error::{Error, Result};

fn is_jsonl(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("jsonl" | "ndjson" | "json")
    )
}

/// The lines of a UTF-8 text file, 1-based numbers kept.
pub fn read_lines(path: &Path) -> Result<Vec<(usize, String)>> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::file(path, None, format!("cannot read: {e}")))?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let b = e.as_bytes();
            let line = b[..at].iter().filter(|&&c| c == b'\n').count() + 1;
            return Err(Error::file(
                path,
                Some(line),
                format!("not valid UTF-8 (byte 0x{:02x} at offset {at})", b[at]),
            ));
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    Ok(body
        .split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l).to_string()))
        .collect())
}

fn json_line(path: &Path, line: usize, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::file(path, Some(line), format!("invalid JSON: {e}")))
}

fn as_str(path: &Path, line: usize, v: &serde_json::Value, what: &str) -> Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::file(path, Some(line), format!("{what} is not a string")))
}

/// One text per entry (predictions / hypotheses).
pub fn read_predictions(path: &Path) -> Result<Vec<String>> {
    let lines = read_lines(path)?;
    let out: Vec<String> = if is_jsonl(path) {
        let mut v = Vec::new();
        for (n, l) in lines {
            if l.trim().is_empty() {
                continue;
            }
            let j = json_line(path, n, &l)?;
            let s = match &j {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(o) => {
                    let key = ["prediction", "hypothesis", "text", "caption"]
                        .into_iter()
                        .find(|k| o.contains_key(*k))
                        .ok_or_else(|| {
                            Error::file(
                                path,
                                Some(n),
                                "no `prediction`, `hypothesis`, `text` or `caption` field",
                            )
                        })?;
                    as_str(path, n, &o[key], key)?
                }
                _ => return Err(Error::file(path, Some(n), "expected a string or an object")),
            };
            v.push(s);
        }
        v
    } else {
        lines.into_iter().map(|(_, l)| l).collect()
    };
    if out.is_empty() {
        return Err(Error::file(
            path,
            None,
            "empty prediction file (no entries)",
        ));
    }
    Ok(out)
}

/// One or more references per entry.
pub fn read_references(path: &Path) -> Result<Vec<Vec<String>>> {
    let lines = read_lines(path)?;
    let out: Vec<Vec<String>> = if is_jsonl(path) {
        let mut v = Vec::new();
        for (n, l) in lines {
            if l.trim().is_empty() {
                continue;
            }
            let j = json_line(path, n, &l)?;
            let strings = |x: &serde_json::Value, what: &str| -> Result<Vec<String>> {
                match x {
                    serde_json::Value::String(s) => Ok(vec![s.clone()]),
                    serde_json::Value::Array(a) => {
                        a.iter().map(|e| as_str(path, n, e, what)).collect()
                    }
                    _ => Err(Error::file(
                        path,
                        Some(n),
                        format!("{what} is not a string or a list of strings"),
                    )),
                }
            };
            let refs = match &j {
                serde_json::Value::Object(o) => {
                    let key = ["references", "reference", "captions", "text"]
                        .into_iter()
                        .find(|k| o.contains_key(*k))
                        .ok_or_else(|| {
                            Error::file(
                                path,
                                Some(n),
                                "no `references`, `reference`, `captions` or `text` field",
                            )
                        })?;
                    strings(&o[key], key)?
                }
                other => strings(other, "line")?,
            };
            if refs.is_empty() {
                return Err(Error::file(path, Some(n), "no reference on this line"));
            }
            v.push(refs);
        }
        v
    } else {
        lines.into_iter().map(|(_, l)| vec![l]).collect()
    };
    if out.is_empty() {
        return Err(Error::file(path, None, "empty reference file (no entries)"));
    }
    Ok(out)
}

/// Fails unless predictions and references have as many entries, naming
/// both files.
pub fn check_lengths(pred: &Path, n_pred: usize, refs: &Path, n_refs: usize) -> Result<()> {
    Error::check_len(
        format!(
            "{} has {n_pred} predictions, {} has {n_refs} references",
            pred.display(),
            refs.display()
        ),
        n_pred,
        n_refs,
    )
}

/// Embeddings `[rows, dim]` as f32 from `.npy` (f32/f64, C order, 2-D) or
/// `.safetensors` (the tensor `name`, else the only 2-D tensor).
pub fn read_embeddings(path: &Path, name: Option<&str>) -> Result<(Vec<f32>, usize, usize)> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::file(path, None, format!("cannot read: {e}")))?;
    let shown = path.display().to_string();
    if bytes.starts_with(b"\x93NUMPY") {
        let (shape, vals) = mosaic_core::formats::npy::read_npy(&bytes, &shown)?;
        if shape.len() != 2 {
            return Err(Error::file(
                path,
                None,
                format!("expected a 2-D array, got shape {shape:?}"),
            ));
        }
        return Ok((
            vals.into_iter().map(|v| v as f32).collect(),
            shape[0],
            shape[1],
        ));
    }
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::file(path, None, format!("neither .npy nor safetensors: {e}")))?;
    let names = st.names();
    let pick = match name {
        Some(n) => n.to_string(),
        None => {
            let two_d: Vec<String> = names
                .iter()
                .map(|n| n.to_string())
                .filter(|n| st.tensor(n).map(|t| t.shape().len() == 2).unwrap_or(false))
                .collect();
            if two_d.len() != 1 {
                return Err(Error::file(
                    path,
                    None,
                    format!(
                        "{} 2-D tensors ({two_d:?}); name the one to use",
                        two_d.len()
                    ),
                ));
            }
            two_d[0].clone()
        }
    };
    let t = st
        .tensor(&pick)
        .map_err(|_| Error::file(path, None, format!("no tensor `{pick}` (has {names:?})")))?;
    if t.shape().len() != 2 {
        return Err(Error::file(
            path,
            None,
            format!("tensor `{pick}` has shape {:?}, not 2-D", t.shape()),
        ));
    }
    let (r, d) = (t.shape()[0], t.shape()[1]);
    let data = t.data();
    let vals: Vec<f32> = match t.dtype() {
        safetensors::Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        safetensors::Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => {
            return Err(Error::file(
                path,
                None,
                format!("tensor `{pick}` is {other:?}; f32 or f64 expected"),
            ));
        }
    };
    Ok((vals, r, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.txt");
        std::fs::write(&p, b"ok\nbad \xff byte\n").unwrap();
        let e = read_predictions(&p).unwrap_err().to_string();
        assert!(e.contains("p.txt:2") && e.contains("UTF-8"), "{e}");
        std::fs::write(&p, b"").unwrap();
        let e = read_predictions(&p).unwrap_err().to_string();
        assert!(e.contains("empty prediction file"), "{e}");
        let j = dir.path().join("r.jsonl");
        std::fs::write(&j, "{\"references\": [\"a\", \"b\"]}\n{\"x\": 1}\n").unwrap();
        let e = read_references(&j).unwrap_err().to_string();
        assert!(e.contains("r.jsonl:2"), "{e}");
        std::fs::write(&j, "[\"a\", \"b\"]\n\"c\"\n").unwrap();
        assert_eq!(
            read_references(&j).unwrap(),
            vec![vec!["a".to_string(), "b".into()], vec!["c".into()]]
        );
        std::fs::write(&p, "one\r\n\r\nthree\n").unwrap();
        assert_eq!(read_predictions(&p).unwrap(), vec!["one", "", "three"]);
    }
}
