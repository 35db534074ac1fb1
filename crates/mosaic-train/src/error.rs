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
    /// From the model layer.
    #[error(transparent)]
    Models(#[from] mosaic_models::Error),
    /// From the data layer.
    #[error(transparent)]
    Data(#[from] mosaic_data::Error),
    /// From `mosaic-core`.
    #[error(transparent)]
    Core(#[from] mosaic_core::Error),
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Core(mosaic_core::Error::tensor("tensor operation", e))
    }
}
