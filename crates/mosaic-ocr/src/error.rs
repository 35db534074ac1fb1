//! The one error type of `mosaic-ocr`. Every variant names its input: the
//! model file, the option, or the image.

use std::path::PathBuf;

/// Result alias of `mosaic-ocr`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading the models or reading text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A model file is not a usable ONNX model of the expected kind.
    #[error("{}: cannot load the {what} model: {message}", path.display())]
    Model {
        /// The file.
        path: PathBuf,
        /// Which model (`detection`, `angle classifier`, `recognition`).
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Running a model failed (a shape the graph does not accept).
    #[error("{what} model failed on an input of shape {shape:?}: {message}")]
    Inference {
        /// Which model.
        what: &'static str,
        /// The input's shape.
        shape: Vec<usize>,
        /// tract's message.
        message: String,
    },
    /// An option is out of range.
    #[error("invalid OCR option `{name}`: {message}")]
    InvalidOption {
        /// The field of [`crate::OcrOptions`].
        name: &'static str,
        /// Why.
        message: String,
    },
    /// The image cannot be processed (e.g. its aspect ratio would make the
    /// detector input larger than `max_det_pixels`).
    #[error("image {width}x{height}: {message}")]
    Image {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Why.
        message: String,
    },
    /// Decoding an image file failed (the message names the file).
    #[error(transparent)]
    Data(#[from] mosaic_data::Error),
}
