//! The one error type of `mosaic-train`.

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A training config is not valid (names the key).
    #[error("config {source_name}: {message}")]
    Config {
        /// The file or section.
        source_name: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// An input does not fit (shapes, targets).
    #[error("invalid {what}: {message}")]
    InvalidInput {
        /// The input.
        what: String,
        /// Why.
        message: String,
    },
    /// From the model layer (boxed: keeps `Result` small).
    #[error(transparent)]
    Models(Box<mosaic_models::Error>),
    /// From the data layer.
    #[error(transparent)]
    Data(Box<mosaic_data::Error>),
    /// From `mosaic-core`.
    #[error(transparent)]
    Core(Box<mosaic_core::Error>),
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
