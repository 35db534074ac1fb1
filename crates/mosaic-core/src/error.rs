//! The one error type of `mosaic-core`.
//!
//! Every variant carries the input it is about (a file, a config key, an asset
//! name) so that the message alone tells a user what to fix. Messages are one
//! line: the CLI prints them as they are.

use std::path::PathBuf;

/// Result alias used throughout `mosaic-core`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `mosaic-core`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A configuration file could not be parsed or has a wrong key or value.
    #[error("config {}: {message}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key where there is one.
        message: String,
    },
    /// A weight or data file does not follow its format.
    #[error("{}: invalid {format} file: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The format it was read as (`safetensors`, `PyTorch pickle`, `CTranslate2`, ...).
        format: &'static str,
        /// What is wrong and where.
        message: String,
    },
    /// The asset name is not in the catalog.
    #[error("unknown asset `{name}` (known assets: {known})")]
    UnknownAsset {
        /// The name asked for.
        name: String,
        /// The names the catalog has, comma separated.
        known: String,
    },
    /// Fetching, unpacking or verifying an asset failed.
    #[error("asset `{name}`: {message}")]
    Asset {
        /// The asset's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// A file's content does not match its recorded checksum.
    #[error("{}: sha256 mismatch: expected {expected}, found {actual}", path.display())]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The recorded sha256.
        expected: String,
        /// The sha256 of the file on disk.
        actual: String,
    },
    /// A Hugging Face hub file could not be resolved.
    #[error("hub model `{repo}` file `{file}`: {message}")]
    Hub {
        /// `org/name` of the model repository.
        repo: String,
        /// The file inside the repository.
        file: String,
        /// Why it could not be resolved.
        message: String,
    },
    /// A user-supplied argument (device, dtype, name, shape) is not valid.
    #[error("invalid {what} `{value}`: {message}")]
    InvalidArgument {
        /// What the argument is (`device`, `dtype`, ...).
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it is not valid.
        message: String,
    },
    /// Tensors of a batch or checkpoint do not fit together.
    #[error("shape mismatch in {context}: {message}")]
    Shape {
        /// Where (`batch image mask`, ...).
        context: String,
        /// Expected and found shapes.
        message: String,
    },
    /// A tensor operation failed.
    #[error("{context}: {source}")]
    Tensor {
        /// What was being done.
        context: String,
        /// candle's error.
        source: candle_core::Error,
    },
}

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A format error about `path`.
    pub fn format(
        path: impl Into<PathBuf>,
        format: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Error::Format {
            path: path.into(),
            format,
            message: message.into(),
        }
    }

    /// An asset error about `name`.
    pub fn asset(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Asset {
            name: name.into(),
            message: message.into(),
        }
    }

    /// A candle error with what was being done.
    pub fn tensor(context: impl Into<String>, source: candle_core::Error) -> Self {
        Error::Tensor {
            context: context.into(),
            source,
        }
    }
}

/// Adds a path to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    /// Maps the error to [`Error::Io`] naming `path`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
