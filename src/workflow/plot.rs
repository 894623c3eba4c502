//! The figures of a sample folder, one panel per parameter (SVG): `trace.svg` (up to 8
//! chains as lines, and for larger ensembles the 5–95% band and median of all chains at each
//! iteration), `rank.svg` (rank histograms of up to 8 chains against the uniform count) and
//! `posterior.svg` (the pooled marginal density, its 94% HDI, the posterior mean, and the
//! truth when the data were simulated).

use std::path::Path;

use plotters::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::study::plot::{legend, padded_range, panels, plot_err, series_colour};

/// Chains drawn as lines.
const SHOWN: usize = 8;
/// Points per line at most (longer traces are thinned for the figure).
const POINTS: usize = 500;
const MEAN: RGBColor = RGBColor(40, 40, 40);
const TRUTH: RGBColor = RGBColor(200, 50, 40);
const FILL: RGBColor = RGBColor(70, 110, 180);

/// One dataset's draws: `draws[p][c]` holds parameter p's draws of chain c.
pub struct FitDraws<'a> {
    /// Parameter names.
    pub names: &'a [String],
    /// Per parameter, per chain, the draws.
    pub draws: Vec<Vec<Vec<f64>>>,
    /// The true values, when known.
    pub truth: Option<&'a [f64]>,
    /// What the figures' titles add (the dataset's name when there are several).
    pub label: String,
}

impl FitDraws<'_> {
    fn title(&self, p: usize) -> String {
        if self.label.is_empty() {
            self.names[p].clone()
        } else {
            format!("{} ({})", self.names[p], self.label)
        }
    }
}

fn colour(c: usize) -> RGBColor {
    let (r, g, b) = Palette99::pick(c).rgb();
    RGBColor(r, g, b)
}

/// Writes `trace.svg`, `rank.svg` and `posterior.svg` into `dir`; returns their names.
pub fn write_fit_plots(dir: &Path, fit: &FitDraws<'_>) -> Result<Vec<String>> {
    let k = fit.names.len();
    let n_chains = fit.draws.first().map_or(0, Vec::len);
    let n_draws = fit
        .draws
        .first()
        .and_then(|c| c.first())
        .map_or(0, Vec::len);
    if k == 0 || n_chains == 0 || n_draws == 0 {
        return Ok(Vec::new());
    }
    let stride = n_draws.div_ceil(POINTS).max(1);
    let shown = n_chains.min(SHOWN);
    let chains_note = if n_chains > SHOWN {
        format!("{SHOWN} of {n_chains} chains; black: 5, 50, 95% of all")
    } else {
        format!("{n_chains} chains")
    };

    // Traces.
    let path = dir.join("trace.svg");
    panels(&path, fit.names, |area, p| {
        let chains = &fit.draws[p];
        let (lo, hi) = padded_range(chains.iter().flatten().copied());
        let mut ch = ChartBuilder::on(area)
            .caption(fit.title(p), ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..n_draws as f64, lo..hi)
            .map_err(plot_err(&path))?;
        ch.configure_mesh()
            .disable_mesh()
            .x_labels(6)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_desc(format!("draw ({chains_note})"))
            .y_desc("value")
            .draw()
            .map_err(plot_err(&path))?;
        for (c, draws) in chains.iter().take(shown).enumerate() {
            ch.draw_series(LineSeries::new(
                (0..n_draws).step_by(stride).map(|t| (t as f64, draws[t])),
                colour(c).mix(0.7).stroke_width(1),
            ))
            .map_err(plot_err(&path))?;
        }
        if n_chains > SHOWN {
            let mut col = vec![0.0; n_chains];
            let q: Vec<(f64, f64, f64, f64)> = (0..n_draws)
                .step_by(stride)
                .map(|t| {
                    for (v, c) in col.iter_mut().zip(chains) {
                        *v = c[t];
                    }
                    col.sort_unstable_by(|a, b| a.total_cmp(b));
                    let at = |f: f64| crate::diag::quantile_sorted(&col, f);
                    (t as f64, at(0.05), at(0.5), at(0.95))
                })
                .collect();
            for (line, width) in [(1usize, 1u32), (2, 2), (3, 1)] {
                let pick = |v: &(f64, f64, f64, f64)| match line {
                    1 => v.1,
                    2 => v.2,
                    _ => v.3,
                };
                ch.draw_series(LineSeries::new(
                    q.iter().map(|v| (v.0, pick(v))),
                    MEAN.stroke_width(width),
                ))
                .map_err(plot_err(&path))?;
            }
        }
        Ok(())
    })?;

    // Rank histograms: under mixing, each chain's ranks among the pooled draws are uniform.
    let bins = 20usize.min(n_draws.max(1));
    let path = dir.join("rank.svg");
    panels(&path, fit.names, |area, p| {
        let chains = &fit.draws[p];
        let mut pooled: Vec<f64> = chains.iter().flatten().copied().collect();
        pooled.par_sort_unstable_by(|a, b| a.total_cmp(b));
        let total = pooled.len() as f64;
        let counts: Vec<Vec<f64>> = chains
            .iter()
            .take(shown)
            .map(|draws| {
                let mut h = vec![0.0; bins];
                for &v in draws {
                    let r = pooled.partition_point(|&x| x < v) as f64 / total;
                    h[((r * bins as f64) as usize).min(bins - 1)] += 1.0;
                }
                h
            })
            .collect();
        let expect = n_draws as f64 / bins as f64;
        let top = counts.iter().flatten().fold(expect, |m, &v| m.max(v)) * 1.15;
        let mut ch = ChartBuilder::on(area)
            .caption(fit.title(p), ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..1.0, 0.0..top)
            .map_err(plot_err(&path))?;
        ch.configure_mesh()
            .disable_mesh()
            .x_desc(format!(
                "rank among all draws ({})",
                chains_note.split(';').next().unwrap_or("")
            ))
            .y_desc("draws per bin")
            .draw()
            .map_err(plot_err(&path))?;
        ch.draw_series(LineSeries::new(
            [(0.0, expect), (1.0, expect)],
            MEAN.stroke_width(1),
        ))
        .map_err(plot_err(&path))?;
        for (c, h) in counts.iter().enumerate() {
            let steps = h.iter().enumerate().flat_map(|(i, &v)| {
                [
                    (i as f64 / bins as f64, v),
                    ((i + 1) as f64 / bins as f64, v),
                ]
            });
            ch.draw_series(LineSeries::new(steps, colour(c).mix(0.8)))
                .map_err(plot_err(&path))?;
        }
        Ok(())
    })?;

    // Marginal densities (Gaussian kernel, Silverman's bandwidth, on at most 20 000 draws).
    let path = dir.join("posterior.svg");
    panels(&path, fit.names, |area, p| {
        let all: Vec<f64> = fit.draws[p].iter().flatten().copied().collect();
        let step = all.len().div_ceil(20_000).max(1);
        let x: Vec<f64> = all.iter().step_by(step).copied().collect();
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        let (hdi_lo, hdi_hi) = crate::diag::hdi(&all, 0.94);
        let truth = fit.truth.and_then(|t| t.get(p).copied());
        let h = 1.06 * sd.max(1e-12 * (1.0 + mean.abs())) * n.powf(-0.2);
        let (dlo, dhi) = padded_range(all.iter().copied());
        let lo = truth.map_or(dlo - 3.0 * h, |t| t.min(dlo - 3.0 * h));
        let hi = truth.map_or(dhi + 3.0 * h, |t| t.max(dhi + 3.0 * h));
        let grid: Vec<f64> = (0..160)
            .map(|i| lo + (hi - lo) * i as f64 / 159.0)
            .collect();
        let dens: Vec<f64> = grid
            .iter()
            .map(|&g| {
                x.iter()
                    .map(|&v| (-0.5 * ((g - v) / h).powi(2)).exp())
                    .sum::<f64>()
                    / (n * h * (2.0 * std::f64::consts::PI).sqrt())
            })
            .collect();
        let top = dens.iter().fold(0.0f64, |m, &d| m.max(d)).max(1e-300) * 1.15;
        let mut ch = ChartBuilder::on(area)
            .caption(fit.title(p), ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(plot_err(&path))?;
        ch.configure_mesh()
            .disable_mesh()
            .x_desc("value (shaded: 94% HDI)")
            .y_desc("density")
            .draw()
            .map_err(plot_err(&path))?;
        let inside: Vec<(f64, f64)> = grid
            .iter()
            .zip(&dens)
            .filter(|(&g, _)| g >= hdi_lo && g <= hdi_hi)
            .map(|(&g, &d)| (g, d))
            .collect();
        if let (Some(a), Some(b)) = (inside.first(), inside.last()) {
            let poly: Vec<(f64, f64)> = std::iter::once((a.0, 0.0))
                .chain(inside.iter().copied())
                .chain(std::iter::once((b.0, 0.0)))
                .collect();
            ch.draw_series(std::iter::once(Polygon::new(poly, FILL.mix(0.25).filled())))
                .map_err(plot_err(&path))?;
        }
        ch.draw_series(LineSeries::new(
            grid.iter().copied().zip(dens.iter().copied()),
            FILL.stroke_width(2),
        ))
        .map_err(plot_err(&path))?
        .label("posterior")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], FILL.stroke_width(2)));
        ch.draw_series(LineSeries::new([(mean, 0.0), (mean, top)], MEAN))
            .map_err(plot_err(&path))?
            .label("mean")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], MEAN));
        if let Some(t) = truth {
            ch.draw_series(LineSeries::new([(t, 0.0), (t, top)], TRUTH.stroke_width(2)))
                .map_err(plot_err(&path))?
                .label("truth")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], TRUTH.stroke_width(2)));
        }
        ch.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(plot_err(&path))?;
        Ok(())
    })?;
    Ok(vec![
        "trace.svg".into(),
        "rank.svg".into(),
        "posterior.svg".into(),
    ])
}

/// Draws the figures of the first dataset of the sample folder `dir` into the folder `to`:
/// `sizes` is [all chains, draws kept, chains per dataset] of its `draws.npy`, `label` the
/// dataset's name when there are several.
pub fn draw_first_dataset(
    dir: &Path,
    to: &Path,
    names: &[String],
    truth: Option<&[f64]>,
    sizes: [usize; 3],
    label: Option<String>,
) -> Result<Vec<String>> {
    let [n_chains, n_kept, cpd] = sizes;
    let k = names.len();
    let w = crate::io::npy::NpyWriter::open_read(&dir.join("draws.npy"), &[n_chains, n_kept, k])?;
    let draws = crate::hmc::sink::read_chains(&w, 0..cpd, n_kept, k, 0..k, &mut Vec::new())?;
    let fit = FitDraws {
        names,
        draws,
        truth,
        label: label.map(|l| format!("dataset {l}")).unwrap_or_default(),
    };
    write_fit_plots(to, &fit)
}

/// Redraws the figures of the sample folder `dir` (`gpsamp plot DIR`): each file is drawn
/// beside the folder's files and then renamed over the old one, so a failure leaves the old
/// figures. Refuses folders `gpsamp sample` did not write.
pub fn redraw(dir: &Path) -> Result<Vec<String>> {
    let bad = |m: String| Error::Invalid(format!("{}: {m}", dir.display()));
    if crate::io::output::marker_command(dir).as_deref() != Some("sample") {
        return Err(bad("not a folder written by `gpsamp sample`".into()));
    }
    let meta = super::read_sample_meta(dir)?;
    let names: Vec<String> = serde_json::from_value(meta["param_names"].clone())
        .map_err(|e| bad(format!("meta.json param_names: {e}")))?;
    let all: Vec<String> =
        serde_json::from_value(meta["all_param_names"].clone()).unwrap_or_else(|_| names.clone());
    let shape: Vec<usize> = serde_json::from_value(meta["draws_shape"].clone())
        .map_err(|e| bad(format!("meta.json draws_shape: {e}")))?;
    let cpd = meta["chains_per_dataset"].as_u64().unwrap_or(0) as usize;
    let [n_chains, n_kept, k] = shape[..] else {
        return Err(bad(
            "meta.json draws_shape is not [chains, draws, params]".into()
        ));
    };
    if k != names.len() || cpd == 0 || cpd > n_chains {
        return Err(bad("meta.json does not describe draws.npy".into()));
    }
    let truth: Option<Vec<f64>> = serde_json::from_value::<Vec<f64>>(meta["truth"].clone())
        .ok()
        .filter(|t| t.len() == all.len())
        .map(|t| {
            names
                .iter()
                .filter_map(|n| all.iter().position(|a| a == n).map(|i| t[i]))
                .collect()
        });
    let groups: Vec<String> = serde_json::from_value(meta["groups"].clone()).unwrap_or_default();
    let label = (groups.len() > 1).then(|| groups[0].clone());
    let tmp = dir.join(format!(".gpsamp-plot-{}", std::process::id()));
    std::fs::create_dir(&tmp).map_err(|source| Error::Io {
        path: tmp.clone(),
        source,
    })?;
    let drawn = draw_first_dataset(
        dir,
        &tmp,
        &names,
        truth.as_deref(),
        [n_chains, n_kept, cpd],
        label,
    )
    .and_then(|mut files| {
        files.extend(redraw_ppc(dir, &tmp, &meta, cpd)?);
        Ok(files)
    });
    let moved = drawn.and_then(|files| {
        for f in &files {
            std::fs::rename(tmp.join(f), dir.join(f)).map_err(|source| Error::Io {
                path: dir.join(f),
                source,
            })?;
        }
        Ok(files)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    moved
}

/// Redraws `ppc.svg` of a sample folder into `to` when the folder records the model's
/// settings and its data file is still readable at the path `meta.json` gives (the data are
/// not copied into the folder); `Ok(None)` otherwise.
fn redraw_ppc(
    dir: &Path,
    to: &Path,
    meta: &serde_json::Value,
    cpd: usize,
) -> Result<Option<String>> {
    let Ok(spec) = serde_json::from_value::<super::ModelSpec>(meta["model_spec"].clone()) else {
        return Ok(None);
    };
    let (Some(path), Ok(x)) = (
        meta["data"].as_str().map(std::path::PathBuf::from),
        serde_json::from_value::<Vec<String>>(meta["x_columns"].clone()),
    ) else {
        return Ok(None);
    };
    if spec.is_hmm() || !path.is_file() {
        return Ok(None);
    }
    let csv = crate::io::csv::CsvSpec {
        x,
        y: meta["y_column"].as_str().unwrap_or("y").to_string(),
        group: meta["group_column"].as_str().map(String::from),
    };
    let data = crate::io::read_csv(&path, &csv)?;
    let model = spec.build_any(data.p())?;
    let seed = meta["seed"].as_u64().unwrap_or(0);
    super::predict::draw_ppc(dir, to, model.as_ref(), &data, cpd, seed)
}

/// What the posterior predictive overlay draws: one dataset's responses (and its first
/// input), replicates of them from posterior draws, and the fitted regression lines.
pub struct Ppc<'a> {
    /// The observed responses.
    pub y: &'a [f64],
    /// The first input column with its name, for regressions.
    pub x: Option<(&'a str, &'a [f64])>,
    /// The response column's name.
    pub y_name: &'a str,
    /// Replicated responses, one row per posterior draw (NaN rows are skipped).
    pub reps: Vec<Vec<f64>>,
    /// Lines `(label, intercept, slope)` at the posterior means (one per mixture component).
    pub lines: Vec<(String, f64, f64)>,
    /// What the title adds (the dataset's name when there are several).
    pub label: String,
}

/// A Gaussian kernel density estimate of `v` on `grid` (Silverman's bandwidth).
fn kde(v: &[f64], grid: &[f64]) -> Vec<f64> {
    let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let mut sorted = v.clone();
    sorted.sort_unstable_by(|a, b| a.total_cmp(b));
    let iqr = if sorted.is_empty() {
        0.0
    } else {
        crate::diag::quantile_sorted(&sorted, 0.75) - crate::diag::quantile_sorted(&sorted, 0.25)
    };
    let spread = if iqr > 0.0 { sd.min(iqr / 1.34) } else { sd };
    let h = (0.9 * spread * n.powf(-0.2)).max(1e-9 * (1.0 + mean.abs()));
    let c = 1.0 / (n * h * (2.0 * std::f64::consts::PI).sqrt());
    grid.iter()
        .map(|&g| {
            c * v
                .iter()
                .map(|&x| (-0.5 * ((g - x) / h).powi(2)).exp())
                .sum::<f64>()
        })
        .collect()
}

/// Writes `ppc.svg`: the density of the observed responses against the densities of
/// replicated ones, and for regressions the responses against the first input with the
/// fitted lines and the 5–95% band of the replicates. Returns the file's name.
pub fn write_ppc(dir: &Path, ppc: &Ppc<'_>) -> Result<String> {
    let path = dir.join("ppc.svg");
    let reps: Vec<&Vec<f64>> = ppc
        .reps
        .iter()
        .filter(|r| r.iter().all(|v| v.is_finite()))
        .collect();
    let suffix = if ppc.label.is_empty() {
        String::new()
    } else {
        format!(" ({})", ppc.label)
    };
    let names = match ppc.x {
        Some((x_name, _)) => vec![
            format!("density of {}{suffix}", ppc.y_name),
            format!("{} against {x_name}{suffix}", ppc.y_name),
        ],
        None => vec![format!("density of {}{suffix}", ppc.y_name)],
    };
    let (lo, hi) = padded_range(
        ppc.y
            .iter()
            .copied()
            .chain(reps.iter().flat_map(|r| r.iter().copied())),
    );
    panels(&path, &names, |area, q| {
        if q == 0 {
            let grid: Vec<f64> = (0..=120)
                .map(|i| lo + (hi - lo) * i as f64 / 120.0)
                .collect();
            let dens: Vec<Vec<f64>> = reps.iter().map(|r| kde(r, &grid)).collect();
            let obs = kde(ppc.y, &grid);
            let top = dens
                .iter()
                .flatten()
                .chain(&obs)
                .copied()
                .fold(0.0f64, f64::max)
                * 1.08;
            let mut ch = ChartBuilder::on(area)
                .caption(&names[0], ("sans-serif", 15))
                .margin(8)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(lo..hi, 0.0..top.max(1e-12))
                .map_err(plot_err(&path))?;
            ch.configure_mesh()
                .disable_mesh()
                .x_desc(ppc.y_name)
                .y_desc("density")
                .draw()
                .map_err(plot_err(&path))?;
            for (i, d) in dens.iter().enumerate() {
                let s = ch
                    .draw_series(LineSeries::new(
                        grid.iter().copied().zip(d.iter().copied()),
                        FILL.mix(0.25).stroke_width(1),
                    ))
                    .map_err(plot_err(&path))?;
                if i == 0 {
                    s.label(format!("{} replicates (y_rep)", reps.len()))
                        .legend(|(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], FILL.stroke_width(2))
                        });
                }
            }
            ch.draw_series(LineSeries::new(
                grid.iter().copied().zip(obs),
                MEAN.stroke_width(2),
            ))
            .map_err(plot_err(&path))?
            .label("observed y")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], MEAN.stroke_width(2)));
            legend(&mut ch, SeriesLabelPosition::UpperRight, &path)?;
            return Ok(());
        }
        let Some((x_name, x)) = ppc.x else {
            return Ok(());
        };
        let (xl, xh) = padded_range(x.iter().copied());
        let mut ch = ChartBuilder::on(area)
            .caption(&names[1], ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(xl..xh, lo..hi)
            .map_err(plot_err(&path))?;
        ch.configure_mesh()
            .disable_mesh()
            .x_desc(x_name)
            .y_desc(ppc.y_name)
            .draw()
            .map_err(plot_err(&path))?;
        // The replicates' 5-95% band over 24 bins of x with equal counts.
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_unstable_by(|&a, &b| x[a].total_cmp(&x[b]));
        let bins = 24.min(order.len());
        if bins > 1 && !reps.is_empty() {
            let mut upper = Vec::new();
            let mut lower = Vec::new();
            for b in 0..bins {
                let idx = &order[b * order.len() / bins..(b + 1) * order.len() / bins];
                if idx.is_empty() {
                    continue;
                }
                let xm = idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64;
                let mut v: Vec<f64> = reps
                    .iter()
                    .flat_map(|r| idx.iter().map(|&i| r[i]))
                    .collect();
                v.sort_unstable_by(|a, b| a.total_cmp(b));
                lower.push((xm, crate::diag::quantile_sorted(&v, 0.05)));
                upper.push((xm, crate::diag::quantile_sorted(&v, 0.95)));
            }
            lower.reverse();
            ch.draw_series(std::iter::once(Polygon::new(
                upper.into_iter().chain(lower).collect::<Vec<_>>(),
                FILL.mix(0.18).filled(),
            )))
            .map_err(plot_err(&path))?
            .label("5-95% of y_rep")
            .legend(|(x, y)| Rectangle::new([(x, y - 4), (x + 16, y + 4)], FILL.mix(0.3).filled()));
        }
        let shown = x.len().min(3000);
        ch.draw_series(
            (0..shown)
                .map(|i| i * x.len() / shown)
                .map(|i| Circle::new((x[i], ppc.y[i]), 2, MEAN.mix(0.45).filled())),
        )
        .map_err(plot_err(&path))?
        .label("observed")
        .legend(|(x, y)| Circle::new((x + 8, y), 3, MEAN.filled()));
        for (c, (label, a, b)) in ppc.lines.iter().enumerate() {
            // Red for one line, then one colour per component after the band's blue.
            let col = series_colour(c + 1);
            ch.draw_series(LineSeries::new(
                [(xl, a + b * xl), (xh, a + b * xh)],
                col.stroke_width(2),
            ))
            .map_err(plot_err(&path))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2)));
        }
        legend(&mut ch, SeriesLabelPosition::UpperLeft, &path)?;
        Ok(())
    })?;
    Ok("ppc.svg".into())
}
