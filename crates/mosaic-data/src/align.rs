//! Temporal alignment: SRT and WebVTT subtitles, matching cues to frames
//! and audio segments by timestamp, and dynamic time warping with an
//! optional Sakoe–Chiba band (same recursion, tie-breaking and band as
//! `librosa.sequence.dtw`).

use std::path::Path;

use mosaic_core::TimeSpan;

use crate::error::{Error, Result};

/// Parses a timestamp `HH:MM:SS,mmm` (SRT) or `[HH:]MM:SS.mmm` (WebVTT).
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.trim().replace(',', ".");
    let parts: Vec<&str> = s.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m, s] => (h.parse::<u64>().ok()?, m.parse::<u64>().ok()?, *s),
        [m, s] => (0, m.parse::<u64>().ok()?, *s),
        _ => return None,
    };
    let secs: f64 = sec.parse().ok()?;
    if m >= 60 || !(0.0..60.0).contains(&secs) {
        return None;
    }
    Some(h as f64 * 3600.0 + m as f64 * 60.0 + secs)
}

/// Parses subtitles, choosing SRT or WebVTT by content. Cue text is kept
/// verbatim (markup such as `<i>` included; see [`strip_tags`]), its lines
/// joined with `\n`.
pub fn parse_subtitles(text: &str, name: &str) -> Result<Vec<TimeSpan>> {
    let text = text
        .trim_start_matches('\u{feff}')
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let vtt = text.starts_with("WEBVTT");
    let err = |line: usize, m: &str| {
        Error::decode(
            format!("{name}:{line}"),
            if vtt { "WebVTT" } else { "SRT" },
            m.to_string(),
        )
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut cues = Vec::new();
    let mut i = 0;
    if vtt {
        // Skip the header block.
        while i < lines.len() && !lines[i].trim().is_empty() {
            i += 1;
        }
    }
    while i < lines.len() {
        if lines[i].trim().is_empty() {
            i += 1;
            continue;
        }
        // A block: optional identifier line, then the timing line.
        let mut timing = i;
        if !lines[i].contains("-->") {
            if vtt
                && (lines[i].starts_with("NOTE")
                    || lines[i].starts_with("STYLE")
                    || lines[i].starts_with("REGION"))
            {
                while i < lines.len() && !lines[i].trim().is_empty() {
                    i += 1;
                }
                continue;
            }
            timing = i + 1;
        }
        let Some(tl) = lines.get(timing).filter(|l| l.contains("-->")) else {
            return Err(err(timing + 1, "expected a `start --> end` timing line"));
        };
        let (a, b) = tl.split_once("-->").unwrap();
        let b = b.split_whitespace().next().unwrap_or("");
        let start = parse_timestamp(a)
            .ok_or_else(|| err(timing + 1, &format!("bad start time `{}`", a.trim())))?;
        let end =
            parse_timestamp(b).ok_or_else(|| err(timing + 1, &format!("bad end time `{b}`")))?;
        if end < start {
            return Err(err(timing + 1, "cue ends before it starts"));
        }
        let mut j = timing + 1;
        let mut body = Vec::new();
        while j < lines.len() && !lines[j].trim().is_empty() {
            body.push(lines[j].trim_end());
            j += 1;
        }
        cues.push(TimeSpan {
            start,
            end,
            text: Some(body.join("\n")),
        });
        i = j;
    }
    Ok(cues)
}

/// Removes `<...>` markup (WebVTT voice/class tags, SRT `<i>`/`<b>`).
pub fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// Reads an `.srt` or `.vtt` file.
pub fn load_subtitles(path: &Path) -> Result<Vec<TimeSpan>> {
    let bytes = crate::error::read_limited(path, 64 << 20)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::decode(
            path.display().to_string(),
            "subtitles",
            format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
        )
    })?;
    parse_subtitles(&text, &path.display().to_string())
}

/// For each frame time, the index of the cue shown at that time (start ≤ t
/// < end), else the nearest cue within `tolerance` seconds, else `None`.
pub fn cues_for_frames(
    cues: &[TimeSpan],
    frame_times: &[f64],
    tolerance: f64,
) -> Vec<Option<usize>> {
    frame_times
        .iter()
        .map(|&t| {
            if let Some(i) = cues.iter().position(|c| c.start <= t && t < c.end) {
                return Some(i);
            }
            cues.iter()
                .enumerate()
                .map(|(i, c)| (i, if t < c.start { c.start - t } else { t - c.end }))
                .filter(|(_, d)| *d <= tolerance)
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
        })
        .collect()
}

/// For each segment, the cue with the largest temporal overlap (ties: the
/// earlier cue), if any overlaps at all.
pub fn cues_for_segments(cues: &[TimeSpan], segments: &[TimeSpan]) -> Vec<Option<usize>> {
    segments
        .iter()
        .map(|s| {
            let mut best: Option<(usize, f64)> = None;
            for (i, c) in cues.iter().enumerate() {
                let ov = s.end.min(c.end) - s.start.max(c.start);
                if ov > 0.0 && best.is_none_or(|b| ov > b.1) {
                    best = Some((i, ov));
                }
            }
            best.map(|b| b.0)
        })
        .collect()
}

/// The result of [`dtw`].
#[derive(Debug, Clone, PartialEq)]
pub struct DtwResult {
    /// Accumulated cost matrix `[n][m]` (`inf` outside the band).
    pub cost_matrix: Vec<Vec<f64>>,
    /// Warping path from `(0, 0)` to `(n - 1, m - 1)` (librosa returns
    /// it reversed).
    pub path: Vec<(usize, usize)>,
    /// Total cost `D[n-1][m-1]`.
    pub cost: f64,
}

/// Euclidean distances between the columns of `x` (`[d][n]`) and `y` (`[d][m]`).
pub fn euclidean_cost(x: &[Vec<f64>], y: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    if x.len() != y.len() || x.is_empty() {
        return Err(Error::invalid(
            "DTW features",
            format!("feature dimensions differ: {} vs {}", x.len(), y.len()),
        ));
    }
    let (n, m) = (x[0].len(), y[0].len());
    if x.iter().any(|r| r.len() != n) || y.iter().any(|r| r.len() != m) {
        return Err(Error::invalid(
            "DTW features",
            "every feature row of a sequence must have the same length",
        ));
    }
    Ok((0..n)
        .map(|i| {
            (0..m)
                .map(|j| {
                    x.iter()
                        .zip(y)
                        .map(|(a, b)| (a[i] - b[j]).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect()
        })
        .collect())
}

/// DTW over a cost matrix `c` (`[n][m]`) with steps (1,1), (0,1), (1,0),
/// unit weights, and optionally a Sakoe–Chiba band of `band_rad` × the
/// shorter length (librosa's `global_constraints=True, band_rad=...`).
pub fn dtw(c: &[Vec<f64>], band_rad: Option<f64>) -> Result<DtwResult> {
    let n = c.len();
    let m = c.first().map(|r| r.len()).unwrap_or(0);
    if n == 0 || m == 0 || c.iter().any(|r| r.len() != m) {
        return Err(Error::invalid(
            "DTW cost matrix",
            "must be a non-empty rectangle",
        ));
    }
    if c.iter().flatten().any(|v| v.is_nan()) {
        return Err(Error::invalid("DTW cost matrix", "contains NaN"));
    }
    let mut c = c.to_vec();
    if let Some(r) = band_rad {
        // librosa's __fill_off_diagonal: radius in cells (numpy rounds half
        // to even), widened by the length difference on the longer side.
        let radius = (r * n.min(m) as f64).round_ties_even() as i64;
        let offset = (n as i64 - m as i64).abs();
        for (i, row) in c.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let d = j as i64 - i as i64;
                let outside = if n < m {
                    d >= radius + offset || d <= -radius
                } else {
                    d >= radius || d <= -radius - offset
                };
                if outside {
                    *v = f64::INFINITY;
                }
            }
        }
    }
    const STEPS: [(usize, usize); 3] = [(1, 1), (0, 1), (1, 0)];
    let mut d = vec![vec![f64::INFINITY; m]; n];
    let mut steps = vec![vec![0u8; m]; n];
    d[0][0] = c[0][0];
    for i in 0..n {
        for j in 0..m {
            for (k, &(di, dj)) in STEPS.iter().enumerate() {
                if i < di || j < dj {
                    continue;
                }
                let cost = d[i - di][j - dj] + c[i][j];
                // Strict `<`: the first step in order wins ties, as in librosa.
                if cost < d[i][j] {
                    d[i][j] = cost;
                    steps[i][j] = k as u8;
                }
            }
        }
    }
    let mut path = vec![(n - 1, m - 1)];
    let (mut i, mut j) = (n - 1, m - 1);
    while (i, j) != (0, 0) {
        let (di, dj) = STEPS[steps[i][j] as usize];
        if i < di || j < dj {
            break;
        }
        i -= di;
        j -= dj;
        path.push((i, j));
    }
    path.reverse();
    let cost = d[n - 1][m - 1];
    Ok(DtwResult {
        cost_matrix: d,
        path,
        cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_and_vtt() {
        let srt = "1\n00:00:01,000 --> 00:00:02,500\nHello\nworld\n\n2\n00:00:03,000 --> 00:00:04,000\n<i>Bye</i>\n";
        let c = parse_subtitles(srt, "a.srt").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].text.as_deref(), Some("Hello\nworld"));
        assert_eq!((c[1].start, c[1].end), (3.0, 4.0));
        let vtt = "WEBVTT\n\nNOTE a comment\n\nintro\n00:01.000 --> 00:02.000 align:start\n<v Bob>Hi</v>\n\n00:00:02.000 --> 00:00:03.250\nThere\n";
        let v = parse_subtitles(vtt, "a.vtt").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(strip_tags(v[0].text.as_deref().unwrap()), "Hi");
        assert_eq!(v[1].end, 3.25);
        let e = parse_subtitles("1\n00:00:01,000 --> xx\nHi\n", "b.srt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.srt:2"), "{e}");
    }

    #[test]
    fn cue_matching() {
        let cues = vec![
            TimeSpan {
                start: 0.0,
                end: 1.0,
                text: None,
            },
            TimeSpan {
                start: 2.0,
                end: 3.0,
                text: None,
            },
        ];
        assert_eq!(
            cues_for_frames(&cues, &[0.5, 1.1, 1.6, 5.0], 0.5),
            vec![Some(0), Some(0), Some(1), None]
        );
        let segs = vec![
            TimeSpan {
                start: 0.8,
                end: 2.5,
                text: None,
            },
            TimeSpan {
                start: 4.0,
                end: 5.0,
                text: None,
            },
        ];
        assert_eq!(cues_for_segments(&cues, &segs), vec![Some(1), None]);
    }

    #[test]
    fn dtw_small_known_case() {
        let x = vec![vec![1.0, 2.0, 3.0, 3.0]];
        let y = vec![vec![1.0, 3.0]];
        let c = euclidean_cost(&x, &y).unwrap();
        let r = dtw(&c, None).unwrap();
        assert_eq!(r.cost, 1.0);
        // Two paths cost 1; the diagonal step is preferred on ties.
        assert_eq!(r.path, vec![(0, 0), (1, 0), (2, 1), (3, 1)]);
        assert!(dtw(&[vec![f64::NAN]], None).is_err());
    }
}
