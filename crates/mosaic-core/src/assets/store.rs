//! The asset store: fetches catalog assets into `$MOSAIC_HOME/assets/NAME`,
//! checks them, and resolves names to folders.
//!
//! A fetch downloads packages into the system temp folder (outside the
//! home), unpacks them into `$MOSAIC_HOME/.staging/NAME.PID/`, and only
//! renames the finished, checked folder to `assets/NAME` at the end, so a
//! killed fetch never leaves a half asset: `assets/NAME` either does not
//! exist or is complete. The next fetch removes staging folders whose process
//! is gone.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::catalog::{AssetSpec, Catalog, Source};
use super::unpack;
use crate::atomic::{sync_parent, write_bytes_atomic};
use crate::error::{Error, IoContext, Result};

/// The record a finished fetch writes into the asset folder.
pub const MANIFEST_FILE: &str = ".mosaic-asset.json";
const STAGING: &str = ".staging";

/// What a fetched asset folder holds (written last, atomically).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Asset name.
    pub name: String,
    /// The package files it was unpacked from, with their sha256.
    pub packages: Vec<(String, String)>,
    /// Every file of the folder (relative path → sha256), sorted.
    pub files: BTreeMap<String, String>,
}

/// Options of [`AssetStore::fetch`].
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Fetch again even if the asset is already there.
    pub force: bool,
    /// Draw progress bars on stderr (when it is a terminal).
    pub progress: bool,
}

/// The outcome of [`AssetStore::verify`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Asset name.
    pub name: String,
    /// Files whose sha256 was computed.
    pub files_checked: usize,
    /// One line per problem (missing, modified or unexpected file).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether every file matched.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).at(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Every regular file under `dir` (relative, `/`-separated), sorted, except
/// the manifest.
fn list_files(dir: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for e in std::fs::read_dir(dir).at(dir)? {
            let e = e.at(dir)?;
            let p = e.path();
            let ft = e.file_type().at(&p)?;
            if ft.is_dir() {
                walk(root, &p, out)?;
            } else if ft.is_file() {
                let rel = p
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel != MANIFEST_FILE {
                    out.push(rel);
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Hashes every file under `dir`.
fn hash_tree(dir: &Path, progress: &ProgressBar) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for rel in list_files(dir)? {
        let h = sha256_file(&dir.join(&rel))?;
        progress.inc(1);
        out.insert(rel, h);
    }
    Ok(out)
}

/// Compares hashes against the recorded ones; one line per difference.
fn compare(recorded: &[(String, String)], actual: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (rel, want) in recorded {
        seen.insert(rel.as_str());
        match actual.get(rel) {
            None => problems.push(format!("missing file {rel}")),
            Some(got) if got != want => {
                problems.push(format!("{rel}: sha256 {got}, expected {want}"))
            }
            Some(_) => {}
        }
    }
    for rel in actual.keys() {
        if !seen.contains(rel.as_str()) {
            problems.push(format!("unexpected file {rel}"));
        }
    }
    problems
}

/// Splits a command given in an environment variable (`python3 -m pip`).
fn command_from_env(var: &str, default: &str) -> Vec<String> {
    let v = std::env::var(var)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| default.to_string());
    v.split_whitespace().map(str::to_string).collect()
}

fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        // Without /proc, keep other processes' staging folders (they are
        // hidden and harmless); only our own stale ones are replaced.
        pid != std::process::id()
    }
}

/// Resolves asset names to folders under a home directory and fetches them.
#[derive(Debug, Clone)]
pub struct AssetStore {
    home: PathBuf,
    catalog: Catalog,
}

impl AssetStore {
    /// A store rooted at `home` with `catalog`.
    pub fn new(home: impl Into<PathBuf>, catalog: Catalog) -> Self {
        AssetStore {
            home: home.into(),
            catalog,
        }
    }

    /// The default home: `$MOSAIC_HOME`, else `~/.cache/mosaic`.
    pub fn default_home() -> Result<PathBuf> {
        if let Some(h) = std::env::var_os("MOSAIC_HOME").filter(|h| !h.is_empty()) {
            return Ok(PathBuf::from(h));
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => Ok(PathBuf::from(h).join(".cache").join("mosaic")),
            None => Err(Error::asset(
                "*",
                "neither MOSAIC_HOME nor HOME is set; set MOSAIC_HOME to a writable folder",
            )),
        }
    }

    /// The store at [`Self::default_home`] with [`Catalog::load`].
    pub fn from_env() -> Result<Self> {
        Ok(Self::new(Self::default_home()?, Catalog::load()?))
    }

    /// The home folder.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Where asset `name` lives (whether or not it is fetched).
    pub fn asset_dir(&self, name: &str) -> PathBuf {
        self.home.join("assets").join(name)
    }

    /// Whether `name` has been fetched completely.
    pub fn is_fetched(&self, name: &str) -> bool {
        self.asset_dir(name).join(MANIFEST_FILE).is_file()
    }

    /// The folder of a fetched asset, or an error saying how to fetch it.
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        self.catalog.get(name)?;
        if self.is_fetched(name) {
            Ok(self.asset_dir(name))
        } else {
            Err(Error::asset(
                name,
                format!(
                    "not fetched into {}; run `mosaic assets fetch {name}`",
                    self.home.display()
                ),
            ))
        }
    }

    /// The manifest of a fetched asset.
    pub fn manifest(&self, name: &str) -> Result<Manifest> {
        let p = self.path(name)?.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&p).at(&p)?;
        serde_json::from_str(&text).map_err(|e| Error::format(&p, "asset manifest", e.to_string()))
    }

    /// Removes staging folders left by killed fetches.
    fn clean_stale_staging(&self) -> Result<()> {
        let dir = self.home.join(STAGING);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('.').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_none_or(|p| !process_alive(p) || p == std::process::id()) {
                tracing::info!("removing stale staging folder {}", e.path().display());
                std::fs::remove_dir_all(e.path()).at(e.path())?;
            }
        }
        Ok(())
    }

    /// Fetches `name` unless it is already there (or `force`), and returns
    /// its folder.
    pub fn fetch(&self, name: &str, opts: &FetchOptions) -> Result<PathBuf> {
        let spec = self.catalog.get(name)?.clone();
        if self.is_fetched(name) && !opts.force {
            return Ok(self.asset_dir(name));
        }
        self.clean_stale_staging()?;
        let staging = self
            .home
            .join(STAGING)
            .join(format!("{name}.{}", std::process::id()));
        let result = self.fetch_into(&spec, &staging, opts);
        let _ = std::fs::remove_dir_all(&staging);
        // Leave no empty staging folder behind (another fetch may still use it).
        let _ = std::fs::remove_dir(self.home.join(STAGING));
        result
    }

    fn bar(opts: &FetchOptions, msg: String) -> ProgressBar {
        let pb = if opts.progress {
            ProgressBar::new_spinner()
        } else {
            ProgressBar::hidden()
        };
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} [{elapsed}]")
                .expect("valid template"),
        );
        pb.set_message(msg);
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    }

    fn fetch_into(&self, spec: &AssetSpec, staging: &Path, opts: &FetchOptions) -> Result<PathBuf> {
        let name = spec.name.as_str();
        // Downloads go to the system temp folder, outside $MOSAIC_HOME: a
        // fetch killed while downloading leaves nothing under the home.
        let downloads = tempfile::Builder::new()
            .prefix(&format!("mosaic-fetch-{name}-"))
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let mut archives = Vec::new();
        for source in &spec.source {
            let pb = Self::bar(opts, format!("{name}: downloading {}", source.file));
            let archive = download(name, source, downloads.path(), &pb);
            pb.finish_and_clear();
            let archive = archive?;
            let actual = sha256_file(&archive)?;
            if actual != source.sha256 {
                return Err(Error::Checksum {
                    path: archive,
                    expected: source.sha256.clone(),
                    actual,
                });
            }
            archives.push((source, archive));
        }
        // Unpacking happens in a hidden staging folder on the same file
        // system as the final folder, so publishing it is one rename.
        let tree = staging.join("tree");
        std::fs::create_dir_all(&tree).at(&tree)?;
        let mut packages = Vec::new();
        for (source, archive) in archives {
            let pb = Self::bar(opts, format!("{name}: unpacking {}", source.file));
            let r = if source.debian.is_some() {
                unpack::extract_deb(&archive, &source.extract, &tree, &pb)
            } else {
                unpack::extract_zip(&archive, &source.extract, &tree, &pb)
            };
            pb.finish_and_clear();
            r.map_err(|e| Error::asset(name, e.to_string()))?;
            std::fs::remove_file(&archive).at(&archive)?;
            packages.push((source.file.clone(), source.sha256.clone()));
        }
        let pb = Self::bar(opts, format!("{name}: checking files"));
        let files = hash_tree(&tree, &pb)?;
        pb.finish_and_clear();
        if !spec.files.is_empty() {
            let problems = compare(&spec.files, &files);
            if !problems.is_empty() {
                return Err(Error::asset(
                    name,
                    format!(
                        "unpacked files differ from the recorded checksums: {}",
                        problems.join("; ")
                    ),
                ));
            }
        }
        let manifest = Manifest {
            name: name.to_string(),
            packages,
            files,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        write_bytes_atomic(&tree.join(MANIFEST_FILE), &json)?;

        // Publish: move any old copy aside, rename the new one in, drop the old.
        let dest = self.asset_dir(name);
        std::fs::create_dir_all(dest.parent().expect("assets dir")).at(&dest)?;
        let old = staging.join("old");
        if dest.exists() {
            std::fs::rename(&dest, &old).at(&dest)?;
        }
        if let Err(e) = std::fs::rename(&tree, &dest) {
            // Another process may have published the same asset meanwhile.
            if self.is_fetched(name) {
                return Ok(dest);
            }
            return Err(Error::io(&dest, e));
        }
        sync_parent(&dest);
        tracing::info!("fetched {name} into {}", dest.display());
        Ok(dest)
    }

    /// Recomputes the sha256 of every file of a fetched asset and compares
    /// with the recorded checksums (the catalog's, else the manifest's).
    pub fn verify(&self, name: &str, progress: bool) -> Result<VerifyReport> {
        let dir = self.path(name)?;
        let spec = self.catalog.get(name)?;
        let recorded: Vec<(String, String)> = if spec.files.is_empty() {
            self.manifest(name)?.files.into_iter().collect()
        } else {
            spec.files.clone()
        };
        let pb = if progress {
            ProgressBar::new(recorded.len() as u64)
        } else {
            ProgressBar::hidden()
        };
        pb.set_message(format!("verifying {name}"));
        let actual = hash_tree(&dir, &pb)?;
        pb.finish_and_clear();
        Ok(VerifyReport {
            name: name.to_string(),
            files_checked: actual.len(),
            problems: compare(&recorded, &actual),
        })
    }

    /// `sha256sum`-format lines for a fetched asset (to record in a catalog).
    pub fn checksums(&self, name: &str) -> Result<String> {
        let m = self.manifest(name)?;
        Ok(m.files.iter().map(|(p, h)| format!("{h}  {p}\n")).collect())
    }
}

/// Runs the package client for one source and returns the downloaded file.
fn download(name: &str, source: &Source, dir: &Path, pb: &ProgressBar) -> Result<PathBuf> {
    let (mut cmd, what) = if let Some(req) = &source.pypi {
        let pip = command_from_env("MOSAIC_PIP", "python3 -m pip");
        let mut c = Command::new(&pip[0]);
        c.args(&pip[1..])
            .args([
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
                "-d",
            ])
            .arg(dir);
        if let Some(p) = &source.platform {
            c.args([
                "--only-binary=:all:",
                "--implementation",
                "cp",
                "--platform",
                p,
            ]);
        }
        if let Some(v) = &source.python_version {
            c.args(["--python-version", v]);
        }
        c.arg(req);
        (c, format!("`{} download {req}`", pip.join(" ")))
    } else if let Some(pkg) = &source.debian {
        let apt = command_from_env("MOSAIC_APT_GET", "apt-get");
        let mut c = Command::new(&apt[0]);
        c.args(&apt[1..]).args(["download", pkg]).current_dir(dir);
        (c, format!("`{} download {pkg}`", apt.join(" ")))
    } else {
        return Err(Error::asset(name, "source has neither `pypi` nor `debian`"));
    };
    tracing::debug!("running {what}");
    let mut out = output_with_progress(&mut cmd, dir, pb).map_err(|e| {
        Error::asset(name, format!("cannot run {what}: {e} (is the package client installed? set MOSAIC_PIP / MOSAIC_APT_GET to override)"))
    })?;
    if !out.status.success() && source.debian.is_some() && is_stale_apt_lists(&out.stderr) {
        // A fresh machine often has no package lists yet: refresh them once.
        let apt = command_from_env("MOSAIC_APT_GET", "apt-get");
        tracing::info!(
            "package lists look stale; running `{} update`",
            apt.join(" ")
        );
        let updated = Command::new(&apt[0])
            .args(&apt[1..])
            .args(["update", "-qq"])
            .output();
        if updated.is_ok_and(|u| u.status.success()) {
            out = cmd
                .output()
                .map_err(|e| Error::asset(name, format!("cannot run {what}: {e}")))?;
        }
    }
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output")
            .trim();
        let hint = if source.debian.is_some()
            && (stderr.contains("Unable to locate") || stderr.contains("not found"))
        {
            " (run `apt-get update` first)"
        } else {
            ""
        };
        return Err(Error::asset(
            name,
            format!("{what} failed ({}): {last}{hint}", out.status),
        ));
    }
    let path = dir.join(&source.file);
    if !path.is_file() {
        let got: Vec<String> = std::fs::read_dir(dir)
            .at(dir)?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        return Err(Error::asset(
            name,
            format!(
                "{what} did not produce `{}` (got: {})",
                source.file,
                got.join(", ")
            ),
        ));
    }
    Ok(path)
}

/// Whether apt-get failed because it does not know the package or version.
fn is_stale_apt_lists(stderr: &[u8]) -> bool {
    let s = String::from_utf8_lossy(stderr);
    s.contains("Unable to locate") || s.contains("Can't select") || s.contains("not found")
}

/// Runs a package client like `Command::output`, while showing the bytes it
/// has written into `dir` so far on `pb` (the clients' own bars are hidden
/// when their output is captured).
fn output_with_progress(
    cmd: &mut Command,
    dir: &Path,
    pb: &ProgressBar,
) -> std::io::Result<std::process::Output> {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let bytes: u64 = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        pb.set_position(bytes);
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(std::process::Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_staging_of_dead_processes_is_removed() {
        let home = tempfile::tempdir().unwrap();
        let store = AssetStore::new(home.path(), Catalog::builtin());
        // Above Linux's largest pid, so certainly not running.
        let dead = home.path().join(STAGING).join("toy.4000000000");
        std::fs::create_dir_all(dead.join("tree")).unwrap();
        std::fs::write(dead.join("tree/half.bin"), b"x").unwrap();
        let live = home.path().join(STAGING).join("other.1");
        std::fs::create_dir_all(&live).unwrap();
        store.clean_stale_staging().unwrap();
        assert!(!dead.exists());
        assert!(live.exists());
    }

    #[test]
    fn compare_names_every_difference() {
        let recorded = vec![
            ("a".to_string(), "1".repeat(64)),
            ("b".to_string(), "2".repeat(64)),
        ];
        let mut actual = BTreeMap::new();
        actual.insert("a".to_string(), "1".repeat(64));
        actual.insert("c".to_string(), "3".repeat(64));
        let p = compare(&recorded, &actual);
        assert_eq!(
            p,
            vec![
                "missing file b".to_string(),
                "unexpected file c".to_string()
            ]
        );
    }
}
