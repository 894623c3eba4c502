//! Diagnostics against ArviZ: R-hat, bulk/tail ESS, ESS of the mean, MCSE of the mean and sd
//! and the 94% HDI equal the numbers ArviZ 0.23.4 gives for the same draws, committed in
//! `tests/fixtures/diag/` with the script that computed them (`make_fixtures.py`).

use gpsamp::diag;

struct Case {
    name: String,
    draws: Vec<Vec<f64>>,
    expected: serde_json::Map<String, serde_json::Value>,
}

fn cases() -> Vec<Case> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/diag");
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        out.push(Case {
            name: v["name"].as_str().unwrap().to_string(),
            draws: serde_json::from_value(v["draws"].clone()).unwrap(),
            expected: v["expected"].as_object().unwrap().clone(),
        });
    }
    assert!(out.len() >= 10, "fixtures missing: {}", out.len());
    out
}

fn check(case: &Case, key: &str, got: f64, failures: &mut Vec<String>) {
    match case.expected[key].as_f64() {
        None => {
            if !got.is_nan() {
                failures.push(format!(
                    "{} {key}: ArviZ gives NaN, gpsamp {got}",
                    case.name
                ));
            }
        }
        Some(want) => {
            let rel = (got - want).abs() / want.abs().max(1e-12);
            if rel.is_nan() || rel > 1e-6 {
                failures.push(format!(
                    "{} {key}: gpsamp {got}, ArviZ {want} (relative {rel:.2e})",
                    case.name
                ));
            }
        }
    }
}

#[test]
fn diagnostics_equal_arviz_on_fixtures() {
    let mut failures = Vec::new();
    for c in cases() {
        check(&c, "r_hat", diag::rhat(&c.draws), &mut failures);
        check(&c, "ess_bulk", diag::ess_bulk(&c.draws), &mut failures);
        check(&c, "ess_tail", diag::ess_tail(&c.draws), &mut failures);
        check(&c, "ess_mean", diag::ess_mean(&c.draws), &mut failures);
        check(&c, "mcse_mean", diag::mcse_mean(&c.draws), &mut failures);
        check(&c, "mcse_sd", diag::mcse_sd(&c.draws), &mut failures);
        // The summary row computes the same numbers its own way (one sort, shared ranks).
        let row = diag::summarize("x", &c.draws, 1);
        check(&c, "r_hat", row.r_hat, &mut failures);
        check(&c, "ess_bulk", row.ess_bulk, &mut failures);
        check(&c, "ess_tail", row.ess_tail, &mut failures);
        check(&c, "mcse_mean", row.mcse_mean, &mut failures);
        check(&c, "mcse_sd", row.mcse_sd, &mut failures);
        check(&c, "mean", row.mean, &mut failures);
        check(&c, "sd", row.sd, &mut failures);
        check(&c, "hdi_3%", row.hdi_lo, &mut failures);
        check(&c, "hdi_97%", row.hdi_hi, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The old truncation (keeping the first pair of autocorrelations whose sum is negative)
/// inflated ESS; on antithetic chains the difference is largest. The fixtures pin the
/// right answer; this pins that the cases really exercise the truncation rule.
#[test]
fn fixtures_cover_antithetic_and_autocorrelated_chains() {
    let cs = cases();
    let get = |n: &str, k: &str| {
        cs.iter().find(|c| c.name == n).unwrap().expected[k]
            .as_f64()
            .unwrap()
    };
    let total = |n: &str| {
        let c = cs.iter().find(|c| c.name == n).unwrap();
        (c.draws.len() * c.draws[0].len()) as f64
    };
    assert!(get("antithetic_-0.7", "ess_bulk") > total("antithetic_-0.7"));
    assert!(
        get("strongly_autocorrelated_0.99", "ess_bulk")
            < 0.02 * total("strongly_autocorrelated_0.99")
    );
}
