//! The DB "unclip": shapely's area/length ratio and Clipper's round-join
//! polygon offset (pyclipper 1.4.0 = Clipper 6.4.2), as rapidocr calls them.
//!
//! Why our own port: the crates that wrap Clipper (`geo-clipper`,
//! `clipper-sys`) build the C++ library with a C toolchain and bindgen, and
//! `geo`'s buffer is a different algorithm with different vertices. The
//! detector only ever offsets one convex quadrilateral outward, which needs
//! Clipper's `DoOffset` for a closed polygon with round joins — about a
//! hundred lines — and not its general polygon clipper: the union Clipper
//! runs afterwards on that already simple, convex polygon only drops
//! repeated and collinear vertices and starts the output after its topmost
//! (then rightmost) vertex, which [`offset_round`] does directly (the start
//! matters: OpenCV's convex hull keys its start on point indices).

/// Clipper's `Round`: half away from zero.
fn round(v: f64) -> i64 {
    if v < 0.0 {
        (v - 0.5) as i64
    } else {
        (v + 0.5) as i64
    }
}

fn unit_normal(p1: [i64; 2], p2: [i64; 2]) -> [f64; 2] {
    if p1 == p2 {
        return [0.0, 0.0];
    }
    let mut dx = (p2[0] - p1[0]) as f64;
    let mut dy = (p2[1] - p1[1]) as f64;
    let f = 1.0 / (dx * dx + dy * dy).sqrt();
    dx *= f;
    dy *= f;
    [dy, -dx]
}

/// Signed area (shoelace), positive for Clipper's "outer" orientation.
fn area(poly: &[[i64; 2]]) -> f64 {
    let n = poly.len();
    if n < 3 {
        return 0.0;
    }
    let mut a = 0.0;
    let mut j = n - 1;
    for i in 0..n {
        a += (poly[j][0] as f64 + poly[i][0] as f64) * (poly[j][1] as f64 - poly[i][1] as f64);
        j = i;
    }
    -a * 0.5
}

/// `PyclipperOffset().AddPath(path, JT_ROUND, ET_CLOSEDPOLYGON);
/// Execute(delta)` for one closed path of integer points (pyclipper
/// truncates float coordinates toward zero before this), before Clipper's
/// final union clean-up. Empty when the path has fewer than 3 distinct
/// consecutive points.
pub(crate) fn offset_round(path: &[[i64; 2]], delta: f64) -> Vec<[i64; 2]> {
    // AddPath: drop a closing duplicate and consecutive duplicates
    let mut high = path.len() as isize - 1;
    if high < 0 {
        return Vec::new();
    }
    while high > 0 && path[0] == path[high as usize] {
        high -= 1;
    }
    let mut src: Vec<[i64; 2]> = vec![path[0]];
    for &p in &path[1..=high as usize] {
        if *src.last().expect("non-empty") != p {
            src.push(p);
        }
    }
    if src.len() < 3 {
        return Vec::new();
    }
    // FixOrientations: the (only) closed path must have positive orientation
    if area(&src) < 0.0 {
        src.reverse();
    }
    if delta.abs() < 1e-20 {
        return src;
    }
    const ARC_TOLERANCE: f64 = 0.25;
    const DEF_ARC_TOLERANCE: f64 = 0.25;
    let pi = std::f64::consts::PI;
    let two_pi = pi * 2.0;
    let y = if ARC_TOLERANCE > delta.abs() * DEF_ARC_TOLERANCE {
        delta.abs() * DEF_ARC_TOLERANCE
    } else {
        ARC_TOLERANCE
    };
    let mut steps = pi / (1.0 - y / delta.abs()).acos();
    if steps > delta.abs() * pi {
        steps = delta.abs() * pi;
    }
    let mut sin = (two_pi / steps).sin();
    let cos = (two_pi / steps).cos();
    let steps_per_rad = steps / two_pi;
    if delta < 0.0 {
        sin = -sin;
    }
    let len = src.len();
    if delta <= 0.0 && len < 3 {
        return Vec::new();
    }
    let mut normals: Vec<[f64; 2]> = (0..len - 1)
        .map(|j| unit_normal(src[j], src[j + 1]))
        .collect();
    normals.push(unit_normal(src[len - 1], src[0]));
    let mut out: Vec<[i64; 2]> = Vec::new();
    let at = |p: [i64; 2], n: [f64; 2]| {
        [
            round(p[0] as f64 + n[0] * delta),
            round(p[1] as f64 + n[1] * delta),
        ]
    };
    let mut k = len - 1;
    for j in 0..len {
        let (nk, nj) = (normals[k], normals[j]);
        let mut sin_a = nk[0] * nj[1] - nj[0] * nk[1];
        if (sin_a * delta).abs() < 1.0 {
            let cos_a = nk[0] * nj[0] + nj[1] * nk[1];
            if cos_a > 0.0 {
                out.push(at(src[j], nk));
                continue; // k stays: Clipper returns before `k = j`
            }
        } else {
            sin_a = sin_a.clamp(-1.0, 1.0);
        }
        if sin_a * delta < 0.0 {
            out.push(at(src[j], nk));
            out.push(src[j]);
            out.push(at(src[j], nj));
        } else {
            // DoRound
            let a = sin_a.atan2(nk[0] * nj[0] + nk[1] * nj[1]);
            let n = (round(steps_per_rad * a.abs()) as i32).max(1);
            let (mut x, mut yv) = (nk[0], nk[1]);
            for _ in 0..n {
                out.push(at(src[j], [x, yv]));
                let x2 = x;
                x = x * cos - sin * yv;
                yv = x2 * sin + yv * cos;
            }
            out.push(at(src[j], nj));
        }
        k = j;
    }
    clean_like_union(out)
}

/// What Clipper's union does to a simple convex polygon: duplicate and
/// collinear vertices dropped (PreserveCollinear off), output ending at the
/// vertex with the smallest y (the largest x among ties), same orientation.
fn clean_like_union(mut p: Vec<[i64; 2]>) -> Vec<[i64; 2]> {
    let collinear = |a: [i64; 2], b: [i64; 2], c: [i64; 2]| {
        (a[1] - b[1]) as i128 * (b[0] - c[0]) as i128
            == (a[0] - b[0]) as i128 * (b[1] - c[1]) as i128
    };
    loop {
        let n = p.len();
        if n < 3 {
            return Vec::new();
        }
        let drop = (0..n).find(|&i| {
            let (a, b, c) = (p[(i + n - 1) % n], p[i], p[(i + 1) % n]);
            b == a || b == c || collinear(a, b, c)
        });
        match drop {
            Some(i) => {
                p.remove(i);
            }
            None => break,
        }
    }
    let last = (0..p.len())
        .min_by(|&a, &b| p[a][1].cmp(&p[b][1]).then(p[b][0].cmp(&p[a][0])))
        .expect("non-empty");
    let n = p.len();
    p.rotate_left((last + 1) % n);
    p
}

/// rapidocr's `unclip` distance: `Polygon(box).area * ratio / Polygon(box).length`
/// with GEOS's shoelace area and summed segment lengths, in double.
pub(crate) fn unclip_distance(b: &[[f32; 2]; 4], ratio: f64) -> f64 {
    // closed ring of 5 points
    let ring: Vec<[f64; 2]> = (0..5)
        .map(|i| [b[i % 4][0] as f64, b[i % 4][1] as f64])
        .collect();
    let n = ring.len();
    let x0 = ring[0][0];
    let mut p1 = ring[0];
    let mut p2 = [ring[1][0] - x0, ring[1][1]];
    let mut sum = 0.0;
    for i in 1..n - 1 {
        let p0y = p1[1];
        p1 = p2;
        p2 = [ring[i + 1][0] - x0, ring[i + 1][1]];
        sum += p1[0] * (p0y - p2[1]);
    }
    let area = (sum / 2.0).abs();
    let mut length = 0.0;
    for i in 1..n {
        let dx = ring[i][0] - ring[i - 1][0];
        let dy = ring[i][1] - ring[i - 1][1];
        length += (dx * dx + dy * dy).sqrt();
    }
    area * ratio / length
}
