//! NumPy `.npy` arrays: a reader for every numeric dtype (either byte
//! order, C or 2-D Fortran order) and an f32 writer. Hand-written because
//! the format is a short text header plus raw data, and the crates that
//! read it pull in `ndarray`; Mosaic reads sensor streams and embedding
//! files with it and writes embeddings.

use crate::error::{Error, Result};

/// Reads a `.npy` file into its shape and the values as f64 (C order).
pub fn read_npy(bytes: &[u8], name: &str) -> Result<(Vec<usize>, Vec<f64>)> {
    let err = |m: String| Error::format(name, "NPY", m);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(err("missing \\x93NUMPY magic".into()));
    }
    let major = bytes[6];
    let (hlen, hstart) = if major == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        if bytes.len() < 12 {
            return Err(err("truncated header".into()));
        }
        (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        )
    };
    let header = bytes
        .get(hstart..hstart + hlen)
        .ok_or_else(|| err("truncated header".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| err("header is not text".into()))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))?;
        let rest = header[i + key.len() + 2..]
            .trim_start()
            .strip_prefix(':')?
            .trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| err("no descr".into()))?;
    let fortran = field("fortran_order")
        .map(|r| r.starts_with("True"))
        .unwrap_or(false);
    let shape_s = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| err("no shape".into()))?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| err(format!("bad shape `{shape_s}`")))
        })
        .collect::<Result<_>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err("shape overflows".into()))?;
    let (big, code) = match descr.as_bytes().first() {
        Some(b'<') | Some(b'|') | Some(b'=') => (false, &descr[1..]),
        Some(b'>') => (true, &descr[1..]),
        _ => (false, descr),
    };
    let ty = match code {
        "f4" => Scalar::F32,
        "f8" => Scalar::F64,
        "i1" => Scalar::I8,
        "u1" | "b1" => Scalar::U8,
        "i2" => Scalar::I16,
        "u2" => Scalar::U16,
        "i4" => Scalar::I32,
        "u4" => Scalar::U32,
        "i8" => Scalar::I64,
        other => return Err(err(format!("unsupported dtype `{other}`"))),
    };
    let data = &bytes[hstart + hlen..];
    let need = count
        .checked_mul(ty.size())
        .ok_or_else(|| err("size overflows".into()))?;
    if data.len() < need {
        return Err(err(format!(
            "shape {shape:?} needs {need} data bytes, the file has {}",
            data.len()
        )));
    }
    let mut vals: Vec<f64> = data[..need]
        .chunks_exact(ty.size())
        .map(|b| ty.read(b, big))
        .collect();
    if fortran && shape.len() == 2 {
        let (r, c) = (shape[0], shape[1]);
        let mut t = vec![0f64; vals.len()];
        for i in 0..r {
            for j in 0..c {
                t[i * c + j] = vals[j * r + i];
            }
        }
        vals = t;
    }
    Ok((shape, vals))
}

/// A numeric element type of a binary array file (NPY here, PLY in
/// `mosaic-data`), read one element at a time as f64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// `i8`.
    I8,
    /// `u8` (also NPY's `b1`).
    U8,
    /// `i16`.
    I16,
    /// `u16`.
    U16,
    /// `i32`.
    I32,
    /// `u32`.
    U32,
    /// `i64`.
    I64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

impl Scalar {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Scalar::I8 | Scalar::U8 => 1,
            Scalar::I16 | Scalar::U16 => 2,
            Scalar::I32 | Scalar::U32 | Scalar::F32 => 4,
            Scalar::I64 | Scalar::F64 => 8,
        }
    }

    /// The element at the start of `b` (at least [`Scalar::size`] bytes),
    /// big- or little-endian.
    pub fn read(self, b: &[u8], big: bool) -> f64 {
        macro_rules! rd {
            ($t:ty, $n:expr) => {{
                let a: [u8; $n] = b[..$n].try_into().unwrap();
                (if big {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }) as f64
            }};
        }
        match self {
            Scalar::I8 => b[0] as i8 as f64,
            Scalar::U8 => b[0] as f64,
            Scalar::I16 => rd!(i16, 2),
            Scalar::U16 => rd!(u16, 2),
            Scalar::I32 => rd!(i32, 4),
            Scalar::U32 => rd!(u32, 4),
            Scalar::I64 => rd!(i64, 8),
            Scalar::F32 => rd!(f32, 4),
            Scalar::F64 => rd!(f64, 8),
        }
    }
}

/// Writes a `[T, C]` f32 `.npy` (little endian, C order).
pub fn npy_bytes_f32(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims = shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let dims = if shape.len() == 1 {
        format!("{dims},")
    } else {
        dims
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in values {
        out.extend(v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_arrays_round_trip() {
        let b = npy_bytes_f32(&[3, 2], &[0.0, 1.0, 0.5, 2.0, 1.0, 3.0]);
        let (shape, v) = read_npy(&b, "x.npy").unwrap();
        assert_eq!(shape, vec![3, 2]);
        assert_eq!(v, vec![0.0, 1.0, 0.5, 2.0, 1.0, 3.0]);
        // The header pads the data to a 64-byte boundary, as NumPy does.
        assert_eq!((b.len() - 6 * 4) % 64, 0);
        let (shape, _) = read_npy(&npy_bytes_f32(&[4], &[1.0; 4]), "v.npy").unwrap();
        assert_eq!(shape, vec![4]);
    }

    #[test]
    fn big_endian_integers_and_fortran_order_are_read() {
        let header = "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((header.len() as u16).to_le_bytes());
        b.extend(header.as_bytes());
        // Column-major [[1, 2, 3], [4, 5, 6]] as big-endian i16.
        for v in [1i16, 4, 2, 5, 3, 6] {
            b.extend(v.to_be_bytes());
        }
        let (shape, v) = read_npy(&b, "m.npy").unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(v, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn bad_files_are_named() {
        let b = npy_bytes_f32(&[3, 2], &[0.0; 6]);
        let e = read_npy(&b[..b.len() - 3], "x.npy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.npy") && e.contains("data bytes"), "{e}");
        let e = read_npy(b"PK\x03\x04 not npy", "y.npy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("y.npy") && e.contains("magic"), "{e}");
        let mut bad = b.clone();
        let at = bad.windows(3).position(|w| w == b"<f4").unwrap();
        bad[at..at + 3].copy_from_slice(b"<c8");
        let e = read_npy(&bad, "z.npy").unwrap_err().to_string();
        assert!(e.contains("unsupported dtype `c8`"), "{e}");
    }
}
