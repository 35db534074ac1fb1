//! The one error type of `mosaic-eval`.

use std::path::PathBuf;

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while evaluating.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input file is unusable: empty, not UTF-8, a bad JSON line, a
    /// missing field. Names the file and, where there is one, the line.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line number, when the problem is on one line.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// Two inputs that must have the same length do not.
    #[error("length mismatch: {what}: {left} vs {right}")]
    Length {
        /// Which inputs (names the files where they came from files).
        what: String,
        /// Length of the first.
        left: usize,
        /// Length of the second.
        right: usize,
    },
    /// An argument or value is out of its domain (shape, NaN, unknown name).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The argument.
        what: String,
        /// Why.
        message: String,
    },
    /// Drawing or encoding a plot failed.
    #[error("plot {}: {message}", path.display())]
    Plot {
        /// The PNG being written.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// From the model layer (boxed: keeps `Result` small).
    #[error(transparent)]
    Models(Box<mosaic_models::Error>),
    /// From the data layer.
    #[error(transparent)]
    Data(Box<mosaic_data::Error>),
    /// From `mosaic-core` (I/O, tensors, atomic writes).
    #[error(transparent)]
    Core(Box<mosaic_core::Error>),
}

impl Error {
    /// An [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }

    /// An [`Error::File`].
    pub fn file(path: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// An [`Error::Length`] unless `left == right`.
    pub fn check_len(what: impl Into<String>, left: usize, right: usize) -> Result<()> {
        if left == right {
            Ok(())
        } else {
            Err(Error::Length {
                what: what.into(),
                left,
                right,
            })
        }
    }
}

impl From<mosaic_models::Error> for Error {
    fn from(e: mosaic_models::Error) -> Self {
        Error::Models(Box::new(e))
    }
}

impl From<mosaic_data::Error> for Error {
    fn from(e: mosaic_data::Error) -> Self {
        Error::Data(Box::new(e))
    }
}

impl From<mosaic_core::Error> for Error {
    fn from(e: mosaic_core::Error) -> Self {
        Error::Core(Box::new(e))
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Core(Box::new(mosaic_core::Error::tensor("tensor operation", e)))
    }
}
