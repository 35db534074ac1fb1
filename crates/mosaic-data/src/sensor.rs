//! Sensor streams: multichannel time series from CSV or NPY with
//! timestamps (radar range, IMU, temperature, ...); resampling to a fixed
//! rate, windowing, per-channel normalisation and NaN/gap handling.

use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result, read_limited};
use mosaic_core::formats::npy::read_npy;

/// A multichannel time series: `values[t * channels + c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSeries {
    /// Seconds, strictly increasing.
    pub timestamps: Vec<f64>,
    /// Channel names.
    pub channels: Vec<String>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// What to do with missing values (NaN, empty cells).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NanPolicy {
    /// Refuse the file, naming the row (default).
    #[default]
    Reject,
    /// Drop rows with any missing value.
    DropRow,
    /// Linear interpolation from the neighbouring valid values of the channel
    /// (edges take the nearest valid value).
    Interpolate,
    /// Repeat the last valid value (zero before the first).
    ForwardFill,
    /// Replace with zero.
    Zero,
}

/// How to read a sensor file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SensorReadOptions {
    /// Name of the timestamp column (CSV); default: the first of
    /// `timestamp`, `time`, `t`, `ts` present, else rows are spaced by `rate`.
    pub time_column: Option<String>,
    /// Sample rate when there is no time column (Hz); required then.
    pub rate: Option<f64>,
    /// Scale applied to timestamps to get seconds (e.g. 1e-3 for ms).
    pub time_scale: Option<f64>,
    /// Missing-value policy.
    pub nan_policy: NanPolicy,
}

impl TimeSeries {
    /// Number of time steps.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether there are no time steps.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Number of channels.
    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// Resamples to `rate` Hz by linear interpolation over the time span.
    /// Gaps longer than `max_gap` seconds are an error naming the gap (a
    /// silent straight line across a dropout would be invented data).
    pub fn resample(&self, rate: f64, max_gap: Option<f64>) -> Result<TimeSeries> {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err(Error::invalid("sensor rate", format!("{rate} Hz")));
        }
        if self.len() < 2 {
            return Err(Error::invalid(
                "sensor stream",
                "need at least two samples to resample",
            ));
        }
        if let Some(g) = max_gap {
            for w in self.timestamps.windows(2).enumerate() {
                if w.1[1] - w.1[0] > g {
                    return Err(Error::invalid(
                        "sensor stream",
                        format!(
                            "gap of {:.3} s after row {} (t = {}) exceeds max_gap {g} s",
                            w.1[1] - w.1[0],
                            w.0 + 1,
                            w.1[0]
                        ),
                    ));
                }
            }
        }
        let c = self.num_channels();
        let t0 = self.timestamps[0];
        let span = self.timestamps[self.len() - 1] - t0;
        let steps = (span * rate).floor();
        // Resampling may densify, but not without bound (e.g. timestamps in
        // nanoseconds read as seconds would ask for ~1e17 steps).
        let limit = (self.len() as f64 * 1000.0).clamp(1e6, 1e9);
        if !steps.is_finite() || steps + 1.0 > limit {
            return Err(Error::invalid(
                "sensor stream",
                format!(
                    "resampling {span} s at {rate} Hz would give {steps} steps (limit {limit}); check the time unit (time_scale)"
                ),
            ));
        }
        let n = steps as usize + 1;
        let mut ts = Vec::with_capacity(n);
        let mut vals = Vec::with_capacity(n * c);
        let mut j = 0;
        for i in 0..n {
            let t = t0 + i as f64 / rate;
            while j + 2 < self.len() && self.timestamps[j + 1] < t {
                j += 1;
            }
            let (ta, tb) = (self.timestamps[j], self.timestamps[j + 1]);
            let w = ((t - ta) / (tb - ta)).clamp(0.0, 1.0);
            for k in 0..c {
                let a = self.values[j * c + k] as f64;
                let b = self.values[(j + 1) * c + k] as f64;
                vals.push((a + (b - a) * w) as f32);
            }
            ts.push(t);
        }
        Ok(TimeSeries {
            timestamps: ts,
            channels: self.channels.clone(),
            values: vals,
        })
    }

    /// Per-channel mean and standard deviation (population).
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let c = self.num_channels();
        let n = self.len().max(1) as f64;
        let mut mean = vec![0f64; c];
        for row in self.values.chunks_exact(c) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; c];
        for row in self.values.chunks_exact(c) {
            for k in 0..c {
                var[k] += (row[k] as f64 - mean[k]).powi(2);
            }
        }
        (
            mean.iter().map(|&m| m as f32).collect(),
            var.iter().map(|&v| (v / n).sqrt() as f32).collect(),
        )
    }

    /// Z-scores each channel with the given (or its own) statistics; a
    /// constant channel (std 0) is only centred.
    pub fn normalize(&mut self, stats: Option<(&[f32], &[f32])>) -> Result<()> {
        let own;
        let (mean, std) = match stats {
            Some(s) => s,
            None => {
                own = self.channel_stats();
                (own.0.as_slice(), own.1.as_slice())
            }
        };
        let c = self.num_channels();
        if mean.len() != c || std.len() != c {
            return Err(Error::invalid(
                "sensor normalisation",
                format!("{} / {} statistics for {c} channels", mean.len(), std.len()),
            ));
        }
        for row in self.values.chunks_exact_mut(c) {
            for k in 0..c {
                let s = if std[k] > 0.0 { std[k] } else { 1.0 };
                row[k] = (row[k] - mean[k]) / s;
            }
        }
        Ok(())
    }

    /// Cuts windows of `size` steps every `hop` steps into `[N, size, C]`.
    pub fn windows(&self, size: usize, hop: usize) -> Result<Tensor> {
        if size == 0 || hop == 0 {
            return Err(Error::invalid(
                "sensor window",
                "size and hop must be positive",
            ));
        }
        if self.len() < size {
            return Err(Error::invalid(
                "sensor window",
                format!("{} steps is shorter than one window of {size}", self.len()),
            ));
        }
        let c = self.num_channels();
        let n = (self.len() - size) / hop + 1;
        let mut data = Vec::with_capacity(n * size * c);
        for i in 0..n {
            data.extend_from_slice(&self.values[i * hop * c..(i * hop + size) * c]);
        }
        Ok(Tensor::from_vec(data, (n, size, c), &Device::Cpu)?)
    }

    /// `[T, C]` tensor of the values.
    pub fn to_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.values.clone(),
            (self.len(), self.num_channels()),
            &Device::Cpu,
        )?)
    }
}

/// Reads a sensor file by extension (`csv`, `tsv`, `npy`).
pub fn load_sensor(path: &Path, opts: &SensorReadOptions) -> Result<TimeSeries> {
    let bytes = read_limited(path, 2 << 30)?;
    let name = path.display().to_string();
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("npy") => parse_npy_series(&bytes, &name, opts),
        Some("csv") | Some("tsv") | Some("txt") => parse_csv_series(&bytes, &name, opts),
        other => Err(Error::decode(
            name,
            "sensor stream",
            format!("unknown extension {other:?} (expected csv, tsv or npy)"),
        )),
    }
}

/// Decodes sensor bytes (e.g. from a shard): NPY by its magic, else CSV.
pub fn decode_sensor(bytes: &[u8], name: &str, opts: &SensorReadOptions) -> Result<TimeSeries> {
    if bytes.starts_with(b"\x93NUMPY") {
        parse_npy_series(bytes, name, opts)
    } else {
        parse_csv_series(bytes, name, opts)
    }
}

/// Parses CSV (comma, semicolon or tab separated, with a header row).
pub fn parse_csv_series(bytes: &[u8], name: &str, opts: &SensorReadOptions) -> Result<TimeSeries> {
    let err = |m: String| Error::decode(name, "sensor CSV", m);
    let text = std::str::from_utf8(bytes)
        .map_err(|e| err(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let (_, header) = lines
        .next()
        .ok_or_else(|| err("the file is empty".into()))?;
    let sep = [',', ';', '\t']
        .into_iter()
        .max_by_key(|&c| header.matches(c).count())
        .unwrap_or(',');
    let cols: Vec<String> = header
        .split(sep)
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect();
    let time_idx = match &opts.time_column {
        Some(tc) => Some(cols.iter().position(|c| c == tc).ok_or_else(|| {
            err(format!(
                "no time column `{tc}` (columns: {})",
                cols.join(", ")
            ))
        })?),
        None => ["timestamp", "time", "t", "ts"]
            .iter()
            .find_map(|n| cols.iter().position(|c| c.eq_ignore_ascii_case(n))),
    };
    let channels: Vec<String> = cols
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != time_idx)
        .map(|(_, c)| c.clone())
        .collect();
    if channels.is_empty() {
        return Err(err("no data columns".into()));
    }
    let mut times = Vec::new();
    let mut rows: Vec<f64> = Vec::new();
    let mut lines_no = Vec::new();
    for (ln, line) in lines {
        let cells: Vec<&str> = line.split(sep).map(|s| s.trim()).collect();
        if cells.len() != cols.len() {
            return Err(err(format!(
                "line {}: {} fields, the header has {}",
                ln + 1,
                cells.len(),
                cols.len()
            )));
        }
        for (i, cell) in cells.iter().enumerate() {
            let v = if cell.is_empty()
                || cell.eq_ignore_ascii_case("nan")
                || cell.eq_ignore_ascii_case("na")
            {
                f64::NAN
            } else {
                cell.parse::<f64>().map_err(|_| {
                    err(format!(
                        "line {}: `{cell}` in column `{}` is not a number",
                        ln + 1,
                        cols[i]
                    ))
                })?
            };
            if Some(i) == time_idx {
                if !v.is_finite() {
                    return Err(err(format!("line {}: missing timestamp", ln + 1)));
                }
                times.push(v);
            } else {
                rows.push(v);
            }
        }
        lines_no.push(ln + 1);
    }
    finish_series(times, rows, channels, lines_no, name, "line", opts)
}

/// Parses a `.npy` array of shape `[T]`, `[T, C]` (numeric dtypes, C or
/// Fortran order). With no time column, rows are spaced by `opts.rate`; if
/// `opts.time_column` is `"0"`, column 0 holds the timestamps.
pub fn parse_npy_series(bytes: &[u8], name: &str, opts: &SensorReadOptions) -> Result<TimeSeries> {
    let (shape, data) = read_npy(bytes, name)?;
    let (t, c) = match shape.as_slice() {
        [t] => (*t, 1),
        [t, c] => (*t, *c),
        s => {
            return Err(Error::decode(
                name,
                "NPY sensor stream",
                format!("expected [T] or [T, C], got {s:?}"),
            ));
        }
    };
    let time_col = matches!(opts.time_column.as_deref(), Some("0"));
    if c == 0 || (time_col && c < 2) {
        return Err(Error::decode(
            name,
            "NPY sensor stream",
            format!("shape {shape:?} has no data columns"),
        ));
    }
    let mut times = Vec::new();
    let mut rows = Vec::with_capacity(t * c);
    for i in 0..t {
        for k in 0..c {
            let v = data[i * c + k];
            if time_col && k == 0 {
                times.push(v);
            } else {
                rows.push(v);
            }
        }
    }
    let n_ch = if time_col { c - 1 } else { c };
    if n_ch == 0 {
        return Err(Error::decode(name, "NPY sensor stream", "no data columns"));
    }
    let channels = (0..n_ch).map(|i| format!("ch{i}")).collect();
    finish_series(times, rows, channels, (0..t).collect(), name, "row", opts)
}

fn finish_series(
    mut times: Vec<f64>,
    mut rows: Vec<f64>,
    channels: Vec<String>,
    mut row_ids: Vec<usize>,
    name: &str,
    unit: &str,
    opts: &SensorReadOptions,
) -> Result<TimeSeries> {
    let err = |m: String| Error::decode(name, "sensor stream", m);
    let c = channels.len();
    let n = rows.len() / c;
    if n == 0 {
        return Err(err("no rows".into()));
    }
    if times.is_empty() {
        let rate = opts
            .rate
            .filter(|r| *r > 0.0)
            .ok_or_else(|| err("no time column; give the sample rate".into()))?;
        times = (0..n).map(|i| i as f64 / rate).collect();
    } else if let Some(s) = opts.time_scale {
        times.iter_mut().for_each(|t| *t *= s);
    }
    // Missing values.
    let first_bad = rows.iter().position(|v| !v.is_finite());
    if let Some(pos) = first_bad {
        match opts.nan_policy {
            NanPolicy::Reject => {
                return Err(err(format!(
                    "{unit} {}: missing or non-finite value in channel `{}` (set a NaN policy to drop, interpolate or fill)",
                    row_ids[pos / c],
                    channels[pos % c]
                )));
            }
            NanPolicy::DropRow => {
                let keep: Vec<bool> = rows
                    .chunks_exact(c)
                    .map(|r| r.iter().all(|v| v.is_finite()))
                    .collect();
                let mut k = keep.iter();
                rows = rows
                    .chunks_exact(c)
                    .filter(|_| *k.next().unwrap())
                    .flatten()
                    .copied()
                    .collect();
                let mut k = keep.iter();
                times.retain(|_| *k.next().unwrap());
                let mut k = keep.iter();
                row_ids.retain(|_| *k.next().unwrap());
                if times.is_empty() {
                    return Err(err("every row has a missing value".into()));
                }
            }
            NanPolicy::Zero => rows
                .iter_mut()
                .filter(|v| !v.is_finite())
                .for_each(|v| *v = 0.0),
            NanPolicy::ForwardFill => {
                for k in 0..c {
                    let mut last = 0.0;
                    for i in 0..n {
                        let v = &mut rows[i * c + k];
                        if v.is_finite() { last = *v } else { *v = last }
                    }
                }
            }
            NanPolicy::Interpolate => {
                for k in 0..c {
                    let valid: Vec<usize> =
                        (0..n).filter(|&i| rows[i * c + k].is_finite()).collect();
                    if valid.is_empty() {
                        return Err(err(format!(
                            "channel `{}` has no valid value to interpolate from",
                            channels[k]
                        )));
                    }
                    for i in 0..n {
                        if rows[i * c + k].is_finite() {
                            continue;
                        }
                        let after = valid.partition_point(|&j| j < i);
                        let v = match (after.checked_sub(1).map(|a| valid[a]), valid.get(after)) {
                            (Some(a), Some(&b)) => {
                                let (ta, tb) = (times[a], times[b]);
                                let w = if tb > ta {
                                    (times[i] - ta) / (tb - ta)
                                } else {
                                    0.0
                                };
                                rows[a * c + k] + (rows[b * c + k] - rows[a * c + k]) * w
                            }
                            (Some(a), None) => rows[a * c + k],
                            (None, Some(&b)) => rows[b * c + k],
                            (None, None) => 0.0,
                        };
                        rows[i * c + k] = v;
                    }
                }
            }
        }
    }
    if let Some(i) = times.iter().position(|t| !t.is_finite()) {
        return Err(err(format!(
            "{unit} {}: timestamp is not finite",
            row_ids[i]
        )));
    }
    for (i, w) in times.windows(2).enumerate() {
        if w[1] <= w[0] {
            return Err(err(format!(
                "{unit} {}: timestamp {} does not increase (previous {})",
                row_ids[i + 1],
                w[1],
                w[0]
            )));
        }
    }
    Ok(TimeSeries {
        timestamps: times,
        channels,
        values: rows.iter().map(|&v| v as f32).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "timestamp,range,temp\n0.0,1.0,20\n0.1,2.0,21\n0.2,,22\n0.3,4.0,23\n";

    #[test]
    fn nan_is_rejected_by_default_with_the_line() {
        let e = parse_csv_series(CSV.as_bytes(), "radar.csv", &SensorReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("radar.csv") && e.contains("line 4") && e.contains("`range`"),
            "{e}"
        );
    }

    #[test]
    fn nan_policies() {
        let mut o = SensorReadOptions {
            nan_policy: NanPolicy::Interpolate,
            ..Default::default()
        };
        let s = parse_csv_series(CSV.as_bytes(), "r.csv", &o).unwrap();
        assert!((s.values[4] - 3.0).abs() < 1e-6);
        o.nan_policy = NanPolicy::DropRow;
        assert_eq!(
            parse_csv_series(CSV.as_bytes(), "r.csv", &o).unwrap().len(),
            3
        );
        o.nan_policy = NanPolicy::ForwardFill;
        assert_eq!(
            parse_csv_series(CSV.as_bytes(), "r.csv", &o)
                .unwrap()
                .values[4],
            2.0
        );
        o.nan_policy = NanPolicy::Zero;
        assert_eq!(
            parse_csv_series(CSV.as_bytes(), "r.csv", &o)
                .unwrap()
                .values[4],
            0.0
        );
    }

    #[test]
    fn resample_window_normalise() {
        let o = SensorReadOptions {
            nan_policy: NanPolicy::Interpolate,
            ..Default::default()
        };
        let s = parse_csv_series(CSV.as_bytes(), "r.csv", &o).unwrap();
        let r = s.resample(20.0, Some(0.5)).unwrap();
        assert_eq!(r.len(), 7);
        assert!((r.values[2] - 1.5).abs() < 1e-5, "{:?}", r.values);
        assert!(
            s.resample(20.0, Some(0.05))
                .unwrap_err()
                .to_string()
                .contains("gap")
        );
        let w = r.windows(4, 2).unwrap();
        assert_eq!(w.dims(), &[2, 4, 2]);
        let mut n = r.clone();
        n.normalize(None).unwrap();
        let (m, sd) = n.channel_stats();
        assert!(m.iter().all(|v| v.abs() < 1e-5) && sd.iter().all(|v| (v - 1.0).abs() < 1e-4));
    }

    #[test]
    fn npy_round_trip_and_errors() {
        let b = mosaic_core::formats::npy::npy_bytes_f32(&[3, 2], &[0.0, 1.0, 0.5, 2.0, 1.0, 3.0]);
        let o = SensorReadOptions {
            time_column: Some("0".into()),
            ..Default::default()
        };
        let s = parse_npy_series(&b, "x.npy", &o).unwrap();
        assert_eq!(s.timestamps, vec![0.0, 0.5, 1.0]);
        assert_eq!(s.values, vec![1.0, 2.0, 3.0]);
        let e = parse_npy_series(&b[..b.len() - 3], "x.npy", &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.npy") && e.contains("data bytes"), "{e}");
        let o = SensorReadOptions::default();
        assert!(
            parse_npy_series(&b, "x.npy", &o)
                .unwrap_err()
                .to_string()
                .contains("sample rate")
        );
    }

    #[test]
    fn decreasing_time_is_an_error() {
        let e = parse_csv_series(
            b"t,a\n0,1\n1,2\n0.5,3\n",
            "d.csv",
            &SensorReadOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 4"), "{e}");
    }
}
