//! SVG figures of a study report, one panel per quantity: rank (PIT) histograms with a 99%
//! band for each bin's count, ECDF minus the uniform CDF with the simultaneous band,
//! coverage of central intervals against their nominal level, and truth against posterior
//! mean.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::sbc::{binomial_tails, ecdf_band, ecdf_counts, ecdf_points, Report};
use super::{DatasetRecord, COVERAGE};
use crate::error::{Error, Result};

const CELL: (u32, u32) = (320, 260);
const BAND: RGBColor = RGBColor(210, 210, 210);
const BAR: RGBColor = RGBColor(70, 110, 180);
const BAD: RGBColor = RGBColor(200, 50, 40);

/// Colours of series told apart by colour (states, components, the lines of a grid), in
/// order; the first two are the bar and warning colours.
pub(crate) const SERIES: [RGBColor; 6] = [
    BAR,
    BAD,
    RGBColor(60, 150, 80),
    RGBColor(230, 140, 20),
    RGBColor(130, 80, 170),
    RGBColor(90, 90, 90),
];

/// The colour of series `i` (cycling through [`SERIES`]).
pub(crate) fn series_colour(i: usize) -> RGBColor {
    SERIES[i % SERIES.len()]
}

/// The range of the finite values of `v`, padded by 5% (a unit range when there are none).
pub(crate) fn padded_range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
            (l.min(x), h.max(x))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9 * (1.0 + lo.abs()));
    (lo - pad, hi + pad)
}

/// Draws the legend of the labelled series of `ch` at `pos`.
pub(crate) fn legend<'a, X: Ranged, Y: Ranged>(
    ch: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    pos: SeriesLabelPosition,
    path: &Path,
) -> Result<()> {
    ch.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 11))
        .position(pos)
        .draw()
        .map_err(plot_err(path))
}

pub(crate) fn plot_err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Invalid(format!("{}: could not draw: {e}", path.display()))
}

/// Draws one panel per quantity into `path`.
pub(crate) fn panels(
    path: &Path,
    names: &[String],
    mut draw: impl FnMut(&DrawingArea<SVGBackend, Shift>, usize) -> Result<()>,
) -> Result<()> {
    let cols = names.len().clamp(1, 4);
    let rows = names.len().div_ceil(cols);
    let root =
        SVGBackend::new(path, (CELL.0 * cols as u32, CELL.1 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err(path))?;
    for (q, area) in root.split_evenly((rows, cols)).iter().enumerate() {
        if q < names.len() {
            draw(area, q)?;
        }
    }
    root.present().map_err(plot_err(path))
}

/// Writes `rank_hist.svg`, `ecdf_diff.svg`, `coverage.svg` and `recovery.svg` into `dir`.
pub fn write_all(dir: &Path, report: &Report, records: &[DatasetRecord]) -> Result<()> {
    let names = &report.settings.quantities;
    let n = records.len();
    let pit = |q: usize| -> Vec<f64> { records.iter().map(|r| r.quantities[q].pit).collect() };

    // Rank histograms: each bin's count is Binomial(n, 1 / bins) under uniformity.
    let bins = report.bins;
    let (lo_t, hi_t) = binomial_tails(n, 1.0 / bins as f64);
    let lo = lo_t.iter().position(|&t| t >= 0.005).unwrap_or(0) as f64;
    let hi = hi_t.iter().rposition(|&t| t >= 0.005).unwrap_or(n) as f64;
    let path = dir.join("rank_hist.svg");
    panels(&path, names, |area, q| {
        let mut counts = vec![0usize; bins];
        for u in pit(q) {
            counts[((u * bins as f64) as usize).min(bins - 1)] += 1;
        }
        let top = (*counts.iter().max().unwrap_or(&1) as f64).max(hi) * 1.1;
        let mut ch = ChartBuilder::on(area)
            .caption(&names[q], ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..1.0, 0.0..top)
            .map_err(plot_err(&path))?;
        ch.configure_mesh()
            .disable_mesh()
            .x_desc("normalised rank")
            .draw()
            .map_err(plot_err(&path))?;
        ch.draw_series(std::iter::once(Rectangle::new(
            [(0.0, lo), (1.0, hi)],
            BAND.filled(),
        )))
        .map_err(plot_err(&path))?;
        ch.draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let colour = if (c as f64) < lo || (c as f64) > hi {
                BAD
            } else {
                BAR
            };
            Rectangle::new(
                [
                    (i as f64 / bins as f64, 0.0),
                    ((i + 1) as f64 / bins as f64, c as f64),
                ],
                colour.mix(0.8).filled(),
            )
        }))
        .map_err(plot_err(&path))?;
        Ok(())
    })?;

    // ECDF difference with the simultaneous band.
    let z = ecdf_points(n);
    let band = ecdf_band(n, report.ecdf_gamma);
    let half = band
        .iter()
        .zip(&z)
        .map(|(&(l, h), &p)| (p - l).max(h - p))
        .fold(0.0f64, f64::max)
        * 1.5;
    let path = dir.join("ecdf_diff.svg");
    panels(&path, names, |area, q| {
        let counts = ecdf_counts(&pit(q), &z);
        let dev: Vec<f64> = counts
            .iter()
            .zip(&z)
            .map(|(&c, &p)| c as f64 / n as f64 - p)
            .collect();
        let span = dev.iter().fold(half, |m, d| m.max(d.abs() * 1.1));
        let mut ch = ChartBuilder::on(area)
            .caption(&names[q], ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..1.0, -span..span)
            .map_err(plot_err(&path))?;
        ch.configure_mesh()
            .disable_mesh()
            .x_desc("z")
            .y_desc("ECDF - z")
            .draw()
            .map_err(plot_err(&path))?;
        let upper: Vec<(f64, f64)> = z.iter().zip(&band).map(|(&p, b)| (p, b.1 - p)).collect();
        let lower: Vec<(f64, f64)> = z
            .iter()
            .zip(&band)
            .map(|(&p, b)| (p, b.0 - p))
            .rev()
            .collect();
        ch.draw_series(std::iter::once(Polygon::new(
            upper.into_iter().chain(lower).collect::<Vec<_>>(),
            BAND.filled(),
        )))
        .map_err(plot_err(&path))?;
        ch.draw_series(LineSeries::new(
            z.iter().zip(&dev).map(|(&p, &d)| (p, d)),
            BAR.stroke_width(2),
        ))
        .map_err(plot_err(&path))?;
        Ok(())
    })?;

    // Coverage of central intervals against nominal, with a binomial 95% range.
    let path = dir.join("coverage.svg");
    panels(&path, names, |area, q| {
        let r = &report.quantities[q];
        let got = [r.coverage_50, r.coverage_80, r.coverage_95];
        let mut ch = ChartBuilder::on(area)
            .caption(&names[q], ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.4..1.0, 0.4..1.0)
            .map_err(plot_err(&path))?;
        ch.configure_mesh()
            .disable_mesh()
            .x_desc("nominal")
            .y_desc("covered")
            .draw()
            .map_err(plot_err(&path))?;
        ch.draw_series(LineSeries::new([(0.4, 0.4), (1.0, 1.0)], BLACK.mix(0.4)))
            .map_err(plot_err(&path))?;
        for (&level, &g) in COVERAGE.iter().zip(&got) {
            let se = (level * (1.0 - level) / n as f64).sqrt() * 1.96;
            ch.draw_series(std::iter::once(PathElement::new(
                vec![(level, level - se), (level, level + se)],
                BAND.stroke_width(6),
            )))
            .map_err(plot_err(&path))?;
            let colour = if (g - level).abs() > se { BAD } else { BAR };
            ch.draw_series(std::iter::once(Circle::new((level, g), 4, colour.filled())))
                .map_err(plot_err(&path))?;
        }
        Ok(())
    })?;

    // Recovery: truth against posterior mean.
    let path = dir.join("recovery.svg");
    panels(&path, names, |area, q| {
        let pts: Vec<(f64, f64)> = records
            .iter()
            .map(|r| (r.quantities[q].truth, r.quantities[q].mean))
            .filter(|(t, m)| t.is_finite() && m.is_finite())
            .collect();
        let mut sorted: Vec<f64> = pts.iter().flat_map(|&(t, m)| [t, m]).collect();
        sorted.sort_unstable_by(|a, b| a.total_cmp(b));
        let (a, b) = if sorted.is_empty() {
            (0.0, 1.0)
        } else {
            // The central 99% of values: a few prior draws far out would flatten the rest.
            let a = crate::diag::quantile_sorted(&sorted, 0.005);
            let b = crate::diag::quantile_sorted(&sorted, 0.995);
            let pad = (b - a).max(1e-9) * 0.05;
            (a - pad, b + pad)
        };
        let mut ch = ChartBuilder::on(area)
            .caption(&names[q], ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(a..b, a..b)
            .map_err(plot_err(&path))?;
        ch.configure_mesh()
            .disable_mesh()
            .x_desc("truth")
            .y_desc("posterior mean")
            .draw()
            .map_err(plot_err(&path))?;
        ch.draw_series(LineSeries::new([(a, a), (b, b)], BLACK.mix(0.4)))
            .map_err(plot_err(&path))?;
        ch.draw_series(
            pts.iter()
                .filter(|&&(t, m)| (a..=b).contains(&t) && (a..=b).contains(&m))
                .take(5000)
                .map(|&p| Circle::new(p, 2, BAR.mix(0.5).filled())),
        )
        .map_err(plot_err(&path))?;
        Ok(())
    })
}

/// Writes the figures of a study at chosen values into `dir`: `power.svg` (the share of
/// replicates whose 95% interval excludes the null, against the points per dataset, one
/// line per combination of the other chosen values) and `cell_coverage.svg` (each cell's
/// 95% interval coverage with the binomial 95% range around 0.95), one panel per quantity.
pub fn write_cells(dir: &Path, cells: &[super::design::CellReport]) -> Result<()> {
    let mut names: Vec<String> = Vec::new();
    for c in cells {
        if !names.contains(&c.quantity) {
            names.push(c.quantity.clone());
        }
    }
    // Lines: the cells' chosen values other than n, in order of first appearance.
    let mut lines: Vec<String> = Vec::new();
    for c in cells {
        let key = super::show_values(&c.values);
        if !lines.contains(&key) {
            lines.push(key);
        }
    }
    let line_of = |c: &super::design::CellReport| {
        let key = super::show_values(&c.values);
        lines.iter().position(|l| *l == key).unwrap_or(0)
    };
    let n_min = cells.iter().map(|c| c.n).min().unwrap_or(1).max(1) as f64;
    let n_max = cells.iter().map(|c| c.n).max().unwrap_or(1).max(1) as f64;
    let (lo, hi) = (n_min / 1.3, n_max * 1.3);

    let null = cells.first().map_or(0.0, |c| c.null);
    for (file, y_desc) in [
        ("power.svg", format!("power (95% interval excludes {null})")),
        ("cell_coverage.svg", "95% interval coverage".to_string()),
    ] {
        let path = dir.join(file);
        let coverage = file == "cell_coverage.svg";
        panels(&path, &names, |area, q| {
            let rows: Vec<_> = cells.iter().filter(|c| c.quantity == names[q]).collect();
            let (y0, y1) = if coverage {
                let m = rows.iter().map(|c| c.coverage[2]).fold(0.8f64, f64::min);
                (m - 0.02, 1.01)
            } else {
                (-0.02, 1.02)
            };
            let mut ch = ChartBuilder::on(area)
                .caption(&names[q], ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(36)
                .y_label_area_size(48)
                .build_cartesian_2d((lo..hi).log_scale(), y0..y1)
                .map_err(plot_err(&path))?;
            ch.configure_mesh()
                .disable_mesh()
                .x_labels(6)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .x_desc("points per dataset (n)")
                .y_desc(y_desc.as_str())
                .draw()
                .map_err(plot_err(&path))?;
            if coverage {
                // The binomial 95% range of a cell's coverage at the nominal 0.95.
                let reps = rows.iter().map(|c| c.replicates).min().unwrap_or(1).max(1);
                let se = (0.95 * 0.05 / reps as f64).sqrt() * 1.96;
                ch.draw_series(std::iter::once(Rectangle::new(
                    [(lo, 0.95 - se), (hi, (0.95 + se).min(1.0))],
                    BAND.filled(),
                )))
                .map_err(plot_err(&path))?;
                ch.draw_series(LineSeries::new([(lo, 0.95), (hi, 0.95)], BLACK.mix(0.5)))
                    .map_err(plot_err(&path))?;
            }
            for (l, label) in lines.iter().enumerate() {
                let mut pts: Vec<(f64, f64)> = rows
                    .iter()
                    .filter(|c| line_of(c) == l)
                    .map(|c| {
                        let v = if coverage { c.coverage[2] } else { c.power };
                        (c.n.max(1) as f64, v)
                    })
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let col = series_colour(l);
                ch.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
                    .map_err(plot_err(&path))?
                    .label(if label.is_empty() { "all" } else { label })
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2))
                    });
                ch.draw_series(pts.iter().map(|&p| Circle::new(p, 3, col.filled())))
                    .map_err(plot_err(&path))?;
            }
            if lines.len() > 1 && q == 0 {
                legend(&mut ch, SeriesLabelPosition::LowerRight, &path)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}
