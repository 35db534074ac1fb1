//! The one error type of `mosaic-data`.
//!
//! Every variant names its input: the file (and the line or byte offset
//! where that is known), the config key or the argument. Messages are one
//! line so that `mosaic data validate` can print one per bad sample.

use std::path::PathBuf;

/// Result alias used throughout `mosaic-data`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, decoding or preparing data.
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
    /// A file or value could not be decoded: `input` names the file (with
    /// `:line` or `@offset` where known), `what` the format.
    #[error("{input}: cannot decode {what}: {message}")]
    Decode {
        /// The file, manifest line or sample id.
        input: String,
        /// What it was decoded as (`image`, `WAV audio`, `JSONL manifest`, ...).
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A preprocessing or loader configuration is not valid.
    #[error("config {source_name}: {message}")]
    Config {
        /// The config file or the config section.
        source_name: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// An argument is outside what the operation accepts.
    #[error("invalid {what}: {message}")]
    InvalidArgument {
        /// The argument.
        what: String,
        /// Why it is not valid.
        message: String,
    },
    /// An external program (ffmpeg) failed or is missing.
    #[error("{program}: {message}")]
    External {
        /// The program.
        program: String,
        /// What happened.
        message: String,
    },
    /// An error from `mosaic-core` (tensors, checkpoints, assets).
    #[error(transparent)]
    Core(#[from] mosaic_core::Error),
}

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A decode error about `input`.
    pub fn decode(
        input: impl Into<String>,
        what: &'static str,
        message: impl Into<String>,
    ) -> Self {
        // Third-party decoders sometimes put line breaks in their messages;
        // ours are one line so a report has one line per bad input.
        let message: String = message.into();
        Error::Decode {
            input: input.into(),
            what,
            message: message.split_whitespace().collect::<Vec<_>>().join(" "),
        }
    }

    /// An invalid-argument error.
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what: what.into(),
            message: message.into(),
        }
    }

    /// A config error.
    pub fn config(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Core(mosaic_core::Error::tensor("tensor operation", e))
    }
}

/// Attaches a path to an `io::Result`.
pub(crate) trait IoPath<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoPath<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

/// Reads a whole file, refusing files larger than `limit` bytes so that a
/// hostile input cannot make us allocate without bound.
pub fn read_limited(path: &std::path::Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    if len > limit {
        return Err(Error::decode(
            path.display().to_string(),
            "file",
            format!("{len} bytes exceeds the limit of {limit} bytes"),
        ));
    }
    let mut buf = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut buf).at(path)?;
    Ok(buf)
}

/// Runs a third-party decoder, turning a panic inside it into a decode
/// error: a malformed file must never take the process down.
pub(crate) fn guard<T>(
    input: &str,
    what: &'static str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::decode(input, what, format!("decoder failed: {msg}")))
        }
    }
}
