//! PNG plots: plotters draws lines, points, bars and grid into an RGB
//! buffer (bitmap backend only, no font support, no image encoder), a
//! built-in 5×7 pixel font writes the title, tick values, axis names and
//! legend, and the workspace's `image` crate encodes the PNG, written
//! atomically. Text is upper-case ASCII (other characters print as `?`).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};

const W: u32 = 900;
const H: u32 = 560;
const LEFT: u32 = 100;
const RIGHT: u32 = 30;
const TOP: u32 = 50;
const BOTTOM: u32 = 80;
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
];

fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        ' ' => [0; 7],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '[' => [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E],
        ']' => [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '@' => [0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E],
        '\'' => [0x0C, 0x04, 0x08, 0, 0, 0, 0],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '*' => [0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0],
        '&' => [0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04],
    }
}

/// Pixel width of `text` at `scale`.
fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 6 * scale
}

/// Draws `text` with its top-left corner at (x, y) into an RGB buffer.
fn draw_text(buf: &mut [u8], x: i64, y: i64, text: &str, scale: u32, color: [u8; 3]) {
    let mut cx = x;
    for c in text.chars() {
        let g = glyph(c);
        for (row, bits) in g.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale as i64 {
                    for dx in 0..scale as i64 {
                        let px = cx + col as i64 * scale as i64 + dx;
                        let py = y + row as i64 * scale as i64 + dy;
                        if px >= 0 && py >= 0 && (px as u32) < W && (py as u32) < H {
                            let o = ((py as u32 * W + px as u32) * 3) as usize;
                            buf[o..o + 3].copy_from_slice(&color);
                        }
                    }
                }
            }
        }
        cx += 6 * scale as i64;
    }
}

/// A tick label: up to 4 significant digits, no trailing zeros.
pub fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let s = if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        format!("{v:.decimals$}")
    };
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Round tick positions (steps of 1, 2, 2.5 or 5 × 10^k) within `[lo, hi]`.
pub fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater)
        || !lo.is_finite()
        || !hi.is_finite()
    {
        return vec![lo];
    }
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn plot_err(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |m| Error::Plot {
        path: path.to_path_buf(),
        message: m,
    }
}

fn range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi <= lo {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    (lo, hi)
}

fn save_png(path: &Path, buf: Vec<u8>) -> Result<()> {
    let img =
        image::RgbImage::from_raw(W, H, buf).ok_or_else(|| plot_err(path)("buffer size".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| plot_err(path)(e.to_string()))?;
    mosaic_core::atomic::write_bytes_atomic(path, &png)?;
    Ok(())
}

/// Labels drawn after plotters is done with the buffer.
struct Labels {
    texts: Vec<(i64, i64, String, u32, [u8; 3])>,
}

impl Labels {
    fn frame(title: &str, x_label: &str, y_label: &str) -> Self {
        let mut t = Vec::new();
        t.push((
            ((W - text_width(title, 3).min(W)) / 2) as i64,
            12,
            title.to_string(),
            3,
            [0, 0, 0],
        ));
        let xl = x_label.to_string();
        t.push((
            (LEFT + (W - LEFT - RIGHT - text_width(&xl, 2).min(W - LEFT - RIGHT)) / 2) as i64,
            (H - 30) as i64,
            xl,
            2,
            [0, 0, 0],
        ));
        t.push((6, (TOP - 26) as i64, y_label.to_string(), 2, [0, 0, 0]));
        Labels { texts: t }
    }

    fn draw(self, buf: &mut [u8]) {
        for (x, y, s, scale, c) in self.texts {
            draw_text(buf, x, y, &s, scale, c);
        }
    }
}

/// A line chart of named series `(x, y)` (a robustness curve: metric per
/// perturbation level), with points, grid, tick values and a legend.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    let err = plot_err(path);
    let mut buf = vec![255u8; (W * H * 3) as usize];
    let (x0, x1) = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)));
    let (mut y0, mut y1) = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
    let pad = (y1 - y0) * 0.08;
    y0 -= pad;
    y1 += pad;
    let mut labels = Labels::frame(title, x_label, y_label);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let area = root.margin(TOP, BOTTOM, LEFT, RIGHT);
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        // Grid and axes.
        for k in 0..=5 {
            let x = x0 + (x1 - x0) * k as f64 / 5.0;
            let y = y0 + (y1 - y0) * k as f64 / 5.0;
            let grey = RGBColor(225, 225, 225);
            chart
                .draw_series(LineSeries::new(
                    vec![(x, y0), (x, y1)],
                    grey.stroke_width(1),
                ))
                .map_err(|e| err(e.to_string()))?;
            chart
                .draw_series(LineSeries::new(
                    vec![(x0, y), (x1, y)],
                    grey.stroke_width(1),
                ))
                .map_err(|e| err(e.to_string()))?;
            let (px, py) = chart.backend_coord(&(x, y0));
            let s = tick(x);
            labels.texts.push((
                px as i64 - (text_width(&s, 2) / 2) as i64,
                py as i64 + 8,
                s,
                2,
                [60, 60, 60],
            ));
            let (px, py) = chart.backend_coord(&(x0, y));
            let s = tick(y);
            labels.texts.push((
                px as i64 - text_width(&s, 2) as i64 - 8,
                py as i64 - 7,
                s,
                2,
                [60, 60, 60],
            ));
        }
        for (a, b) in [((x0, y0), (x1, y0)), ((x0, y0), (x0, y1))] {
            chart
                .draw_series(LineSeries::new(vec![a, b], BLACK.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?;
        }
        for (i, (name, pts)) in series.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            let good: Vec<(f64, f64)> = pts
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(good.clone(), c.stroke_width(3)))
                .map_err(|e| err(e.to_string()))?;
            chart
                .draw_series(good.iter().map(|&p| Circle::new(p, 5, c.filled())))
                .map_err(|e| err(e.to_string()))?;
            // Legend entry (top right, one line per series).
            let lx = (W - RIGHT - 260) as i32;
            let ly = (TOP + 10 + 22 * i as u32) as i32;
            root.draw(&Rectangle::new([(lx, ly), (lx + 24, ly + 12)], c.filled()))
                .map_err(|e| err(e.to_string()))?;
            labels
                .texts
                .push((lx as i64 + 32, ly as i64, name.clone(), 2, [0, 0, 0]));
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    labels.draw(&mut buf);
    save_png(path, buf)
}

/// A bar chart of named values (a fairness breakdown: metric per group).
pub fn bar_chart(path: &Path, title: &str, y_label: &str, bars: &[(String, f64)]) -> Result<()> {
    let err = plot_err(path);
    let mut buf = vec![255u8; (W * H * 3) as usize];
    let (lo, hi) = range(bars.iter().map(|b| b.1).chain([0.0]));
    let pad = (hi - lo) * 0.08;
    let (y0, y1) = (lo.min(0.0) - if lo < 0.0 { pad } else { 0.0 }, hi + pad);
    let n = bars.len().max(1) as f64;
    let mut labels = Labels::frame(title, "", y_label);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let area = root.margin(TOP, BOTTOM, LEFT, RIGHT);
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(0.0..n, y0..y1)
            .map_err(|e| err(e.to_string()))?;
        for y in nice_ticks(y0, y1) {
            chart
                .draw_series(LineSeries::new(
                    vec![(0.0, y), (n, y)],
                    RGBColor(225, 225, 225).stroke_width(1),
                ))
                .map_err(|e| err(e.to_string()))?;
            let (px, py) = chart.backend_coord(&(0.0, y));
            let s = tick(y);
            labels.texts.push((
                px as i64 - text_width(&s, 2) as i64 - 8,
                py as i64 - 7,
                s,
                2,
                [60, 60, 60],
            ));
        }
        for (i, (name, v)) in bars.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            let (a, b) = (i as f64 + 0.15, i as f64 + 0.85);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(a, 0.0), (b, *v)],
                    c.filled(),
                )))
                .map_err(|e| err(e.to_string()))?;
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, y0));
            let s: String = name.chars().take(14).collect();
            labels.texts.push((
                px as i64 - (text_width(&s, 2) / 2) as i64,
                py as i64 + 8,
                s,
                2,
                [0, 0, 0],
            ));
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, v.max(0.0)));
            let s = tick(*v);
            labels.texts.push((
                px as i64 - (text_width(&s, 2) / 2) as i64,
                py as i64 - 20,
                s,
                2,
                [0, 0, 0],
            ));
        }
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, 0.0), (n, 0.0)],
                BLACK.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    labels.draw(&mut buf);
    save_png(path, buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(100.0), "100");
        assert_eq!(tick(0.123456), "0.1235");
        let t: Vec<String> = nice_ticks(0.027, 0.27).into_iter().map(tick).collect();
        assert_eq!(t, ["0.05", "0.1", "0.15", "0.2", "0.25"]);
        assert_eq!(nice_ticks(1.0, 10.0), vec![2.0, 4.0, 6.0, 8.0, 10.0]);
    }

    #[test]
    fn charts_are_real_pngs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.png");
        line_chart(
            &p,
            "Noise sweep",
            "sigma",
            "R@1",
            &[("a".into(), vec![(0.0, 1.0), (0.1, 0.5)])],
        )
        .unwrap();
        let img = image::open(&p).unwrap();
        assert_eq!((img.width(), img.height()), (W, H));
        let b = dir.path().join("b.png");
        bar_chart(
            &b,
            "By group",
            "WER",
            &[("x".into(), 0.2), ("y".into(), 0.4)],
        )
        .unwrap();
        assert!(image::open(&b).is_ok());
    }
}
