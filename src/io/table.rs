//! In-memory tables: named columns handed to the library by a program (the Python package's
//! DataFrames and dicts), read by the same row readers as CSV files (`Rows`), so a table
//! and the CSV file holding the same values give the same batch, and every error names the
//! column and row ([`Error::Table`]).

use std::borrow::Cow;

use crate::error::{Error, Result};

/// One column: numbers (borrowed where the caller's layout allows), or text (group keys,
/// sequence ids; parsed as numbers where numbers are asked for, as CSV cells are).
#[derive(Clone, Debug)]
pub enum Column<'a> {
    /// Numbers.
    Numbers(Cow<'a, [f64]>),
    /// Text cells.
    Text(Vec<String>),
}

impl Column<'_> {
    fn len(&self) -> usize {
        match self {
            Column::Numbers(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }
}

/// Named columns of equal length.
#[derive(Clone, Debug)]
pub struct Table<'a> {
    names: Vec<String>,
    columns: Vec<Column<'a>>,
    rows: usize,
}

impl<'a> Table<'a> {
    /// A table of `columns`; an error names a column whose length differs from the first's.
    pub fn new(columns: Vec<(String, Column<'a>)>) -> Result<Self> {
        let rows = columns.first().map_or(0, |c| c.1.len());
        if let Some((name, c)) = columns.iter().find(|c| c.1.len() != rows) {
            return Err(Error::Table {
                column: name.clone(),
                row: None,
                message: format!(
                    "{} values, but column {:?} has {rows}",
                    c.len(),
                    columns[0].0
                ),
            });
        }
        let (names, columns) = columns.into_iter().unzip();
        Ok(Self {
            names,
            columns,
            rows,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
}

/// Rows of named cells, read one at a time: a CSV file (`io::csv::CsvReader`) or a
/// [`Table`]. Readers of datasets and sequences are written once over it.
pub(crate) trait Rows {
    /// The index of column `name`; an error listing the columns otherwise.
    fn column(&self, name: &str) -> Result<usize>;
    /// Moves to the next row; false at the end.
    fn next_row(&mut self) -> Result<bool>;
    /// Where the current row is (a line of a file, a row of a table).
    fn line(&self) -> usize;
    /// How [`Rows::line`] reads in a message ("line 7", "row 5").
    fn place(&self, line: usize) -> String;
    /// Cell `i` of the current row, as text.
    fn text(&self, i: usize) -> Cow<'_, str>;
    /// Cell `i` (of column `name`) of the current row as a finite number.
    fn number(&self, i: usize, name: &str) -> Result<f64>;
    /// An error at `line` and `column` (a table's error names no row before the first).
    fn err(&self, line: usize, column: &str, message: String) -> Error;
}

/// A [`Table`] as [`Rows`].
pub(crate) struct TableRows<'t, 'a> {
    table: &'t Table<'a>,
    row: Option<usize>,
}

impl<'t, 'a> TableRows<'t, 'a> {
    pub(crate) fn new(table: &'t Table<'a>) -> Self {
        Self { table, row: None }
    }

    fn at(&self) -> usize {
        self.row.unwrap_or(0)
    }
}

/// A text cell as a finite number, or the message saying why not.
pub(crate) fn parse_number(cell: &str) -> std::result::Result<f64, String> {
    let v: f64 = cell
        .trim()
        .parse()
        .map_err(|_| format!("{cell:?} is not a number"))?;
    if !v.is_finite() {
        return Err(format!("{cell:?} is not a finite number"));
    }
    Ok(v)
}

impl Rows for TableRows<'_, '_> {
    fn column(&self, name: &str) -> Result<usize> {
        self.table
            .names
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::Table {
                column: name.into(),
                row: None,
                message: format!("not found; the data has: {}", self.table.names.join(", ")),
            })
    }

    fn next_row(&mut self) -> Result<bool> {
        let next = self.row.map_or(0, |r| r + 1);
        if next >= self.table.rows {
            return Ok(false);
        }
        self.row = Some(next);
        Ok(true)
    }

    fn line(&self) -> usize {
        self.at()
    }

    fn place(&self, line: usize) -> String {
        format!("row {line}")
    }

    fn text(&self, i: usize) -> Cow<'_, str> {
        match &self.table.columns[i] {
            Column::Numbers(v) => Cow::Owned(v[self.at()].to_string()),
            Column::Text(v) => Cow::Borrowed(&v[self.at()]),
        }
    }

    fn number(&self, i: usize, name: &str) -> Result<f64> {
        let r = self.at();
        let v = match &self.table.columns[i] {
            Column::Numbers(v) if v[r].is_finite() => return Ok(v[r]),
            Column::Numbers(v) => Err(format!("{} is not a finite number", v[r])),
            Column::Text(v) => parse_number(&v[r]),
        };
        v.map_err(|m| self.err(r, name, m))
    }

    fn err(&self, line: usize, column: &str, message: String) -> Error {
        Error::Table {
            column: column.into(),
            row: self.row.map(|_| line),
            message,
        }
    }
}
