//! CPU log densities against independent closed-form references, and CPU gradients
//! against central finite differences, for every family.

mod common;

use common::{data_for, families, positions};
use gpsamp::{Likelihood, MixGlm, Model, Priors, ScalePrior};
use statrs::distribution::{Continuous, Discrete, Normal, Poisson};

/// The log density written the slow, obvious way with statrs densities.
fn reference_logp(m: &MixGlm, x: &[Vec<f64>], y: &[f64], theta: &[f64]) -> f64 {
    let (k, p) = (m.components(), m.features());
    let pr = m.priors();
    let c = m.constrain(theta);
    let mut i = 0;
    let w: Vec<f64> = if k > 1 {
        i += k;
        c[..k].to_vec()
    } else {
        vec![1.0]
    };
    let beta = &c[i..i + k * p];
    let alpha = &c[i + k * p..i + k * p + k];
    let gaussian = m.likelihood() == Likelihood::Gaussian;
    let free: &[f64] = if gaussian && m.sigma_fixed().is_none() {
        &c[i + k * p + k..]
    } else {
        &[]
    };
    let sig: Vec<f64> = match m.sigma_fixed() {
        Some(s) => vec![s; k],
        None => free.to_vec(),
    };
    let mut lp = 0.0;
    for n in 0..y.len() {
        let mut dens = 0.0;
        for kk in 0..k {
            let eta = alpha[kk] + (0..p).map(|j| beta[kk * p + j] * x[j][n]).sum::<f64>();
            let l = match m.likelihood() {
                Likelihood::Gaussian => Normal::new(eta, sig[kk]).unwrap().ln_pdf(y[n]),
                Likelihood::Bernoulli => {
                    let q = 1.0 / (1.0 + (-eta).exp());
                    if y[n] == 1.0 {
                        q.ln()
                    } else {
                        (1.0 - q).ln()
                    }
                }
                Likelihood::Poisson => Poisson::new(eta.exp()).unwrap().ln_pmf(y[n] as u64),
            };
            dens += w[kk] * l.exp();
        }
        lp += dens.ln();
    }
    let nc = Normal::new(pr.coef.mean, pr.coef.sd).unwrap();
    let ni = Normal::new(pr.intercept.mean, pr.intercept.sd).unwrap();
    lp += beta.iter().map(|&b| nc.ln_pdf(b)).sum::<f64>();
    lp += alpha.iter().map(|&a| ni.ln_pdf(a)).sum::<f64>();
    for &s in free {
        // Density of sigma plus the log Jacobian of sigma = exp(u).
        lp += s.ln()
            + match pr.scale {
                ScalePrior::HalfNormal { sd } => {
                    (2.0f64).ln() + Normal::new(0.0, sd).unwrap().ln_pdf(s)
                }
                ScalePrior::Exponential { rate } => rate.ln() - rate * s,
                ScalePrior::LogNormal { mu, sd } => {
                    Normal::new(mu, sd).unwrap().ln_pdf(s.ln()) - s.ln()
                }
                ScalePrior::Gamma { shape, rate } => {
                    shape * rate.ln() - statrs::function::gamma::ln_gamma(shape)
                        + (shape - 1.0) * s.ln()
                        - rate * s
                }
            };
    }
    if k > 1 {
        // Dirichlet(c) density on the simplex plus the additive log-ratio Jacobian prod_k w_k.
        let cc = pr.weights;
        let kf = k as f64;
        lp += statrs::function::gamma::ln_gamma(kf * cc)
            - kf * statrs::function::gamma::ln_gamma(cc)
            + w.iter().map(|v| (cc - 1.0) * v.ln()).sum::<f64>()
            + w.iter().map(|v| v.ln()).sum::<f64>();
    }
    lp
}

#[test]
fn log_density_matches_closed_form_reference() {
    for m in families() {
        let (data, truths) = data_for(&m, &[37, 5], 11);
        let theta = positions(&m, &truths, 3, 0.3, 5);
        let d = m.dim();
        let mut scratch = Vec::new();
        let mut g = vec![0.0; d];
        for b in 0..2 {
            let ds = data.dataset(b);
            for c in 0..3 {
                let th = &theta[(b * 3 + c) * d..(b * 3 + c + 1) * d];
                let got = m.log_density(&data, b, th, &mut g, &mut scratch) + m.constant(&data, b);
                let want = reference_logp(&m, &ds.x, &ds.y, th);
                assert!(
                    ((got - want) / want.abs().max(1.0)).abs() < 1e-10,
                    "{}: dataset {b} chain {c}: {got} vs reference {want}",
                    m.name()
                );
            }
        }
    }
}

#[test]
fn gradient_matches_central_differences() {
    for m in families() {
        let (data, truths) = data_for(&m, &[200, 3], 21);
        let theta = positions(&m, &truths, 2, 0.5, 8);
        let d = m.dim();
        let mut scratch = Vec::new();
        let mut g = vec![0.0; d];
        let mut g2 = vec![0.0; d];
        for b in 0..2 {
            for c in 0..2 {
                let th = theta[(b * 2 + c) * d..(b * 2 + c + 1) * d].to_vec();
                m.log_density(&data, b, &th, &mut g, &mut scratch);
                let mut fd = vec![0.0; d];
                for i in 0..d {
                    let h = 1e-5 * th[i].abs().max(1.0);
                    let mut tp = th.clone();
                    tp[i] += h;
                    let fp = m.log_density(&data, b, &tp, &mut g2, &mut scratch);
                    tp[i] -= 2.0 * h;
                    let fm = m.log_density(&data, b, &tp, &mut g2, &mut scratch);
                    fd[i] = (fp - fm) / (2.0 * h);
                }
                let err = common::rel_norm(&g, &fd);
                assert!(err <= 1e-6, "{}: dataset {b} chain {c}: relative error {err:e}\n  analytic {g:?}\n  fd       {fd:?}", m.name());
            }
        }
    }
}

#[test]
fn vectorised_and_portable_paths_agree() {
    for m in families() {
        let (data, truths) = data_for(&m, &[1000], 3);
        let theta = positions(&m, &truths, 1, 0.4, 2);
        let d = m.dim();
        let (mut g1, mut g2) = (vec![0.0; d], vec![0.0; d]);
        let mut s = Vec::new();
        let a = m.log_density(&data, 0, &theta, &mut g1, &mut s);
        let b = m.log_density_portable::<f64>(&data, 0, &theta, &mut g2, &mut s);
        assert!(((a - b) / b).abs() < 1e-13, "{}: {a} vs {b}", m.name());
        assert!(common::rel_norm(&g1, &g2) < 1e-12, "{}", m.name());
    }
}

#[test]
fn extreme_points_are_finite_on_the_cpu() {
    for m in families() {
        let (data, truths) = data_for(&m, &[50], 4);
        let d = m.dim();
        let mut g = vec![0.0; d];
        let mut s = Vec::new();
        for &v in &[-800.0, -60.0, -30.0, 30.0, 60.0, 800.0, 1e6, -1e6] {
            for i in 0..d {
                let mut th = truths[0].clone();
                th[i] = v;
                // Both precisions of the CPU kernel.
                for f32 in [false, true] {
                    let lp = if f32 {
                        m.log_density_f32(&data, 0, &th, &mut g, &mut s)
                    } else {
                        m.log_density(&data, 0, &th, &mut g, &mut s)
                    };
                    assert!(
                        lp.is_finite(),
                        "{} (f32 {f32}): theta[{i}] = {v}: logp {lp}",
                        m.name()
                    );
                    assert!(
                        g.iter().all(|x| x.is_finite()),
                        "{} (f32 {f32}): theta[{i}] = {v}: grad {g:?}",
                        m.name()
                    );
                }
            }
        }
    }
}

#[test]
fn bad_settings_are_rejected() {
    // An intercept-only GLM is fine; no components is not.
    let intercept = MixGlm::glm(Likelihood::Gaussian, 0, Priors::default()).unwrap();
    assert_eq!(intercept.param_names(), ["alpha", "sigma"]);
    assert!(MixGlm::gmm(0, Priors::default()).is_err());
    let bad = Priors {
        scale: ScalePrior::HalfNormal { sd: -1.0 },
        ..Priors::default()
    };
    assert!(MixGlm::gmm(2, bad).is_err());
    let bad = Priors {
        weights: 0.0,
        ..Priors::default()
    };
    assert!(MixGlm::gmm(2, bad).is_err());
    // Response outside the likelihood's support.
    let m = MixGlm::glm(Likelihood::Bernoulli, 1, Priors::default()).unwrap();
    let d = gpsamp::Dataset {
        x: vec![vec![0.0, 1.0]],
        y: vec![0.0, 2.0],
    };
    let data = gpsamp::DataBatch::new(1, &[d]).unwrap();
    let e = m.check_data(&data).unwrap_err().to_string();
    assert!(e.contains("bernoulli") && e.contains("point 1"), "{e}");
}
