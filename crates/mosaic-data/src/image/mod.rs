//! Images: decoding with limits and EXIF orientation, Pillow-exact
//! resampling, and `transformers`-compatible preprocessing.

pub mod decode;
pub mod processor;
pub mod resize;

pub use decode::{DecodeLimits, DecodeOptions, decode_image, load_image};
pub use processor::{ImageProcessor, ResizeTo};
pub use resize::{Filter, resize_u8};
