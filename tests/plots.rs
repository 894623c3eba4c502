//! The figures of a sample folder: trace, rank and posterior plots are written and listed in
//! meta.json, name the parameters, mark the truth of simulated data, say how many chains of
//! a large ensemble they draw, `--no-plots` skips them, and `gpsamp plot DIR` redraws the
//! same figures.

mod common;

#[test]
fn sample_draws_trace_rank_and_posterior_figures() {
    let dir = common::TempDir::new("plots");
    let (ok, _, err) = common::gpsamp(&[
        "sample",
        "--model",
        "glm",
        "--chains",
        "64",
        "--warmup",
        "200",
        "--draws",
        "100",
        "--backend",
        "cpu",
        "--quiet",
        "--out",
        &dir.s("fit"),
    ]);
    assert!(ok, "{err}");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("fit/meta.json")).unwrap()).unwrap();
    assert_eq!(
        meta["figures"],
        serde_json::json!(["trace.svg", "rank.svg", "posterior.svg", "ppc.svg"])
    );
    // Each parses as SVG and has its panel titles and axis labels.
    for (f, axes) in [
        ("trace.svg", ["draw (8 of 64 chains", "value"]),
        ("rank.svg", ["rank", "draws per bin"]),
        ("posterior.svg", ["value", "density"]),
    ] {
        let mut want = vec!["beta[0]", "alpha", "sigma"];
        want.extend(axes);
        common::assert_svg(&dir.join("fit").join(f), &want);
    }
    common::assert_svg(
        &dir.join("fit/ppc.svg"),
        &["density of y", "y against x0", "density", "observed y"],
    );
    let trace = std::fs::read_to_string(dir.join("fit/trace.svg")).unwrap();
    assert!(trace.contains("8 of 64 chains"));
    let post = std::fs::read_to_string(dir.join("fit/posterior.svg")).unwrap();
    assert!(post.contains("truth") && post.contains("94% HDI"));

    let (ok, _, err) = common::gpsamp(&[
        "sample",
        "--model",
        "glm",
        "--chains",
        "4",
        "--draws",
        "50",
        "--backend",
        "cpu",
        "--quiet",
        "--no-plots",
        "--out",
        &dir.s("bare"),
    ]);
    assert!(ok, "{err}");
    assert!(!dir.join("bare/trace.svg").exists());
    // `gpsamp plot` draws them afterwards: the same figures a run with plots writes.
    let (ok, out, err) = common::gpsamp(&["plot", &dir.s("bare")]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 3);
    let (ok, _, err) = common::gpsamp(&["plot", &dir.s("fit")]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("fit/trace.svg")).unwrap(),
        trace
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("fit/posterior.svg")).unwrap(),
        post
    );
    // Not a sample folder: refused, nothing written.
    std::fs::create_dir(dir.join("mine")).unwrap();
    let (ok, _, err) = common::gpsamp(&["plot", &dir.s("mine")]);
    assert!(
        !ok && err.contains("not a folder written by `gpsamp sample`"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.join("mine")).unwrap().count(), 0);
}
