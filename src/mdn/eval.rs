//! How good is a trained MDN: total variation and KL(exact || MDN) against the exact
//! conjugate posterior on a fine grid, per chosen y; coverage of central intervals over
//! fresh simulations; SVG figures of MDN against exact density.

use std::path::Path;

use plotters::prelude::*;

use super::sim::Simulator;
use super::train::MdnModel;
use crate::error::{Error, Result};

/// Grid points for TV and KL.
pub const GRID: usize = 4000;

/// Accuracy at one y.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Accuracy {
    /// The observation.
    pub y: f64,
    /// Total variation distance, 0.5 * integral |p - q|.
    pub tv: f64,
    /// KL(exact || MDN), integral p log(p / q).
    pub kl: f64,
    /// Exact posterior mean.
    pub exact_mean: f64,
    /// MDN mean.
    pub mdn_mean: f64,
}

/// TV and KL of the model's posterior at each `y` against the simulator's exact one.
pub fn accuracy(model: &MdnModel, sim: &Simulator, ys: &[f64]) -> Result<Vec<Accuracy>> {
    if model.shape.input != 1 || model.shape.theta != 1 {
        return Err(Error::Invalid(
            "exact posteriors exist for the built-in simulators (scalar theta and y)".into(),
        ));
    }
    for &y in ys {
        sim.check_y(y)?;
    }
    let mixes = model.predict(ys);
    Ok(ys
        .iter()
        .zip(&mixes)
        .map(|(&y, q)| {
            let p = sim.posterior(y);
            let (lo, hi) = p.range();
            let h = (hi - lo) / GRID as f64;
            let (mut tv, mut kl, mut pm, mut inside) = (0.0, 0.0, 0.0, 0.0);
            for i in 0..GRID {
                let t = lo + (i as f64 + 0.5) * h;
                let (pp, qq) = (p.pdf(t), q.pdf(&[t]));
                tv += 0.5 * (pp - qq).abs() * h;
                if pp > 0.0 {
                    kl += pp * (pp / qq.max(1e-300)).ln() * h;
                }
                pm += pp * t * h;
                inside += qq * h;
            }
            // The MDN's mass outside the exact support's grid counts toward TV as well.
            tv += 0.5 * (1.0 - inside).max(0.0);
            let qm: f64 = q.weights.iter().zip(&q.means).map(|(w, m)| w * m[0]).sum();
            Accuracy {
                y,
                tv,
                kl,
                exact_mean: pm,
                mdn_mean: qm,
            }
        })
        .collect())
}

/// Coverage of central intervals at `levels` (per theta dimension) over `theta` / `y`
/// pairs (`n x T`, `n x input`) the model has not seen.
pub fn coverage(model: &MdnModel, theta: &[f64], y: &[f64], levels: &[f64]) -> Vec<Vec<f64>> {
    let t = model.shape.theta;
    let mixes = model.predict(y);
    (0..t)
        .map(|d| {
            levels
                .iter()
                .map(|&l| {
                    let hit = mixes
                        .iter()
                        .zip(theta.chunks(t))
                        .filter(|(m, th)| (m.cdf(d, th[d]) - 0.5).abs() <= l / 2.0)
                        .count();
                    hit as f64 / mixes.len() as f64
                })
                .collect()
        })
        .collect()
}

/// `density.svg`: MDN against exact posterior density for each y, like the notebook's
/// figure.
pub fn plot_densities(path: &Path, model: &MdnModel, sim: &Simulator, ys: &[f64]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| {
        Error::Invalid(format!("{}: could not draw: {e}", path.display()))
    };
    let cols = ys.len().clamp(1, 3);
    let rows = ys.len().div_ceil(cols).max(1);
    let root = SVGBackend::new(path, (360 * cols as u32, 280 * rows as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mixes = model.predict(ys);
    for ((area, &y), q) in root.split_evenly((rows, cols)).iter().zip(ys).zip(&mixes) {
        let p = sim.posterior(y);
        let (lo, hi) = p.range();
        let grid: Vec<f64> = (0..400)
            .map(|i| lo + (hi - lo) * i as f64 / 399.0)
            .collect();
        let exact: Vec<f64> = grid.iter().map(|&t| p.pdf(t)).collect();
        let mdn: Vec<f64> = grid.iter().map(|&t| q.pdf(&[t])).collect();
        let top = exact.iter().chain(&mdn).fold(0.0f64, |a, &b| a.max(b)) * 1.1;
        let mut ch = ChartBuilder::on(area)
            .caption(format!("y = {y}"), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(|e| err(&e))?;
        ch.configure_mesh()
            .disable_mesh()
            .x_desc("theta")
            .draw()
            .map_err(|e| err(&e))?;
        ch.draw_series(LineSeries::new(
            grid.iter().copied().zip(exact),
            BLACK.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("exact")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        let blue = RGBColor(70, 110, 180);
        ch.draw_series(LineSeries::new(
            grid.iter().copied().zip(mdn),
            blue.stroke_width(2),
        ))
        .map_err(|e| err(&e))?
        .label("MDN")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], blue));
        ch.configure_series_labels()
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}
