//! Studies at chosen values: the design of a recovery or power study (a grid of parameter
//! values and sample sizes with replicate datasets per cell, or the user's own datasets
//! with their truths), the files that describe it, and its per-cell report: bias, RMSE,
//! coverage of central intervals, and power (the share of replicates whose 95% interval
//! excludes a null value).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{DatasetRecord, Settings, COVERAGE, LOGLIK};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::io::csv::{read_csv, CsvReader, CsvSpec};
use crate::io::table::Rows;

/// One cell of a design: parameter values (constrained, by name; parameters not named are
/// drawn from the prior per replicate) and the points per dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Chosen values, by parameter name, in the file's column order.
    pub values: Vec<(String, f64)>,
    /// Points per dataset.
    pub n: usize,
}

/// Where a study's truths come from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Design {
    /// Every dataset's truth drawn from the generator's prior (simulation-based
    /// calibration; `gpsamp sbc`).
    #[default]
    Prior,
    /// Chosen values: dataset `i` is replicate `i % replicates` of cell `i / replicates`.
    Grid {
        /// The cells, one per row of the grid file.
        cells: Vec<Cell>,
        /// Datasets simulated per cell.
        replicates: usize,
        /// The value whose exclusion by the 95% interval counts as a detection (power).
        null: f64,
    },
    /// The user's datasets with their truths; datasets with equal truths and sizes form a
    /// cell.
    Datasets {
        /// The data and truth files, as given.
        source: String,
        /// The cells, in order of first appearance.
        cells: Vec<Cell>,
        /// The cell of each dataset.
        cell_of: Vec<usize>,
        /// The dataset key (the group column's value) of each dataset.
        keys: Vec<String>,
        /// As for [`Design::Grid`].
        null: f64,
    },
}

impl Design {
    /// Whether truths come from the prior (an SBC study).
    pub fn is_prior(&self) -> bool {
        matches!(self, Design::Prior)
    }

    /// The cells (none for a prior design).
    pub fn cells(&self) -> &[Cell] {
        match self {
            Design::Prior => &[],
            Design::Grid { cells, .. } | Design::Datasets { cells, .. } => cells,
        }
    }

    /// The cell of dataset `i` (0 for a prior design).
    pub fn cell_of(&self, i: usize) -> usize {
        match self {
            Design::Prior => 0,
            Design::Grid { replicates, .. } => i / replicates,
            Design::Datasets { cell_of, .. } => cell_of[i],
        }
    }

    /// The null value of the power column.
    pub fn null(&self) -> f64 {
        match self {
            Design::Prior => 0.0,
            Design::Grid { null, .. } | Design::Datasets { null, .. } => *null,
        }
    }

    /// Datasets the design fixes (`None` for a prior design, whose count is a setting).
    pub fn datasets(&self) -> Option<usize> {
        match self {
            Design::Prior => None,
            Design::Grid {
                cells, replicates, ..
            } => Some(cells.len() * replicates),
            Design::Datasets { cell_of, .. } => Some(cell_of.len()),
        }
    }
}

/// A grid's `n` value as points per dataset: a whole number from 1 to 10^9, else why not.
pub fn cell_points(v: f64) -> std::result::Result<usize, String> {
    if v >= 1.0 && v.fract() == 0.0 && v <= 1e9 {
        Ok(v as usize)
    } else {
        Err(format!(
            "{v} is not a whole number of points from 1 to 1 000 000 000"
        ))
    }
}

/// Reads a grid file: a CSV with one column per chosen parameter (named as in the summary:
/// `beta[0]`, `sigma`) and optionally `n` (points per dataset; `default_n` when absent), one
/// row per cell. Every error names the file, line and column.
pub fn read_grid(path: &Path, param_names: &[String], default_n: usize) -> Result<Vec<Cell>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut rows = CsvReader::new(path, file)?;
    let headers = rows.headers();
    let mut params = Vec::new();
    let mut n_col = None;
    for (i, h) in headers.iter().enumerate() {
        if h == "n" {
            n_col = Some(i);
        } else if param_names.contains(h) {
            params.push((i, h.clone()));
        } else {
            return Err(rows.err(
                1,
                h,
                format!(
                    "not a parameter of the model (its parameters: {}) nor n",
                    param_names.join(", ")
                ),
            ));
        }
    }
    let mut cells = Vec::new();
    while rows.next_row()? {
        let mut values = Vec::with_capacity(params.len());
        for (i, name) in &params {
            let v = rows.number(*i, name)?;
            values.push((name.clone(), v));
        }
        let n = match n_col {
            None => default_n,
            Some(i) => {
                let v = rows.number(i, "n")?;
                cell_points(v).map_err(|m| rows.err(rows.line(), "n", m))?
            }
        };
        cells.push(Cell { values, n });
    }
    if cells.is_empty() {
        return Err(rows.err(1, "-", "the grid has no rows (cells)".into()));
    }
    Ok(cells)
}

/// The user's datasets with their truths, read by [`read_given`].
#[derive(Clone, Debug)]
pub struct Given {
    /// Constrained truth of each dataset, in the model's parameter order.
    pub truths: Vec<Vec<f64>>,
    /// The datasets.
    pub data: Vec<Dataset>,
}

/// Reads the user's datasets (`spec` with a group column) and their truths: `truth_path` is
/// a CSV with the group column and one column per parameter of the model, one row per
/// dataset. Returns the design (cells of equal truths and sizes) and the data.
pub fn read_given(
    data_path: &Path,
    spec: &CsvSpec,
    truth_path: &Path,
    param_names: &[String],
    null: f64,
) -> Result<(Design, Given)> {
    let group = spec.group.clone().ok_or_else(|| Error::Config {
        flag: "--group".into(),
        message: "a study of given datasets needs the column that names each dataset".into(),
    })?;
    let batch = read_csv(data_path, spec)?;
    let file = std::fs::File::open(truth_path).map_err(|source| Error::Io {
        path: truth_path.to_path_buf(),
        source,
    })?;
    let mut rows = CsvReader::new(truth_path, file)?;
    let key_col = rows.column(&group)?;
    let cols = param_names
        .iter()
        .map(|p| rows.column(p))
        .collect::<Result<Vec<_>>>()?;
    let mut truth_of = std::collections::HashMap::new();
    while rows.next_row()? {
        let key = rows.text(key_col).into_owned();
        let mut t = Vec::with_capacity(cols.len());
        for (&c, name) in cols.iter().zip(param_names) {
            let v = rows.number(c, name)?;
            t.push(v);
        }
        if truth_of.insert(key.clone(), (t, rows.line())).is_some() {
            return Err(rows.err(
                rows.line(),
                &group,
                format!("dataset {key:?} has a second row of truths"),
            ));
        }
    }
    let mut cells: Vec<Cell> = Vec::new();
    let mut cell_of = Vec::with_capacity(batch.n_datasets());
    let mut truths = Vec::with_capacity(batch.n_datasets());
    let mut data = Vec::with_capacity(batch.n_datasets());
    for (b, key) in batch.groups.iter().enumerate() {
        let Some((t, _)) = truth_of.get(key) else {
            return Err(Error::Data {
                path: truth_path.to_path_buf(),
                line: 1,
                column: group.clone(),
                message: format!("no truths for dataset {key:?} of {}", data_path.display()),
            });
        };
        let d = batch.dataset(b);
        let cell = Cell {
            values: param_names.iter().cloned().zip(t.iter().copied()).collect(),
            n: d.len(),
        };
        let c = match cells.iter().position(|c| *c == cell) {
            Some(c) => c,
            None => {
                cells.push(cell);
                cells.len() - 1
            }
        };
        cell_of.push(c);
        truths.push(t.clone());
        data.push(d);
    }
    let design = Design::Datasets {
        source: format!(
            "{} with truths {}",
            data_path.display(),
            truth_path.display()
        ),
        cells,
        cell_of,
        keys: batch.groups.clone(),
        null,
    };
    Ok((design, Given { truths, data }))
}

/// What a study at chosen values shows for one quantity in one cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellReport {
    /// Index of the cell.
    pub cell: usize,
    /// Points per dataset.
    pub n: usize,
    /// The cell's chosen values.
    pub values: Vec<(String, f64)>,
    /// The quantity.
    pub quantity: String,
    /// Replicate datasets in the cell.
    pub replicates: usize,
    /// Replicates whose fit is suspect (non-finite draws, stuck chains); they stay in.
    pub failed: usize,
    /// Mean of the replicates' truths (the chosen value when the quantity is gridded).
    pub truth: f64,
    /// Mean of the posterior means.
    pub mean: f64,
    /// Mean of (posterior mean - truth).
    pub bias: f64,
    /// Root mean square of (posterior mean - truth).
    pub rmse: f64,
    /// Mean posterior standard deviation.
    pub sd: f64,
    /// Share of replicates whose central 50, 80 and 95% intervals cover the truth.
    pub coverage: [f64; 3],
    /// Share of replicates whose 95% interval excludes the null value.
    pub power: f64,
    /// The null value.
    pub null: f64,
    /// Exact binomial two-sided p-value of the 95% coverage against 0.95.
    pub coverage_p: f64,
}

/// The per-cell report of a study at chosen values (empty for a prior design): one row per
/// cell and parameter (the log likelihood left out), in cell order.
pub fn cell_report(settings: &Settings, records: &[DatasetRecord]) -> Vec<CellReport> {
    let design = &settings.design;
    let cells = design.cells();
    let null = design.null();
    if cells.is_empty() {
        return Vec::new();
    }
    let mut by_cell: Vec<Vec<&DatasetRecord>> = vec![Vec::new(); cells.len()];
    for r in records {
        by_cell[design.cell_of(r.index)].push(r);
    }
    let mut out = Vec::new();
    for (c, (cell, recs)) in cells.iter().zip(&by_cell).enumerate() {
        if recs.is_empty() {
            continue;
        }
        let m = recs.len() as f64;
        for (q, name) in settings.quantities.iter().enumerate() {
            if name == LOGLIK {
                continue;
            }
            let qs: Vec<_> = recs.iter().map(|r| &r.quantities[q]).collect();
            let avg = |f: &dyn Fn(&super::QuantityRecord) -> f64| -> f64 {
                qs.iter().map(|x| f(x)).sum::<f64>() / m
            };
            let coverage = std::array::from_fn(|level| {
                qs.iter().filter(|x| x.covers(level)).count() as f64 / m
            });
            let covered = qs.iter().filter(|x| x.covers(2)).count();
            out.push(CellReport {
                cell: c,
                n: cell.n,
                values: cell.values.clone(),
                quantity: name.clone(),
                replicates: recs.len(),
                failed: recs.iter().filter(|r| !r.failed.is_empty()).count(),
                truth: avg(&|x| x.truth),
                mean: avg(&|x| x.mean),
                bias: avg(&|x| x.mean - x.truth),
                rmse: avg(&|x| (x.mean - x.truth).powi(2)).sqrt(),
                sd: avg(&|x| x.sd),
                coverage,
                power: qs
                    .iter()
                    .filter(|x| null < x.quantiles[0] || null > x.quantiles[5])
                    .count() as f64
                    / m,
                null,
                coverage_p: binomial_two_sided(covered, recs.len(), COVERAGE[2]),
            });
        }
    }
    out
}

/// Exact two-sided binomial p-value of `k` successes in `n` trials at probability `p`:
/// the total probability of outcomes no more likely than `k` (as R's `binom.test`).
pub fn binomial_two_sided(k: usize, n: usize, p: f64) -> f64 {
    let ln_pmf = |j: usize| -> f64 {
        let (j, nf) = (j as f64, n as f64);
        crate::math::lgamma(nf + 1.0)
            - crate::math::lgamma(j + 1.0)
            - crate::math::lgamma(nf - j + 1.0)
            + j * p.ln()
            + (nf - j) * (1.0 - p).ln()
    };
    let at = ln_pmf(k);
    let total: f64 = (0..=n)
        .map(ln_pmf)
        .filter(|&l| l <= at + 1e-7)
        .map(f64::exp)
        .sum();
    total.min(1.0)
}

/// `cells.csv`: one row per cell and quantity.
pub fn cells_csv(report: &[CellReport]) -> String {
    let mut out = String::from(
        "cell,n,values,quantity,replicates,failed,truth,mean,bias,rmse,sd,coverage_50,coverage_80,coverage_95,coverage_p,power,null\n",
    );
    for r in report {
        out.push_str(&format!(
            "{},{},\"{}\",\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.cell,
            r.n,
            super::show_values(&r.values),
            r.quantity,
            r.replicates,
            r.failed,
            r.truth,
            r.mean,
            r.bias,
            r.rmse,
            r.sd,
            r.coverage[0],
            r.coverage[1],
            r.coverage[2],
            r.coverage_p,
            r.power,
            r.null
        ));
    }
    out
}

/// The report as a table for the terminal.
pub fn cells_table(report: &[CellReport]) -> String {
    let mut out = format!(
        "{:>4} {:>6} {:<24} {:<12} {:>5} {:>10} {:>10} {:>10} {:>7} {:>9} {:>6}\n",
        "cell", "n", "values", "quantity", "reps", "truth", "bias", "rmse", "cov_95", "p", "power"
    );
    for r in report {
        out.push_str(&format!(
            "{:>4} {:>6} {:<24} {:<12} {:>5} {:>10.4} {:>10.4} {:>10.4} {:>7.3} {:>9.2e} {:>6.3}\n",
            r.cell,
            r.n,
            super::show_values(&r.values),
            r.quantity,
            r.replicates,
            r.truth,
            r.bias,
            r.rmse,
            r.coverage[2],
            r.coverage_p,
            r.power
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_p_value_matches_r() {
        // scipy.stats.binomtest(185, 200, 0.95).pvalue (two-sided, minimum likelihood).
        let p = binomial_two_sided(185, 200, 0.95);
        assert!((p / 0.10458121568237658 - 1.0).abs() < 1e-6, "{p}");
        let p = binomial_two_sided(180, 200, 0.95);
        assert!((p / 0.0030686076502765003 - 1.0).abs() < 1e-6, "{p}");
        assert!((binomial_two_sided(190, 200, 0.95) - 1.0).abs() < 1e-9);
    }
}
