//! The OpenCV operations rapidocr's pipeline calls, ported so that they give
//! the same numbers, not just similar ones.
//!
//! Why own ports and not a crate: the detector's boxes go through
//! `minAreaRect` → `boxPoints` (float32) → pyclipper, which *truncates* the
//! float corners to integers; a corner OpenCV computes as 6.9999995 becomes 6,
//! not 7. Any implementation whose float rounding differs from OpenCV's moves
//! boxes by a pixel, and every recognised crop with them. `imageproc` has
//! contours and a min-area rectangle, but with other tracing order, hull start
//! and arithmetic; `image`'s resizers are not OpenCV's fixed-point bilinear;
//! no crate has OpenCV's fixed-point bicubic `warpPerspective`. So each
//! function here follows the OpenCV 4.x algorithm step for step, in the same
//! precision and order of operations, and is checked bit for bit against
//! `cv2` 4.14 on seeded inputs (`tests/fixtures/cv_ops.json`, written by
//! `scripts/reference/make_ocr_fixtures.py`).

/// An 8-bit image with `c` interleaved channels (BGR for colour, as OpenCV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mat {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<u8>,
}

impl Mat {
    pub fn new(h: usize, w: usize, c: usize) -> Mat {
        Mat {
            h,
            w,
            c,
            data: vec![0; h * w * c],
        }
    }

    #[inline]
    fn at(&self, y: usize, x: usize, k: usize) -> u8 {
        self.data[(y * self.w + x) * self.c + k]
    }

    /// `np.rot90` (counter-clockwise by 90 degrees).
    pub fn rot90(&self) -> Mat {
        let mut out = Mat::new(self.w, self.h, self.c);
        for y in 0..out.h {
            for x in 0..out.w {
                // out[y][x] = in[x][w - 1 - y]
                for k in 0..self.c {
                    out.data[(y * out.w + x) * self.c + k] = self.at(x, self.w - 1 - y, k);
                }
            }
        }
        out
    }

    /// `cv2.rotate(img, cv2.ROTATE_180)`.
    pub fn rot180(&self) -> Mat {
        let mut out = Mat::new(self.h, self.w, self.c);
        let px = self.h * self.w;
        for i in 0..px {
            let j = px - 1 - i;
            out.data[j * self.c..(j + 1) * self.c]
                .copy_from_slice(&self.data[i * self.c..(i + 1) * self.c]);
        }
        out
    }

    /// `cv2.copyMakeBorder(..., top, bottom, 0, 0, BORDER_CONSTANT, 0)`.
    pub fn pad_rows(&self, top: usize, bottom: usize) -> Mat {
        let row = self.w * self.c;
        let mut data = vec![0u8; (self.h + top + bottom) * row];
        data[top * row..(top + self.h) * row].copy_from_slice(&self.data);
        Mat {
            h: self.h + top + bottom,
            w: self.w,
            c: self.c,
            data,
        }
    }
}

// ---------------------------------------------------------------------------
// cv2.resize(src, (w, h)) with the default INTER_LINEAR on 8-bit images:
// 11-bit fixed-point coefficients, a horizontal pass into i32 and OpenCV's
// vertical rounding `((b0*(s0>>4))>>16) + ((b1*(s1>>4))>>16) + 2) >> 2`.

const RESIZE_COEF_SCALE: f32 = 2048.0;

fn sat_i16(v: f32) -> i16 {
    v.round_ties_even().clamp(i16::MIN as f32, i16::MAX as f32) as i16
}

fn cv_floor(v: f32) -> i64 {
    let i = v as i64;
    i - i64::from((i as f32) > v)
}

/// Per output column: source index and the two weights (x direction, where
/// OpenCV clamps the fraction at the borders).
fn linear_x_coeffs(src: usize, dst: usize) -> Vec<(usize, i32, i32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = cv_floor(f);
            f -= s as f32;
            if s < 0 {
                f = 0.0;
                s = 0;
            }
            if s >= src as i64 - 1 {
                f = 0.0;
                s = src as i64 - 1;
            }
            (
                s as usize,
                sat_i16((1.0 - f) * RESIZE_COEF_SCALE) as i32,
                sat_i16(f * RESIZE_COEF_SCALE) as i32,
            )
        })
        .collect()
}

/// Per output row: the (unclamped) source row and the two weights; rows are
/// clamped when read, the fraction is not (OpenCV's y direction).
fn linear_y_coeffs(src: usize, dst: usize) -> Vec<(i64, i32, i32)> {
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = cv_floor(f);
            f -= s as f32;
            (
                s,
                sat_i16((1.0 - f) * RESIZE_COEF_SCALE) as i32,
                sat_i16(f * RESIZE_COEF_SCALE) as i32,
            )
        })
        .collect()
}

/// `cv2.resize(src, (dw, dh))` (bilinear), bit-exact for 8-bit images.
pub(crate) fn resize_linear(src: &Mat, dw: usize, dh: usize) -> Mat {
    let c = src.c;
    if dw == src.w && dh == src.h {
        return src.clone();
    }
    let xs = linear_x_coeffs(src.w, dw);
    let ys = linear_y_coeffs(src.h, dh);
    // horizontal pass of every source row that is used, lazily
    let mut rows: Vec<Option<Vec<i32>>> = vec![None; src.h];
    let hpass = |y: usize| -> Vec<i32> {
        let row = &src.data[y * src.w * c..(y + 1) * src.w * c];
        let mut out = vec![0i32; dw * c];
        for (dx, &(sx, a0, a1)) in xs.iter().enumerate() {
            let sx1 = (sx + 1).min(src.w - 1);
            for k in 0..c {
                out[dx * c + k] = row[sx * c + k] as i32 * a0 + row[sx1 * c + k] as i32 * a1;
            }
        }
        out
    };
    let mut out = Mat::new(dh, dw, c);
    let last = src.h as i64 - 1;
    for (dy, &(sy, b0, b1)) in ys.iter().enumerate() {
        let r0 = sy.clamp(0, last) as usize;
        let r1 = (sy + 1).clamp(0, last) as usize;
        for r in [r0, r1] {
            if rows[r].is_none() {
                rows[r] = Some(hpass(r));
            }
        }
        let s0 = rows[r0].as_ref().expect("computed");
        let s1 = rows[r1].as_ref().expect("computed");
        let o = &mut out.data[dy * dw * c..(dy + 1) * dw * c];
        for i in 0..dw * c {
            let v = (((b0 * (s0[i] >> 4)) >> 16) + ((b1 * (s1[i] >> 4)) >> 16) + 2) >> 2;
            o[i] = v.clamp(0, 255) as u8;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// getPerspectiveTransform + warpPerspective(INTER_CUBIC, BORDER_REPLICATE)

/// `cv2.getPerspectiveTransform(src, dst)`: the 8x8 system solved by
/// OpenCV's Gaussian elimination with partial pivoting (DECOMP_LU).
pub(crate) fn perspective_transform(src: &[[f32; 2]; 4], dst: &[[f32; 2]; 4]) -> Option<[f64; 9]> {
    let mut a = [[0f64; 8]; 8];
    let mut b = [0f64; 8];
    for i in 0..4 {
        a[i][0] = src[i][0] as f64;
        a[i + 4][3] = src[i][0] as f64;
        a[i][1] = src[i][1] as f64;
        a[i + 4][4] = src[i][1] as f64;
        a[i][2] = 1.0;
        a[i + 4][5] = 1.0;
        // float products, as in OpenCV (Point2f * Point2f)
        a[i][6] = (-src[i][0] * dst[i][0]) as f64;
        a[i][7] = (-src[i][1] * dst[i][0]) as f64;
        a[i + 4][6] = (-src[i][0] * dst[i][1]) as f64;
        a[i + 4][7] = (-src[i][1] * dst[i][1]) as f64;
        b[i] = dst[i][0] as f64;
        b[i + 4] = dst[i][1] as f64;
    }
    let m = 8;
    for i in 0..m {
        let mut k = i;
        for j in i + 1..m {
            if a[j][i].abs() > a[k][i].abs() {
                k = j;
            }
        }
        if a[k][i].abs() < f64::EPSILON * 10.0 {
            return None;
        }
        if k != i {
            a.swap(i, k);
            b.swap(i, k);
        }
        let d = -1.0 / a[i][i];
        for j in i + 1..m {
            let alpha = a[j][i] * d;
            // Rows j and i of the same matrix: indices, as OpenCV writes it.
            #[allow(clippy::needless_range_loop)]
            for c in i + 1..m {
                a[j][c] += alpha * a[i][c];
            }
            b[j] += alpha * b[i];
        }
        a[i][i] = -d;
    }
    for i in (0..m).rev() {
        let mut s = b[i];
        for c in i + 1..m {
            s -= a[i][c] * b[c];
        }
        b[i] = s * a[i][i];
    }
    Some([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], 1.0])
}

/// OpenCV's 3x3 inverse for DECOMP_LU (adjugate over determinant).
fn invert3(m: &[f64; 9]) -> Option<[f64; 9]> {
    let md = |r: usize, c: usize| m[r * 3 + c];
    let det = md(0, 0) * (md(1, 1) * md(2, 2) - md(1, 2) * md(2, 1))
        - md(0, 1) * (md(1, 0) * md(2, 2) - md(1, 2) * md(2, 0))
        + md(0, 2) * (md(1, 0) * md(2, 1) - md(1, 1) * md(2, 0));
    if det == 0.0 {
        return None;
    }
    let d = 1.0 / det;
    Some([
        (md(1, 1) * md(2, 2) - md(1, 2) * md(2, 1)) * d,
        (md(0, 2) * md(2, 1) - md(0, 1) * md(2, 2)) * d,
        (md(0, 1) * md(1, 2) - md(0, 2) * md(1, 1)) * d,
        (md(1, 2) * md(2, 0) - md(1, 0) * md(2, 2)) * d,
        (md(0, 0) * md(2, 2) - md(0, 2) * md(2, 0)) * d,
        (md(0, 2) * md(1, 0) - md(0, 0) * md(1, 2)) * d,
        (md(1, 0) * md(2, 1) - md(1, 1) * md(2, 0)) * d,
        (md(0, 1) * md(2, 0) - md(0, 0) * md(2, 1)) * d,
        (md(0, 0) * md(1, 1) - md(0, 1) * md(1, 0)) * d,
    ])
}

const INTER_BITS: i32 = 5;
const INTER_TAB_SIZE: i32 = 1 << INTER_BITS;
const REMAP_COEF_BITS: i32 = 15;
const REMAP_COEF_SCALE: i32 = 1 << REMAP_COEF_BITS;

fn cubic_coeffs(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let c0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let c2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [c0, c1, c2, 1.0 - c0 - c1 - c2]
}

/// OpenCV's fixed-point 4x4 bicubic table (32x32 sub-pixel positions), with
/// its rounding fix-up that makes every kernel sum exactly 2^15.
fn bicubic_table() -> Vec<[i32; 16]> {
    let tab1: Vec<[f32; 4]> = (0..INTER_TAB_SIZE)
        .map(|i| cubic_coeffs(i as f32 * (1.0 / INTER_TAB_SIZE as f32)))
        .collect();
    let mut out = Vec::with_capacity((INTER_TAB_SIZE * INTER_TAB_SIZE) as usize);
    for i in 0..INTER_TAB_SIZE as usize {
        for j in 0..INTER_TAB_SIZE as usize {
            let mut it = [0i32; 16];
            let mut isum = 0;
            for k1 in 0..4 {
                let vy = tab1[i][k1];
                for k2 in 0..4 {
                    let v = vy * tab1[j][k2];
                    let q = sat_i16(v * REMAP_COEF_SCALE as f32) as i32;
                    it[k1 * 4 + k2] = q;
                    isum += q;
                }
            }
            if isum != REMAP_COEF_SCALE {
                let diff = isum - REMAP_COEF_SCALE;
                let (mut mk1, mut mk2, mut big1, mut big2) = (2, 2, 2, 2);
                for k1 in 2..4 {
                    for k2 in 2..4 {
                        if it[k1 * 4 + k2] < it[mk1 * 4 + mk2] {
                            mk1 = k1;
                            mk2 = k2;
                        } else if it[k1 * 4 + k2] > it[big1 * 4 + big2] {
                            big1 = k1;
                            big2 = k2;
                        }
                    }
                }
                if diff < 0 {
                    it[big1 * 4 + big2] -= diff;
                } else {
                    it[mk1 * 4 + mk2] -= diff;
                }
            }
            out.push(it);
        }
    }
    out
}

fn bicubic_tab() -> &'static [[i32; 16]] {
    static TAB: std::sync::OnceLock<Vec<[i32; 16]>> = std::sync::OnceLock::new();
    TAB.get_or_init(bicubic_table)
}

fn sat_i32(v: f64) -> i32 {
    v.round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

fn sat_i16i(v: i32) -> i32 {
    v.clamp(i16::MIN as i32, i16::MAX as i32)
}

/// `cv2.warpPerspective(src, m, (dw, dh), flags=INTER_CUBIC,
/// borderMode=BORDER_REPLICATE)`: per destination pixel the source position
/// in 1/32 pixel (computed per 32x32-pixel block like OpenCV), then the
/// fixed-point bicubic kernel with replicated borders.
pub(crate) fn warp_perspective_cubic(src: &Mat, m: &[f64; 9], dw: usize, dh: usize) -> Option<Mat> {
    let mi = invert3(m)?;
    let tab = bicubic_tab();
    let c = src.c;
    let mut out = Mat::new(dh, dw, c);
    if dw == 0 || dh == 0 || src.w == 0 || src.h == 0 {
        return Some(out);
    }
    const BLOCK: usize = 32;
    let mut bh0 = (BLOCK / 2).min(dh);
    let bw0 = (BLOCK * BLOCK / bh0).min(dw);
    bh0 = (BLOCK * BLOCK / bw0).min(dh);
    let (sw, sh) = (src.w as i64, src.h as i64);
    let mut y = 0;
    while y < dh {
        let bh = bh0.min(dh - y);
        let mut x = 0;
        while x < dw {
            let bw = bw0.min(dw - x);
            for y1 in 0..bh {
                let yy = (y + y1) as f64;
                let x0 = mi[0] * x as f64 + mi[1] * yy + mi[2];
                let y0 = mi[3] * x as f64 + mi[4] * yy + mi[5];
                let w0 = mi[6] * x as f64 + mi[7] * yy + mi[8];
                for x1 in 0..bw {
                    let mut w = w0 + mi[6] * x1 as f64;
                    w = if w != 0.0 {
                        INTER_TAB_SIZE as f64 / w
                    } else {
                        0.0
                    };
                    let fx = ((x0 + mi[0] * x1 as f64) * w).clamp(i32::MIN as f64, i32::MAX as f64);
                    let fy = ((y0 + mi[3] * x1 as f64) * w).clamp(i32::MIN as f64, i32::MAX as f64);
                    let xi = sat_i32(fx);
                    let yi = sat_i32(fy);
                    let sx = sat_i16i(xi >> INTER_BITS) as i64 - 1;
                    let sy = sat_i16i(yi >> INTER_BITS) as i64 - 1;
                    let a = ((yi & (INTER_TAB_SIZE - 1)) * INTER_TAB_SIZE
                        + (xi & (INTER_TAB_SIZE - 1))) as usize;
                    let wt = &tab[a];
                    let xs: [usize; 4] =
                        std::array::from_fn(|i| (sx + i as i64).clamp(0, sw - 1) as usize);
                    let ys: [usize; 4] =
                        std::array::from_fn(|i| (sy + i as i64).clamp(0, sh - 1) as usize);
                    let o = ((y + y1) * dw + x + x1) * c;
                    for k in 0..c {
                        let mut sum = 0i32;
                        for (r, &yy) in ys.iter().enumerate() {
                            for (q, &xx) in xs.iter().enumerate() {
                                sum += src.at(yy, xx, k) as i32 * wt[r * 4 + q];
                            }
                        }
                        out.data[o + k] = ((sum + (1 << (REMAP_COEF_BITS - 1))) >> REMAP_COEF_BITS)
                            .clamp(0, 255) as u8;
                    }
                }
            }
            x += bw;
        }
        y += bh;
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// dilate with a 2x2 kernel of ones (anchor at its centre, (1, 1))

/// `cv2.dilate(mask, np.ones((2, 2)))`: each pixel becomes the maximum of
/// itself and its left, upper and upper-left neighbours.
pub(crate) fn dilate2x2(mask: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut v = mask[y * w + x];
            if x > 0 {
                v = v.max(mask[y * w + x - 1]);
            }
            if y > 0 {
                v = v.max(mask[(y - 1) * w + x]);
                if x > 0 {
                    v = v.max(mask[(y - 1) * w + x - 1]);
                }
            }
            out[y * w + x] = v;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// findContours(RETR_LIST, CHAIN_APPROX_SIMPLE): Suzuki-Abe border following
// as in OpenCV 4.x (contours_new.cpp), contours in OpenCV's output order
// (the reverse of discovery: each new contour becomes the first child).

const CHAIN: [(i32, i32); 8] = [
    (1, 0),
    (1, -1),
    (0, -1),
    (-1, -1),
    (-1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
];
const RIGHT_FLAG: i8 = -126; // 2 | 0x80 as schar
const NEW_FLAG: i8 = 2;

/// Contours of the non-zero pixels of an `h`x`w` mask, each a list of (x, y)
/// vertices, in `cv2.findContours(mask, RETR_LIST, CHAIN_APPROX_SIMPLE)`'s
/// order.
pub(crate) fn find_contours(mask: &[u8], h: usize, w: usize) -> Vec<Vec<[i32; 2]>> {
    // 1-pixel zero border, values 0/1
    let (ph, pw) = (h + 2, w + 2);
    let mut img = vec![0i8; ph * pw];
    for y in 0..h {
        for x in 0..w {
            if mask[y * w + x] != 0 {
                img[(y + 1) * pw + x + 1] = 1;
            }
        }
    }
    let step = pw as isize;
    let delta = |s: usize| CHAIN[s % 8].0 as isize + CHAIN[s % 8].1 as isize * step;
    let mut found: Vec<Vec<[i32; 2]>> = Vec::new();
    let width = pw - 1;
    let height = ph - 1;
    for y in 1..height {
        let mut prev: i8 = 0;
        let mut x = 1;
        while x < width {
            let p = img[y * pw + x];
            if p == prev {
                x += 1;
                continue;
            }
            let is_hole;
            if prev == 0 && p == 1 {
                is_hole = false;
            } else if p == 0 && prev >= 1 {
                is_hole = true;
            } else {
                prev = p;
                x += 1;
                continue;
            }
            let sx = x - usize::from(is_hole);
            let start = (y * pw + sx) as isize;
            let origin = [sx as i32 - 1, y as i32 - 1];
            found.push(fetch_contour(&mut img, start, origin, is_hole, &delta));
            // resume after the start pixel, `prev` = its (now marked) value
            prev = img[y * pw + x];
            x += 1;
        }
    }
    found.reverse();
    found
}

fn fetch_contour(
    img: &mut [i8],
    i0: isize,
    origin: [i32; 2],
    is_hole: bool,
    delta: &dyn Fn(usize) -> isize,
) -> Vec<[i32; 2]> {
    let mut pts = Vec::new();
    let mut pt = origin;
    let mut s_end: usize = if is_hole { 0 } else { 4 };
    let mut s = s_end;
    let mut i1;
    loop {
        s = (s + 7) & 7;
        i1 = i0 + delta(s);
        if img[i1 as usize] != 0 || s == s_end {
            break;
        }
    }
    if s == s_end && img[i1 as usize] == 0 {
        img[i0 as usize] = RIGHT_FLAG;
        pts.push(pt);
        return pts;
    }
    let mut i3 = i0;
    let mut prev_s = s ^ 4;
    loop {
        s_end = s;
        s = s.min(15);
        let mut i4 = i3;
        while s < 15 {
            s += 1;
            i4 = i3 + delta(s);
            if img[i4 as usize] != 0 {
                break;
            }
        }
        s &= 7;
        if s.wrapping_sub(1) < s_end {
            img[i3 as usize] = RIGHT_FLAG;
        } else if img[i3 as usize] == 1 {
            img[i3 as usize] = NEW_FLAG;
        }
        if s != prev_s {
            pts.push(pt);
        }
        prev_s = s;
        pt[0] += CHAIN[s].0;
        pt[1] += CHAIN[s].1;
        if i4 == i0 && i3 == i1 {
            break;
        }
        i3 = i4;
        s = (s + 4) & 7;
    }
    pts
}

// ---------------------------------------------------------------------------
// convexHull (counter-clockwise, points) + minAreaRect + boxPoints
// (OpenCV 4.14's rotcalipers.cpp / convhull.cpp / RotatedRect::points)

fn sklansky(
    pts: &[[i32; 2]],
    order: &[usize],
    start: usize,
    end: usize,
    stack: &mut [usize],
    nsign: i32,
    sign2: i32,
) -> usize {
    let sign = |v: i64| -> i32 { (v > 0) as i32 - (v < 0) as i32 };
    let p = |i: isize| pts[order[i as usize]];
    let incr: isize = if end > start { 1 } else { -1 };
    let mut pprev = start as isize;
    let mut pcur = pprev + incr;
    let mut pnext = pcur + incr;
    let mut stacksize = 3usize;
    if start == end || p(start as isize) == p(end as isize) {
        stack[0] = start;
        return 1;
    }
    stack[0] = pprev as usize;
    stack[1] = pcur as usize;
    stack[2] = pnext as usize;
    let end = end as isize + incr;
    while pnext != end {
        let cury = p(pcur)[1] as i64;
        let nexty = p(pnext)[1] as i64;
        let by = nexty - cury;
        if sign(by) != nsign {
            let ax = (p(pcur)[0] - p(pprev)[0]) as i64;
            let ay = cury - p(pprev)[1] as i64;
            let bx = (p(pnext)[0] - p(pcur)[0]) as i64;
            let convexity = ay * bx - ax * by;
            if sign(convexity) == sign2 && (ax != 0 || ay != 0) {
                pprev = pcur;
                pcur = pnext;
                pnext += incr;
                stack[stacksize] = pnext as usize;
                stacksize += 1;
            } else if pprev == start as isize {
                pcur = pnext;
                stack[1] = pcur as usize;
                pnext += incr;
                stack[2] = pnext as usize;
            } else {
                stack[stacksize - 2] = pnext as usize;
                pcur = pprev;
                pprev = stack[stacksize - 4] as isize;
                stacksize -= 1;
            }
        } else {
            pnext += incr;
            stack[stacksize - 1] = pnext as usize;
        }
    }
    stacksize - 1
}

/// `cv2.convexHull(points, clockwise=False)` (Sklansky) for integer points,
/// as indices into `pts`.
pub(crate) fn convex_hull_ccw(pts: &[[i32; 2]]) -> Vec<usize> {
    let total = pts.len();
    if total == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..total).collect();
    order.sort_by(|&a, &b| {
        pts[a][0]
            .cmp(&pts[b][0])
            .then(pts[a][1].cmp(&pts[b][1]))
            .then(a.cmp(&b))
    });
    let (mut miny, mut maxy) = (0usize, 0usize);
    for i in 1..total {
        let y = pts[order[i]][1];
        if pts[order[miny]][1] > y {
            miny = i;
        }
        if pts[order[maxy]][1] < y {
            maxy = i;
        }
    }
    if pts[order[0]] == pts[order[total - 1]] {
        return vec![0];
    }
    let p = |i: usize| pts[order[i]];
    let mut stack = vec![0usize; total + 2];
    let mut hull: Vec<usize> = Vec::with_capacity(total);
    // upper half; counter-clockwise swaps the two stacks
    let n = sklansky(pts, &order, 0, maxy, &mut stack, -1, 1);
    let tl_orig: Vec<usize> = stack[..n].to_vec();
    let n = sklansky(pts, &order, total - 1, maxy, &mut stack, -1, -1);
    let tr_orig: Vec<usize> = stack[..n].to_vec();
    let (tl, tr) = (tr_orig, tl_orig);
    for &i in tl.iter().take(tl.len().saturating_sub(1)) {
        hull.push(i);
    }
    for i in (1..tr.len()).rev() {
        hull.push(tr[i]);
    }
    let stop_idx: Option<usize> = if tr.len() > 2 {
        Some(tr[1])
    } else if tl.len() > 2 {
        Some(tl[tl.len() - 2])
    } else {
        None
    };
    // lower half (not swapped when counter-clockwise)
    let n = sklansky(pts, &order, 0, miny, &mut stack, 1, -1);
    let mut bl: Vec<usize> = stack[..n].to_vec();
    let n = sklansky(pts, &order, total - 1, miny, &mut stack, 1, 1);
    let mut br: Vec<usize> = stack[..n].to_vec();
    if let Some(stop) = stop_idx {
        let check = if bl.len() > 2 {
            Some(bl[1])
        } else if bl.len() + br.len() > 2 {
            Some(br[2 - bl.len()])
        } else {
            None
        };
        if let Some(ch) = check {
            if ch == stop || p(ch) == p(stop) {
                bl.truncate(2);
                br.truncate(2);
            }
        }
    }
    for &i in bl.iter().take(bl.len().saturating_sub(1)) {
        hull.push(i);
    }
    for i in (1..br.len()).rev() {
        hull.push(br[i]);
    }
    let mut hull: Vec<usize> = hull.into_iter().map(|i| order[i]).collect();
    rotate_hull_to_index_order(&mut hull);
    hull
}

/// OpenCV's last step: cyclically shift the hull so that its point indices
/// form an ascending or descending run, when they can.
fn rotate_hull_to_index_order(hull: &mut Vec<usize>) {
    let nout = hull.len();
    if nout < 3 {
        return;
    }
    let (mut min_idx, mut max_idx, mut lt) = (0usize, 0usize, 0usize);
    for i in 1..nout {
        let idx = hull[i];
        lt += usize::from(hull[i - 1] < idx);
        if lt > 1 && lt + 2 <= i {
            break;
        }
        if idx < hull[min_idx] {
            min_idx = i;
        }
        if idx > hull[max_idx] {
            max_idx = i;
        }
    }
    let mmdist = min_idx.abs_diff(max_idx);
    if (mmdist == 1 || mmdist == nout - 1) && (lt <= 1 || lt + 2 >= nout) {
        let ascending = (max_idx + 1) % nout == min_idx;
        let i0 = if ascending { min_idx } else { max_idx };
        if i0 > 0 {
            let mut out = Vec::with_capacity(nout);
            let mut j = i0;
            for i in 0..nout {
                let cur = hull[j];
                out.push(cur);
                let next_j = if j + 1 < nout { j + 1 } else { 0 };
                if i < nout - 1 && (ascending != (cur < hull[next_j])) {
                    return;
                }
                j = next_j;
            }
            *hull = out;
        }
    }
}

/// `cv2.minAreaRect` result: centre, (width, height), angle in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RotatedRect {
    pub center: [f32; 2],
    pub size: [f32; 2],
    pub angle: f32,
}

/// `firstVecIsRight`: is `v1` clockwise of `v2`?
fn first_vec_is_right(v1: [f32; 2], v2: [f32; 2]) -> bool {
    let t = [v1[1], -v1[0]];
    t[0] * v2[0] + t[1] * v2[1] < 0.0
}

/// Rotating calipers over a convex hull (CALIPERS_MINAREARECT), float32.
/// (OpenCV's orientation argument only seeds a base vector that is
/// overwritten before use, so it is left out.)
fn rotating_calipers(points: &[[f32; 2]]) -> [[f32; 2]; 3] {
    let n = points.len();
    let mut vect = vec![[0f32; 2]; n];
    let mut inv_len = vec![0f32; n];
    let (mut left, mut bottom, mut right, mut top) = (0usize, 0usize, 0usize, 0usize);
    let mut pt0 = points[0];
    let (mut left_x, mut right_x, mut top_y, mut bottom_y) = (pt0[0], pt0[0], pt0[1], pt0[1]);
    for i in 0..n {
        if pt0[0] < left_x {
            left_x = pt0[0];
            left = i;
        }
        if pt0[0] > right_x {
            right_x = pt0[0];
            right = i;
        }
        if pt0[1] > top_y {
            top_y = pt0[1];
            top = i;
        }
        if pt0[1] < bottom_y {
            bottom_y = pt0[1];
            bottom = i;
        }
        let pt = points[if i + 1 < n { i + 1 } else { 0 }];
        // float differences widened to double, as in OpenCV
        let dx = (pt[0] - pt0[0]) as f64;
        let dy = (pt[1] - pt0[1]) as f64;
        vect[i] = [dx as f32, dy as f32];
        inv_len[i] = (1.0 / (dx * dx + dy * dy).sqrt()) as f32;
        pt0 = pt;
    }
    let (mut base_a, mut base_b);
    let mut seq = [bottom, right, top, left];
    let mut minarea = f32::MAX;
    let mut best = (0usize, 0f32, 0f32, 0f32, 0f32, 0usize); // left, a, width, b, height, bottom
    for _ in 0..n {
        let v = |i: usize| vect[seq[i]];
        let rot = [
            v(0),
            [v(1)[1], -v(1)[0]],
            [-v(2)[0], -v(2)[1]],
            [-v(3)[1], v(3)[0]],
        ];
        let mut main = 0usize;
        for i in 1..4 {
            if first_vec_is_right(rot[i], rot[main]) {
                main = i;
            }
        }
        let pindex = seq[main];
        let lead_x = vect[pindex][0] * inv_len[pindex];
        let lead_y = vect[pindex][1] * inv_len[pindex];
        (base_a, base_b) = match main {
            0 => (lead_x, lead_y),
            1 => (lead_y, -lead_x),
            2 => (-lead_x, -lead_y),
            _ => (-lead_y, lead_x),
        };
        seq[main] += 1;
        if seq[main] == n {
            seq[main] = 0;
        }
        let dx = points[seq[1]][0] - points[seq[3]][0];
        let dy = points[seq[1]][1] - points[seq[3]][1];
        let width = dx * base_a + dy * base_b;
        let dx = points[seq[2]][0] - points[seq[0]][0];
        let dy = points[seq[2]][1] - points[seq[0]][1];
        let height = -dx * base_b + dy * base_a;
        let area = width * height;
        if area <= minarea {
            minarea = area;
            best = (seq[3], base_a, width, base_b, height, seq[0]);
        }
    }
    let (l, a1, wdt, b1, hgt, bt) = best;
    let (a2, b2) = (-b1, a1);
    let c1 = a1 * points[l][0] + points[l][1] * b1;
    let c2 = a2 * points[bt][0] + points[bt][1] * b2;
    let idet = 1.0f32 / (a1 * b2 - a2 * b1);
    let px = (c1 * b2 - c2 * b1) * idet;
    let py = (a1 * c2 - a2 * c1) * idet;
    [[px, py], [a1 * wdt, b1 * wdt], [a2 * hgt, b2 * hgt]]
}

/// `cv2.minAreaRect(points)` for integer points (angle in [-90, 0)).
pub(crate) fn min_area_rect(points: &[[i32; 2]]) -> RotatedRect {
    let hull: Vec<[f32; 2]> = convex_hull_ccw(points)
        .into_iter()
        .map(|i| [points[i][0] as f32, points[i][1] as f32])
        .collect();
    let n = hull.len();
    let mut r = RotatedRect {
        center: [0.0; 2],
        size: [0.0; 2],
        angle: 0.0,
    };
    let mut angle = -std::f64::consts::PI / 2.0;
    if n > 2 {
        let out = rotating_calipers(&hull);
        r.center = [
            out[0][0] + (out[1][0] + out[2][0]) * 0.5,
            out[0][1] + (out[1][1] + out[2][1]) * 0.5,
        ];
        let (o1x, o1y) = (out[1][0] as f64, out[1][1] as f64);
        let (o2x, o2y) = (out[2][0] as f64, out[2][1] as f64);
        r.size = [
            (o2x * o2x + o2y * o2y).sqrt() as f32,
            (o1x * o1x + o1y * o1y).sqrt() as f32,
        ];
        if out[1][0] == 0.0 && out[1][1] > 0.0 {
            r.size.swap(0, 1);
        } else {
            angle = -o1x.atan2(o1y);
        }
    } else if n == 2 {
        r.center = [
            (hull[0][0] + hull[1][0]) * 0.5,
            (hull[0][1] + hull[1][1]) * 0.5,
        ];
        let dx = (hull[0][0] - hull[1][0]) as f64;
        let dy = (hull[0][1] - hull[1][1]) as f64;
        r.size = [0.0, (dx * dx + dy * dy).sqrt() as f32];
        if dx == 0.0 {
            r.size.swap(0, 1);
        } else if dy < 0.0 {
            angle = dy.atan2(dx);
            r.size.swap(0, 1);
        } else if dy > 0.0 {
            angle = -dx.atan2(dy);
        }
    } else if n == 1 {
        r.center = hull[0];
    }
    r.angle = (angle * 180.0 / std::f64::consts::PI) as f32;
    r
}

/// `cv2.boxPoints(rect)`.
pub(crate) fn box_points(r: &RotatedRect) -> [[f32; 2]; 4] {
    let angle = r.angle as f64 * std::f64::consts::PI / 180.0;
    let b = angle.cos() as f32 * 0.5;
    let a = angle.sin() as f32 * 0.5;
    let [cx, cy] = r.center;
    let [w, h] = r.size;
    let (ah, aw, bh, bw) = (a * h, a * w, b * h, b * w);
    [
        [cx - ah - bw, cy + bh - aw],
        [cx + ah - bw, cy - bh - aw],
        [cx + ah + bw, cy - bh + aw],
        [cx - ah + bw, cy + bh + aw],
    ]
}

// ---------------------------------------------------------------------------
// fillPoly (LINE_8, shift 0) into a 0/1 mask: the polygon's outline drawn
// with Bresenham lines plus the scan-converted interior, as OpenCV does.

const XY_SHIFT: i32 = 16;
const XY_ONE: i64 = 1 << XY_SHIFT;

fn clip_line(w: i64, h: i64, p1: &mut [i64; 2], p2: &mut [i64; 2]) -> bool {
    let (right, bottom) = (w - 1, h - 1);
    if w <= 0 || h <= 0 {
        return false;
    }
    let code = |p: &[i64; 2]| -> i32 {
        i32::from(p[0] < 0)
            + i32::from(p[0] > right) * 2
            + i32::from(p[1] < 0) * 4
            + i32::from(p[1] > bottom) * 8
    };
    let mut c1 = code(p1);
    let mut c2 = code(p2);
    if (c1 & c2) == 0 && (c1 | c2) != 0 {
        if c1 & 12 != 0 {
            let a = if c1 < 8 { 0 } else { bottom };
            p1[0] += ((a - p1[1]) as f64 * (p2[0] - p1[0]) as f64 / (p2[1] - p1[1]) as f64) as i64;
            p1[1] = a;
            c1 = i32::from(p1[0] < 0) + i32::from(p1[0] > right) * 2;
        }
        if c2 & 12 != 0 {
            let a = if c2 < 8 { 0 } else { bottom };
            p2[0] += ((a - p2[1]) as f64 * (p2[0] - p1[0]) as f64 / (p2[1] - p1[1]) as f64) as i64;
            p2[1] = a;
            c2 = i32::from(p2[0] < 0) + i32::from(p2[0] > right) * 2;
        }
        if (c1 & c2) == 0 && (c1 | c2) != 0 {
            if c1 != 0 {
                let a = if c1 == 1 { 0 } else { right };
                p1[1] +=
                    ((a - p1[0]) as f64 * (p2[1] - p1[1]) as f64 / (p2[0] - p1[0]) as f64) as i64;
                p1[0] = a;
                c1 = 0;
            }
            if c2 != 0 {
                let a = if c2 == 1 { 0 } else { right };
                p2[1] +=
                    ((a - p2[0]) as f64 * (p2[1] - p1[1]) as f64 / (p2[0] - p1[0]) as f64) as i64;
                p2[0] = a;
                c2 = 0;
            }
        }
    }
    (c1 | c2) == 0
}

fn draw_line8(mask: &mut [u8], w: usize, h: usize, p1: [i64; 2], p2: [i64; 2]) {
    let (mut a, mut b) = (p1, p2);
    let outside = |p: &[i64; 2]| p[0] < 0 || p[0] >= w as i64 || p[1] < 0 || p[1] >= h as i64;
    if (outside(&a) || outside(&b)) && !clip_line(w as i64, h as i64, &mut a, &mut b) {
        return;
    }
    let mut dx = b[0] - a[0];
    let mut dy = b[1] - a[1];
    let mut start = a;
    if dx < 0 {
        dx = -dx;
        dy = -dy;
        start = b;
    }
    let (mut step_x, mut step_y) = (1i64, 1i64);
    if dy < 0 {
        dy = -dy;
        step_y = -1;
    }
    let vert = dy > dx;
    if vert {
        std::mem::swap(&mut dx, &mut dy);
        std::mem::swap(&mut step_x, &mut step_y);
    }
    // 8-connected: minus step moves along the major axis, plus adds the minor
    let mut err = dx - (dy + dy);
    let plus_delta = dx + dx;
    let minus_delta = -(dy + dy);
    let (major, minor) = (step_x, step_y);
    let (mut x, mut y) = (start[0], start[1]);
    for _ in 0..=dx {
        if x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h {
            mask[y as usize * w + x as usize] = 1;
        }
        let m = err < 0;
        err += minus_delta + if m { plus_delta } else { 0 };
        if vert {
            y += major;
            if m {
                x += minor;
            }
        } else {
            x += major;
            if m {
                y += minor;
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Edge {
    y0: i64,
    y1: i64,
    x: i64,
    dx: i64,
}

/// `cv2.fillPoly(mask, [pts], 1)` on a `h`x`w` 0/1 mask.
pub(crate) fn fill_poly(mask: &mut [u8], w: usize, h: usize, pts: &[[i32; 2]]) {
    let n = pts.len();
    if n == 0 {
        return;
    }
    let mut edges: Vec<Edge> = Vec::with_capacity(n);
    let mut pt0 = [(pts[n - 1][0] as i64) << XY_SHIFT, pts[n - 1][1] as i64];
    for p in pts {
        let pt1 = [(p[0] as i64) << XY_SHIFT, p[1] as i64];
        let mut t0 = [(pt0[0] + (XY_ONE >> 1)) >> XY_SHIFT, pt0[1]];
        let mut t1 = [(pt1[0] + (XY_ONE >> 1)) >> XY_SHIFT, pt1[1]];
        draw_line8(mask, w, h, t0, t1);
        let (mut pt0c, mut pt1c) = (pt0, pt1);
        let outside = |t: &[i64; 2]| t[0] < 0 || t[0] >= w as i64 || t[1] < 0 || t[1] >= h as i64;
        if outside(&t0) || outside(&t1) {
            clip_line(w as i64, h as i64, &mut t0, &mut t1);
            if t0[1] != t1[1] {
                pt0c[1] = t0[1];
                pt1c[1] = t1[1];
            }
        }
        pt0c[0] = t0[0] << XY_SHIFT;
        pt1c[0] = t1[0] << XY_SHIFT;
        if pt0[1] != pt1[1] {
            let dx = (pt1c[0] - pt0c[0]) / (pt1c[1] - pt0c[1]);
            let e = if pt0[1] < pt1[1] {
                Edge {
                    y0: pt0[1],
                    y1: pt1[1],
                    x: pt0c[0] + (pt0[1] - pt0c[1]) * dx,
                    dx,
                }
            } else {
                Edge {
                    y0: pt1[1],
                    y1: pt0[1],
                    x: pt1c[0] + (pt1[1] - pt1c[1]) * dx,
                    dx,
                }
            };
            edges.push(e);
        }
        pt0 = pt1;
    }
    fill_edges(mask, w, h, &mut edges);
}

fn fill_edges(mask: &mut [u8], w: usize, h: usize, edges: &mut [Edge]) {
    let total = edges.len();
    if total < 2 {
        return;
    }
    let (mut y_min, mut y_max) = (i64::MAX, i64::MIN);
    let (mut x_min, mut x_max) = (i64::MAX, i64::MIN);
    for e in edges.iter() {
        let x1 = e.x + (e.y1 - e.y0) * e.dx;
        y_min = y_min.min(e.y0);
        y_max = y_max.max(e.y1);
        x_min = x_min.min(e.x).min(x1);
        x_max = x_max.max(e.x).max(x1);
    }
    if y_max < 0 || y_min >= h as i64 || x_max < 0 || x_min >= (w as i64) << XY_SHIFT {
        return;
    }
    edges.sort_by(|a, b| a.y0.cmp(&b.y0).then(a.x.cmp(&b.x)).then(a.dx.cmp(&b.dx)));
    let delta = XY_ONE - 1;
    let y_max = y_max.min(h as i64);
    // active edge list as indices, kept sorted by x (OpenCV's linked list with
    // insertion before the first edge of larger x, then a bubble sort)
    let mut active: Vec<usize> = Vec::new();
    let mut next = 0usize;
    let mut y = edges[0].y0;
    while y < y_max {
        // drop finished edges, insert starting ones (in list order)
        let mut list: Vec<usize> = Vec::with_capacity(active.len() + 2);
        let mut ai = 0usize;
        loop {
            let last = active.get(ai).copied();
            if let Some(l) = last {
                if edges[l].y1 == y {
                    ai += 1;
                    continue;
                }
            }
            let new_here = next < total && edges[next].y0 == y;
            match last {
                Some(l) if !new_here || edges[l].x < edges[next].x => {
                    list.push(l);
                    ai += 1;
                }
                _ if new_here => {
                    list.push(next);
                    next += 1;
                }
                _ => break,
            }
        }
        active = list;
        // draw spans between pairs, then advance x of drawn edges
        let mut k = 0;
        while k + 1 < active.len() {
            let (e0, e1) = (active[k], active[k + 1]);
            if y >= 0 {
                let (a, b) = (edges[e0].x, edges[e1].x);
                let (x1, x2) = if a > b {
                    ((b + delta) >> XY_SHIFT, a >> XY_SHIFT)
                } else {
                    ((a + delta) >> XY_SHIFT, b >> XY_SHIFT)
                };
                if x1 < w as i64 && x2 >= 0 {
                    let x1 = x1.max(0) as usize;
                    let x2 = x2.min(w as i64 - 1);
                    if x2 >= x1 as i64 {
                        let row = y as usize * w;
                        mask[row + x1..=row + x2 as usize].fill(1);
                    }
                }
            }
            edges[e0].x += edges[e0].dx;
            edges[e1].x += edges[e1].dx;
            k += 2;
        }
        // keep the active list sorted by x
        let mut swapped = true;
        while swapped {
            swapped = false;
            for i in 0..active.len().saturating_sub(1) {
                if edges[active[i]].x > edges[active[i + 1]].x {
                    active.swap(i, i + 1);
                    swapped = true;
                }
            }
        }
        y += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixture() -> Value {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cv_ops.json");
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    fn u8s(v: &Value) -> Vec<u8> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect()
    }

    fn f32s(v: &Value) -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    }

    fn pts_i(v: &Value) -> Vec<[i32; 2]> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| [p[0].as_i64().unwrap() as i32, p[1].as_i64().unwrap() as i32])
            .collect()
    }

    #[test]
    fn resize_is_bit_exact() {
        let f = fixture();
        let r = &f["resize"];
        let src = Mat {
            h: r["h"].as_u64().unwrap() as usize,
            w: r["w"].as_u64().unwrap() as usize,
            c: 3,
            data: u8s(&r["src"]),
        };
        for case in r["cases"].as_array().unwrap() {
            let (w, h) = (
                case["w"].as_u64().unwrap() as usize,
                case["h"].as_u64().unwrap() as usize,
            );
            let got = resize_linear(&src, w, h);
            assert_eq!(got.data, u8s(&case["out"]), "resize to {w}x{h}");
        }
    }

    #[test]
    fn perspective_crop_is_bit_exact() {
        let f = fixture();
        let r = &f["warp"];
        let src = Mat {
            h: r["h"].as_u64().unwrap() as usize,
            w: r["w"].as_u64().unwrap() as usize,
            c: 3,
            data: u8s(&r["src"]),
        };
        for case in r["cases"].as_array().unwrap() {
            let q = pts_i(&case["quad"]);
            let (w, h) = (
                case["w"].as_u64().unwrap() as usize,
                case["h"].as_u64().unwrap() as usize,
            );
            let quad: [[f32; 2]; 4] = std::array::from_fn(|i| [q[i][0] as f32, q[i][1] as f32]);
            let std_: [[f32; 2]; 4] = [
                [0.0, 0.0],
                [w as f32, 0.0],
                [w as f32, h as f32],
                [0.0, h as f32],
            ];
            let m = perspective_transform(&quad, &std_).unwrap();
            let want_m: Vec<f64> = case["m"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            for (a, b) in m.iter().zip(&want_m) {
                assert!(
                    (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                    "M {m:?} vs {want_m:?}"
                );
            }
            let got = warp_perspective_cubic(&src, &m, w, h).unwrap();
            let want = u8s(&case["out"]);
            let diff = got.data.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(diff, 0, "quad {q:?}: {diff} of {} bytes differ", want.len());
        }
    }

    #[test]
    fn contours_hull_rect_and_score_are_bit_exact() {
        let f = fixture();
        for (mi, m) in f["db"].as_array().unwrap().iter().enumerate() {
            let (h, w) = (
                m["h"].as_u64().unwrap() as usize,
                m["w"].as_u64().unwrap() as usize,
            );
            let prob: Vec<f32> = m["prob_256"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap() as f32 / 256.0)
                .collect();
            let bin: Vec<u8> = prob.iter().map(|&p| u8::from(p > 0.3)).collect();
            let mask = dilate2x2(&bin, h, w);
            let want_mask: Vec<u8> = m["mask"]
                .as_str()
                .unwrap()
                .bytes()
                .map(|b| b - b'0')
                .collect();
            assert_eq!(mask, want_mask, "map {mi}: dilation");
            let contours = find_contours(&mask, h, w);
            let want = m["contours"].as_array().unwrap();
            assert_eq!(contours.len(), want.len(), "map {mi}: contour count");
            for (ci, (c, wc)) in contours.iter().zip(want).enumerate() {
                assert_eq!(c, &pts_i(&wc["contour"]), "map {mi} contour {ci}");
                let r = min_area_rect(c);
                let wr = f32s(&wc["rect"]);
                assert_eq!(
                    [r.center[0], r.center[1], r.size[0], r.size[1], r.angle],
                    [wr[0], wr[1], wr[2], wr[3], wr[4]],
                    "map {mi} contour {ci}: minAreaRect"
                );
                let bp = box_points(&r);
                let wb = f32s(&wc["box_points"]);
                assert_eq!(bp.concat(), wb, "map {mi} contour {ci}: boxPoints");
            }
        }
    }

    #[test]
    fn rot90_and_rot180_match_numpy_and_cv2() {
        let m = Mat {
            h: 2,
            w: 3,
            c: 1,
            data: vec![1, 2, 3, 4, 5, 6],
        };
        // np.rot90([[1,2,3],[4,5,6]]) == [[3,6],[2,5],[1,4]]
        assert_eq!(m.rot90().data, vec![3, 6, 2, 5, 1, 4]);
        assert_eq!(m.rot180().data, vec![6, 5, 4, 3, 2, 1]);
    }
}
