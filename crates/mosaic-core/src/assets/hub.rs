//! The Hugging Face hub cache layout, shared with the Python
//! `huggingface_hub` library, so models downloaded by either are found by
//! both:
//!
//! ```text
//! $HF_HUB_CACHE (default $HF_HOME/hub, default ~/.cache/huggingface/hub)
//! └── models--org--name/
//!     ├── refs/main                    (text: the commit hash)
//!     ├── blobs/<etag>                 (file contents)
//!     └── snapshots/<commit>/<file>    (symlink to ../../blobs/<etag>)
//! ```
//!
//! With `HF_HUB_OFFLINE=1` only the cache is consulted. Otherwise a missing
//! file is downloaded from `$HF_ENDPOINT` (default `https://huggingface.co`)
//! when the `hub-download` feature is on, written as a temporary blob and
//! renamed, so the cache never holds half a file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Files a model snapshot needs beside its weights, when the repository has them.
const OPTIONAL_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "preprocessor_config.json",
    "generation_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// Whether `HF_HUB_OFFLINE` asks for no network (`1`, `true`, `yes`, `on`).
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The cache folder and lookups in it.
#[derive(Debug, Clone)]
pub struct HubCache {
    root: PathBuf,
}

impl HubCache {
    /// A cache at `root` (the folder holding `models--*`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HubCache { root: root.into() }
    }

    /// The cache `huggingface_hub` would use: `$HF_HUB_CACHE`, else
    /// `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub fn from_env() -> Self {
        if let Some(p) =
            std::env::var_os("HF_HUB_CACHE").or_else(|| std::env::var_os("HUGGINGFACE_HUB_CACHE"))
        {
            return Self::new(p);
        }
        if let Some(h) = std::env::var_os("HF_HOME") {
            return Self::new(PathBuf::from(h).join("hub"));
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::new(home.join(".cache").join("huggingface").join("hub"))
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--org--name` for `org/name`.
    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root
            .join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The commit a revision (branch, tag or commit hash) points to.
    pub fn commit(&self, repo: &str, revision: &str) -> Option<String> {
        let dir = self.repo_dir(repo);
        if is_commit_hash(revision) {
            return dir
                .join("snapshots")
                .join(revision)
                .is_dir()
                .then(|| revision.to_string());
        }
        let r = std::fs::read_to_string(dir.join("refs").join(revision)).ok()?;
        let r = r.trim();
        is_commit_hash(r).then(|| r.to_string())
    }

    /// The cached path of `file` at `revision`, if present.
    pub fn get(&self, repo: &str, revision: &str, file: &str) -> Option<PathBuf> {
        let commit = self.commit(repo, revision)?;
        let p = self
            .repo_dir(repo)
            .join("snapshots")
            .join(commit)
            .join(file);
        // `is_file` follows the symlink: a dangling link (blob removed) is absent.
        p.is_file().then_some(p)
    }

    /// Whether the cache records that `file` does not exist in the repository
    /// (`.no_exist/<commit>/<file>`, as `huggingface_hub` writes).
    pub fn known_missing(&self, repo: &str, revision: &str, file: &str) -> bool {
        self.commit(repo, revision)
            .map(|c| {
                self.repo_dir(repo)
                    .join(".no_exist")
                    .join(c)
                    .join(file)
                    .exists()
            })
            .unwrap_or(false)
    }
}

/// Resolves hub files through the cache, downloading when allowed.
#[derive(Debug, Clone)]
pub struct Hub {
    /// The cache.
    pub cache: HubCache,
    /// Base URL of the hub.
    pub endpoint: String,
    /// Bearer token (`HF_TOKEN`) for gated or private repositories.
    pub token: Option<String>,
    /// Never touch the network.
    pub offline: bool,
}

impl Hub {
    /// Settings from the environment (`HF_HUB_CACHE`/`HF_HOME`,
    /// `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`).
    pub fn from_env() -> Self {
        Hub {
            cache: HubCache::from_env(),
            endpoint: std::env::var("HF_ENDPOINT")
                .unwrap_or_else(|_| "https://huggingface.co".into())
                .trim_end_matches('/')
                .to_string(),
            token: std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()),
            offline: offline(),
        }
    }

    fn err(repo: &str, file: &str, message: impl Into<String>) -> Error {
        Error::Hub {
            repo: repo.to_string(),
            file: file.to_string(),
            message: message.into(),
        }
    }

    /// The local path of `file` in `repo` at `revision`: from the cache, or
    /// downloaded into it.
    pub fn get(&self, repo: &str, revision: &str, file: &str) -> Result<PathBuf> {
        if let Some(p) = self.cache.get(repo, revision, file) {
            return Ok(p);
        }
        if self.offline {
            return Err(Self::err(
                repo,
                file,
                format!(
                    "not in the local cache {} and HF_HUB_OFFLINE is set",
                    self.cache.repo_dir(repo).display()
                ),
            ));
        }
        self.download(repo, revision, file)
    }

    /// Makes sure a model snapshot has its config, weights and the usual
    /// side files, and returns the snapshot folder.
    pub fn snapshot(&self, repo: &str, revision: &str) -> Result<PathBuf> {
        let config = self.get(repo, revision, "config.json")?;
        let dir = config.parent().expect("snapshot folder").to_path_buf();
        match self.get(repo, revision, "model.safetensors.index.json") {
            Ok(index) => {
                let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
                let json: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| Error::format(&index, "safetensors index", e.to_string()))?;
                let mut shards: Vec<&str> = json["weight_map"]
                    .as_object()
                    .map(|m| m.values().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                shards.sort();
                shards.dedup();
                for s in shards {
                    self.get(repo, revision, s)?;
                }
            }
            Err(_) => {
                self.get(repo, revision, "model.safetensors")?;
            }
        }
        for f in OPTIONAL_FILES {
            if self.cache.known_missing(repo, revision, f) {
                continue;
            }
            if let Err(e) = self.get(repo, revision, f) {
                tracing::debug!("optional file skipped: {e}");
            }
        }
        Ok(dir)
    }

    #[cfg(not(feature = "hub-download"))]
    fn download(&self, repo: &str, _revision: &str, file: &str) -> Result<PathBuf> {
        Err(Self::err(
            repo,
            file,
            "not in the local cache, and this build has no `hub-download` feature",
        ))
    }

    #[cfg(feature = "hub-download")]
    fn download(&self, repo: &str, revision: &str, file: &str) -> Result<PathBuf> {
        use std::io::Write;
        let url = format!("{}/{repo}/resolve/{revision}/{file}", self.endpoint);
        let fail = |m: String| Self::err(repo, file, m);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));

        // HEAD without following redirects: the first answer carries the
        // commit and the blob's etag (LFS files redirect to a CDN).
        let mut head = ureq::head(&url)
            .config()
            .max_redirects(0)
            .http_status_as_error(false)
            .build();
        if let Some(a) = &auth {
            head = head.header("Authorization", a);
        }
        let resp = head
            .call()
            .map_err(|e| fail(format!("cannot reach {url}: {e}")))?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err(fail(format!("{url} does not exist (404)")));
        }
        if status == 401 || status == 403 {
            return Err(fail(format!(
                "{url}: access denied ({status}); set HF_TOKEN for gated or private models"
            )));
        }
        if status >= 400 {
            return Err(fail(format!("{url}: HTTP {status}")));
        }
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let commit = header("x-repo-commit")
            .filter(|c| is_commit_hash(c))
            .ok_or_else(|| fail(format!("{url}: no x-repo-commit header")))?;
        let etag = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| {
                !e.is_empty()
                    && e.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .ok_or_else(|| fail(format!("{url}: no usable etag header")))?;
        let target = if (300..400).contains(&status) {
            let loc = header("location")
                .ok_or_else(|| fail(format!("{url}: redirect without location")))?;
            if loc.starts_with('/') {
                format!("{}{loc}", self.endpoint)
            } else {
                loc
            }
        } else {
            url.clone()
        };

        let repo_dir = self.cache.repo_dir(repo);
        let blobs = repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
        let blob = blobs.join(&etag);
        if !blob.is_file() {
            let mut get = ureq::get(&target);
            if let (Some(a), true) = (&auth, target.starts_with(&self.endpoint)) {
                get = get.header("Authorization", a);
            }
            let resp = get
                .call()
                .map_err(|e| fail(format!("downloading {target}: {e}")))?;
            let tmp = blobs.join(format!("{etag}.incomplete.{}", std::process::id()));
            let result = (|| -> Result<()> {
                let mut out = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
                let mut body = resp.into_body();
                let mut reader = body.as_reader();
                std::io::copy(&mut reader, &mut out).map_err(|e| Error::io(&tmp, e))?;
                out.flush().map_err(|e| Error::io(&tmp, e))?;
                out.sync_all().map_err(|e| Error::io(&tmp, e))?;
                std::fs::rename(&tmp, &blob).map_err(|e| Error::io(&blob, e))
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?;
        }
        let link = repo_dir.join("snapshots").join(&commit).join(file);
        let link_dir = link.parent().expect("snapshot subfolder").to_path_buf();
        std::fs::create_dir_all(&link_dir).map_err(|e| Error::io(&link_dir, e))?;
        let depth = file.matches('/').count() + 2;
        let rel = PathBuf::from("../".repeat(depth)).join("blobs").join(&etag);
        let _ = std::fs::remove_file(&link);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&rel, &link).map_err(|e| Error::io(&link, e))?;
        #[cfg(not(unix))]
        std::fs::copy(&blob, &link).map_err(|e| Error::io(&link, e))?;
        if !is_commit_hash(revision) {
            let r = repo_dir.join("refs").join(revision);
            crate::atomic::write_bytes_atomic(&r, commit.as_bytes())?;
        }
        Ok(link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lays out a cache the way `huggingface_hub` does.
    pub(crate) fn lay_out(root: &Path, repo: &str, commit: &str, files: &[(&str, &[u8])]) {
        let dir = root.join(format!("models--{}", repo.replace('/', "--")));
        std::fs::create_dir_all(dir.join("refs")).unwrap();
        std::fs::write(dir.join("refs/main"), commit).unwrap();
        for (i, (name, data)) in files.iter().enumerate() {
            let blob = dir.join("blobs").join(format!("blob{i}"));
            std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
            std::fs::write(&blob, data).unwrap();
            let link = dir.join("snapshots").join(commit).join(name);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            let depth = name.matches('/').count() + 2;
            std::os::unix::fs::symlink(
                PathBuf::from("../".repeat(depth))
                    .join("blobs")
                    .join(format!("blob{i}")),
                &link,
            )
            .unwrap();
        }
    }

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn finds_files_by_branch_and_commit() {
        let root = tempfile::tempdir().unwrap();
        lay_out(
            root.path(),
            "org/tiny",
            COMMIT,
            &[
                ("config.json", b"{}"),
                ("1_Pooling/config.json", b"{\"p\":1}"),
            ],
        );
        let cache = HubCache::new(root.path());
        assert_eq!(cache.commit("org/tiny", "main").as_deref(), Some(COMMIT));
        let p = cache
            .get("org/tiny", "main", "1_Pooling/config.json")
            .unwrap();
        assert_eq!(std::fs::read(p).unwrap(), b"{\"p\":1}");
        assert!(cache.get("org/tiny", COMMIT, "config.json").is_some());
        assert!(cache.get("org/tiny", "v2", "config.json").is_none());
        assert!(cache.get("org/other", "main", "config.json").is_none());
    }

    #[test]
    fn offline_miss_is_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        lay_out(root.path(), "org/tiny", COMMIT, &[("config.json", b"{}")]);
        let hub = Hub {
            cache: HubCache::new(root.path()),
            endpoint: "http://127.0.0.1:9".into(),
            token: None,
            offline: true,
        };
        assert!(hub.get("org/tiny", "main", "config.json").is_ok());
        let err = hub
            .get("org/tiny", "main", "model.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("HF_HUB_OFFLINE")
                && err.contains("org/tiny")
                && err.contains("model.safetensors"),
            "{err}"
        );
    }

    /// A stand-in for the hub's HTTP API on loopback: answers HEAD/GET for
    /// `resolve` URLs the way huggingface.co does (commit and etag headers,
    /// LFS files redirected to another URL), 404 for anything else.
    #[cfg(feature = "hub-download")]
    fn fake_hub(files: Vec<(&'static str, Vec<u8>)>) -> (String, std::thread::JoinHandle<()>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            listener.set_nonblocking(false).unwrap();
            // Bounded: the test makes fewer requests than this.
            for _ in 0..64 {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                if path == "/stop" {
                    return;
                }
                let mut out = stream;
                let prefix = "/acme/tiny/resolve/main/";
                let found = files
                    .iter()
                    .find(|(n, _)| path == format!("{prefix}{n}") || path == format!("/cdn/{n}"));
                let resp = match found {
                    Some((name, body)) if path.starts_with(prefix) && name.ends_with(".safetensors") => format!(
                        "HTTP/1.1 302 Found\r\nx-repo-commit: {COMMIT}\r\nx-linked-etag: \"lfs{}\"\r\nlocation: /cdn/{name}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes(),
                    Some((name, body)) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nx-repo-commit: {COMMIT}\r\netag: \"e{}{}\"\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            name.len(),
                            body.len(),
                            body.len()
                        )
                        .into_bytes();
                        if method == "GET" {
                            r.extend_from_slice(body);
                        }
                        r
                    }
                    None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
                };
                let _ = out.write_all(&resp);
            }
        });
        (addr, handle)
    }

    #[cfg(feature = "hub-download")]
    #[test]
    fn downloads_into_the_cache_layout_then_works_offline() {
        let root = tempfile::tempdir().unwrap();
        let weights = vec![7u8; 3000];
        let (endpoint, server) = fake_hub(vec![
            ("config.json", b"{\"hidden_size\":8}".to_vec()),
            ("model.safetensors", weights.clone()),
        ]);
        let online = Hub {
            cache: HubCache::new(root.path()),
            endpoint: endpoint.clone(),
            token: None,
            offline: false,
        };
        let dir = online.snapshot("acme/tiny", "main").unwrap();
        assert_eq!(
            dir,
            root.path()
                .join("models--acme--tiny/snapshots")
                .join(COMMIT)
        );
        assert_eq!(
            std::fs::read(dir.join("model.safetensors")).unwrap(),
            weights
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("config.json")).unwrap(),
            "{\"hidden_size\":8}"
        );
        // The huggingface_hub layout: refs, blobs named by etag, relative symlinks.
        let repo = root.path().join("models--acme--tiny");
        assert_eq!(
            std::fs::read_to_string(repo.join("refs/main")).unwrap(),
            COMMIT
        );
        assert!(repo.join("blobs/lfs3000").is_file());
        let link = std::fs::read_link(dir.join("model.safetensors")).unwrap();
        assert_eq!(link, PathBuf::from("../../blobs/lfs3000"));
        // No temporary blobs are left.
        let blobs: Vec<_> = std::fs::read_dir(repo.join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(blobs.iter().all(|b| !b.contains("incomplete")), "{blobs:?}");

        let err = online
            .get("acme/missing", "main", "config.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("404") && err.contains("acme/missing"), "{err}");

        // Offline, the same cache serves the files without a server.
        let _ = ureq::get(&format!("{endpoint}/stop")).call();
        server.join().unwrap();
        let offline = Hub {
            offline: true,
            ..online
        };
        assert_eq!(offline.snapshot("acme/tiny", "main").unwrap(), dir);
    }
}
