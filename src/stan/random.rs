//! Stan's `_rng` functions, for `generated quantities`: draws from a conventional generator
//! that the caller seeds from a Philox stream ([`crate::rng::stream_rng`]), so a draw's
//! quantities depend only on the seed and the draw's coordinates. Arguments follow Stan's
//! rules: scalars give a scalar, and a container argument (vector, row_vector or
//! one-dimensional array) gives an `array[]` of independent draws of its length, other
//! scalar arguments broadcast; the multivariate ones (`dirichlet`, `categorical`,
//! `categorical_logit`, `multi_normal`, `multi_normal_cholesky`) take their vectors whole.

use rand::rngs::StdRng;
use rand::RngExt;
use rand_distr::Distribution;

use super::interp::R;
use super::tape::Sc;
use super::value::Val;
use super::Pos;

/// How a draw's arguments are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NanArgs {
    /// A NaN argument is an error, as in Stan.
    Refuse,
    /// A NaN argument gives a NaN draw (simulating a dataset with the parameters unset, so
    /// that quantities which use them are told apart from those that do not).
    Propagate,
}

type Draw = fn(&[f64], &mut StdRng) -> Result<f64, String>;

/// The elementwise distributions: argument names, whether the draw is an int, the draw.
fn elementwise(name: &str) -> Option<(&'static [&'static str], bool, Draw)> {
    fn positive(what: &str, x: f64) -> Result<f64, String> {
        if x > 0.0 && x.is_finite() {
            Ok(x)
        } else {
            Err(format!("{what} is {x}, but must be positive and finite"))
        }
    }
    fn finite(what: &str, x: f64) -> Result<f64, String> {
        if x.is_finite() {
            Ok(x)
        } else {
            Err(format!("{what} is {x}, but must be finite"))
        }
    }
    fn probability(what: &str, x: f64) -> Result<f64, String> {
        if (0.0..=1.0).contains(&x) {
            Ok(x)
        } else {
            Err(format!("{what} is {x}, but must be in [0, 1]"))
        }
    }
    fn gamma(shape: f64, rate: f64, rng: &mut StdRng) -> Result<f64, String> {
        let s = positive("alpha", shape)?;
        let r = positive("beta", rate)?;
        rand_distr::Gamma::new(s, 1.0 / r)
            .map(|g| g.sample(rng))
            .map_err(|e| e.to_string())
    }
    fn poisson(lambda: f64, rng: &mut StdRng) -> Result<f64, String> {
        if lambda == 0.0 {
            return Ok(0.0);
        }
        if lambda.is_nan() || lambda <= 0.0 || lambda >= 1.0e9 {
            return Err(format!("lambda is {lambda}, but must be in [0, 1e9)"));
        }
        rand_distr::Poisson::new(lambda)
            .map(|p| p.sample(rng))
            .map_err(|e| e.to_string())
    }
    fn uniform(rng: &mut StdRng) -> f64 {
        // (0, 1): never 0, so logs and quantiles stay finite.
        loop {
            let u: f64 = rng.random();
            if u > 0.0 {
                return u;
            }
        }
    }
    fn bernoulli(p: f64, rng: &mut StdRng) -> f64 {
        f64::from(u8::from(uniform(rng) < p))
    }
    fn binomial(n: f64, p: f64, rng: &mut StdRng) -> Result<f64, String> {
        if !(n >= 0.0 && n.fract() == 0.0) {
            return Err(format!("N is {n}, but must be a non-negative int"));
        }
        let p = probability("theta", p)?;
        rand_distr::Binomial::new(n as u64, p)
            .map(|b| b.sample(rng) as f64)
            .map_err(|e| e.to_string())
    }
    fn logistic(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }
    Some(match name {
        "normal" => (&["mu", "sigma"], false, |a, r| {
            Ok(finite("mu", a[0])? + positive("sigma", a[1])? * normal_draw(r))
        }),
        "lognormal" => (&["mu", "sigma"], false, |a, r| {
            Ok((finite("mu", a[0])? + positive("sigma", a[1])? * normal_draw(r)).exp())
        }),
        "student_t" => (&["nu", "mu", "sigma"], false, |a, r| {
            let nu = positive("nu", a[0])?;
            let t = rand_distr::StudentT::new(nu)
                .map_err(|e| e.to_string())?
                .sample(r);
            Ok(finite("mu", a[1])? + positive("sigma", a[2])? * t)
        }),
        "cauchy" => (&["mu", "sigma"], false, |a, r| {
            let z = (std::f64::consts::PI * (uniform(r) - 0.5)).tan();
            Ok(finite("mu", a[0])? + positive("sigma", a[1])? * z)
        }),
        "double_exponential" => (&["mu", "sigma"], false, |a, r| {
            let u = uniform(r) - 0.5;
            let z = -u.signum() * (1.0 - 2.0 * u.abs()).ln();
            Ok(finite("mu", a[0])? + positive("sigma", a[1])? * z)
        }),
        "logistic" => (&["mu", "sigma"], false, |a, r| {
            let u = uniform(r);
            Ok(finite("mu", a[0])? + positive("sigma", a[1])? * (u / (1.0 - u)).ln())
        }),
        "exponential" => (&["beta"], false, |a, r| {
            Ok(-uniform(r).ln() / positive("beta", a[0])?)
        }),
        "gamma" => (&["alpha", "beta"], false, |a, r| gamma(a[0], a[1], r)),
        "inv_gamma" => (&["alpha", "beta"], false, |a, r| {
            Ok(1.0 / gamma(a[0], a[1], r)?)
        }),
        "chi_square" => (&["nu"], false, |a, r| gamma(a[0] / 2.0, 0.5, r)),
        "inv_chi_square" => (&["nu"], false, |a, r| Ok(1.0 / gamma(a[0] / 2.0, 0.5, r)?)),
        "beta" => (&["alpha", "beta"], false, |a, r| {
            let x = gamma(a[0], 1.0, r)?;
            let y = gamma(a[1], 1.0, r)?;
            Ok(x / (x + y))
        }),
        "uniform" => (&["alpha", "beta"], false, |a, r| {
            let (lo, hi) = (finite("alpha", a[0])?, finite("beta", a[1])?);
            if hi <= lo {
                return Err(format!("beta ({hi}) must exceed alpha ({lo})"));
            }
            Ok(lo + (hi - lo) * uniform(r))
        }),
        "bernoulli" => (&["theta"], true, |a, r| {
            Ok(bernoulli(probability("theta", a[0])?, r))
        }),
        "bernoulli_logit" => (&["alpha"], true, |a, r| {
            Ok(bernoulli(logistic(finite("alpha", a[0])?), r))
        }),
        "binomial" => (&["N", "theta"], true, |a, r| binomial(a[0], a[1], r)),
        "binomial_logit" => (&["N", "alpha"], true, |a, r| {
            binomial(a[0], logistic(finite("alpha", a[1])?), r)
        }),
        "poisson" => (&["lambda"], true, |a, r| poisson(a[0], r)),
        "poisson_log" => (&["alpha"], true, |a, r| poisson(a[0].exp(), r)),
        "neg_binomial_2" => (&["mu", "phi"], true, |a, r| {
            let (mu, phi) = (positive("mu", a[0])?, positive("phi", a[1])?);
            poisson(gamma(phi, phi / mu, r)?, r)
        }),
        "neg_binomial_2_log" => (&["eta", "phi"], true, |a, r| {
            let (mu, phi) = (finite("eta", a[0])?.exp(), positive("phi", a[1])?);
            poisson(gamma(phi, phi / mu, r)?, r)
        }),
        _ => return None,
    })
}

/// The constant scalars of an argument (parameters are constants where `_rng` may run).
fn numbers(name: &str, v: &Val, pos: Pos) -> R<Vec<f64>> {
    v.flat()
        .into_iter()
        .map(|s| match s {
            Sc::C(c) => Ok(c),
            Sc::N(_) => Err((
                pos,
                format!("{name}_rng: random numbers are only drawn in generated quantities"),
            )),
        })
        .collect()
}

fn bad<T>(pos: Pos, dist: &str, m: String) -> R<T> {
    Err((pos, format!("{dist}_rng: {m}")))
}

/// Draws from `dist` (the function's name less `_rng`) with arguments `args`; `None` when no
/// such generator exists.
pub fn draw(dist: &str, args: &[Val], rng: &mut StdRng, nan: NanArgs, pos: Pos) -> Option<R<Val>> {
    if let Some((names, int, f)) = elementwise(dist) {
        return Some((|| {
            if args.len() != names.len() {
                return bad(
                    pos,
                    dist,
                    format!(
                        "takes {} argument(s) ({}), got {}",
                        names.len(),
                        names.join(", "),
                        args.len()
                    ),
                );
            }
            let mut cols = Vec::with_capacity(args.len());
            let mut n: Option<usize> = None;
            for (a, arg_name) in args.iter().zip(names) {
                let vals = numbers(dist, a, pos)?;
                if !a.is_scalar() {
                    if a.dims().len() != 1 {
                        return bad(
                            pos,
                            dist,
                            format!("{arg_name} must be a scalar or one-dimensional"),
                        );
                    }
                    match n {
                        Some(m) if m != vals.len() => {
                            return bad(
                                pos,
                                dist,
                                format!(
                                    "container arguments differ in size ({m} and {})",
                                    vals.len()
                                ),
                            )
                        }
                        _ => n = Some(vals.len()),
                    }
                }
                cols.push(vals);
            }
            let one = |k: usize, rng: &mut StdRng| -> R<f64> {
                let a: Vec<f64> = cols
                    .iter()
                    .map(|c| if c.len() == 1 { c[0] } else { c[k] })
                    .collect();
                if nan == NanArgs::Propagate && a.iter().any(|x| x.is_nan()) {
                    return Ok(f64::NAN);
                }
                f(&a, rng).or_else(|m| bad(pos, dist, m))
            };
            let wrap = |x: f64| {
                if int && x.is_finite() {
                    Val::Int(x as i64)
                } else {
                    Val::Real(Sc::C(x))
                }
            };
            Ok(match n {
                None => wrap(one(0, rng)?),
                Some(n) => Val::Array(
                    (0..n)
                        .map(|k| one(k, rng).map(wrap))
                        .collect::<R<Vec<_>>>()?,
                ),
            })
        })());
    }
    let multivariate = |want: usize| -> R<Vec<Vec<f64>>> {
        if args.len() != want {
            return bad(
                pos,
                dist,
                format!("takes {want} argument(s), got {}", args.len()),
            );
        }
        args.iter().map(|a| numbers(dist, a, pos)).collect()
    };
    let any_nan =
        |a: &[Vec<f64>]| nan == NanArgs::Propagate && a.iter().flatten().any(|x| x.is_nan());
    Some(match dist {
        "categorical" | "categorical_logit" => (|| {
            let a = multivariate(1)?;
            if any_nan(&a) {
                return Ok(Val::Real(Sc::C(f64::NAN)));
            }
            let mut p = a[0].clone();
            if p.is_empty() {
                return bad(pos, dist, "theta is empty".into());
            }
            if dist == "categorical_logit" {
                let m = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                p.iter_mut().for_each(|x| *x = (*x - m).exp());
            } else if p.iter().any(|x| x.is_nan() || *x < 0.0)
                || (p.iter().sum::<f64>() - 1.0).abs() > 1e-8
            {
                return bad(pos, dist, "theta is not a simplex".into());
            }
            let total: f64 = p.iter().sum();
            let u = rng.random::<f64>() * total;
            let mut acc = 0.0;
            for (k, x) in p.iter().enumerate() {
                acc += x;
                if u < acc {
                    return Ok(Val::Int(k as i64 + 1));
                }
            }
            Ok(Val::Int(p.len() as i64))
        })(),
        "dirichlet" => (|| {
            let a = multivariate(1)?;
            if any_nan(&a) {
                return Ok(Val::Vector(vec![Sc::C(f64::NAN); a[0].len()]));
            }
            let mut g = Vec::with_capacity(a[0].len());
            for &alpha in &a[0] {
                if !(alpha > 0.0 && alpha.is_finite()) {
                    return bad(
                        pos,
                        dist,
                        format!("alpha has {alpha}, but must be positive"),
                    );
                }
                g.push(
                    rand_distr::Gamma::new(alpha, 1.0)
                        .map_err(|e| (pos, e.to_string()))?
                        .sample(rng),
                );
            }
            let s: f64 = g.iter().sum();
            Ok(Val::Vector(g.into_iter().map(|x| Sc::C(x / s)).collect()))
        })(),
        "multi_normal" | "multi_normal_cholesky" => (|| {
            let a = multivariate(2)?;
            let k = a[0].len();
            let Val::Matrix { rows, cols, .. } = &args[1] else {
                return bad(pos, dist, "the second argument must be a matrix".into());
            };
            if *rows != k || *cols != k {
                return bad(
                    pos,
                    dist,
                    format!("the matrix is {rows}x{cols}, mu has {k} elements"),
                );
            }
            if any_nan(&a) {
                return Ok(Val::Vector(vec![Sc::C(f64::NAN); k]));
            }
            let l = if dist == "multi_normal" {
                crate::math::cholesky(&a[1], k)
                    .ok_or_else(|| (pos, format!("{dist}_rng: Sigma is not positive definite")))?
            } else {
                a[1].clone()
            };
            let z: Vec<f64> = (0..k).map(|_| normal_draw(rng)).collect();
            Ok(Val::Vector(
                (0..k)
                    .map(|i| Sc::C(a[0][i] + (0..=i).map(|j| l[i * k + j] * z[j]).sum::<f64>()))
                    .collect(),
            ))
        })(),
        _ => return None,
    })
}

fn normal_draw(rng: &mut StdRng) -> f64 {
    rng.sample(rand_distr::StandardNormal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn moments(dist: &str, args: &[f64], n: usize) -> (f64, f64) {
        let mut rng = StdRng::seed_from_u64(7);
        let args: Vec<Val> = args.iter().map(|&x| Val::Real(Sc::C(x))).collect();
        let xs: Vec<f64> = (0..n)
            .map(
                |_| match draw(dist, &args, &mut rng, NanArgs::Refuse, Pos::default()) {
                    Some(Ok(Val::Real(Sc::C(x)))) => x,
                    Some(Ok(Val::Int(i))) => i as f64,
                    other => panic!("{dist}: {other:?}"),
                },
            )
            .collect();
        let m = xs.iter().sum::<f64>() / n as f64;
        let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
        (m, v)
    }

    /// Each generator's mean and variance match the distribution's (5 standard errors of
    /// the mean, 5% of the variance at 200 000 draws).
    #[test]
    fn draws_have_their_distributions_moments() {
        let cases: &[(&str, &[f64], f64, f64)] = &[
            ("normal", &[1.0, 2.0], 1.0, 4.0),
            (
                "lognormal",
                &[0.0, 0.5],
                (0.125f64).exp(),
                (0.25f64.exp() - 1.0) * 0.25f64.exp(),
            ),
            ("student_t", &[5.0, 1.0, 2.0], 1.0, 4.0 * 5.0 / 3.0),
            ("double_exponential", &[-1.0, 2.0], -1.0, 8.0),
            (
                "logistic",
                &[0.5, 1.5],
                0.5,
                2.25 * std::f64::consts::PI.powi(2) / 3.0,
            ),
            ("exponential", &[2.0], 0.5, 0.25),
            ("gamma", &[3.0, 2.0], 1.5, 0.75),
            ("inv_gamma", &[5.0, 2.0], 0.5, 4.0 / (16.0 * 3.0)),
            ("chi_square", &[4.0], 4.0, 8.0),
            ("beta", &[2.0, 3.0], 0.4, 6.0 / (25.0 * 6.0)),
            ("uniform", &[-1.0, 3.0], 1.0, 16.0 / 12.0),
            ("bernoulli", &[0.3], 0.3, 0.21),
            ("bernoulli_logit", &[0.0], 0.5, 0.25),
            ("binomial", &[10.0, 0.3], 3.0, 2.1),
            ("poisson", &[3.5], 3.5, 3.5),
            (
                "poisson_log",
                &[1.0],
                std::f64::consts::E,
                std::f64::consts::E,
            ),
            ("neg_binomial_2", &[4.0, 2.0], 4.0, 4.0 + 16.0 / 2.0),
        ];
        let n = 200_000;
        for &(dist, args, mean, var) in cases {
            let (m, v) = moments(dist, args, n);
            assert!(
                (m - mean).abs() < 5.0 * (var / n as f64).sqrt(),
                "{dist}: mean {m}, want {mean}"
            );
            assert!(
                (v / var - 1.0).abs() < 0.05,
                "{dist}: variance {v}, want {var}"
            );
        }
    }

    #[test]
    fn containers_give_arrays_and_bad_arguments_are_refused() {
        let mut rng = StdRng::seed_from_u64(1);
        let mu = Val::Vector(vec![Sc::C(0.0), Sc::C(100.0), Sc::C(-100.0)]);
        let Some(Ok(Val::Array(a))) = draw(
            "normal",
            &[mu, Val::Real(Sc::C(1.0))],
            &mut rng,
            NanArgs::Refuse,
            Pos::default(),
        ) else {
            panic!("an array of three");
        };
        let x: Vec<f64> = a.iter().map(|v| v.at(&[]).constant().unwrap()).collect();
        assert!(x[0].abs() < 6.0 && (x[1] - 100.0).abs() < 6.0 && (x[2] + 100.0).abs() < 6.0);
        let r = |args: &[f64], nan| {
            let v: Vec<Val> = args.iter().map(|&x| Val::Real(Sc::C(x))).collect();
            draw(
                "normal",
                &v,
                &mut StdRng::seed_from_u64(2),
                nan,
                Pos::default(),
            )
            .unwrap()
        };
        let e = r(&[0.0, -1.0], NanArgs::Refuse).unwrap_err();
        assert!(e.1.contains("normal_rng: sigma is -1"), "{}", e.1);
        assert!(r(&[f64::NAN, 1.0], NanArgs::Refuse).is_err());
        assert!(matches!(
            r(&[f64::NAN, 1.0], NanArgs::Propagate),
            Ok(Val::Real(Sc::C(x))) if x.is_nan()
        ));
        let mut rng = StdRng::seed_from_u64(3);
        let theta = Val::Vector(vec![Sc::C(0.2), Sc::C(0.8)]);
        let mut count = [0usize; 2];
        for _ in 0..10_000 {
            let Some(Ok(Val::Int(k))) = draw(
                "categorical",
                std::slice::from_ref(&theta),
                &mut rng,
                NanArgs::Refuse,
                Pos::default(),
            ) else {
                panic!("an int");
            };
            count[k as usize - 1] += 1;
        }
        assert!((count[0] as f64 / 10_000.0 - 0.2).abs() < 0.02, "{count:?}");
        assert!(draw("frobnicate", &[], &mut rng, NanArgs::Refuse, Pos::default()).is_none());
    }
}
