//! CSV input: named columns become a [`DataBatch`]. Every error names the file, the line
//! (the header is line 1) and the column; nothing is read past the first error.

use std::collections::HashMap;
use std::path::Path;

use crate::data::{DataBatch, Dataset};
use std::borrow::Cow;

use super::table::{parse_number, Rows, Table, TableRows};
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

/// An open CSV file with a header line, whose every error names the file, the line (the
/// header is line 1) and the column; shared by [`read_csv_from`] and the HMM sequence
/// reader (`hmm::io`).
pub struct CsvReader<R: std::io::Read> {
    path: std::path::PathBuf,
    rdr: csv::Reader<R>,
    headers: csv::StringRecord,
    record: csv::StringRecord,
    line: usize,
}

impl<R: std::io::Read> CsvReader<R> {
    /// Reads the header line of `reader`; `path` is only used in messages.
    pub fn new(path: &Path, reader: R) -> Result<Self> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let err = |message: String| Error::Data {
            path: path.to_path_buf(),
            line: 1,
            column: "-".into(),
            message,
        };
        let headers = rdr
            .headers()
            .map_err(|e| err(format!("cannot read the header: {e}")))?
            .clone();
        if headers.is_empty() || headers.iter().all(|h| h.is_empty()) {
            return Err(err("the file is empty (no header line)".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            rdr,
            headers,
            record: csv::StringRecord::new(),
            line: 1,
        })
    }
}

impl<R: std::io::Read> CsvReader<R> {
    /// The header's column names, in order.
    pub fn headers(&self) -> Vec<String> {
        self.headers.iter().map(str::to_string).collect()
    }
}

impl<R: std::io::Read> Rows for CsvReader<R> {
    fn err(&self, line: usize, column: &str, message: String) -> Error {
        Error::Data {
            path: self.path.clone(),
            line,
            column: column.to_string(),
            message,
        }
    }

    fn column(&self, name: &str) -> Result<usize> {
        self.headers.iter().position(|h| h == name).ok_or_else(|| {
            self.err(
                1,
                name,
                format!(
                    "column {name:?} not found; the header has: {}",
                    self.headers.iter().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    fn next_row(&mut self) -> Result<bool> {
        match self.rdr.read_record(&mut self.record) {
            Ok(false) => return Ok(false),
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map_or(self.line + 1, |p| p.line() as usize);
                return Err(match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => self.err(
                        at,
                        "-",
                        format!("row has {len} fields but the header has {expected_len}"),
                    ),
                    _ => self.err(at, "-", format!("malformed CSV: {e}")),
                });
            }
        }
        self.line = self
            .record
            .position()
            .map_or(self.line + 1, |p| p.line() as usize);
        Ok(true)
    }

    fn line(&self) -> usize {
        self.line
    }

    fn place(&self, line: usize) -> String {
        format!("line {line}")
    }

    fn text(&self, i: usize) -> Cow<'_, str> {
        Cow::Borrowed(&self.record[i])
    }

    fn number(&self, i: usize, name: &str) -> Result<f64> {
        parse_number(&self.record[i]).map_err(|m| self.err(self.line, name, m))
    }
}

/// Reads CSV text from any reader; `path` is only used in messages.
pub fn read_csv_from(path: &Path, reader: impl std::io::Read, spec: &CsvSpec) -> Result<DataBatch> {
    read_rows(CsvReader::new(path, reader)?, spec)
}

/// Reads an in-memory table according to `spec`, as [`read_csv_from`] reads a file holding
/// the same values; errors name the column and row.
pub fn read_table(table: &Table<'_>, spec: &CsvSpec) -> Result<DataBatch> {
    read_rows(TableRows::new(table), spec)
}

/// The datasets `spec` selects from `r`.
fn read_rows(mut r: impl Rows, spec: &CsvSpec) -> Result<DataBatch> {
    let xi: Vec<usize> = spec.x.iter().map(|c| r.column(c)).collect::<Result<_>>()?;
    let yi = r.column(&spec.y)?;
    let gi = spec.group.as_deref().map(|g| r.column(g)).transpose()?;

    let mut groups: HashMap<String, usize> = HashMap::new();
    let mut datasets: Vec<Dataset> = Vec::new();
    while r.next_row()? {
        let b = match gi {
            Some(g) => {
                let key = r.text(g).to_string();
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
            datasets[b].x[j].push(r.number(i, name)?);
        }
        datasets[b].y.push(r.number(yi, &spec.y)?);
    }
    if datasets.is_empty() {
        return Err(r.err(2, "-", "the input has a header but no data rows".into()));
    }
    let mut batch = DataBatch::new(xi.len(), &datasets)?;
    batch.x_names = spec.x.clone();
    batch.y_name = spec.y.clone();
    if gi.is_some() {
        let mut keys = vec![String::new(); groups.len()];
        for (k, i) in groups {
            keys[i] = k;
        }
        batch.groups = keys;
    }
    Ok(batch)
}
