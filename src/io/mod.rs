//! Data input and result output. [`csv`] reads datasets from CSV files with named columns,
//! validating every cell.

pub mod csv;
pub mod npy;

pub use self::csv::{read_csv, CsvSpec};
