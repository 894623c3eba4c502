//! Pointwise log likelihoods (ArviZ's `log_likelihood` group, what PSIS-LOO needs) against
//! the log density itself: adding observation i to a dataset changes the normalised log
//! density by exactly that observation's log likelihood. In-memory tables read as the CSV
//! holding the same values.

mod common;

use common::{data_for, families, positions};
use gpsamp::io::{read_csv_from, read_table, Column, CsvSpec, Table};
use gpsamp::{DataBatch, Dataset, Error, Model};

/// The normalised log density of a one-dataset batch at `theta`.
fn full(m: &dyn Model, data: &DataBatch, theta: &[f64]) -> f64 {
    let mut g = vec![0.0; m.dim()];
    m.log_density(data, 0, theta, &mut g, &mut Vec::new()) + m.constant(data, 0)
}

#[test]
fn each_observation_adds_its_log_likelihood_to_the_log_density() {
    for m in families() {
        let (data, truths) = data_for(&m, &[25], 11);
        let theta = positions(&m, &truths, 1, 0.3, 4);
        let ll = m
            .log_lik_pointwise(&data, 0, &theta)
            .expect("mixglm defines it");
        assert_eq!(ll.len(), 25);
        let whole = full(&m, &data, &theta);
        let d = data.dataset(0);
        for i in [0, 7, 24] {
            let without = Dataset {
                x: d.x
                    .iter()
                    .map(|c| [&c[..i], &c[i + 1..]].concat())
                    .collect(),
                y: [&d.y[..i], &d.y[i + 1..]].concat(),
            };
            let less = DataBatch::new(d.x.len(), &[without]).unwrap();
            let diff = whole - full(&m, &less, &theta);
            assert!(
                (diff - ll[i]).abs() < 1e-9 * (1.0 + whole.abs()),
                "{} point {i}: log density changes by {diff}, log likelihood {}",
                m.name(),
                ll[i]
            );
        }
    }
}

#[test]
fn a_table_reads_as_the_csv_of_the_same_values() {
    let x = [0.5, -1.25, 3.0, 2.0];
    let y = [1.0, 2.5, -0.75, 4.0];
    let g = ["a", "b", "a", "b"].map(String::from).to_vec();
    let table = Table::new(vec![
        ("x".into(), Column::Numbers(x[..].into())),
        ("y".into(), Column::Numbers(y[..].into())),
        ("g".into(), Column::Text(g)),
    ])
    .unwrap();
    let spec = CsvSpec {
        x: vec!["x".into()],
        y: "y".into(),
        group: Some("g".into()),
    };
    let csv = "x,y,g\n0.5,1,a\n-1.25,2.5,b\n3,-0.75,a\n2,4,b\n";
    let a = read_table(&table, &spec).unwrap();
    let b = read_csv_from("t.csv".as_ref(), csv.as_bytes(), &spec).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.groups, ["a", "b"]);

    // Errors name the column and the row.
    let bad = [1.0, f64::NAN, 0.0, 1.0];
    let table = Table::new(vec![
        ("x".into(), Column::Numbers(x[..].into())),
        ("y".into(), Column::Numbers(bad[..].into())),
    ])
    .unwrap();
    match read_table(&table, &spec) {
        Err(Error::Table { column, row, .. }) => assert_eq!((column.as_str(), row), ("g", None)),
        other => panic!("{other:?}"),
    }
    let spec = CsvSpec {
        group: None,
        ..spec
    };
    let e = read_table(&table, &spec).unwrap_err();
    assert_eq!(
        e.to_string(),
        "column \"y\", row 1: NaN is not a finite number"
    );
    let short = Table::new(vec![
        ("x".into(), Column::Numbers(x[..].into())),
        ("y".into(), Column::Numbers(y[..2].into())),
    ]);
    assert!(matches!(short, Err(Error::Table { column, .. }) if column == "y"));
}
