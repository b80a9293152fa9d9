//! Charts of runs: an SVG of each phase's wall seconds per sector, runs side by side, with the
//! reference figures of the same sector size beside them (log scale: phases span milliseconds to
//! minutes).

use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::report::{BenchRun, MAX_SECONDS, seconds_ok};
use super::{BenchError, BenchResult, io_at};

/// The reference figures shipped with lode (`benches/reference.json`).
pub const REFERENCE_JSON: &str = include_str!("../../reference.json");

/// A file of reference figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct References {
    /// Where the figures come from.
    pub source: String,
    /// The figures.
    pub figures: Vec<Reference>,
}

/// One reference figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Whose and how (a series of the chart).
    pub label: String,
    /// Sector size.
    pub size: String,
    /// Phase, named as lode's runs name it.
    pub phase: String,
    /// Wall seconds per sector.
    pub wall_s: f64,
}

impl References {
    /// The figures shipped with lode.
    ///
    /// # Errors
    /// [`BenchError::BadFile`] if the embedded file does not parse (a build error, caught by the
    /// tests).
    pub fn shipped() -> BenchResult<References> {
        serde_json::from_str(REFERENCE_JSON).map_err(|e| BenchError::BadFile {
            path: "benches/reference.json".into(),
            why: e.to_string(),
        })
    }

    /// Reads a reference file.
    ///
    /// # Errors
    /// [`BenchError::Io`], [`BenchError::BadFile`].
    pub fn load(path: &Path) -> BenchResult<References> {
        let text = std::fs::read_to_string(path).map_err(io_at(path))?;
        let refs: References = serde_json::from_str(&text).map_err(|e| BenchError::BadFile {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        if let Some(f) = refs.figures.iter().find(|f| !seconds_ok(f.wall_s)) {
            return Err(BenchError::BadFile {
                path: path.to_path_buf(),
                why: format!(
                    "{} {} {} is outside 0 to {MAX_SECONDS} seconds",
                    f.label, f.size, f.phase
                ),
            });
        }
        Ok(refs)
    }
}

/// One bar series: a label and a value per phase.
struct Series {
    label: String,
    values: Vec<(usize, f64)>,
}

/// Draws `runs` (and the `references` of the runs' sector sizes, for the phases the runs have)
/// into an SVG file at `out`.
///
/// # Errors
/// [`BenchError::Invalid`] without runs; [`BenchError::Plot`] when drawing fails.
pub fn plot(runs: &[BenchRun], references: Option<&References>, out: &Path) -> BenchResult<()> {
    if runs.is_empty() {
        return Err(BenchError::Invalid(
            "nothing to plot: give result files".into(),
        ));
    }
    let mut phases: Vec<String> = Vec::new();
    for r in runs {
        for (p, _) in r.phase_means() {
            if !phases.contains(&p) {
                phases.push(p);
            }
        }
    }
    let index = |p: &str| phases.iter().position(|x| x == p);
    let mut series: Vec<Series> = runs
        .iter()
        .map(|r| Series {
            label: r.label(),
            values: r
                .phase_means()
                .into_iter()
                .filter_map(|(p, v)| index(&p).map(|i| (i, v)))
                .collect(),
        })
        .collect();
    if let Some(refs) = references {
        for f in &refs.figures {
            if !runs.iter().any(|r| r.size == f.size) {
                continue;
            }
            let Some(i) = index(&f.phase) else { continue };
            let label = format!("{} {}", f.label, f.size);
            match series.iter_mut().find(|s| s.label == label) {
                Some(s) => s.values.push((i, f.wall_s)),
                None => series.push(Series {
                    label,
                    values: vec![(i, f.wall_s)],
                }),
            }
        }
    }
    // Only times a run could measure are drawn (runs built in memory are not checked on load).
    for s in &mut series {
        s.values.retain(|(_, v)| seconds_ok(*v) && *v > 0.0);
    }
    let values = series.iter().flat_map(|s| s.values.iter().map(|(_, v)| *v));
    let max = values.clone().fold(1e-3f64, f64::max);
    let min = values.fold(max, f64::min);
    let (lo, hi) = (min / 2.0, max * 2.0);
    let plot_err = |e: &dyn std::fmt::Display| BenchError::Plot(e.to_string());
    let root = SVGBackend::new(out, (1100, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let phase_count = phases.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "lode bench: wall seconds per sector, by phase",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..phase_count as f64, (lo..hi).log_scale())
        .map_err(|e| plot_err(&e))?;
    let names = phases.clone();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(phase_count.saturating_mul(2).saturating_add(1))
        .x_label_formatter(&|x| {
            let frac = x - x.floor();
            if (frac - 0.5).abs() < 0.01 {
                names.get(x.floor() as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("seconds per sector (log scale)")
        .draw()
        .map_err(|e| plot_err(&e))?;
    let width = 0.8 / series.len() as f64;
    for (k, s) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let bars = s.values.iter().map(move |&(i, v)| {
            let x0 = i as f64 + 0.1 + k as f64 * width;
            Rectangle::new([(x0, lo), (x0 + width * 0.9, v.max(lo))], color.filled())
        });
        chart
            .draw_series(bars)
            .map_err(|e| plot_err(&e))?
            .label(s.label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_err(&e))?;
    root.present().map_err(|e| plot_err(&e))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::run::machine::Machine;
    use crate::run::measure::Sample;

    fn run(size: &str, sectors: u64, pc1: f64) -> BenchRun {
        let sample = |phase: &str, wall_s| Sample {
            phase: phase.into(),
            repeat: 0,
            sectors,
            wall_s,
            cpu_s: wall_s,
            peak_rss_bytes: 0,
        };
        BenchRun {
            kind: "seal".into(),
            size: size.into(),
            sectors,
            repeat: 1,
            started: String::new(),
            command: String::new(),
            machine: Machine::this(),
            samples: vec![
                sample("precommit1", pc1),
                sample("precommit2", 3.6),
                sample("commit1", 0.04),
            ],
        }
    }

    #[test]
    fn the_shipped_references_parse_and_a_chart_is_drawn() {
        let refs = References::shipped().unwrap();
        assert!(
            refs.figures
                .iter()
                .any(|f| f.size == "512MiB" && f.phase == "precommit1")
        );
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("chart.svg");
        plot(
            &[run("8MiB", 1, 0.4), run("8MiB", 16, 1.6)],
            Some(&refs),
            &out,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for text in [
            "precommit1",
            "precommit2",
            "commit1",
            "rust-fil-proofs 19.1 (one core) 8MiB",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(plot(&[], None, &out).is_err());
        // A time no run could measure is left out of the chart, not drawn (nor looped over).
        let mut huge = run("8MiB", 1, 1e308);
        huge.samples[1].wall_s = f64::NAN;
        plot(&[huge], None, &out).unwrap();
    }
}
