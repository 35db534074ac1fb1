//! Images: decoding with limits and EXIF orientation, Pillow-exact
//! resampling, and `transformers`-compatible preprocessing.

pub mod decode;
pub mod processor;
pub mod resize;

pub use decode::{AlphaMode, DecodeLimits, DecodeOptions, decode_image, load_image, to_rgb};
pub use processor::{ImageProcessor, ResizeTo};
pub use resize::{Filter, resize_u8};
