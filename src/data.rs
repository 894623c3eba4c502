//! The dataset batch: B datasets of ragged length packed into flat arrays with offsets.
//!
//! Every engine works on a batch; one dataset is a batch of one. Inputs are stored as
//! columns ("structure of arrays"): column `j` of every point of every dataset is the slice
//! `x[j * n_total .. (j + 1) * n_total]`, which is what both the vectorised CPU loop and
//! coalesced GPU loads want.

use crate::error::{Error, Result};

/// One dataset: input columns (each of length N) and the response.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// Input columns, `x[j][n]`.
    pub x: Vec<Vec<f64>>,
    /// Response, `y[n]`.
    pub y: Vec<f64>,
}

impl Dataset {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether the dataset has no points.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// B datasets with the same columns, packed for the kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct DataBatch {
    p: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    offsets: Vec<usize>,
    /// Names of the input columns (for messages and outputs).
    pub x_names: Vec<String>,
    /// Name of the response column.
    pub y_name: String,
    /// The `--group` key of each dataset, in order (empty when the data had no group
    /// column), for outputs that name datasets.
    pub groups: Vec<String>,
    f32_copy: F32Columns,
}

/// The inputs and response rounded to f32, made on first use by the f32 CPU kernels. It is a
/// cache of `x` and `y`, so two batches compare equal whether or not either has made it.
#[derive(Clone, Debug, Default)]
struct F32Columns(std::sync::OnceLock<(Vec<f32>, Vec<f32>)>);

impl PartialEq for F32Columns {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl DataBatch {
    /// The response column's name for labels: `y` when the batch has none.
    pub fn y_label(&self) -> &str {
        if self.y_name.is_empty() {
            "y"
        } else {
            &self.y_name
        }
    }

    /// The name of dataset `b`: its group key, or its index.
    pub fn dataset_name(&self, b: usize) -> String {
        self.groups.get(b).cloned().unwrap_or_else(|| b.to_string())
    }

    /// Packs datasets that all have `p` input columns.
    pub fn new(p: usize, datasets: &[Dataset]) -> Result<Self> {
        if datasets.is_empty() {
            return Err(Error::Invalid(
                "a data batch needs at least one dataset".into(),
            ));
        }
        let mut offsets = vec![0usize];
        for (b, d) in datasets.iter().enumerate() {
            if d.x.len() != p {
                return Err(Error::Invalid(format!(
                    "dataset {b} has {} input columns, expected {p}",
                    d.x.len()
                )));
            }
            if let Some(j) = d.x.iter().position(|c| c.len() != d.y.len()) {
                return Err(Error::Invalid(format!(
                    "dataset {b}: input column {j} has {} values but y has {}",
                    d.x[j].len(),
                    d.y.len()
                )));
            }
            offsets.push(offsets[b] + d.len());
        }
        let n_total = offsets[datasets.len()];
        let mut x = Vec::with_capacity(n_total * p);
        for j in 0..p {
            for d in datasets {
                x.extend_from_slice(&d.x[j]);
            }
        }
        let y = datasets.iter().flat_map(|d| d.y.iter().copied()).collect();
        Ok(Self {
            p,
            x,
            y,
            offsets,
            x_names: (0..p).map(|j| format!("x{j}")).collect(),
            y_name: "y".into(),
            groups: Vec::new(),
            f32_copy: F32Columns::default(),
        })
    }

    /// [`DataBatch::x`] and [`DataBatch::y`] rounded to f32 (made once, on first use).
    pub fn columns_f32(&self) -> (&[f32], &[f32]) {
        let (x, y) = self.f32_copy.0.get_or_init(|| {
            let f = |v: &[f64]| v.iter().map(|&a| a as f32).collect::<Vec<f32>>();
            (f(&self.x), f(&self.y))
        });
        (x, y)
    }

    /// Number of input columns.
    pub fn p(&self) -> usize {
        self.p
    }

    /// Number of datasets.
    pub fn n_datasets(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Total number of points over all datasets.
    pub fn n_total(&self) -> usize {
        *self.offsets.last().expect("offsets never empty")
    }

    /// The points of dataset `b`, as a range into the packed arrays.
    pub fn range(&self, b: usize) -> std::ops::Range<usize> {
        self.offsets[b]..self.offsets[b + 1]
    }

    /// Offsets: dataset `b` holds points `offsets[b]..offsets[b + 1]`.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// Input column `j` over all datasets.
    pub fn x_col(&self, j: usize) -> &[f64] {
        let n = self.n_total();
        &self.x[j * n..(j + 1) * n]
    }

    /// All inputs, column after column.
    pub fn x(&self) -> &[f64] {
        &self.x
    }

    /// The response over all datasets.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// Dataset `b` unpacked.
    pub fn dataset(&self, b: usize) -> Dataset {
        let r = self.range(b);
        Dataset {
            x: (0..self.p)
                .map(|j| self.x_col(j)[r.clone()].to_vec())
                .collect(),
            y: self.y[r].to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_ragged_datasets_by_column() {
        let a = Dataset {
            x: vec![vec![1.0, 2.0], vec![3.0, 4.0]],
            y: vec![5.0, 6.0],
        };
        let b = Dataset {
            x: vec![vec![7.0], vec![8.0]],
            y: vec![9.0],
        };
        let batch = DataBatch::new(2, &[a.clone(), b.clone()]).unwrap();
        assert_eq!(batch.offsets(), &[0, 2, 3]);
        assert_eq!(batch.x_col(0), &[1.0, 2.0, 7.0]);
        assert_eq!(batch.x_col(1), &[3.0, 4.0, 8.0]);
        assert_eq!(batch.dataset(0), a);
        assert_eq!(batch.dataset(1), b);
        assert!(DataBatch::new(3, &[a]).is_err());
    }
}
