//! Curves as PNG: plotters draws into an RGB buffer (its bitmap backend
//! without its own image encoder, which would pull a second `image`
//! version), and the workspace's `image` crate writes the PNG. No text is
//! drawn (plotters needs a system font for that); the numbers are in
//! `metrics.jsonl` and the reports.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};

const W: u32 = 800;
const H: u32 = 480;

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::InvalidInput {
        what: "plot".into(),
        message: e.to_string(),
    }
}

/// Draws one or more series (x, y) with distinct colours on shared axes
/// (y on a linear scale, x spanning all series) and writes a PNG.
pub fn line_chart(path: &Path, series: &[Vec<(f64, f64)>]) -> Result<()> {
    let mut buf = vec![255u8; (W * H * 3) as usize];
    let pts: Vec<&(f64, f64)> = series
        .iter()
        .flatten()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        if !pts.is_empty() {
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for (x, y) in &pts {
                x0 = x0.min(*x);
                x1 = x1.max(*x);
                y0 = y0.min(*y);
                y1 = y1.max(*y);
            }
            if x1 <= x0 {
                x1 = x0 + 1.0;
            }
            if y1 <= y0 {
                y1 = y0 + 1.0;
            }
            let pad = (y1 - y0) * 0.05;
            let area = root.margin(20, 20, 20, 20);
            let mut chart = ChartBuilder::on(&area)
                .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
                .map_err(plot_err)?;
            // Axes as plain lines (labels would need a font).
            chart
                .draw_series(LineSeries::new(
                    vec![(x0, y0 - pad), (x1, y0 - pad)],
                    BLACK.stroke_width(2),
                ))
                .map_err(plot_err)?;
            chart
                .draw_series(LineSeries::new(
                    vec![(x0, y0 - pad), (x0, y1 + pad)],
                    BLACK.stroke_width(2),
                ))
                .map_err(plot_err)?;
            let colours = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
            for (i, s) in series.iter().enumerate() {
                let c = colours[i % colours.len()];
                let good: Vec<(f64, f64)> = s
                    .iter()
                    .copied()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .collect();
                chart
                    .draw_series(LineSeries::new(good, c.stroke_width(2)))
                    .map_err(plot_err)?;
            }
        }
        root.present().map_err(plot_err)?;
    }
    let img = image::RgbImage::from_raw(W, H, buf).ok_or_else(|| plot_err("buffer size"))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(plot_err)?;
    mosaic_core::atomic::write_bytes_atomic(path, &png)?;
    Ok(())
}

/// The training loss per step (raw, blue) and its moving average over 1%
/// of the run (red).
pub fn loss_curve(path: &Path, losses: &[f64]) -> Result<()> {
    let raw: Vec<(f64, f64)> = losses
        .iter()
        .enumerate()
        .map(|(i, &l)| ((i + 1) as f64, l))
        .collect();
    let w = (losses.len() / 100).max(1);
    let smooth: Vec<(f64, f64)> = (w..=losses.len())
        .map(|end| {
            (
                end as f64,
                losses[end - w..end].iter().sum::<f64>() / w as f64,
            )
        })
        .collect();
    line_chart(path, &[raw, smooth])
}
