//! Video through ffmpeg: a clip made by ffmpeg itself from known frames and
//! a known tone, read back with timestamps, frames and the audio track.

use std::path::Path;
use std::process::Command;

use mosaic_data::video::{FrameSampling, VideoOptions, load_audio_track, load_frames, probe};

/// 4 s at 10 fps: second k is a solid grey of level 40 + 50 k; a 440 Hz
/// tone at 16 kHz on the audio track.
fn make_clip(dir: &Path, ext: &str, vcodec: &[&str]) -> std::path::PathBuf {
    let out = dir.join(format!("clip.{ext}"));
    let filter = "color=c=0x282828:s=64x48:r=10:d=1[a];color=c=0x5a5a5a:s=64x48:r=10:d=1[b];color=c=0x8c8c8c:s=64x48:r=10:d=1[c];color=c=0xbebebe:s=64x48:r=10:d=1[d];[a][b][c][d]concat=n=4:v=1:a=0[v]";
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-filter_complex",
            filter,
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=16000:duration=4",
            "-map",
            "[v]",
            "-map",
            "0:a",
        ])
        .args(vcodec)
        .args(["-pix_fmt", "yuv444p"])
        .arg(&out)
        .status()
        .expect("ffmpeg is needed for the video tests (scripts/test.sh installs it)");
    assert!(status.success());
    out
}

fn grey(img: &image::RgbImage) -> u8 {
    img.get_pixel(32, 24)[0]
}

#[test]
fn frames_timestamps_and_audio_from_mp4_and_mkv() {
    let dir = tempfile::tempdir().unwrap();
    for (ext, codec) in [
        ("mp4", &["-c:v", "libx264", "-crf", "0", "-c:a", "aac"][..]),
        ("mkv", &["-c:v", "ffv1", "-c:a", "flac"][..]),
    ] {
        let clip = make_clip(dir.path(), ext, codec);
        let info = probe(&clip).unwrap();
        assert_eq!((info.width, info.height), (64, 48));
        assert!(
            (info.duration - 4.0).abs() < 0.1,
            "{ext}: {}",
            info.duration
        );
        assert_eq!(info.audio_rate, Some(16000));
        let f = load_frames(
            &clip,
            &VideoOptions {
                sampling: FrameSampling::Uniform(4),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(f.timestamps.len(), 4);
        assert!((f.timestamps[0] - info.duration / 8.0).abs() < 1e-9);
        let levels: Vec<u8> = f.frames.iter().map(grey).collect();
        for (k, &l) in levels.iter().enumerate() {
            let want = 40 + 50 * k as i32;
            assert!(
                (l as i32 - want).abs() <= 3,
                "{ext}: frame {k} level {l}, want {want}"
            );
        }
        let every = load_frames(
            &clip,
            &VideoOptions {
                sampling: FrameSampling::Every(1.5),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(every.timestamps, vec![0.0, 1.5, 3.0]);
        let a = load_audio_track(&clip).unwrap();
        assert_eq!(a.sample_rate, 16000);
        assert!(
            (a.duration() - 4.0).abs() < 0.1,
            "{ext}: audio {} s",
            a.duration()
        );
        // The tone is there: zero crossings ≈ 2 × 440 per second.
        let crossings = a.samples[1600..17600]
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        assert!((crossings as i32 - 880).abs() < 20, "{ext}: {crossings}");
    }
}

#[test]
fn image_sequence_folder_and_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("seq");
    std::fs::create_dir(&seq).unwrap();
    for i in 0..6u8 {
        image::RgbImage::from_pixel(8, 8, image::Rgb([i * 40, 0, 0]))
            .save(seq.join(format!("{i:03}.png")))
            .unwrap();
    }
    let f = load_frames(
        &seq,
        &VideoOptions {
            sampling: FrameSampling::Every(2.0),
            sequence_fps: 2.0,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(f.timestamps, vec![0.0, 2.0]);
    assert_eq!(f.frames[1].get_pixel(0, 0)[0], 160);
    let bad = dir.path().join("broken.mp4");
    std::fs::write(&bad, b"not a video at all").unwrap();
    let e = load_frames(&bad, &VideoOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken.mp4"), "{e}");
}

#[test]
fn video_through_the_pipeline() {
    use mosaic_core::{Modality, ModalityValue, Sample};
    use mosaic_data::image::ImageProcessor;
    use mosaic_data::pipeline::Pipeline;
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(dir.path(), "mkv", &["-c:v", "ffv1", "-c:a", "flac"]);
    let p = Pipeline {
        image: Some(ImageProcessor::clip(32)),
        video: Some(VideoOptions {
            sampling: FrameSampling::Uniform(3),
            ..Default::default()
        }),
        ..Default::default()
    };
    let s = Sample::new("v").with(Modality::Video, ModalityValue::Path(clip));
    let prepared = p.prepare(&s).unwrap();
    assert_eq!(prepared.values[&Modality::Video].dims(), &[3, 3, 32, 32]);
}
