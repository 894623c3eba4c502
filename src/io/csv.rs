//! CSV input: named columns become a [`DataBatch`]. Every error names the file, the line
//! (the header is line 1) and the column; nothing is read past the first error.

use std::collections::HashMap;
use std::path::Path;

use crate::data::{DataBatch, Dataset};
use crate::error::{Error, Result};

/// Which columns to read.
#[derive(Clone, Debug, Default)]
pub struct CsvSpec {
    /// Input columns, in order (may be empty, e.g. for a Gaussian mixture).
    pub x: Vec<String>,
    /// Response column.
    pub y: String,
    /// Optional column whose values split the rows into datasets (in order of first
    /// appearance).
    pub group: Option<String>,
}

/// Reads `path` into a batch according to `spec`.
pub fn read_csv(path: &Path, spec: &CsvSpec) -> Result<DataBatch> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_csv_from(path, file, spec)
}

/// Reads CSV text from any reader; `path` is only used in messages.
pub fn read_csv_from(path: &Path, reader: impl std::io::Read, spec: &CsvSpec) -> Result<DataBatch> {
    let err = |line: usize, column: &str, message: String| Error::Data {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let headers = rdr
        .headers()
        .map_err(|e| err(1, "-", format!("cannot read the header: {e}")))?
        .clone();
    if headers.is_empty() || headers.iter().all(|h| h.is_empty()) {
        return Err(err(1, "-", "the file is empty (no header line)".into()));
    }
    let find = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            err(
                1,
                name,
                format!(
                    "column {name:?} not found; the header has: {}",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    };
    let xi: Vec<usize> = spec.x.iter().map(|c| find(c)).collect::<Result<_>>()?;
    let yi = find(&spec.y)?;
    let gi = spec.group.as_deref().map(find).transpose()?;

    let mut groups: HashMap<String, usize> = HashMap::new();
    let mut datasets: Vec<Dataset> = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut line = 1usize;
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map_or(line + 1, |p| p.line() as usize);
                return Err(match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => err(
                        at,
                        "-",
                        format!("row has {len} fields but the header has {expected_len}"),
                    ),
                    _ => err(at, "-", format!("malformed CSV: {e}")),
                });
            }
        }
        line = record.position().map_or(line + 1, |p| p.line() as usize);
        let number = |i: usize, name: &str| -> Result<f64> {
            let cell = &record[i];
            let v: f64 = cell
                .parse()
                .map_err(|_| err(line, name, format!("{cell:?} is not a number")))?;
            if !v.is_finite() {
                return Err(err(line, name, format!("{cell:?} is not a finite number")));
            }
            Ok(v)
        };
        let b = match gi {
            Some(g) => {
                let key = record[g].to_string();
                let next = groups.len();
                *groups.entry(key).or_insert(next)
            }
            None => 0,
        };
        if b == datasets.len() {
            datasets.push(Dataset {
                x: vec![Vec::new(); xi.len()],
                y: Vec::new(),
            });
        }
        for (j, (&i, name)) in xi.iter().zip(&spec.x).enumerate() {
            datasets[b].x[j].push(number(i, name)?);
        }
        datasets[b].y.push(number(yi, &spec.y)?);
    }
    if datasets.is_empty() {
        return Err(err(2, "-", "the file has a header but no data rows".into()));
    }
    let mut batch = DataBatch::new(xi.len(), &datasets)?;
    batch.x_names = spec.x.clone();
    batch.y_name = spec.y.clone();
    Ok(batch)
}
