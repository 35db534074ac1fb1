//! Assets: pretrained weights and data sets resolved by name to files.
//!
//! Three sources:
//! - a local directory in Hugging Face layout (any path: used as it is);
//! - the Hugging Face hub cache (`~/.cache/huggingface/hub/models--org--name/
//!   snapshots/<rev>/...`), with `HF_HUB_OFFLINE` honoured ([`hub`]);
//! - registry packages that carry real assets, fetched by name into
//!   `$MOSAIC_HOME/assets/NAME` with every file checked against a recorded
//!   sha256 ([`AssetStore`], [`Catalog`]).

pub mod catalog;
pub mod hub;
pub mod store;
pub mod unpack;

use std::path::{Path, PathBuf};

pub use catalog::{AssetKind, AssetSpec, Catalog};
pub use store::{AssetStore, FetchOptions, Manifest, VerifyReport, sha256_file};

use crate::error::{Error, Result};

/// Resolves a model reference to a local folder (or file):
/// an existing path is used as is; a catalog name must have been fetched
/// (`mosaic assets fetch NAME`); `org/name[@revision]` is looked up in the
/// Hugging Face cache and, unless offline, downloaded.
pub fn resolve_model(reference: &str, store: &AssetStore) -> Result<PathBuf> {
    let as_path = Path::new(reference);
    if as_path.exists() {
        return Ok(as_path.to_path_buf());
    }
    if store.catalog().get(reference).is_ok() {
        return store.path(reference);
    }
    if reference.contains('/') && !reference.starts_with('.') && !reference.starts_with('/') {
        let (repo, revision) = match reference.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (reference, "main"),
        };
        return hub::Hub::from_env().snapshot(repo, revision);
    }
    Err(Error::InvalidArgument {
        what: "model",
        value: reference.to_string(),
        message: format!(
            "not a path, not a catalog asset ({}) and not a hub id `org/name`",
            store
                .catalog()
                .assets()
                .iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}
