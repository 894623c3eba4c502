//! Data input and result output. [`csv`] reads datasets from CSV files with named columns,
//! validating every cell, and [`table`] reads in-memory tables the same way; [`npy`] writes arrays in place; [`output`] is the output policy
//! (temporary folders, markers, what may be replaced).

pub mod csv;
pub mod npy;
pub mod output;
pub mod table;

pub use self::csv::{read_csv, read_csv_from, read_table, CsvSpec};
pub use self::table::{Column, Table};
