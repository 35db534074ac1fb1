//! Hostile inputs: every decoder returns a clear error naming the file (and
//! line or offset), nothing panics or allocates without bound, and
//! `validate` reports all of them in one pass.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ImageEncoder, RgbImage};
use mosaic_data::audio::{AudioLimits, load_audio};
use mosaic_data::image::{DecodeOptions, load_image};

fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]));
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A PNG whose header declares `w`×`h` (valid CRC) followed by a tiny IDAT.
fn png_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A 16-bit mono WAV whose data chunk claims `claimed` bytes.
fn wav_lying(claimed: u32, actual_samples: usize) -> Vec<u8> {
    let mut out = b"RIFF".to_vec();
    out.extend((36 + claimed).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(16000u32.to_le_bytes());
    out.extend(32000u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(16u16.to_le_bytes());
    out.extend(b"data");
    out.extend(claimed.to_le_bytes());
    for i in 0..actual_samples {
        out.extend(((i as i16).wrapping_mul(37)).to_le_bytes());
    }
    out
}

struct Case {
    file: &'static str,
    field: &'static str,
    bytes: Vec<u8>,
    expect: &'static str,
}

fn hostile_files(dir: &Path) -> Vec<Case> {
    let mut png = png_bytes(40, 30);
    png.truncate(png.len() / 2);
    let mut jpg = jpeg_bytes(64, 48);
    jpg.truncate(jpg.len() / 2);
    let mut wav_fmt0 = wav_lying(100, 50);
    wav_fmt0[22] = 0; // zero channels
    let cases = vec![
        Case { file: "truncated.png", field: "image", bytes: png, expect: "truncated.png" },
        Case { file: "truncated.jpg", field: "image", bytes: jpg, expect: "truncated.jpg" },
        Case { file: "huge.png", field: "image", bytes: png_declaring(100_000, 100_000), expect: "huge.png" },
        Case { file: "empty.png", field: "image", bytes: Vec::new(), expect: "empty" },
        Case { file: "lying.wav", field: "audio", bytes: wav_lying(1 << 30, 0), expect: "lying.wav" },
        Case { file: "nochannels.wav", field: "audio", bytes: wav_fmt0, expect: "nochannels.wav" },
        Case { file: "empty.wav", field: "audio", bytes: Vec::new(), expect: "empty" },
        Case {
            file: "short.ply",
            field: "point_cloud",
            bytes: b"ply\nformat binary_little_endian 1.0\nelement vertex 100000\nproperty float x\nproperty float y\nproperty float z\nend_header\n\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(),
            expect: "100000",
        },
        Case { file: "nan.csv", field: "sensor", bytes: b"t,range\n0,1.0\n0.1,NaN\n0.2,3.0\n".to_vec(), expect: "line 3" },
        Case { file: "bad.txt", field: "text", bytes: vec![b'h', b'i', 0xff, 0xfe], expect: "UTF-8" },
    ];
    for c in &cases {
        std::fs::write(dir.join(c.file), &c.bytes).unwrap();
    }
    cases
}

#[test]
fn each_decoder_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = hostile_files(dir.path());
    let opts = DecodeOptions::default();
    for c in &cases {
        let p = dir.path().join(c.file);
        let err = match c.field {
            "image" => load_image(&p, &opts).map(|_| ()).unwrap_err().to_string(),
            "audio" => load_audio(&p, &AudioLimits::default())
                .map(|_| ())
                .unwrap_err()
                .to_string(),
            "point_cloud" => mosaic_data::pointcloud::load_point_cloud(&p)
                .map(|_| ())
                .unwrap_err()
                .to_string(),
            "sensor" => mosaic_data::sensor::load_sensor(&p, &Default::default())
                .map(|_| ())
                .unwrap_err()
                .to_string(),
            "text" => continue,
            _ => unreachable!(),
        };
        assert!(
            err.contains(c.file),
            "{}: error does not name the file: {err}",
            c.file
        );
        assert!(err.contains(c.expect), "{}: {err}", c.file);
        assert!(!err.contains('\n'), "{}: multi-line error: {err}", c.file);
    }
}

#[test]
fn huge_declared_png_is_refused_before_allocating() {
    let e = mosaic_data::image::decode_image(
        &png_declaring(100_000, 100_000),
        "huge.png",
        &DecodeOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("huge.png") && (e.to_lowercase().contains("limit") || e.contains("dimensions")),
        "{e}"
    );
}

#[test]
fn validate_reports_every_bad_sample_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let cases = hostile_files(dir.path());
    std::fs::write(dir.path().join("good.png"), png_bytes(8, 8)).unwrap();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    lines.push(br#"{"id": "good", "image": "good.png", "text": "a fine caption"}"#.to_vec());
    for c in &cases {
        if c.field == "text" {
            lines.push(
                format!(
                    r#"{{"id": "{}", "text": {{"path": "{}"}}}}"#,
                    c.file, c.file
                )
                .into_bytes(),
            );
        } else {
            lines.push(
                format!(r#"{{"id": "{}", "{}": "{}"}}"#, c.file, c.field, c.file).into_bytes(),
            );
        }
    }
    lines.push(b"this is not json".to_vec());
    let mut bad_utf8 = br#"{"id": "u", "text": "caf"#.to_vec();
    bad_utf8.extend([0xc3, 0x28]);
    bad_utf8.extend(br#""}"#);
    lines.push(bad_utf8);
    lines.push(br#"{"id": "missing", "image": "does-not-exist.png"}"#.to_vec());
    let manifest: PathBuf = dir.path().join("m.jsonl");
    std::fs::write(&manifest, lines.join(&b'\n')).unwrap();
    let r = mosaic_data::check::validate(&manifest, 2).unwrap();
    assert_eq!(r.total, lines.len());
    assert_eq!(r.ok, 1, "{:#?}", r.bad);
    assert_eq!(r.bad.len(), lines.len() - 1);
    // Every bad row is reported with its line number, in order.
    for (i, (at, _)) in r.bad.iter().enumerate() {
        assert!(at.ends_with(&format!("m.jsonl:{}", i + 2)), "{at}");
    }
    let all: String = r.bad.iter().map(|(a, e)| format!("{a} {e}\n")).collect();
    for c in &cases {
        assert!(all.contains(c.file), "{} not reported:\n{all}", c.file);
    }
    assert!(
        all.contains("not valid JSON")
            && all.contains("UTF-8")
            && all.contains("does-not-exist.png"),
        "{all}"
    );
}

#[test]
fn tar_member_outside_root_is_refused() {
    let mut buf = Vec::new();
    {
        let mut b = tar::Builder::new(&mut buf);
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_entry_type(tar::EntryType::Regular);
        h.as_gnu_mut().unwrap().name[..17].copy_from_slice(b"/etc/passwd.1.txt");
        h.set_cksum();
        b.append(&h, &b"ab"[..]).unwrap();
        b.finish().unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("evil.tar");
    std::fs::write(&p, &buf).unwrap();
    let e = mosaic_data::manifest::ShardReader::open(&p)
        .unwrap()
        .read_all()
        .unwrap_err()
        .to_string();
    assert!(e.contains("evil.tar") && e.contains("outside"), "{e}");
}
