//! Point clouds: PLY (ASCII and binary), PCD (ASCII, binary,
//! binary_compressed), XYZ/CSV; centring, unit-sphere scaling, and
//! farthest-point or random sampling to a fixed count.

use mosaic_core::formats::npy::Scalar;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result, read_limited};

/// Largest point count accepted from a header, so a hostile header cannot
/// make us reserve unbounded memory.
pub const MAX_POINTS: usize = 50_000_000;

/// A decoded point cloud.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PointCloud {
    /// `xyz` per point.
    pub points: Vec<[f32; 3]>,
    /// Unit normals, when the file has them.
    pub normals: Option<Vec<[f32; 3]>>,
    /// RGB in [0, 1], when the file has them.
    pub colors: Option<Vec<[f32; 3]>>,
}

/// How to reduce or grow a cloud to a fixed count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// Farthest-point sampling, starting from a seeded random point.
    Farthest,
    /// Uniform random choice without replacement (with replacement when
    /// the cloud has fewer points than asked).
    Random,
}

impl PointCloud {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Subtracts the centroid.
    pub fn center(&mut self) {
        if self.points.is_empty() {
            return;
        }
        let n = self.points.len() as f64;
        let mut c = [0f64; 3];
        for p in &self.points {
            for i in 0..3 {
                c[i] += p[i] as f64;
            }
        }
        let c = c.map(|v| (v / n) as f32);
        for p in &mut self.points {
            for i in 0..3 {
                p[i] -= c[i];
            }
        }
    }

    /// Scales so the farthest point from the origin is at distance 1
    /// (call [`center`](Self::center) first for the usual normalisation).
    pub fn scale_to_unit_sphere(&mut self) {
        let r = self
            .points
            .iter()
            .map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt())
            .fold(0f32, f32::max);
        if r > 0.0 {
            for p in &mut self.points {
                for v in p.iter_mut() {
                    *v /= r;
                }
            }
        }
    }

    /// Indices of `n` points chosen by `method`, deterministic for a seed.
    pub fn sample_indices(&self, n: usize, method: Sampling, seed: u64) -> Result<Vec<usize>> {
        let len = self.points.len();
        if len == 0 {
            return Err(Error::invalid(
                "point cloud",
                "cannot sample from an empty cloud",
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        if n > len {
            // Keep every point, then repeat random ones.
            let mut idx: Vec<usize> = (0..len).collect();
            idx.extend((0..n - len).map(|_| rng.random_range(0..len)));
            return Ok(idx);
        }
        Ok(match method {
            Sampling::Random => rand::seq::index::sample(&mut rng, len, n).into_vec(),
            Sampling::Farthest => {
                let mut dist = vec![f32::INFINITY; len];
                let mut idx = Vec::with_capacity(n);
                let mut cur = rng.random_range(0..len);
                for _ in 0..n {
                    idx.push(cur);
                    let c = self.points[cur];
                    let mut best = (0usize, -1f32);
                    for (i, (p, d)) in self.points.iter().zip(dist.iter_mut()).enumerate() {
                        let dd =
                            (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2);
                        if dd < *d {
                            *d = dd;
                        }
                        if *d > best.1 {
                            best = (i, *d);
                        }
                    }
                    cur = best.0;
                }
                idx
            }
        })
    }

    /// A new cloud with the points at `indices`.
    pub fn select(&self, indices: &[usize]) -> PointCloud {
        let pick = |v: &Vec<[f32; 3]>| indices.iter().map(|&i| v[i]).collect::<Vec<_>>();
        PointCloud {
            points: pick(&self.points),
            normals: self.normals.as_ref().map(pick),
            colors: self.colors.as_ref().map(pick),
        }
    }

    /// `[N, C]` f32 tensor: xyz, then normals and colours if asked and present.
    pub fn to_tensor(&self, with_normals: bool, with_colors: bool) -> Result<Tensor> {
        let mut cols = 3;
        if with_normals {
            if self.normals.is_none() {
                return Err(Error::invalid(
                    "point cloud",
                    "normals were asked for but the cloud has none",
                ));
            }
            cols += 3;
        }
        if with_colors {
            if self.colors.is_none() {
                return Err(Error::invalid(
                    "point cloud",
                    "colors were asked for but the cloud has none",
                ));
            }
            cols += 3;
        }
        let mut data = Vec::with_capacity(self.len() * cols);
        for i in 0..self.len() {
            data.extend_from_slice(&self.points[i]);
            if with_normals {
                data.extend_from_slice(&self.normals.as_ref().unwrap()[i]);
            }
            if with_colors {
                data.extend_from_slice(&self.colors.as_ref().unwrap()[i]);
            }
        }
        Ok(Tensor::from_vec(data, (self.len(), cols), &Device::Cpu)?)
    }
}

/// Preprocessing recipe for point clouds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointCloudConfig {
    /// Output point count.
    pub num_points: usize,
    /// Sampling method.
    pub sampling: Sampling,
    /// Centre on the centroid.
    pub center: bool,
    /// Scale into the unit sphere.
    pub unit_sphere: bool,
    /// Append normals (error if absent).
    pub normals: bool,
    /// Append colours (error if absent).
    pub colors: bool,
}

impl Default for PointCloudConfig {
    fn default() -> Self {
        PointCloudConfig {
            num_points: 1024,
            sampling: Sampling::Farthest,
            center: true,
            unit_sphere: true,
            normals: false,
            colors: false,
        }
    }
}

impl PointCloudConfig {
    /// Applies the recipe, returning `[num_points, C]`.
    pub fn apply(&self, cloud: &PointCloud, seed: u64) -> Result<Tensor> {
        let mut c = cloud.clone();
        if self.center {
            c.center();
        }
        if self.unit_sphere {
            c.scale_to_unit_sphere();
        }
        let idx = c.sample_indices(self.num_points, self.sampling, seed)?;
        c.select(&idx).to_tensor(self.normals, self.colors)
    }
}

/// Decodes point-cloud bytes (e.g. from a shard); the format is taken from
/// `extension` if given, else sniffed (`ply` magic, a PCD `FIELDS` header,
/// else XYZ/CSV text).
pub fn decode_point_cloud(bytes: &[u8], name: &str, extension: Option<&str>) -> Result<PointCloud> {
    let ext = extension
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_else(|| {
            let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned();
            if bytes.starts_with(b"ply") {
                "ply".into()
            } else if head.contains("FIELDS") && head.contains("DATA") {
                "pcd".into()
            } else {
                "xyz".into()
            }
        });
    match ext.as_str() {
        "ply" => parse_ply(bytes, name),
        "pcd" => parse_pcd(bytes, name),
        "xyz" | "txt" | "csv" | "pts" => parse_xyz(bytes, name),
        _ => Err(Error::decode(
            name,
            "point cloud",
            format!("unknown extension `{ext}` (expected ply, pcd, xyz, txt, csv)"),
        )),
    }
}

/// Reads a point cloud, choosing the format by extension (`ply`, `pcd`,
/// `xyz`, `txt`, `csv`, `pts`).
pub fn load_point_cloud(path: &Path) -> Result<PointCloud> {
    let bytes = read_limited(path, 4 << 30)?;
    let name = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "ply" => parse_ply(&bytes, &name),
        "pcd" => parse_pcd(&bytes, &name),
        "xyz" | "txt" | "csv" | "pts" => parse_xyz(&bytes, &name),
        _ => Err(Error::decode(
            name,
            "point cloud",
            format!("unknown extension `{ext}` (expected ply, pcd, xyz, txt, csv)"),
        )),
    }
}

/// A PLY property type (`float`, `uchar`, …) as the element type it is.
fn ply_scalar(name: &str) -> Option<Scalar> {
    Some(match name {
        "char" | "int8" => Scalar::I8,
        "uchar" | "uint8" => Scalar::U8,
        "short" | "int16" => Scalar::I16,
        "ushort" | "uint16" => Scalar::U16,
        "int" | "int32" => Scalar::I32,
        "uint" | "uint32" => Scalar::U32,
        "float" | "float32" => Scalar::F32,
        "double" | "float64" => Scalar::F64,
        _ => return None,
    })
}

#[derive(Debug)]
struct PlyProp {
    name: String,
    ty: Scalar,
    list_count: Option<Scalar>,
}

#[derive(Debug)]
struct PlyElement {
    name: String,
    count: usize,
    props: Vec<PlyProp>,
}

/// Finds the byte after the header's `end_header` line.
fn split_header<'a>(
    bytes: &'a [u8],
    end: &str,
    name: &str,
    what: &'static str,
) -> Result<(&'a str, usize)> {
    let limit = bytes.len().min(1 << 16);
    // Walk raw lines (a binary body may follow the header, so the bytes as
    // a whole are not text); byte offsets stay exact.
    let mut off = 0;
    for raw in bytes[..limit].split_inclusive(|&b| b == b'\n') {
        off += raw.len();
        let line = String::from_utf8_lossy(raw);
        if line.trim_end() == end || line.trim_start().starts_with(end) && end == "DATA" {
            let header = std::str::from_utf8(&bytes[..off]).map_err(|e| {
                Error::decode(
                    name,
                    what,
                    format!("header is not UTF-8 (byte {})", e.valid_up_to()),
                )
            })?;
            return Ok((header, off));
        }
    }
    Err(Error::decode(
        name,
        what,
        format!("no `{end}` line in the first {limit} bytes"),
    ))
}

fn parse_ply(bytes: &[u8], name: &str) -> Result<PointCloud> {
    let err = |m: String| Error::decode(name, "PLY", m);
    if !bytes.starts_with(b"ply") {
        return Err(err("missing `ply` magic".into()));
    }
    let (header, body_start) = split_header(bytes, "end_header", name, "PLY")?;
    let mut format = None;
    let mut elements: Vec<PlyElement> = Vec::new();
    for (ln, line) in header.lines().enumerate().skip(1) {
        let toks: Vec<&str> = line.split_whitespace().collect();
        let lerr = |m: &str| err(format!("header line {}: {m}", ln + 1));
        match toks.first().copied() {
            Some("format") => {
                format = Some(match toks.get(1).copied() {
                    Some("ascii") => 0,
                    Some("binary_little_endian") => 1,
                    Some("binary_big_endian") => 2,
                    other => return Err(lerr(&format!("unknown format {other:?}"))),
                })
            }
            Some("element") => {
                let (Some(n), Some(c)) = (toks.get(1), toks.get(2)) else {
                    return Err(lerr("expected `element NAME COUNT`"));
                };
                let count: usize = c.parse().map_err(|_| lerr("bad element count"))?;
                if count > MAX_POINTS {
                    return Err(lerr(&format!(
                        "{count} elements exceeds the limit of {MAX_POINTS}"
                    )));
                }
                elements.push(PlyElement {
                    name: n.to_string(),
                    count,
                    props: Vec::new(),
                });
            }
            Some("property") => {
                let el = elements
                    .last_mut()
                    .ok_or_else(|| lerr("property before any element"))?;
                if toks.get(1) == Some(&"list") {
                    let (Some(c), Some(t), Some(n)) = (toks.get(2), toks.get(3), toks.get(4))
                    else {
                        return Err(lerr("expected `property list COUNT_TYPE TYPE NAME`"));
                    };
                    el.props.push(PlyProp {
                        name: n.to_string(),
                        ty: ply_scalar(t).ok_or_else(|| lerr(&format!("unknown type {t}")))?,
                        list_count: Some(
                            ply_scalar(c).ok_or_else(|| lerr(&format!("unknown type {c}")))?,
                        ),
                    });
                } else {
                    let (Some(t), Some(n)) = (toks.get(1), toks.get(2)) else {
                        return Err(lerr("expected `property TYPE NAME`"));
                    };
                    el.props.push(PlyProp {
                        name: n.to_string(),
                        ty: ply_scalar(t).ok_or_else(|| lerr(&format!("unknown type {t}")))?,
                        list_count: None,
                    });
                }
            }
            Some("comment") | Some("obj_info") | Some("end_header") | None => {}
            Some(other) => return Err(lerr(&format!("unknown keyword `{other}`"))),
        }
    }
    let format = format.ok_or_else(|| err("no `format` line".into()))?;
    let body = &bytes[body_start..];
    // Structural checks before reading any row, so a hostile header cannot
    // make us loop or allocate for rows the file does not hold.
    if elements.iter().filter(|e| e.name == "vertex").count() != 1 {
        return Err(err("expected exactly one `vertex` element".into()));
    }
    let mut min_bytes: usize = 0;
    for el in &elements {
        if el.count > 0 && el.props.is_empty() {
            return Err(err(format!(
                "element `{}` has rows but no properties",
                el.name
            )));
        }
        let row: usize = el
            .props
            .iter()
            .map(|p| p.list_count.map_or(p.ty.size(), |c| c.size()))
            .sum();
        let need = if format == 0 {
            el.count.saturating_mul(2)
        } else {
            el.count.saturating_mul(row)
        };
        min_bytes = min_bytes.saturating_add(need);
        if min_bytes > body.len() {
            return Err(err(format!(
                "element `{}` declares {} rows, needing at least {min_bytes} bytes of data, but the file has {} (fewer rows than declared)",
                el.name,
                el.count,
                body.len()
            )));
        }
    }
    let vertex = elements
        .iter()
        .find(|e| e.name == "vertex")
        .expect("checked");
    // Columns are the vertex element's scalar properties (lists are skipped).
    let vertex_props: Vec<String> = vertex
        .props
        .iter()
        .filter(|p| p.list_count.is_none())
        .map(|p| p.name.clone())
        .collect();
    // Integer colour channels are 0-255; float ones are already 0-1.
    let color_scales: Vec<(String, f64)> = vertex
        .props
        .iter()
        .filter(|p| p.list_count.is_none())
        .map(|p| {
            (
                p.name.clone(),
                if matches!(p.ty, Scalar::F32 | Scalar::F64) {
                    1.0
                } else {
                    255.0
                },
            )
        })
        .collect();
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(vertex.count);
    if format == 0 {
        let text = std::str::from_utf8(body).map_err(|e| {
            err(format!(
                "body is not text at byte {}",
                body_start + e.valid_up_to()
            ))
        })?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        for el in &elements {
            for i in 0..el.count {
                let line = lines.next().ok_or_else(|| {
                    err(format!(
                        "element `{}` declares {} rows but the file ends after {i}",
                        el.name, el.count
                    ))
                })?;
                if el.name != "vertex" {
                    continue;
                }
                let mut toks = line.split_whitespace();
                let mut num = |what: &str| -> Result<f64> {
                    let t = toks
                        .next()
                        .ok_or_else(|| err(format!("vertex {i}: missing {what} in `{line}`")))?;
                    t.parse::<f64>()
                        .map_err(|_| err(format!("vertex {i}: `{t}` is not a number")))
                };
                let mut vals = Vec::with_capacity(vertex_props.len());
                for p in &el.props {
                    if p.list_count.is_some() {
                        let n = num(&p.name)?;
                        if !(0.0..=1e6).contains(&n) {
                            return Err(err(format!("vertex {i}: list length {n} out of range")));
                        }
                        for _ in 0..n as usize {
                            num(&p.name)?;
                        }
                    } else {
                        vals.push(num(&p.name)?);
                    }
                }
                rows.push(vals);
            }
        }
    } else {
        let big = format == 2;
        let mut off = 0usize;
        for el in &elements {
            let is_vertex = el.name == "vertex";
            for i in 0..el.count {
                let mut vals = Vec::with_capacity(vertex_props.len());
                for p in &el.props {
                    let at = off;
                    let short = || {
                        err(format!(
                            "element `{}` declares {} rows but the data ends in row {i} (byte {})",
                            el.name,
                            el.count,
                            body_start + at
                        ))
                    };
                    if let Some(ct) = p.list_count {
                        let b = body.get(off..off + ct.size()).ok_or_else(short)?;
                        let n = ct.read(b, big);
                        if !(0.0..=1e9).contains(&n) {
                            return Err(err(format!(
                                "element `{}` row {i}: list length {n} out of range",
                                el.name
                            )));
                        }
                        let start = off + ct.size();
                        let end = (n as usize)
                            .checked_mul(p.ty.size())
                            .and_then(|len| start.checked_add(len))
                            .ok_or_else(short)?;
                        body.get(start..end).ok_or_else(short)?;
                        off = end;
                    } else {
                        let b = body.get(off..off + p.ty.size()).ok_or_else(short)?;
                        if is_vertex {
                            vals.push(p.ty.read(b, big));
                        }
                        off += p.ty.size();
                    }
                }
                if is_vertex {
                    rows.push(vals);
                }
            }
        }
    }
    cloud_from_rows(&rows, &vertex_props, name, "PLY", |p| {
        color_scales
            .iter()
            .find(|(n, _)| n == p)
            .map_or(1.0, |(_, s)| *s)
    })
}

/// Builds a cloud from rows of named columns; colour columns are divided by
/// `color_scale(name)`.
fn cloud_from_rows(
    rows: &[Vec<f64>],
    cols: &[String],
    name: &str,
    what: &'static str,
    color_scale: impl Fn(&str) -> f64,
) -> Result<PointCloud> {
    let find = |names: &[&str]| names.iter().find_map(|n| cols.iter().position(|c| c == n));
    let (Some(x), Some(y), Some(z)) = (find(&["x"]), find(&["y"]), find(&["z"])) else {
        return Err(Error::decode(
            name,
            what,
            format!("no x/y/z columns (found {})", cols.join(", ")),
        ));
    };
    if rows.is_empty() {
        return Err(Error::decode(name, what, "no points"));
    }
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() < cols.len()) {
        return Err(Error::decode(
            name,
            what,
            format!(
                "point {i} has {} values for {} columns",
                r.len(),
                cols.len()
            ),
        ));
    }
    let tri = |a: usize, b: usize, c: usize, s: [f64; 3]| -> Vec<[f32; 3]> {
        rows.iter()
            .map(|r| {
                [
                    (r[a] / s[0]) as f32,
                    (r[b] / s[1]) as f32,
                    (r[c] / s[2]) as f32,
                ]
            })
            .collect()
    };
    let points = tri(x, y, z, [1.0; 3]);
    for (i, p) in points.iter().enumerate() {
        if p.iter().any(|v| !v.is_finite()) {
            return Err(Error::decode(
                name,
                what,
                format!("point {i} has a non-finite coordinate {p:?}"),
            ));
        }
    }
    let normals = match (find(&["nx"]), find(&["ny"]), find(&["nz"])) {
        (Some(a), Some(b), Some(c)) => Some(tri(a, b, c, [1.0; 3])),
        _ => None,
    };
    let colors = match (
        find(&["red", "r", "diffuse_red"]),
        find(&["green", "g", "diffuse_green"]),
        find(&["blue", "b", "diffuse_blue"]),
    ) {
        (Some(a), Some(b), Some(c)) => {
            let s = [
                color_scale(&cols[a]),
                color_scale(&cols[b]),
                color_scale(&cols[c]),
            ];
            Some(tri(a, b, c, s))
        }
        _ => None,
    };
    Ok(PointCloud {
        points,
        normals,
        colors,
    })
}

fn parse_pcd(bytes: &[u8], name: &str) -> Result<PointCloud> {
    let err = |m: String| Error::decode(name, "PCD", m);
    let (header, body_start) = split_header(bytes, "DATA", name, "PCD")?;
    let mut fields: Vec<String> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    let mut types: Vec<char> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut points = None;
    let mut data = "";
    for line in header.lines() {
        let toks: Vec<&str> = line.split_whitespace().collect();
        match toks.first().copied() {
            Some("FIELDS") => fields = toks[1..].iter().map(|s| s.to_string()).collect(),
            Some("SIZE") => {
                sizes = toks[1..]
                    .iter()
                    .map(|s| s.parse().map_err(|_| err(format!("bad SIZE `{line}`"))))
                    .collect::<Result<_>>()?
            }
            Some("TYPE") => {
                types = toks[1..]
                    .iter()
                    .map(|s| s.chars().next().unwrap_or('?'))
                    .collect()
            }
            Some("COUNT") => {
                counts = toks[1..]
                    .iter()
                    .map(|s| s.parse().map_err(|_| err(format!("bad COUNT `{line}`"))))
                    .collect::<Result<_>>()?
            }
            Some("POINTS") => {
                let n: usize = toks
                    .get(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| err(format!("bad POINTS `{line}`")))?;
                if n > MAX_POINTS {
                    return Err(err(format!("{n} points exceeds the limit of {MAX_POINTS}")));
                }
                points = Some(n);
            }
            Some("DATA") => data = toks.get(1).copied().unwrap_or(""),
            _ => {}
        }
    }
    let n = points.ok_or_else(|| err("no POINTS line".into()))?;
    if counts.is_empty() {
        counts = vec![1; fields.len()];
    }
    if counts.iter().sum::<usize>() > 4096 || fields.len() > 4096 {
        return Err(err("more than 4096 values per point".into()));
    }
    if fields.is_empty()
        || sizes.len() != fields.len()
        || types.len() != fields.len()
        || counts.len() != fields.len()
    {
        return Err(err(format!(
            "FIELDS/SIZE/TYPE/COUNT disagree ({}/{}/{}/{})",
            fields.len(),
            sizes.len(),
            types.len(),
            counts.len()
        )));
    }
    let mut scalars = Vec::new();
    for i in 0..fields.len() {
        scalars.push(match (types[i], sizes[i]) {
            ('F', 4) => Scalar::F32,
            ('F', 8) => Scalar::F64,
            ('U', 1) => Scalar::U8,
            ('U', 2) => Scalar::U16,
            ('U', 4) => Scalar::U32,
            ('I', 1) => Scalar::I8,
            ('I', 2) => Scalar::I16,
            ('I', 4) => Scalar::I32,
            (t, s) => {
                return Err(err(format!(
                    "field `{}` has unsupported type {t}{s}",
                    fields[i]
                )));
            }
        });
    }
    // Expanded column names (a field with COUNT > 1 yields several columns).
    let mut cols = Vec::new();
    let mut col_ty = Vec::new();
    for i in 0..fields.len() {
        for k in 0..counts[i] {
            cols.push(if counts[i] == 1 {
                fields[i].clone()
            } else {
                format!("{}_{k}", fields[i])
            });
            col_ty.push(scalars[i]);
        }
    }
    let rgb_col = cols.iter().position(|c| c == "rgb" || c == "rgba");
    let body = &bytes[body_start..];
    let point_size: usize = col_ty.iter().map(|t| t.size()).sum();
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(n.min(body.len() / point_size.max(1) + 1));
    match data {
        "ascii" => {
            let text =
                std::str::from_utf8(body).map_err(|_| err("ASCII body is not text".into()))?;
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            for i in 0..n {
                let line = lines
                    .next()
                    .ok_or_else(|| err(format!("declares {n} points but the data has {i}")))?;
                let vals: Vec<f64> = line
                    .split_whitespace()
                    .map(|t| t.parse::<f64>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| err(format!("point {i}: not a number in `{line}`")))?;
                if vals.len() < cols.len() {
                    return Err(err(format!(
                        "point {i}: {} values, expected {}",
                        vals.len(),
                        cols.len()
                    )));
                }
                rows.push(vals);
            }
        }
        "binary" => {
            let need = n
                .checked_mul(point_size)
                .ok_or_else(|| err("size overflow".into()))?;
            if body.len() < need {
                return Err(err(format!(
                    "declares {n} points ({need} bytes) but the data has {} bytes",
                    body.len()
                )));
            }
            for i in 0..n {
                let mut off = i * point_size;
                rows.push(
                    col_ty
                        .iter()
                        .map(|t| {
                            let v = t.read(&body[off..], false);
                            off += t.size();
                            v
                        })
                        .collect(),
                );
            }
        }
        "binary_compressed" => {
            if body.len() < 8 {
                return Err(err("compressed header truncated".into()));
            }
            let csize = u32::from_le_bytes(body[0..4].try_into().unwrap()) as usize;
            let usize_ = u32::from_le_bytes(body[4..8].try_into().unwrap()) as usize;
            // LZF expands at most ~130×; a larger claim is a lie.
            if usize_ > csize.saturating_mul(132).saturating_add(64) {
                return Err(err(format!(
                    "claims {usize_} uncompressed bytes from {csize} compressed"
                )));
            }
            let need = n
                .checked_mul(point_size)
                .ok_or_else(|| err("size overflow".into()))?;
            if usize_ != need {
                return Err(err(format!(
                    "uncompressed size {usize_} but {n} points need {need}"
                )));
            }
            let comp = body
                .get(8..8 + csize)
                .ok_or_else(|| err("compressed data truncated".into()))?;
            let raw = lzf_decompress(comp, usize_).map_err(|m| err(format!("LZF: {m}")))?;
            // Column-major (structure of arrays) layout.
            let mut col_off = Vec::new();
            let mut o = 0;
            for t in &col_ty {
                col_off.push(o);
                o += t.size() * n;
            }
            for i in 0..n {
                rows.push(
                    col_ty
                        .iter()
                        .zip(&col_off)
                        .map(|(t, &co)| t.read(&raw[co + i * t.size()..], false))
                        .collect(),
                );
            }
        }
        other => return Err(err(format!("unknown DATA `{other}`"))),
    }
    // Packed float `rgb`: reinterpret the float's bits as 0x00RRGGBB.
    if let Some(c) = rgb_col {
        cols.extend(["red".to_string(), "green".to_string(), "blue".to_string()]);
        for r in rows.iter_mut() {
            let bits = if col_ty[c] == Scalar::F32 {
                (r[c] as f32).to_bits()
            } else {
                r[c] as u32
            };
            r.extend([
                ((bits >> 16) & 255) as f64,
                ((bits >> 8) & 255) as f64,
                (bits & 255) as f64,
            ]);
        }
    }
    cloud_from_rows(&rows, &cols, name, "PCD", |c| {
        if ["red", "green", "blue"].contains(&c) {
            255.0
        } else {
            1.0
        }
    })
}

/// LZF decompression (the PCL `binary_compressed` codec). No maintained
/// crate decodes it without pulling C code, and it is 30 lines.
fn lzf_decompress(input: &[u8], out_len: usize) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(out_len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let len = ctrl + 1;
            let lit = input.get(i..i + len).ok_or("literal run past the end")?;
            if out.len() + len > out_len {
                return Err("output longer than declared".into());
            }
            out.extend_from_slice(lit);
            i += len;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(i).ok_or("truncated length")? as usize;
                i += 1;
            }
            len += 2;
            let back = ((ctrl & 0x1f) << 8) + *input.get(i).ok_or("truncated offset")? as usize + 1;
            i += 1;
            if back > out.len() {
                return Err("back reference before the start".into());
            }
            if out.len() + len > out_len {
                return Err("output longer than declared".into());
            }
            let start = out.len() - back;
            for k in 0..len {
                out.push(out[start + k]);
            }
        }
    }
    if out.len() != out_len {
        return Err(format!(
            "decompressed {} bytes, expected {out_len}",
            out.len()
        ));
    }
    Ok(out)
}

fn parse_xyz(bytes: &[u8], name: &str) -> Result<PointCloud> {
    let err = |m: String| Error::decode(name, "XYZ/CSV point cloud", m);
    let text = std::str::from_utf8(bytes)
        .map_err(|e| err(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    let mut cols: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        let toks: Vec<&str> = line
            .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .collect();
        let parsed: std::result::Result<Vec<f64>, _> =
            toks.iter().map(|t| t.parse::<f64>()).collect();
        match parsed {
            Ok(v) => {
                let c = cols.get_or_insert_with(|| {
                    let base = ["x", "y", "z", "nx", "ny", "nz"];
                    if v.len() == 6 || v.len() == 9 {
                        // x y z r g b  or  x y z nx ny nz r g b
                        let mut n: Vec<String> = vec!["x".into(), "y".into(), "z".into()];
                        if v.len() == 9 {
                            n.extend(base[3..].iter().map(|s| s.to_string()));
                        }
                        n.extend(["red", "green", "blue"].iter().map(|s| s.to_string()));
                        n
                    } else {
                        (0..v.len())
                            .map(|i| {
                                base.get(i)
                                    .map(|s| s.to_string())
                                    .unwrap_or(format!("c{i}"))
                            })
                            .collect()
                    }
                });
                if v.len() < c.len() {
                    return Err(err(format!(
                        "line {}: {} values, expected {}",
                        ln + 1,
                        v.len(),
                        c.len()
                    )));
                }
                rows.push(v);
            }
            Err(_) if cols.is_none() && rows.is_empty() => {
                cols = Some(
                    toks.iter()
                        .map(|t| t.trim_matches('"').to_ascii_lowercase())
                        .collect(),
                );
            }
            Err(_) => return Err(err(format!("line {}: not a number in `{line}`", ln + 1))),
        }
    }
    let cols = cols.unwrap_or_default();
    // Colours above 1 are 0–255.
    let color_max = rows
        .iter()
        .flat_map(|r| {
            cols.iter()
                .enumerate()
                .filter(|(_, c)| ["red", "green", "blue", "r", "g", "b"].contains(&c.as_str()))
                .map(move |(i, _)| r[i])
        })
        .fold(0f64, f64::max);
    let scale = if color_max > 1.0 { 255.0 } else { 1.0 };
    cloud_from_rows(&rows, &cols, name, "XYZ/CSV point cloud", |c| {
        if ["red", "green", "blue", "r", "g", "b"].contains(&c) {
            scale
        } else {
            1.0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cube() -> PointCloud {
        let mut pts = Vec::new();
        for x in 0..5 {
            for y in 0..5 {
                for z in 0..5 {
                    pts.push([x as f32, y as f32, z as f32]);
                }
            }
        }
        PointCloud {
            points: pts,
            normals: None,
            colors: None,
        }
    }

    #[test]
    fn ply_ascii_and_binary_agree() {
        let ascii = b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n1 2 3 255 0 0\n4 5 6 0 255 0\n3 0 1 1\n";
        let a = parse_ply(ascii, "a.ply").unwrap();
        let mut bin = b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n".to_vec();
        for (p, c) in [([1f32, 2., 3.], [255u8, 0, 0]), ([4., 5., 6.], [0, 255, 0])] {
            for v in p {
                bin.extend(v.to_le_bytes());
            }
            bin.extend(c);
        }
        bin.push(3);
        for i in [0i32, 1, 1] {
            bin.extend(i.to_le_bytes());
        }
        let b = parse_ply(&bin, "b.ply").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.points[1], [4., 5., 6.]);
        assert_eq!(a.colors.as_ref().unwrap()[0], [1., 0., 0.]);
    }

    #[test]
    fn ply_with_fewer_points_than_declared_is_an_error() {
        let bin = b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\nproperty float x\nproperty float y\nproperty float z\nend_header\n\0\0\0\0\0\0\0\0\0\0\0\0";
        let e = parse_ply(bin, "short.ply").unwrap_err().to_string();
        assert!(
            e.contains("short.ply") && e.contains("declares 1000 rows"),
            "{e}"
        );
        let ascii = b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\nend_header\n1 2 3\n";
        let e = parse_ply(ascii, "s.ply").unwrap_err().to_string();
        assert!(e.contains("s.ply") && e.contains("declares 3 rows"), "{e}");
    }

    #[test]
    fn pcd_ascii_binary_compressed() {
        let hdr = |data: &str| {
            format!(
                "# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 2\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 2\nDATA {data}\n"
            )
        };
        let a = parse_pcd(
            format!("{}1 2 3\n4 5 6\n", hdr("ascii")).as_bytes(),
            "a.pcd",
        )
        .unwrap();
        let mut b = hdr("binary").into_bytes();
        for v in [1f32, 2., 3., 4., 5., 6.] {
            b.extend(v.to_le_bytes());
        }
        assert_eq!(parse_pcd(&b, "b.pcd").unwrap(), a);
        // binary_compressed with an all-literal LZF stream, column-major.
        let mut raw = Vec::new();
        for v in [1f32, 4., 2., 5., 3., 6.] {
            raw.extend(v.to_le_bytes());
        }
        let mut lzf = vec![(raw.len() - 1) as u8];
        lzf.extend(&raw);
        let mut c = hdr("binary_compressed").into_bytes();
        c.extend((lzf.len() as u32).to_le_bytes());
        c.extend((raw.len() as u32).to_le_bytes());
        c.extend(lzf);
        assert_eq!(parse_pcd(&c, "c.pcd").unwrap(), a);
    }

    #[test]
    fn xyz_with_header_and_colors() {
        let c = parse_xyz(
            b"x,y,z,red,green,blue\n0,0,0,255,0,0\n1,1,1,0,0,255\n",
            "p.csv",
        )
        .unwrap();
        assert_eq!(c.colors.unwrap()[1], [0., 0., 1.]);
        let e = parse_xyz(b"1 2 3\n1 2 nan_\n", "p.xyz")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn normalise_and_sample() {
        let mut c = cube();
        c.center();
        c.scale_to_unit_sphere();
        let r = c
            .points
            .iter()
            .map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt())
            .fold(0f32, f32::max);
        assert!((r - 1.0).abs() < 1e-6);
        let fps = c.sample_indices(8, Sampling::Farthest, 3).unwrap();
        // The second pick is a point farthest from the first, and FPS spreads
        // points wider than random choice does.
        let d = |a: usize, b: usize| {
            let (p, q) = (c.points[a], c.points[b]);
            ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2)).sqrt()
        };
        let far = (0..c.len()).map(|i| d(fps[0], i)).fold(0f32, f32::max);
        assert_eq!(d(fps[0], fps[1]), far);
        let min_pair = |idx: &[usize]| {
            let mut m = f32::INFINITY;
            for i in 0..idx.len() {
                for j in i + 1..idx.len() {
                    m = m.min(d(idx[i], idx[j]));
                }
            }
            m
        };
        let rnd8 = c.sample_indices(8, Sampling::Random, 3).unwrap();
        assert!(min_pair(&fps) > min_pair(&rnd8), "{fps:?} vs {rnd8:?}");
        assert_eq!(fps, c.sample_indices(8, Sampling::Farthest, 3).unwrap());
        let rnd = c.sample_indices(10, Sampling::Random, 1).unwrap();
        let mut s = rnd.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 10);
        assert_eq!(
            c.sample_indices(200, Sampling::Random, 1).unwrap().len(),
            200
        );
        let t = PointCloudConfig {
            num_points: 16,
            ..Default::default()
        }
        .apply(&cube(), 0)
        .unwrap();
        assert_eq!(t.dims(), &[16, 3]);
    }
}
