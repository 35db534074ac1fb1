//! Run reports: one folder per evaluation run with `report.json` (for
//! machines), `report.md` (for people) and PNG plots; [`compare`] two runs.
//!
//! Every file is written atomically (`mosaic_core::atomic`): a reader sees
//! the previous report or the complete new one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fairness::Fairness;
use crate::robustness::Sweep;

/// A named curve to plot (e.g. R@K for K = 1…10, both directions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Title and file stem.
    pub name: String,
    /// X axis name.
    pub x_label: String,
    /// Y axis name.
    pub y_label: String,
    /// Named `(x, y)` series.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

/// Everything one evaluation run measured.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    /// The run's name.
    pub name: String,
    /// Seconds since the Unix epoch when the report was made.
    pub created_unix: u64,
    /// What was evaluated (file paths, model, options).
    pub inputs: BTreeMap<String, String>,
    /// Headline numbers, by name (`bleu`, `wer`, `i2t_r@1`, ...).
    pub metrics: BTreeMap<String, f64>,
    /// Anything else per metric (counts, per-sample values, matrices).
    pub details: BTreeMap<String, serde_json::Value>,
    /// Robustness sweeps.
    pub sweeps: Vec<Sweep>,
    /// Fairness breakdowns.
    pub fairness: Vec<Fairness>,
    /// Other curves.
    pub curves: Vec<Curve>,
    /// PNG files written with the report (names inside its folder).
    pub plots: Vec<String>,
    /// Free-form notes (how a number was computed, what was left out).
    pub notes: Vec<String>,
}

fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    while out.contains("__") {
        out = out.replace("__", "_");
    }
    out.trim_matches('_').chars().take(60).collect()
}

impl Report {
    /// An empty report named `name`, stamped now.
    pub fn new(name: &str) -> Self {
        Report {
            name: name.to_string(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            ..Default::default()
        }
    }

    /// Records a headline number.
    pub fn metric(&mut self, name: &str, value: f64) -> &mut Self {
        self.metrics.insert(name.to_string(), value);
        self
    }

    /// Records details of a metric (anything serialisable).
    pub fn detail<T: Serialize>(&mut self, name: &str, value: &T) -> Result<&mut Self> {
        let v = serde_json::to_value(value)
            .map_err(|e| Error::invalid("report detail", e.to_string()))?;
        self.details.insert(name.to_string(), v);
        Ok(self)
    }

    /// Records an input.
    pub fn input(&mut self, name: &str, value: impl fmt::Display) -> &mut Self {
        self.inputs.insert(name.to_string(), value.to_string());
        self
    }

    /// Writes `dir/report.json`, `dir/report.md` and one PNG per sweep,
    /// fairness breakdown and curve (plus `metrics.png`, a bar chart of the
    /// headline numbers). Creates `dir`.
    pub fn write(&mut self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, None, format!("cannot create: {e}")))?;
        let mut plots = Vec::new();
        if !self.metrics.is_empty() {
            let bars: Vec<(String, f64)> =
                self.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect();
            crate::plot::bar_chart(&dir.join("metrics.png"), &self.name, "value", &bars)?;
            plots.push("metrics.png".to_string());
        }
        for (i, s) in self.sweeps.iter().enumerate() {
            let f = format!(
                "sweep_{}_{}.png",
                i + 1,
                slug(&format!("{} {}", s.metric, s.perturbation))
            );
            s.plot(&dir.join(&f))?;
            plots.push(f);
        }
        for (i, fa) in self.fairness.iter().enumerate() {
            let f = format!(
                "fairness_{}_{}.png",
                i + 1,
                slug(&format!("{} by {}", fa.metric, fa.field))
            );
            fa.plot(&dir.join(&f))?;
            plots.push(f);
        }
        for (i, c) in self.curves.iter().enumerate() {
            let f = format!("curve_{}_{}.png", i + 1, slug(&c.name));
            crate::plot::line_chart(&dir.join(&f), &c.name, &c.x_label, &c.y_label, &c.series)?;
            plots.push(f);
        }
        self.plots = plots;
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| Error::invalid("report", e.to_string()))?;
        mosaic_core::atomic::write_bytes_atomic(&dir.join("report.json"), &json)?;
        mosaic_core::atomic::write_bytes_atomic(
            &dir.join("report.md"),
            self.markdown().as_bytes(),
        )?;
        Ok(dir.to_path_buf())
    }

    /// Reads `report.json` from a run folder (or the file itself).
    pub fn load(path: &Path) -> Result<Report> {
        let file = if path.is_dir() {
            path.join("report.json")
        } else {
            path.to_path_buf()
        };
        let bytes = std::fs::read(&file)
            .map_err(|e| Error::file(&file, None, format!("cannot read: {e}")))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::file(&file, Some(e.line()), format!("not a Mosaic report: {e}")))
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let mut s = format!("# Evaluation: {}\n\n", self.name);
        if !self.inputs.is_empty() {
            s.push_str("## Inputs\n\n| input | value |\n|---|---|\n");
            for (k, v) in &self.inputs {
                s.push_str(&format!("| {k} | `{v}` |\n"));
            }
            s.push('\n');
        }
        if !self.metrics.is_empty() {
            s.push_str("## Metrics\n\n| metric | value |\n|---|---|\n");
            for (k, v) in &self.metrics {
                s.push_str(&format!("| {k} | {v:.6} |\n"));
            }
            s.push('\n');
        }
        for sw in &self.sweeps {
            s.push_str(&format!(
                "## Robustness: {} vs {}\n\n{}\n",
                sw.metric,
                sw.perturbation,
                sw.markdown()
            ));
        }
        for fa in &self.fairness {
            s.push_str(&format!(
                "## Fairness: {} by {}\n\n{}\n",
                fa.metric,
                fa.field,
                fa.markdown()
            ));
        }
        if !self.plots.is_empty() {
            s.push_str("## Plots\n\n");
            for p in &self.plots {
                s.push_str(&format!("![{p}]({p})\n\n"));
            }
        }
        if !self.notes.is_empty() {
            s.push_str("## Notes\n\n");
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
        }
        s
    }
}

/// Differences between two runs' headline metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Name of run A.
    pub a: String,
    /// Name of run B.
    pub b: String,
    /// `(metric, value in A, value in B)` over the union of metric names.
    pub rows: Vec<(String, Option<f64>, Option<f64>)>,
}

/// Compares the headline metrics of two reports.
pub fn compare(a: &Report, b: &Report) -> Comparison {
    let mut names: Vec<&String> = a.metrics.keys().chain(b.metrics.keys()).collect();
    names.sort();
    names.dedup();
    Comparison {
        a: a.name.clone(),
        b: b.name.clone(),
        rows: names
            .into_iter()
            .map(|n| {
                (
                    n.clone(),
                    a.metrics.get(n).copied(),
                    b.metrics.get(n).copied(),
                )
            })
            .collect(),
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(6)
            .max(6);
        writeln!(f, "A = {}\nB = {}", self.a, self.b)?;
        writeln!(
            f,
            "{:<w$}  {:>14}  {:>14}  {:>14}  {:>9}",
            "metric", "A", "B", "B - A", "B/A - 1"
        )?;
        let cell = |v: Option<f64>| v.map(|x| format!("{x:.6}")).unwrap_or_else(|| "-".into());
        for (n, x, y) in &self.rows {
            let (d, r) = match (x, y) {
                (Some(x), Some(y)) => (
                    format!("{:+.6}", y - x),
                    if *x != 0.0 {
                        format!("{:+.2}%", (y / x - 1.0) * 100.0)
                    } else {
                        "-".into()
                    },
                ),
                _ => ("-".into(), "-".into()),
            };
            writeln!(
                f,
                "{n:<w$}  {:>14}  {:>14}  {d:>14}  {r:>9}",
                cell(*x),
                cell(*y)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::robustness::sweep;

    #[test]
    fn write_load_compare() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Report::new("run a");
        a.metric("bleu", 20.0).metric("wer", 0.3);
        a.sweeps
            .push(sweep("typo rate", "wer", &[0.0, 0.1], |l| Ok(0.3 + l)).unwrap());
        a.write(&dir.path().join("a")).unwrap();
        let mut b = Report::new("run b");
        b.metric("bleu", 25.0).metric("cer", 0.1);
        b.write(&dir.path().join("b")).unwrap();
        let la = Report::load(&dir.path().join("a")).unwrap();
        assert_eq!(la.metrics, a.metrics);
        assert_eq!(la.plots.len(), 2);
        for p in &la.plots {
            image::open(dir.path().join("a").join(p)).unwrap();
        }
        let c = compare(&la, &Report::load(&dir.path().join("b")).unwrap());
        let text = c.to_string();
        assert!(
            text.contains("+5.000000") && text.contains("+25.00%"),
            "{text}"
        );
        assert_eq!(c.rows.len(), 3);
    }
}
