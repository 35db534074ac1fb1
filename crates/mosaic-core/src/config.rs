//! Loading typed configuration from TOML or JSON files.
//!
//! Config structs derive `Deserialize` with `#[serde(deny_unknown_fields)]`;
//! [`load_config`] then reports an unknown or wrong key with its full dotted
//! path and the file, e.g. `config model.toml: unknown key `encoder.widht`:
//! unknown field `widht`, expected one of `width`, `depth``.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, IoContext, Result};

/// The syntax of a config file, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `.toml`
    Toml,
    /// `.json`
    Json,
}

impl ConfigFormat {
    /// The format for `path`'s extension, or an error naming the file.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
        {
            Some(e) if e == "toml" => Ok(ConfigFormat::Toml),
            Some(e) if e == "json" => Ok(ConfigFormat::Json),
            _ => Err(Error::Config {
                path: path.to_path_buf(),
                message: "unknown config format: the file name must end in .toml or .json".into(),
            }),
        }
    }
}

/// Reads and parses a config file (format from its extension).
pub fn load_config<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T> {
    let path = path.as_ref();
    let format = ConfigFormat::from_path(path)?;
    let text = std::fs::read_to_string(path).at(path)?;
    parse_config(&text, format, path)
}

/// Parses config text; `origin` is only used in error messages.
pub fn parse_config<T: DeserializeOwned>(
    text: &str,
    format: ConfigFormat,
    origin: &Path,
) -> Result<T> {
    let cfg_err = |message: String| Error::Config {
        path: origin.to_path_buf(),
        message,
    };
    // Parse to an untyped value first, then deserialize the typed struct with
    // path tracking: syntax errors and key errors get separate, precise messages.
    match format {
        ConfigFormat::Toml => {
            let value: toml::Value =
                toml::from_str(text).map_err(|e| cfg_err(one_line_toml_error(&e, text)))?;
            serde_path_to_error::deserialize(value).map_err(|e| cfg_err(key_error(&e)))
        }
        ConfigFormat::Json => {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| cfg_err(format!("syntax error: {e}")))?;
            serde_path_to_error::deserialize(value).map_err(|e| cfg_err(key_error(&e)))
        }
    }
}

/// Formats a typed deserialization error with the dotted key path.
fn key_error<E: std::fmt::Display>(e: &serde_path_to_error::Error<E>) -> String {
    // toml's value deserializer appends "\nin `key`"; the path says it already.
    let full = e.inner().to_string();
    let inner = full.lines().next().unwrap_or_default().to_string();
    let path = e.path().to_string();
    let unknown = inner
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    match (unknown, path.as_str()) {
        (Some(field), ".") => format!("unknown key `{field}`: {inner}"),
        // Some deserializers track the unknown key in the path, others stop at its parent.
        (Some(field), p) if p == field || p.ends_with(&format!(".{field}")) => {
            format!("unknown key `{p}`: {inner}")
        }
        (Some(field), parent) => format!("unknown key `{parent}.{field}`: {inner}"),
        (None, ".") => inner,
        (None, p) => format!("key `{p}`: {inner}"),
    }
}

/// The toml crate renders errors over several lines with a source excerpt;
/// a CLI error must be one line.
fn one_line_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("syntax error at line {line}: {msg}")
        }
        None => format!("syntax error: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        width: usize,
        #[serde(default)]
        depth: usize,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        name: String,
        encoder: Inner,
    }

    fn origin() -> &'static Path {
        Path::new("model.toml")
    }

    #[test]
    fn toml_and_json_parse_the_same() {
        let t: Outer = parse_config(
            "name = \"a\"\n[encoder]\nwidth = 4\n",
            ConfigFormat::Toml,
            origin(),
        )
        .unwrap();
        let j: Outer = parse_config(
            r#"{"name":"a","encoder":{"width":4}}"#,
            ConfigFormat::Json,
            origin(),
        )
        .unwrap();
        assert_eq!(t, j);
    }

    #[test]
    fn unknown_nested_key_is_named_with_file() {
        let err = parse_config::<Outer>(
            "name = \"a\"\n[encoder]\nwidht = 4\n",
            ConfigFormat::Toml,
            origin(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("model.toml"), "{err}");
        assert!(err.contains("`encoder.widht`"), "{err}");
        let err = parse_config::<Outer>(
            r#"{"name":"a","colour":1,"encoder":{"width":4}}"#,
            ConfigFormat::Json,
            Path::new("c.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown key `colour`") && err.contains("c.json"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type_and_syntax_are_one_line() {
        let err = parse_config::<Outer>(
            "name = \"a\"\n[encoder]\nwidth = \"x\"\n",
            ConfigFormat::Toml,
            origin(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`encoder.width`") && !err.contains('\n'),
            "{err}"
        );
        let err = parse_config::<Outer>("name = \n", ConfigFormat::Toml, origin())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn extension_decides_format() {
        let err = load_config::<Outer>("model.yaml").unwrap_err().to_string();
        assert!(err.contains(".toml or .json"), "{err}");
    }
}
