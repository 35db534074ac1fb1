//! The one error type of `mosaic-models`.

/// Result alias used throughout `mosaic-models`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong building or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A checkpoint is missing a weight or has one of the wrong shape.
    #[error("{checkpoint}: weight `{name}`: {message}")]
    Weight {
        /// The checkpoint (file or folder).
        checkpoint: String,
        /// The weight's name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A model config is not valid.
    #[error("config {source_name}: {message}")]
    Config {
        /// The config file or section.
        source_name: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// An input does not fit the model.
    #[error("invalid {what}: {message}")]
    InvalidInput {
        /// The input.
        what: String,
        /// Why.
        message: String,
    },
    /// An error from the data layer (tokenizers, preprocessing); boxed to
    /// keep `Result` small.
    #[error(transparent)]
    Data(Box<mosaic_data::Error>),
    /// An error from `mosaic-core` (weights, tensors, assets).
    #[error(transparent)]
    Core(Box<mosaic_core::Error>),
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
