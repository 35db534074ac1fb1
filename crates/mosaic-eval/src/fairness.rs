//! Fairness breakdowns: any metric computed per group of a metadata field,
//! with the largest gap between groups.
//!
//! Groups come from a manifest field (`meta` of
//! [`mosaic_data::manifest::ManifestRecord`]; strings as they are, numbers
//! and booleans as JSON text, absent or `null` as `(missing)`) or from any
//! labels the caller has. The metric is a closure over the indices of a
//! group's samples, so corpus-level metrics (WER, BLEU, R@K) are computed per
//! group, not averaged from per-sample values.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The group name of samples without the field.
pub const MISSING: &str = "(missing)";

/// One group's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupResult {
    /// The field's value.
    pub group: String,
    /// Samples in the group.
    pub samples: usize,
    /// The metric on the group's samples.
    pub value: f64,
}

/// A metric broken down by a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fairness {
    /// The field grouped by.
    pub field: String,
    /// The metric's name.
    pub metric: String,
    /// Groups in sorted order of their value's text.
    pub groups: Vec<GroupResult>,
    /// Largest value minus smallest value over the groups.
    pub gap: f64,
    /// The group with the largest value.
    pub max_group: String,
    /// The group with the smallest value.
    pub min_group: String,
}

impl Fairness {
    /// A Markdown table of the groups and the gap.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "| {} | samples | {} |\n|---|---|---|\n",
            self.field, self.metric
        );
        for g in &self.groups {
            s.push_str(&format!(
                "| {} | {} | {:.6} |\n",
                g.group, g.samples, g.value
            ));
        }
        s.push_str(&format!(
            "\nLargest gap: {:.6} ({} = max, {} = min)\n",
            self.gap, self.max_group, self.min_group
        ));
        s
    }

    /// The groups as a bar chart PNG.
    pub fn plot(&self, path: &Path) -> Result<()> {
        let bars: Vec<(String, f64)> = self
            .groups
            .iter()
            .map(|g| (g.group.clone(), g.value))
            .collect();
        crate::plot::bar_chart(
            path,
            &format!("{} by {}", self.metric, self.field),
            &self.metric,
            &bars,
        )
    }
}

/// The group of each record: `meta[field]` as text.
pub fn groups_from_manifest(
    records: &[mosaic_data::manifest::ManifestRecord],
    field: &str,
) -> Vec<String> {
    records
        .iter()
        .map(|r| match r.meta.get(field) {
            None | Some(serde_json::Value::Null) => MISSING.to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        })
        .collect()
}

/// `metric(indices)` for every group of `groups` (one name per sample).
pub fn breakdown(
    field: &str,
    metric: &str,
    groups: &[String],
    mut eval: impl FnMut(&[usize]) -> Result<f64>,
) -> Result<Fairness> {
    if groups.is_empty() {
        return Err(Error::invalid("fairness groups", "no samples"));
    }
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate() {
        by.entry(g.as_str()).or_default().push(i);
    }
    let mut out = Vec::with_capacity(by.len());
    for (g, idx) in by {
        out.push(GroupResult {
            group: g.to_string(),
            samples: idx.len(),
            value: eval(&idx)?,
        });
    }
    let max = out
        .iter()
        .max_by(|a, b| a.value.total_cmp(&b.value))
        .expect("non-empty");
    let min = out
        .iter()
        .min_by(|a, b| a.value.total_cmp(&b.value))
        .expect("non-empty");
    Ok(Fairness {
        field: field.to_string(),
        metric: metric.to_string(),
        gap: max.value - min.value,
        max_group: max.group.clone(),
        min_group: min.group.clone(),
        groups: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_between_groups() {
        let groups: Vec<String> = ["a", "b", "a", "c"].iter().map(|s| s.to_string()).collect();
        let vals = [1.0, 0.0, 0.5, 0.25];
        let f = breakdown("g", "acc", &groups, |idx| {
            Ok(idx.iter().map(|&i| vals[i]).sum::<f64>() / idx.len() as f64)
        })
        .unwrap();
        assert_eq!(f.groups.len(), 3);
        assert_eq!((f.max_group.as_str(), f.min_group.as_str()), ("a", "b"));
        assert!((f.gap - 0.75).abs() < 1e-15);
    }
}
