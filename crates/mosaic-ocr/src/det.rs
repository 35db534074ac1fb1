//! Text detection around the DB network: rapidocr's `DetPreProcess`
//! (resize to multiples of 32, normalise) and `DBPostProcess` (threshold,
//! dilate, contours, min-area boxes, box score, unclip), then
//! `filter_tag_det_res` and `sorted_boxes`.

use crate::clipper::{offset_round, unclip_distance};
use crate::cv::{self, Mat};
use crate::options::{LimitType, OcrOptions, ScoreMode};

/// The detector's input size for `img`: rapidocr's `DetPreProcess.resize`
/// rule, sides rounded to multiples of 32 (a zero side means no text).
pub(crate) fn input_size(img: &Mat, opts: &OcrOptions) -> (usize, usize) {
    let (h, w) = (img.h as f64, img.w as f64);
    let ratio = match opts.limit_type {
        LimitType::Min => {
            let limit = opts.limit_side_len as f64;
            if h.min(w) < limit {
                if h < w { limit / h } else { limit / w }
            } else {
                1.0
            }
        }
        // rapidocr's TextDetector.get_preprocess ignores limit_side_len here
        LimitType::Max => {
            let m = img.h.max(img.w);
            let limit = if m < 960 {
                960.0
            } else if m < 1500 {
                1500.0
            } else {
                2000.0
            };
            if h.max(w) > limit {
                if h > w { limit / h } else { limit / w }
            } else {
                1.0
            }
        }
    };
    (round32((h * ratio) as i64), round32((w * ratio) as i64))
}

/// The detector input: the image resized to `rh`x`rw` as NCHW f32,
/// normalised as `(x / 255 - 0.5) / 0.5` per BGR channel.
pub(crate) fn preprocess(img: &Mat, rh: usize, rw: usize) -> Vec<f32> {
    normalize_det(&cv::resize_linear(img, rw, rh))
}

/// `int(round(v / 32) * 32)` with Python's round-half-to-even.
pub(crate) fn round32(v: i64) -> usize {
    ((v as f64 / 32.0).round_ties_even() * 32.0).max(0.0) as usize
}

fn normalize_det(img: &Mat) -> Vec<f32> {
    let (h, w) = (img.h, img.w);
    let scale = (1.0f64 / 255.0) as f32;
    let mut out = vec![0f32; 3 * h * w];
    for (i, px) in img.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            // float32 x * float32(1/255), then (v - 0.5) / 0.5
            let v = px[c] as f32 * scale;
            out[c * h * w + i] = (v - 0.5) / 0.5;
        }
    }
    out
}

/// A detected quadrilateral (integer corners, as rapidocr's int32 boxes).
pub(crate) type Quad = [[f32; 2]; 4];

/// `get_mini_boxes`: the min-area rectangle's corners ordered top-left,
/// top-right, bottom-right, bottom-left (rapidocr's x-sort then y-pick),
/// and its shorter side.
pub(crate) fn mini_box(points: &[[i32; 2]]) -> ([[f32; 2]; 4], f32) {
    let r = cv::min_area_rect(points);
    let mut p = cv::box_points(&r).to_vec();
    p.sort_by(|a, b| a[0].partial_cmp(&b[0]).unwrap_or(std::cmp::Ordering::Equal));
    let (i1, i4) = if p[1][1] > p[0][1] { (0, 1) } else { (1, 0) };
    let (i2, i3) = if p[3][1] > p[2][1] { (2, 3) } else { (3, 2) };
    let sside = r.size[0].min(r.size[1]);
    ([p[i1], p[i2], p[i3], p[i4]], sside)
}

/// `box_score_fast`: mean probability inside the box (OpenCV fillPoly mask).
pub(crate) fn box_score_fast(pred: &[f32], h: usize, w: usize, b: &[[f32; 2]; 4]) -> f64 {
    let clampi = |v: f32, hi: usize| (v as i64).clamp(0, hi as i64 - 1);
    let xmin = clampi(
        b.iter().map(|p| p[0]).fold(f32::INFINITY, f32::min).floor(),
        w,
    );
    let xmax = clampi(
        b.iter()
            .map(|p| p[0])
            .fold(f32::NEG_INFINITY, f32::max)
            .ceil(),
        w,
    );
    let ymin = clampi(
        b.iter().map(|p| p[1]).fold(f32::INFINITY, f32::min).floor(),
        h,
    );
    let ymax = clampi(
        b.iter()
            .map(|p| p[1])
            .fold(f32::NEG_INFINITY, f32::max)
            .ceil(),
        h,
    );
    let pts: Vec<[i32; 2]> = b
        .iter()
        .map(|p| [(p[0] - xmin as f32) as i32, (p[1] - ymin as f32) as i32])
        .collect();
    masked_mean(pred, w, xmin, xmax, ymin, ymax, &pts)
}

/// `box_score_slow`: mean probability inside the contour polygon.
pub(crate) fn box_score_slow(pred: &[f32], h: usize, w: usize, contour: &[[i32; 2]]) -> f64 {
    let xs = contour.iter().map(|p| p[0] as i64);
    let ys = contour.iter().map(|p| p[1] as i64);
    let xmin = xs.clone().min().unwrap_or(0).clamp(0, w as i64 - 1);
    let xmax = xs.max().unwrap_or(0).clamp(0, w as i64 - 1);
    let ymin = ys.clone().min().unwrap_or(0).clamp(0, h as i64 - 1);
    let ymax = ys.max().unwrap_or(0).clamp(0, h as i64 - 1);
    let pts: Vec<[i32; 2]> = contour
        .iter()
        .map(|p| [p[0] - xmin as i32, p[1] - ymin as i32])
        .collect();
    masked_mean(pred, w, xmin, xmax, ymin, ymax, &pts)
}

fn masked_mean(
    pred: &[f32],
    w: usize,
    xmin: i64,
    xmax: i64,
    ymin: i64,
    ymax: i64,
    pts: &[[i32; 2]],
) -> f64 {
    let mw = (xmax - xmin + 1) as usize;
    let mh = (ymax - ymin + 1) as usize;
    let mut mask = vec![0u8; mw * mh];
    cv::fill_poly(&mut mask, mw, mh, pts);
    let (mut sum, mut n) = (0f64, 0usize);
    for y in 0..mh {
        let row = (ymin as usize + y) * w + xmin as usize;
        for x in 0..mw {
            if mask[y * mw + x] != 0 {
                sum += pred[row + x] as f64;
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// `DBPostProcess.__call__` + `boxes_from_bitmap` on one probability map of
/// `h`x`w`; boxes are scaled to `dest_w`x`dest_h` (the detector's input
/// image). Returns integer-valued corners and scores.
pub(crate) fn boxes_from_prob(
    pred: &[f32],
    h: usize,
    w: usize,
    dest_w: usize,
    dest_h: usize,
    opts: &OcrOptions,
) -> Vec<(Quad, f64)> {
    let thresh = opts.det_thresh as f32;
    let seg: Vec<u8> = pred.iter().map(|&p| u8::from(p > thresh)).collect();
    let mask = if opts.use_dilation {
        cv::dilate2x2(&seg, h, w)
    } else {
        seg
    };
    let contours = cv::find_contours(&mask, h, w);
    let min_size = 3.0f32;
    let mut out = Vec::new();
    for contour in contours.iter().take(opts.max_candidates) {
        let (points, sside) = mini_box(contour);
        if sside < min_size {
            continue;
        }
        let score = match opts.score_mode {
            ScoreMode::Fast => box_score_fast(pred, h, w, &points),
            ScoreMode::Slow => box_score_slow(pred, h, w, contour),
        };
        if opts.box_thresh > score {
            continue;
        }
        let expanded = unclip(&points, opts.unclip_ratio);
        if expanded.is_empty() {
            continue;
        }
        let (b, sside) = mini_box(&expanded);
        if sside < min_size + 2.0 {
            continue;
        }
        let mut q = [[0f32; 2]; 4];
        for (i, p) in b.iter().enumerate() {
            // float32: round(x / width * dest_width), clipped
            let x = (p[0] / w as f32 * dest_w as f32)
                .round_ties_even()
                .clamp(0.0, dest_w as f32);
            let y = (p[1] / h as f32 * dest_h as f32)
                .round_ties_even()
                .clamp(0.0, dest_h as f32);
            q[i] = [x as i32 as f32, y as i32 as f32];
        }
        out.push((q, score));
    }
    out
}

/// rapidocr's `unclip`: offset the box outward by area * ratio / perimeter.
pub(crate) fn unclip(b: &[[f32; 2]; 4], ratio: f64) -> Vec<[i32; 2]> {
    let distance = unclip_distance(b, ratio);
    // pyclipper converts the float corners to integers by truncation
    let path: Vec<[i64; 2]> = b.iter().map(|p| [p[0] as i64, p[1] as i64]).collect();
    offset_round(&path, distance)
        .into_iter()
        .map(|p| {
            [
                p[0].clamp(i32::MIN as i64, i32::MAX as i64) as i32,
                p[1].clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            ]
        })
        .collect()
}

/// `filter_tag_det_res`: order corners clockwise from top-left, clip to the
/// image, drop boxes whose sides are 3 pixels or less.
pub(crate) fn filter_boxes(boxes: Vec<(Quad, f64)>, img_h: usize, img_w: usize) -> Vec<Quad> {
    let mut out = Vec::new();
    for (b, _) in boxes {
        let mut q = order_points_clockwise(&b);
        for p in q.iter_mut() {
            p[0] = (p[0].max(0.0).min(img_w as f32 - 1.0)) as i64 as f32;
            p[1] = (p[1].max(0.0).min(img_h as f32 - 1.0)) as i64 as f32;
        }
        let rw = norm32(q[0], q[1]) as i64;
        let rh = norm32(q[0], q[3]) as i64;
        if rw <= 3 || rh <= 3 {
            continue;
        }
        out.push(q);
    }
    out
}

/// `np.linalg.norm(a - b)` on float32 points (float32 result).
pub(crate) fn norm32(a: [f32; 2], b: [f32; 2]) -> f32 {
    let dx = a[0] - b[0];
    let dy = a[1] - b[1];
    (dx * dx + dy * dy).sqrt()
}

fn order_points_clockwise(pts: &Quad) -> Quad {
    let mut idx = [0usize, 1, 2, 3];
    idx.sort_by(|&a, &b| {
        pts[a][0]
            .partial_cmp(&pts[b][0])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut left = [pts[idx[0]], pts[idx[1]]];
    let mut right = [pts[idx[2]], pts[idx[3]]];
    if left[1][1] < left[0][1] {
        left.swap(0, 1);
    }
    if right[1][1] < right[0][1] {
        right.swap(0, 1);
    }
    [left[0], right[0], right[1], left[1]]
}

/// rapidocr's `sorted_boxes`: top-to-bottom by the first corner, then a
/// pass that puts boxes on about the same line (|dy| < 10) left to right.
pub(crate) fn sort_boxes(mut boxes: Vec<Quad>) -> Vec<Quad> {
    boxes.sort_by(|a, b| {
        a[0][1]
            .partial_cmp(&b[0][1])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(
                a[0][0]
                    .partial_cmp(&b[0][0])
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
    });
    let n = boxes.len();
    for i in 0..n.saturating_sub(1) {
        for j in (0..=i).rev() {
            if (boxes[j + 1][0][1] - boxes[j][0][1]).abs() < 10.0
                && boxes[j + 1][0][0] < boxes[j][0][0]
            {
                boxes.swap(j, j + 1);
            } else {
                break;
            }
        }
    }
    boxes
}

/// `get_rotate_crop_image`: perspective crop of the box, rotated by 90
/// degrees counter-clockwise when it is at least 1.5 times taller than wide.
pub(crate) fn crop(img: &Mat, q: &Quad) -> Option<Mat> {
    let w = norm32(q[0], q[1]).max(norm32(q[2], q[3])) as usize;
    let h = norm32(q[0], q[3]).max(norm32(q[1], q[2])) as usize;
    if w == 0 || h == 0 {
        return None;
    }
    let dst = [
        [0.0, 0.0],
        [w as f32, 0.0],
        [w as f32, h as f32],
        [0.0, h as f32],
    ];
    let m = cv::perspective_transform(q, &dst)?;
    let out = cv::warp_perspective_cubic(img, &m, w, h)?;
    if out.h as f64 / out.w as f64 >= 1.5 {
        Some(out.rot90())
    } else {
        Some(out)
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
    fn db_postprocess_matches_rapidocr_step_by_step() {
        let f = fixture();
        let opts = OcrOptions::default();
        let mut checked_unclip = 0;
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
            for (ci, c) in m["contours"].as_array().unwrap().iter().enumerate() {
                let contour = pts_i(&c["contour"]);
                let (b, sside) = mini_box(&contour);
                assert_eq!(
                    b.concat(),
                    f32s(&c["mini_box"]),
                    "map {mi} contour {ci}: mini box"
                );
                assert_eq!(sside, c["sside"].as_f64().unwrap() as f32);
                let score = box_score_fast(&prob, h, w, &b);
                let want = c["score"].as_f64().unwrap();
                assert!(
                    (score - want).abs() < 1e-12,
                    "map {mi} contour {ci}: score {score} vs {want}"
                );
                if let Some(u) = c.get("unclip") {
                    let got = unclip(&b, opts.unclip_ratio);
                    let want = pts_i(u);
                    assert_eq!(got, want, "map {mi} contour {ci}: unclip");
                    let (b2, s2) = mini_box(&got);
                    assert_eq!(
                        b2.concat(),
                        f32s(&c["unclip_box"]),
                        "map {mi} contour {ci}: unclipped box"
                    );
                    assert_eq!(s2, c["unclip_sside"].as_f64().unwrap() as f32);
                    checked_unclip += 1;
                }
            }
            let boxes = boxes_from_prob(&prob, h, w, w * 3, h * 3, &opts);
            let want: Vec<Vec<[i32; 2]>> =
                m["boxes"].as_array().unwrap().iter().map(pts_i).collect();
            let got: Vec<Vec<[i32; 2]>> = boxes
                .iter()
                .map(|(q, _)| q.iter().map(|p| [p[0] as i32, p[1] as i32]).collect())
                .collect();
            assert_eq!(got, want, "map {mi}: final boxes");
            let ws: Vec<f64> = m["scores"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            for ((_, s), w) in boxes.iter().zip(ws) {
                assert!((s - w).abs() < 1e-12);
            }
        }
        assert!(checked_unclip > 5);
    }

    #[test]
    fn offsets_match_pyclipper() {
        let f = fixture();
        for (i, c) in f["offset"].as_array().unwrap().iter().enumerate() {
            let p = f32s(&c["path"]);
            let path: Vec<[i64; 2]> = p.chunks(2).map(|q| [q[0] as i64, q[1] as i64]).collect();
            let got: Vec<[i32; 2]> = offset_round(&path, c["delta"].as_f64().unwrap())
                .iter()
                .map(|q| [q[0] as i32, q[1] as i32])
                .collect();
            let want = pts_i(&c["out"][0]);
            assert_eq!(got, want, "offset case {i}");
        }
    }

    #[test]
    fn python_rounding_to_32() {
        assert_eq!(round32(48), 64); // 1.5 -> 2
        assert_eq!(round32(80), 64); // 2.5 -> 2
        assert_eq!(round32(15), 0);
        assert_eq!(round32(736), 736);
    }
}
