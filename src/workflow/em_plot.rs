//! The figures of an HMM fit or decoding (SVG), for the first dataset, as the tutorial draws
//! them: `em_trace.svg` (the penalised log likelihood against EM iterations, one line per
//! restart, the winner in bold), `emissions.svg` (each state's emission density, weighted
//! by its share of the data, over the data's histogram; for regressions the data against
//! the first input coloured by decoded state, with each state's line) and `states.svg`
//! (the first sequence over time coloured by its Viterbi state, above the smoothed state
//! probabilities).

use std::path::Path;

use plotters::prelude::*;

use crate::data::DataBatch;
use crate::error::Result;
use crate::hmm::em::EmFit;
use crate::hmm::{self, EmissionKind, HmmParams, HmmSpec};
use crate::study::plot::{legend, padded_range, plot_err, series_colour};

/// Steps of the first sequence drawn in `states.svg` at most.
const STEPS: usize = 1000;

/// One dataset of an HMM batch with its decoding: what the figures draw.
pub struct Decoding<'a> {
    /// The model's shape.
    pub spec: &'a HmmSpec,
    /// The parameters the states were decoded under.
    pub params: &'a HmmParams,
    /// The HMM-layout batch.
    pub data: &'a DataBatch,
    /// Which dataset.
    pub b: usize,
    /// Viterbi state of every row of the batch.
    pub paths: &'a [usize],
    /// Smoothed state probabilities, rows of the batch × K.
    pub posteriors: &'a [f32],
    /// The first sequence's id, for the title.
    pub seq_id: &'a str,
    /// The dataset's name when there are several.
    pub label: String,
}

/// Writes the figures of one dataset's decoding (and of its EM run, when `fit` is given)
/// into `dir`; returns their names.
pub fn write_hmm_plots(dir: &Path, dec: &Decoding<'_>, fit: Option<&EmFit>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(f) = fit {
        out.push(write_trace(dir, f, &dec.label)?);
    }
    out.push(write_emissions(dir, dec)?);
    out.push(write_states(dir, dec)?);
    Ok(out)
}

fn suffix(label: &str) -> String {
    if label.is_empty() {
        String::new()
    } else {
        format!(" ({label})")
    }
}

fn write_trace(dir: &Path, fit: &EmFit, label: &str) -> Result<String> {
    let path = dir.join("em_trace.svg");
    let traces: Vec<&Vec<f64>> = fit.restart_traces.iter().collect();
    let iters = traces.iter().map(|t| t.len()).max().unwrap_or(1).max(2);
    // Early iterations of poor restarts sit far below: show from the 2nd iteration on,
    // down to the lowest final value less a margin.
    let finals = traces.iter().filter_map(|t| t.last().copied());
    let (lo_f, hi) = padded_range(
        finals
            .clone()
            .chain(traces.iter().flat_map(|t| t.iter().copied())),
    );
    let lowest_final = finals.fold(f64::INFINITY, f64::min);
    let lo = if lowest_final.is_finite() {
        (lowest_final - (hi - lowest_final).max(1.0)).max(lo_f)
    } else {
        lo_f
    };
    let root = SVGBackend::new(&path, (640, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err(&path))?;
    let mut ch = ChartBuilder::on(&root)
        .caption(
            format!("EM: penalised log likelihood per restart{}", suffix(label)),
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..(iters - 1) as f64, lo..hi)
        .map_err(plot_err(&path))?;
    ch.configure_mesh()
        .disable_mesh()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("EM iteration")
        .y_desc("penalised log likelihood")
        .draw()
        .map_err(plot_err(&path))?;
    for (r, t) in traces.iter().enumerate() {
        let best = r == fit.restart;
        let style = if best {
            RGBColor(200, 50, 40).stroke_width(3)
        } else {
            RGBColor(70, 110, 180).mix(0.5).stroke_width(1)
        };
        let s = ch
            .draw_series(LineSeries::new(
                t.iter().enumerate().map(|(i, &v)| (i as f64, v.max(lo))),
                style,
            ))
            .map_err(plot_err(&path))?;
        if best {
            s.label(format!("restart {r} (best)")).legend(|(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 16, y)],
                    RGBColor(200, 50, 40).stroke_width(3),
                )
            });
        } else if r == usize::from(fit.restart == 0) {
            s.label("other restarts").legend(|(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 16, y)],
                    RGBColor(70, 110, 180).stroke_width(1),
                )
            });
        }
    }
    legend(&mut ch, SeriesLabelPosition::LowerRight, &path)?;
    root.present().map_err(plot_err(&path))?;
    Ok("em_trace.svg".into())
}

/// The rows of dataset `b` and its first emission column.
fn rows_and_y<'a>(dec: &Decoding<'a>) -> (std::ops::Range<usize>, &'a [f64]) {
    (dec.data.range(dec.b), dec.data.y())
}

#[allow(clippy::needless_range_loop)]
fn write_emissions(dir: &Path, dec: &Decoding<'_>) -> Result<String> {
    let path = dir.join("emissions.svg");
    let (spec, prm) = (dec.spec, dec.params);
    let (rows, y) = rows_and_y(dec);
    let k = spec.k;
    let title = |what: &str| format!("{what}{}", suffix(&dec.label));
    let root = SVGBackend::new(&path, (640, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err(&path))?;
    // Share of the data in each state (mean smoothed probability).
    let mut share = vec![0.0; k];
    for r in rows.clone() {
        for (s, v) in share.iter_mut().enumerate() {
            *v += f64::from(dec.posteriors[r * k + s]);
        }
    }
    let n = rows.len().max(1) as f64;
    share.iter_mut().for_each(|v| *v /= n);
    let ys = &y[rows.clone()];
    if spec.p == 0 && spec.kind == EmissionKind::Gaussian {
        let (lo, hi) = padded_range(ys.iter().copied());
        let bins = 40;
        let width = (hi - lo) / bins as f64;
        let mut counts = vec![0usize; bins];
        for &v in ys {
            counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
        }
        let hist: Vec<f64> = counts.iter().map(|&c| c as f64 / (n * width)).collect();
        let grid: Vec<f64> = (0..=200)
            .map(|i| lo + (hi - lo) * i as f64 / 200.0)
            .collect();
        let dens = |s: usize, v: f64| {
            let (m, sd) = (prm.loc[s * spec.d], prm.sds[s * spec.d]);
            share[s] * (-0.5 * ((v - m) / sd).powi(2)).exp()
                / (sd * (2.0 * std::f64::consts::PI).sqrt())
        };
        let total: Vec<f64> = grid
            .iter()
            .map(|&v| (0..k).map(|s| dens(s, v)).sum())
            .collect();
        let top = hist.iter().chain(&total).copied().fold(0.0f64, f64::max) * 1.1;
        let mut ch = ChartBuilder::on(&root)
            .caption(
                title("emission densities over the data"),
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0.0..top.max(1e-12))
            .map_err(plot_err(&path))?;
        ch.configure_mesh()
            .disable_mesh()
            .x_desc(dec.data.y_label())
            .y_desc("density")
            .draw()
            .map_err(plot_err(&path))?;
        ch.draw_series(hist.iter().enumerate().map(|(i, &h)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new(
                [(x0, 0.0), (x0 + width, h)],
                RGBColor(200, 200, 200).filled(),
            )
        }))
        .map_err(plot_err(&path))?
        .label("data")
        .legend(|(x, y)| {
            Rectangle::new(
                [(x, y - 4), (x + 16, y + 4)],
                RGBColor(200, 200, 200).filled(),
            )
        });
        for s in 0..k {
            let col = series_colour(s);
            ch.draw_series(LineSeries::new(
                grid.iter().map(|&v| (v, dens(s, v))),
                col.stroke_width(2),
            ))
            .map_err(plot_err(&path))?
            .label(format!("state {s} ({:.0}%)", 100.0 * share[s]))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2)));
        }
        ch.draw_series(LineSeries::new(
            grid.iter().copied().zip(total.iter().copied()),
            BLACK.stroke_width(1),
        ))
        .map_err(plot_err(&path))?
        .label("all states")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(1)));
        legend(&mut ch, SeriesLabelPosition::UpperRight, &path)?;
    } else {
        // Regressions (and choices): the response against the first input, coloured by
        // decoded state, with each state's mean response.
        let x = if spec.p > 0 {
            &dec.data.x_col(1)[rows.clone()]
        } else {
            &dec.data.x_col(0)[rows.clone()]
        };
        let (xl, xh) = padded_range(x.iter().copied());
        let (yl, yh) = padded_range(ys.iter().copied());
        let x_name = dec
            .data
            .x_names
            .get(1)
            .cloned()
            .unwrap_or_else(|| "x".into());
        let mut ch = ChartBuilder::on(&root)
            .caption(title("emissions by decoded state"), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(xl..xh, yl..yh)
            .map_err(plot_err(&path))?;
        ch.configure_mesh()
            .disable_mesh()
            .x_desc(x_name)
            .y_desc(dec.data.y_label())
            .draw()
            .map_err(plot_err(&path))?;
        let shown = ys.len().min(3000);
        ch.draw_series((0..shown).map(|i| i * ys.len() / shown).map(|i| {
            let s = dec.paths[rows.start + i];
            Circle::new((x[i], ys[i]), 2, series_colour(s).mix(0.5).filled())
        }))
        .map_err(plot_err(&path))?;
        if spec.p > 0 {
            for s in 0..k {
                let col = series_colour(s);
                let (a, w) = (prm.loc[s * spec.d], prm.weights[s * spec.d * spec.p]);
                let mean = |v: f64| {
                    let eta = a + w * v;
                    match spec.kind {
                        EmissionKind::Gaussian => eta,
                        EmissionKind::Bernoulli => 1.0 / (1.0 + (-eta).exp()),
                    }
                };
                ch.draw_series(LineSeries::new(
                    (0..=60)
                        .map(|i| xl + (xh - xl) * i as f64 / 60.0)
                        .map(|v| (v, mean(v))),
                    col.stroke_width(2),
                ))
                .map_err(plot_err(&path))?
                .label(format!("state {s} ({:.0}%)", 100.0 * share[s]))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2))
                });
            }
            legend(&mut ch, SeriesLabelPosition::UpperLeft, &path)?;
        }
    }
    root.present().map_err(plot_err(&path))?;
    Ok("emissions.svg".into())
}

fn write_states(dir: &Path, dec: &Decoding<'_>) -> Result<String> {
    let path = dir.join("states.svg");
    let k = dec.spec.k;
    let seq = hmm::sequences(dec.data, dec.b)
        .into_iter()
        .next()
        .unwrap_or(0..0);
    let seq = seq.start..seq.end.min(seq.start + STEPS);
    let y = &dec.data.y()[seq.clone()];
    let t_max = seq.len().max(2) as f64;
    let root = SVGBackend::new(&path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err(&path))?;
    let (top, bottom) = root.split_vertically(260);
    let (yl, yh) = padded_range(y.iter().copied());
    let title = format!(
        "sequence {}{}: data coloured by Viterbi state",
        dec.seq_id,
        suffix(&dec.label)
    );
    let mut ch = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, yl..yh)
        .map_err(plot_err(&path))?;
    ch.configure_mesh()
        .disable_mesh()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("time step")
        .y_desc(dec.data.y_label())
        .draw()
        .map_err(plot_err(&path))?;
    ch.draw_series(LineSeries::new(
        y.iter().enumerate().map(|(t, &v)| (t as f64, v)),
        BLACK.mix(0.25).stroke_width(1),
    ))
    .map_err(plot_err(&path))?;
    for s in 0..k {
        let col = series_colour(s);
        ch.draw_series(
            y.iter()
                .enumerate()
                .filter(|&(t, _)| dec.paths[seq.start + t] == s)
                .map(|(t, &v)| Circle::new((t as f64, v), 2, col.filled())),
        )
        .map_err(plot_err(&path))?
        .label(format!("state {s}"))
        .legend(move |(x, y)| Circle::new((x + 8, y), 3, col.filled()));
    }
    legend(&mut ch, SeriesLabelPosition::UpperRight, &path)?;
    let mut ch = ChartBuilder::on(&bottom)
        .caption("smoothed state probabilities", ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max, 0.0..1.02)
        .map_err(plot_err(&path))?;
    ch.configure_mesh()
        .disable_mesh()
        .x_label_formatter(&|v| format!("{v:.0}"))
        .x_desc("time step")
        .y_desc("P(state | all data)")
        .draw()
        .map_err(plot_err(&path))?;
    for s in 0..k {
        ch.draw_series(LineSeries::new(
            seq.clone()
                .map(|r| ((r - seq.start) as f64, f64::from(dec.posteriors[r * k + s]))),
            series_colour(s).stroke_width(2),
        ))
        .map_err(plot_err(&path))?;
    }
    root.present().map_err(plot_err(&path))?;
    Ok("states.svg".into())
}
