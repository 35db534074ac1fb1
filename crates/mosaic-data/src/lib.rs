//! # mosaic-data
//!
//! Turns files into model-ready batches for all six modalities, matching
//! the reference preprocessing where one exists:
//!
//! - [`text`]: Hugging Face `tokenizer.json` (BPE, WordPiece, Unigram) with
//!   truncation, padding and masks — ids identical to the Python bindings.
//! - [`image`]: JPEG/PNG/WebP/GIF/BMP/TIFF decoding with limits and EXIF
//!   orientation; [`image::ImageProcessor`] built from a checkpoint's
//!   `preprocessor_config.json`, bit-exact with `transformers`' PIL image
//!   processors (CLIP, SigLIP, ViT) on lossless inputs.
//! - [`audio`]: WAV/FLAC/MP3/OGG decoding, torchaudio-exact resampling,
//!   Whisper log-mel (≤ 2e-5 from `WhisperFeatureExtractor`), librosa-style
//!   mel/MFCC, and Silero voice-activity segmentation on the real weights.
//! - [`video`]: frame sampling through `ffmpeg`, image-sequence folders and
//!   GIFs, with timestamps; the audio track.
//! - [`pointcloud`]: PLY/PCD/XYZ/CSV, centring, unit-sphere scaling,
//!   farthest-point sampling. [`sensor`]: CSV/NPY time series with NaN
//!   policies, resampling, windowing and normalisation.
//! - [`manifest`]: multimodal JSONL and WebDataset tar shards;
//!   [`loader`]: the parallel, seeded, bounded loader; [`pipeline`]:
//!   per-modality preprocessing and collation into padded, masked batches.
//! - [`clean`] (dedup and filters), [`augment`] (seeded augmentations),
//!   [`align`] (subtitles, cue matching, DTW), [`import`] (Fashion-MNIST,
//!   image folders, COCO captions, transcript lists), [`check`] (validate,
//!   stats, convert).
//!
//! ```
//! use mosaic_core::Modality;
//! use mosaic_data::image::ImageProcessor;
//! use mosaic_data::loader::{Loader, LoaderConfig, Source};
//! use mosaic_data::pipeline::Pipeline;
//!
//! # fn main() -> mosaic_data::Result<()> {
//! // A two-sample manifest: one image with a label, one without the image.
//! let dir = std::env::temp_dir().join(format!("mosaic-data-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! image::RgbImage::from_pixel(40, 30, image::Rgb([200, 30, 30])).save(dir.join("red.png")).unwrap();
//! std::fs::write(
//!     dir.join("m.jsonl"),
//!     "{\"id\": \"a\", \"image\": \"red.png\", \"label\": \"red\"}\n{\"id\": \"b\", \"text\": \"no image here\", \"label\": \"none\"}\n",
//! ).unwrap();
//!
//! // CLIP preprocessing at 32 px; batches of 2 in manifest order.
//! let pipeline = Pipeline { image: Some(ImageProcessor::clip(32)), ..Default::default() };
//! let loader = Loader::new(Source::manifest(&dir.join("m.jsonl")), pipeline, LoaderConfig { batch_size: 2, ..Default::default() })?;
//! let batch = loader.epoch(0).next().unwrap()?;
//! let images = batch.batch.get(Modality::Image).unwrap();
//! assert_eq!(images.values.dims(), &[2, 3, 32, 32]);
//! assert_eq!(images.present, vec![true, false]); // missing modalities are normal
//! assert_eq!(batch.samples[1].labels, vec!["none"]);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

pub mod align;
pub mod audio;
pub mod augment;
pub mod check;
pub mod clean;
pub mod config;
pub mod error;
pub mod image;
pub mod import;
pub mod loader;
pub mod manifest;
pub mod pipeline;
pub mod pointcloud;
pub mod sensor;
pub mod text;
pub mod video;
pub mod wordnet;

pub use error::{Error, Result};
