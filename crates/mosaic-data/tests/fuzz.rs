//! Property-based fuzzing of every decoder: mutated and truncated versions
//! of valid inputs must give `Ok` or `Err`, never a panic, a hang or an
//! unbounded allocation. The case count is bounded for CI
//! (`PROPTEST_CASES` overrides it).

use std::io::Cursor;

use image::{ImageEncoder, RgbImage};
use proptest::prelude::*;

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let img = RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 9) as u8, (y * 13) as u8, 77])
    });
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(img.as_raw(), 24, 16, image::ExtendedColorType::Rgb8)
        .unwrap();
    let mut jpg = Cursor::new(Vec::new());
    img.write_to(&mut jpg, image::ImageFormat::Jpeg).unwrap();
    let mut gif = Cursor::new(Vec::new());
    img.write_to(&mut gif, image::ImageFormat::Gif).unwrap();
    let mut bmp = Cursor::new(Vec::new());
    img.write_to(&mut bmp, image::ImageFormat::Bmp).unwrap();
    let mut tiff = Cursor::new(Vec::new());
    img.write_to(&mut tiff, image::ImageFormat::Tiff).unwrap();
    let mut webp = Cursor::new(Vec::new());
    img.write_to(&mut webp, image::ImageFormat::WebP).unwrap();
    let mut wav = Vec::new();
    {
        let a = mosaic_data::audio::Audio {
            samples: (0..400).map(|i| (i as f32 * 0.1).sin() * 0.5).collect(),
            sample_rate: 16000,
            channels: 1,
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        mosaic_data::audio::decode::write_wav_pcm16(&p, &a).unwrap();
        wav.extend(std::fs::read(&p).unwrap());
    }
    vec![
        ("png", png),
        ("jpg", jpg.into_inner()),
        ("gif", gif.into_inner()),
        ("bmp", bmp.into_inner()),
        ("tiff", tiff.into_inner()),
        ("webp", webp.into_inner()),
        ("wav", wav),
        ("ply", b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nend_header\n1 2 3\n4 5 6\n".to_vec()),
        ("plyb", {
            let mut b = b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nelement face 1\nproperty list uchar int v\nend_header\n".to_vec();
            for v in [1f32, 2., 3., 4., 5., 6.] {
                b.extend(v.to_le_bytes());
            }
            b.push(2);
            b.extend(0i32.to_le_bytes());
            b.extend(1i32.to_le_bytes());
            b
        }),
        ("pcd", b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\nPOINTS 2\nDATA ascii\n1 2 3\n4 5 6\n".to_vec()),
        ("xyz", b"x,y,z\n1,2,3\n4,5,6\n".to_vec()),
        ("csv", b"t,a,b\n0,1,2\n0.1,3,4\n0.2,5,6\n".to_vec()),
        ("npy", mosaic_core::formats::npy::npy_bytes_f32(&[2, 2], &[0.0, 1.0, 1.0, 2.0])),
        ("jsonl", br#"{"id":"a","image":"x.png","labels":["c"],"timestamps":[{"start":0,"end":1}]}"#.to_vec()),
        ("srt", b"1\n00:00:01,000 --> 00:00:02,000\nHello\n\n2\n00:00:02,500 --> 00:00:03,000\nBye\n".to_vec()),
        ("idx", vec![0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]),
        ("tar", {
            let mut buf = Vec::new();
            let mut b = tar::Builder::new(&mut buf);
            let mut h = tar::Header::new_gnu();
            h.set_size(5);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, "k.txt", &b"hello"[..]).unwrap();
            b.finish().unwrap();
            drop(b);
            buf
        }),
    ]
}

fn decode(kind: &str, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let opts = mosaic_data::image::DecodeOptions::default();
    let _ = match kind {
        "png" | "jpg" | "gif" | "bmp" | "tiff" | "webp" => {
            mosaic_data::image::decode_image(bytes, "f", &opts).map(|_| ())
        }
        "wav" => {
            mosaic_data::audio::decode_audio(bytes.to_vec(), "f", Some("wav"), &Default::default())
                .map(|_| ())
        }
        "ply" | "plyb" | "pcd" | "xyz" => {
            let ext = if kind == "plyb" { "ply" } else { kind };
            let p = dir.path().join(format!("f.{ext}"));
            std::fs::write(&p, bytes).unwrap();
            mosaic_data::pointcloud::load_point_cloud(&p).map(|_| ())
        }
        "csv" => mosaic_data::sensor::parse_csv_series(bytes, "f", &Default::default()).map(|_| ()),
        "npy" => mosaic_data::sensor::parse_npy_series(
            bytes,
            "f",
            &mosaic_data::sensor::SensorReadOptions {
                rate: Some(1.0),
                ..Default::default()
            },
        )
        .map(|_| ()),
        "jsonl" => {
            let r = mosaic_data::manifest::ManifestReader::from_reader(
                std::path::Path::new("f"),
                Box::new(Cursor::new(bytes.to_vec())),
            );
            r.for_each(drop);
            Ok(())
        }
        "srt" => {
            mosaic_data::align::parse_subtitles(&String::from_utf8_lossy(bytes), "f").map(|_| ())
        }
        "idx" => mosaic_data::import::parse_idx(bytes, "f").map(|_| ()),
        "tar" => mosaic_data::manifest::ShardReader::new(bytes, "f")
            .read_all()
            .map(|_| ()),
        _ => unreachable!(),
    };
}

fn mutate(seed: &[u8], flips: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut b = seed.to_vec();
    for &(pos, val) in flips {
        if !b.is_empty() {
            let n = b.len();
            b[pos % n] = val;
        }
    }
    if let Some(c) = cut {
        let n = b.len();
        b.truncate(c % (n + 1));
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), cut in proptest::option::of(any::<usize>())) {
        for (kind, seed) in seeds() {
            decode(kind, &mutate(&seed, &flips, cut));
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for (kind, _) in seeds() {
            decode(kind, &bytes);
        }
    }
}
