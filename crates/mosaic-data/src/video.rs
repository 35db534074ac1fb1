//! Video: frame sampling from MP4/WebM/MKV (and anything else ffmpeg
//! reads), image-sequence folders and GIFs, with timestamps; the audio
//! track for the audio path.
//!
//! Containers are decoded by the `ffmpeg`/`ffprobe` programs (Debian's
//! `ffmpeg` package) run as subprocesses. Why not libav bindings: the
//! `ffmpeg-next`/`ffmpeg-sys` crates need the libav development headers at
//! build time and break with each FFmpeg major version, which would make
//! every build of Mosaic depend on the system's FFmpeg; a subprocess needs
//! the program only when a video is actually read, and a crash in a codec
//! cannot take the training process down with it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use image::{AnimationDecoder, RgbImage};

use crate::error::{Error, Result};
use crate::image::{DecodeOptions, load_image};

/// Which frames to take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrameSampling {
    /// `n` frames at the centres of `n` equal slices of the duration.
    Uniform(usize),
    /// One frame every `seconds`, starting at 0.
    Every(f64),
}

/// Video reading options.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoOptions {
    /// Frame choice.
    pub sampling: FrameSampling,
    /// Frame rate assumed for image-sequence folders.
    pub sequence_fps: f64,
    /// Most frames returned (a guard for `Every` on long videos).
    pub max_frames: usize,
    /// Largest accepted frame side.
    pub max_side: u32,
}

impl Default for VideoOptions {
    fn default() -> Self {
        VideoOptions {
            sampling: FrameSampling::Uniform(8),
            sequence_fps: 1.0,
            max_frames: 512,
            max_side: 8192,
        }
    }
}

/// Sampled frames with their times in seconds.
#[derive(Debug, Clone)]
pub struct Frames {
    /// RGB frames.
    pub frames: Vec<RgbImage>,
    /// Presentation time of each frame.
    pub timestamps: Vec<f64>,
    /// Duration of the whole video.
    pub duration: f64,
}

/// What ffprobe says about a file.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Duration in seconds.
    pub duration: f64,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Average frame rate.
    pub fps: f64,
    /// Sample rate of the first audio stream, if any.
    pub audio_rate: Option<u32>,
}

fn ffmpeg_program(name: &str) -> String {
    std::env::var(format!("MOSAIC_{}", name.to_ascii_uppercase()))
        .unwrap_or_else(|_| name.to_string())
}

fn run(cmd: &mut Command, program: &str, input: &Path) -> Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::External {
            program: program.to_string(),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "not found (needed to read {}; install the `ffmpeg` package)",
                    input.display()
                )
            } else {
                e.to_string()
            },
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed")
            .trim()
            .to_string();
        return Err(Error::decode(
            input.display().to_string(),
            "video",
            format!("{program}: {last}"),
        ));
    }
    Ok(out.stdout)
}

/// Probes a video file with ffprobe.
pub fn probe(path: &Path) -> Result<VideoInfo> {
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let prog = ffmpeg_program("ffprobe");
    let out = run(
        Command::new(&prog)
            .args([
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_streams",
                "-show_format",
            ])
            .arg(path),
        &prog,
        path,
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| {
        Error::decode(
            path.display().to_string(),
            "video",
            format!("ffprobe output: {e}"),
        )
    })?;
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .ok_or_else(|| Error::decode(path.display().to_string(), "video", "no video stream"))?;
    let num = |x: &serde_json::Value| {
        x.as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .or_else(|| x.as_f64())
    };
    let duration = num(&v["format"]["duration"])
        .or_else(|| num(&video["duration"]))
        .unwrap_or(0.0);
    let fps = video["avg_frame_rate"]
        .as_str()
        .and_then(|s| {
            let (a, b) = s.split_once('/')?;
            let (a, b) = (a.parse::<f64>().ok()?, b.parse::<f64>().ok()?);
            (b > 0.0).then_some(a / b)
        })
        .unwrap_or(0.0);
    let audio_rate = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .and_then(|s| s["sample_rate"].as_str().and_then(|r| r.parse().ok()));
    // ffmpeg auto-rotates frames by the display matrix; report the size of
    // the frames it will actually output.
    let rotation = video["side_data_list"]
        .as_array()
        .and_then(|l| {
            l.iter().find_map(|d| {
                d["rotation"]
                    .as_f64()
                    .or_else(|| d["rotation"].as_i64().map(|v| v as f64))
            })
        })
        .or_else(|| {
            video["tags"]["rotate"]
                .as_str()
                .and_then(|r| r.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    let (mut width, mut height) = (
        video["width"].as_u64().unwrap_or(0) as u32,
        video["height"].as_u64().unwrap_or(0) as u32,
    );
    if ((rotation.abs() as i64) % 180) == 90 {
        std::mem::swap(&mut width, &mut height);
    }
    Ok(VideoInfo {
        duration,
        width,
        height,
        fps,
        audio_rate,
    })
}

/// The sample times for a duration.
pub fn sample_times(duration: f64, sampling: FrameSampling, max_frames: usize) -> Result<Vec<f64>> {
    match sampling {
        FrameSampling::Uniform(0) => Err(Error::invalid(
            "frame sampling",
            "uniform sampling needs at least one frame",
        )),
        FrameSampling::Uniform(n) if n > max_frames => Err(Error::invalid(
            "frame sampling",
            format!("{n} frames is over the limit of {max_frames}"),
        )),
        FrameSampling::Uniform(n) => Ok((0..n)
            .map(|i| duration * (i as f64 + 0.5) / n as f64)
            .collect()),
        FrameSampling::Every(k) if k.is_nan() || k <= 0.0 => Err(Error::invalid(
            "frame sampling",
            format!("interval {k} s must be positive"),
        )),
        FrameSampling::Every(k) => {
            let n = ((duration / k).ceil() as usize).max(1);
            if n > max_frames {
                return Err(Error::invalid(
                    "frame sampling",
                    format!(
                        "one frame every {k} s over {duration:.1} s is {n} frames, over the limit of {max_frames}"
                    ),
                ));
            }
            Ok((0..n).map(|i| i as f64 * k).collect())
        }
    }
}

/// Reads sampled frames from a video file, an image-sequence folder or a GIF.
pub fn load_frames(path: &Path, opts: &VideoOptions) -> Result<Frames> {
    if path.is_dir() {
        return load_sequence(path, opts);
    }
    if path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("gif"))
    {
        return load_gif(path, opts);
    }
    let info = probe(path)?;
    if info.width == 0
        || info.height == 0
        || info.width > opts.max_side
        || info.height > opts.max_side
    {
        return Err(Error::decode(
            path.display().to_string(),
            "video",
            format!(
                "frame size {}x{} outside 1..={}",
                info.width, info.height, opts.max_side
            ),
        ));
    }
    let times = sample_times(info.duration, opts.sampling, opts.max_frames)?;
    let prog = ffmpeg_program("ffmpeg");
    let frame_bytes = info.width as usize * info.height as usize * 3;
    let mut frames = Vec::with_capacity(times.len());
    for &t in &times {
        // -ss before -i seeks to the keyframe and decodes forward to `t`
        // exactly (ffmpeg ≥ 2.1), so each frame is the one shown at `t`.
        let out = run(
            Command::new(&prog)
                .args(["-v", "error", "-nostdin", "-ss", &format!("{t:.6}"), "-i"])
                .arg(path)
                .args([
                    "-frames:v",
                    "1",
                    "-f",
                    "rawvideo",
                    "-pix_fmt",
                    "rgb24",
                    "pipe:1",
                ]),
            &prog,
            path,
        )?;
        let out = if out.len() >= frame_bytes {
            out[..frame_bytes].to_vec()
        } else if let Some(last) = frames.last() {
            // Past the last frame (rounding at the very end): repeat the last one.
            RgbImage::clone(last).into_raw()
        } else {
            return Err(Error::decode(
                path.display().to_string(),
                "video",
                format!("no frame at {t:.3} s"),
            ));
        };
        frames.push(RgbImage::from_raw(info.width, info.height, out).expect("frame size checked"));
    }
    Ok(Frames {
        frames,
        timestamps: times,
        duration: info.duration,
    })
}

fn load_sequence(dir: &Path, opts: &VideoOptions) -> Result<Frames> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "jpg" | "jpeg" | "png" | "webp" | "bmp" | "tif" | "tiff"
                )
            })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::decode(
            dir.display().to_string(),
            "image sequence",
            "no image files in the folder",
        ));
    }
    let fps = opts.sequence_fps;
    let duration = files.len() as f64 / fps;
    let times = sample_times(duration, opts.sampling, opts.max_frames)?;
    let dec = DecodeOptions::default();
    let mut frames = Vec::new();
    for &t in &times {
        let i = ((t * fps).floor() as usize).min(files.len() - 1);
        frames.push(load_image(&files[i], &dec)?);
    }
    Ok(Frames {
        frames,
        timestamps: times,
        duration,
    })
}

fn load_gif(path: &Path, opts: &VideoOptions) -> Result<Frames> {
    let name = path.display().to_string();
    let bytes = crate::error::read_limited(path, 512 << 20)?;
    let dec = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::decode(&name, "GIF", e.to_string()))?;
    let (gw, gh) = image::ImageDecoder::dimensions(&dec);
    if gw == 0 || gh == 0 || gw > opts.max_side || gh > opts.max_side {
        return Err(Error::decode(
            &name,
            "GIF",
            format!("canvas {gw}x{gh} outside 1..={}", opts.max_side),
        ));
    }
    // Every frame is kept as a full RGB canvas: bound the total.
    let frame_bytes = gw as usize * gh as usize * 3;
    let max_frames = ((1usize << 30) / frame_bytes).clamp(1, 10_000);
    let mut all = Vec::new();
    let mut starts = Vec::new();
    let mut t = 0.0;
    for (i, f) in dec.into_frames().enumerate() {
        if i >= max_frames {
            return Err(Error::decode(
                &name,
                "GIF",
                format!("more than {max_frames} frames of {gw}x{gh} (1 GiB of frames)"),
            ));
        }
        let f = f.map_err(|e| Error::decode(&name, "GIF", format!("frame {i}: {e}")))?;
        let (n, d) = f.delay().numer_denom_ms();
        starts.push(t);
        // Browsers show 0-delay frames for 100 ms.
        let ms = if n == 0 {
            100.0
        } else {
            n as f64 / d.max(1) as f64
        };
        t += ms / 1000.0;
        all.push(image::DynamicImage::ImageRgba8(f.into_buffer()).to_rgb8());
    }
    if all.is_empty() {
        return Err(Error::decode(&name, "GIF", "no frames"));
    }
    let times = sample_times(t, opts.sampling, opts.max_frames)?;
    let frames = times
        .iter()
        .map(|&tt| {
            let i = starts.partition_point(|&s| s <= tt).saturating_sub(1);
            all[i].clone()
        })
        .collect();
    Ok(Frames {
        frames,
        timestamps: times,
        duration: t,
    })
}

/// Extracts the first audio track as mono f32 at its own sample rate
/// (resample with [`crate::audio::resample`] for a model's rate).
pub fn load_audio_track(path: &Path) -> Result<crate::audio::Audio> {
    let info = probe(path)?;
    let rate = info
        .audio_rate
        .ok_or_else(|| Error::decode(path.display().to_string(), "video", "no audio stream"))?;
    let prog = ffmpeg_program("ffmpeg");
    let mut child = Command::new(&prog)
        .args(["-v", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-vn", "-ac", "1", "-f", "f32le", "pipe:1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::External {
            program: prog.clone(),
            message: e.to_string(),
        })?;
    let mut raw = Vec::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_end(&mut raw)
        .map_err(|e| Error::io(path, e))?;
    let status = child.wait().map_err(|e| Error::io(path, e))?;
    if !status.success() || raw.is_empty() {
        return Err(Error::decode(
            path.display().to_string(),
            "video audio track",
            format!("{prog} could not extract audio"),
        ));
    }
    let samples = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(crate::audio::Audio {
        samples,
        sample_rate: rate,
        channels: 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_times_are_centred_or_periodic() {
        assert_eq!(
            sample_times(8.0, FrameSampling::Uniform(4), 100).unwrap(),
            vec![1.0, 3.0, 5.0, 7.0]
        );
        assert_eq!(
            sample_times(2.5, FrameSampling::Every(1.0), 100).unwrap(),
            vec![0.0, 1.0, 2.0]
        );
        assert!(sample_times(1e6, FrameSampling::Every(0.1), 100).is_err());
        assert!(sample_times(1.0, FrameSampling::Uniform(0), 100).is_err());
    }

    #[test]
    fn gif_frames_with_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.gif");
        {
            let f = std::fs::File::create(&p).unwrap();
            let mut enc = image::codecs::gif::GifEncoder::new(f);
            for v in [0u8, 128, 255] {
                let buf = image::RgbaImage::from_pixel(4, 4, image::Rgba([v, v, v, 255]));
                let fr =
                    image::Frame::from_parts(buf, 0, 0, image::Delay::from_numer_denom_ms(500, 1));
                enc.encode_frame(fr).unwrap();
            }
        }
        let fr = load_frames(
            &p,
            &VideoOptions {
                sampling: FrameSampling::Uniform(3),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(fr.timestamps, vec![0.25, 0.75, 1.25]);
        assert_eq!(fr.frames[1].get_pixel(0, 0).0, [128, 128, 128]);
        assert!((fr.duration - 1.5).abs() < 1e-9);
    }

    #[test]
    fn missing_file_is_named() {
        let e = load_frames(Path::new("/nonexistent/clip.mp4"), &VideoOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/clip.mp4"), "{e}");
    }
}
