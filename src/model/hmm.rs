//! The HMM family for HMC: Gaussian HMMs and GLM-HMMs (see [`crate::hmm`]) with priors, the
//! state path marginalised by the forward algorithm.
//!
//! Unconstrained layout: `[a (K−1) | b (K rows × (K−1)) | loc (K × D) | weights (K × D × P) |
//! log sd (K × D, Gaussian only)]`. The initial distribution is `softmax([a, 0])` and row `i`
//! of the transition matrix `softmax([b_i, 0])`; each simplex's log Jacobian `Σ log π` is
//! added, so a Dirichlet(c) prior contributes `Σ c_k log π_k`.
//!
//! The CPU gradient comes from forward-backward (∂/∂ log-emission = γ, ∂/∂Γ_ij = Σ_t ξ_t(i,j)
//! / Γ_ij). The GPU twin (`shaders/hmm.wgsl`) cannot keep the forward messages of every chain
//! and step, so it runs one forward pass that carries, per state, the smoothed expectation of
//! the complete-data score (τ_t(j) = E[∇ log p(z_1:t, y_1:t) | z_t = j, y_1:t]); by Fisher's
//! identity Σ_j α̂_T(j) τ_T(j) is the same gradient, in O(T K² dim) work and O(K dim) memory.

#![allow(clippy::needless_range_loop)]

use std::cell::RefCell;

use super::{Model, Normal, ScalePrior};
use crate::data::{DataBatch, Dataset};
use crate::error::{Error, Result};
use crate::hmm::{sequences, EmissionKind, FbScratch, HmmParams, HmmSpec};
use crate::math;

/// Priors of the HMM family.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HmmPriors {
    /// Symmetric Dirichlet concentration on the initial distribution (default 1).
    pub initial: f64,
    /// Dirichlet concentration on each transition row (default 1).
    pub transition: f64,
    /// Added to each row's diagonal concentration (default 0).
    pub stickiness: f64,
    /// Prior on emission means / GLM biases (default N(0, 5)).
    pub loc: Normal,
    /// Prior on GLM weights (default N(0, 2)).
    pub coef: Normal,
    /// Prior on emission sds (default HalfNormal(2)).
    pub scale: ScalePrior,
}

impl Default for HmmPriors {
    fn default() -> Self {
        Self {
            initial: 1.0,
            transition: 1.0,
            stickiness: 0.0,
            loc: Normal { mean: 0.0, sd: 5.0 },
            coef: Normal { mean: 0.0, sd: 2.0 },
            scale: ScalePrior::HalfNormal { sd: 2.0 },
        }
    }
}

/// The HMM model family (see the module docs).
#[derive(Clone, Debug)]
pub struct Hmm {
    spec: HmmSpec,
    priors: HmmPriors,
}

thread_local! {
    static FB: RefCell<FbScratch> = RefCell::new(FbScratch::default());
}

impl Hmm {
    /// An HMM of shape `spec` with `priors`.
    pub fn new(spec: HmmSpec, priors: HmmPriors) -> Result<Self> {
        Normal::new(priors.loc.mean, priors.loc.sd)?;
        Normal::new(priors.coef.mean, priors.coef.sd)?;
        priors.scale.validate()?;
        let ok = priors.initial > 0.0
            && priors.transition > 0.0
            && priors.stickiness >= 0.0
            && (priors.initial + priors.transition + priors.stickiness).is_finite();
        if !ok {
            return Err(Error::Invalid(format!(
                "Dirichlet concentrations must be > 0 and stickiness >= 0: {priors:?}"
            )));
        }
        Ok(Self { spec, priors })
    }

    /// The model's shape.
    pub fn spec(&self) -> &HmmSpec {
        &self.spec
    }

    /// Constrained parameters as an [`HmmParams`].
    pub fn params(&self, theta: &[f64]) -> HmmParams {
        let k = self.spec.k;
        let f = self.spec.layout().free();
        let simplex = |z: &[f64]| -> Vec<f64> {
            let m = z.iter().copied().fold(0.0f64, f64::max);
            let mut v: Vec<f64> = z.iter().map(|&a| (a - m).exp()).collect();
            v.push((-m).exp());
            let s: f64 = v.iter().sum();
            v.iter_mut().for_each(|x| *x /= s);
            v
        };
        let initial = simplex(&theta[f.initial]);
        let mut transition = Vec::with_capacity(k * k);
        for i in 0..k {
            // Row i's K - 1 logits (none when K = 1).
            let o = f.transition.start + i * (k - 1);
            transition.extend(simplex(&theta[o..o + k - 1]));
        }
        HmmParams {
            initial,
            transition,
            loc: theta[f.loc].to_vec(),
            weights: theta[f.weights].to_vec(),
            // Log sds (empty for Bernoulli emissions).
            sds: theta[f.sds].iter().map(|&u| u.exp()).collect(),
        }
    }

    /// The unconstrained position of `prm`; an error when a probability is 0.
    pub fn theta(&self, prm: &HmmParams) -> Result<Vec<f64>> {
        prm.validate(&self.spec)?;
        let k = self.spec.k;
        let mut theta = Vec::with_capacity(self.dim());
        let alr = |v: &[f64], out: &mut Vec<f64>| -> Result<()> {
            if v.iter().any(|&x| x <= 0.0) {
                return Err(Error::Invalid(
                    "probabilities must be > 0 to map them to the unconstrained space".into(),
                ));
            }
            let last = v[v.len() - 1].ln();
            out.extend(v[..v.len() - 1].iter().map(|&x| x.ln() - last));
            Ok(())
        };
        alr(&prm.initial, &mut theta)?;
        for i in 0..k {
            alr(&prm.transition[i * k..(i + 1) * k], &mut theta)?;
        }
        theta.extend_from_slice(&prm.loc);
        theta.extend_from_slice(&prm.weights);
        theta.extend(prm.sds.iter().map(|s| s.ln()));
        Ok(theta)
    }

    /// The generated WGSL `close_sequence` and `point_accumulate` (see `shaders/hmm.wgsl`):
    /// straight-line code over states, emission dimensions and inputs.
    fn wgsl_point(&self) -> String {
        use std::fmt::Write;
        let (k, de, p) = (self.spec.k, self.spec.d, self.spec.p);
        let dim = self.dim();
        let gauss = self.spec.has_sds();
        let f = self.spec.layout().free();
        let (ot, ol, ow, os) = (
            f.transition.start,
            f.loc.start,
            f.weights.start,
            f.sds.start,
        );
        let mut w = String::new();
        // close_sequence: acc[1 + d] += sum_j alpha_j tau[j, d].
        w.push_str(
            "fn close_sequence(c: ptr<function, Chain>, acc: ptr<function, array<f32, NACC>>) {\n",
        );
        for d in 0..dim {
            let terms: Vec<String> = (0..k)
                .map(|j| format!("(*c).alpha[{j}] * (*c).tau[{}]", j * dim + d))
                .collect();
            let _ = writeln!(w, "    (*acc)[{}] += {};", 1 + d, terms.join(" + "));
        }
        w.push_str("    (*c).open = false;\n}\n\n");
        w.push_str("fn point_accumulate(c: ptr<function, Chain>, n: u32, acc: ptr<function, array<f32, NACC>>) {\n");
        w.push_str("    let start = x_at(0u, n) == 1.0;\n    if (start && (*c).open) {\n        close_sequence(c, acc);\n    }\n");
        // Linear predictors, residual terms and log emissions.
        w.push_str(&crate::hmm::gpu::emissions_wgsl(
            &self.spec,
            "    ",
            &|kd| format!("(*c).loc[{kd}]"),
            &|i| format!("(*c).w[{i}]"),
            &|kd| format!("(*c).inv[{kd}]"),
            &|kd| format!("log((*c).inv[{kd}])"),
        ));
        for j in 0..k {
            let _ = writeln!(w, "    var a{j}: f32;");
        }
        // A new sequence: tau = score of the initial distribution.
        w.push_str("    if (start) {\n");
        for j in 0..k {
            let _ = writeln!(w, "        a{j} = (*c).pi[{j}] * e{j};");
            for d in 0..dim {
                let v = if d + 1 < k {
                    let delta = if j == d { "1.0" } else { "0.0" };
                    format!("{delta} - (*c).pi[{d}]")
                } else {
                    "0.0".into()
                };
                let _ = writeln!(w, "        (*c).tau[{}] = {v};", j * dim + d);
            }
        }
        w.push_str("    } else {\n        var nt: array<f32, KDIM>;\n");
        for j in 0..k {
            let pred: Vec<String> = (0..k)
                .map(|i| format!("(*c).alpha[{i}] * (*c).tr[{}]", i * k + j))
                .collect();
            let _ = writeln!(w, "        let pred{j} = {};", pred.join(" + "));
            let _ = writeln!(w, "        a{j} = pred{j} * e{j};");
            let _ = writeln!(
                w,
                "        let ip{j} = select(0.0, 1.0 / pred{j}, pred{j} > 0.0);"
            );
            for i in 0..k {
                let _ = writeln!(
                    w,
                    "        let r{i}_{j} = (*c).alpha[{i}] * (*c).tr[{}] * ip{j};",
                    i * k + j
                );
            }
            for d in 0..dim {
                let mut terms: Vec<String> = (0..k)
                    .map(|i| format!("r{i}_{j} * (*c).tau[{}]", i * dim + d))
                    .collect();
                // The transition score of row i: d log tr_ij / d b_{i,m} = [j = m] - tr_im.
                if d >= ot && d < ol {
                    let (i, m) = ((d - ot) / (k - 1), (d - ot) % (k - 1));
                    let delta = if j == m { "1.0" } else { "0.0" };
                    terms.push(format!("r{i}_{j} * ({delta} - (*c).tr[{}])", i * k + m));
                }
                let _ = writeln!(w, "        nt[{}] = {};", j * dim + d, terms.join(" + "));
            }
        }
        w.push_str("        (*c).tau = nt;\n    }\n");
        // Emission scores of each state.
        for j in 0..k {
            for e in 0..de {
                let kd = j * de + e;
                let base = j * dim;
                if gauss {
                    let _ = writeln!(w, "    let r{kd} = z{kd} * (*c).inv[{kd}];");
                    let _ = writeln!(
                        w,
                        "    (*c).tau[{}] += z{kd} * z{kd} - 1.0;",
                        base + os + kd
                    );
                } else {
                    let _ = writeln!(w, "    let r{kd} = y{e} - sigmoid(eta{kd});");
                }
                let _ = writeln!(w, "    (*c).tau[{}] += r{kd};", base + ol + kd);
                for q in 0..p {
                    let _ = writeln!(
                        w,
                        "    (*c).tau[{}] += r{kd} * x{q};",
                        base + ow + kd * p + q
                    );
                }
            }
        }
        let sum: Vec<String> = (0..k).map(|j| format!("a{j}")).collect();
        let _ = writeln!(w, "    let s = {};", sum.join(" + "));
        for j in 0..k {
            let _ = writeln!(w, "    (*c).alpha[{j}] = a{j} / s;");
        }
        w.push_str("    (*acc)[0] += log(s) + mx;\n    (*c).open = true;\n}\n");
        w
    }

    /// The log density and its forward-backward gradient (see [`Model::log_density`]).
    #[inline(always)]
    fn log_density_body(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        grad: &mut [f64],
        fb: &mut FbScratch,
    ) -> f64 {
        let (k, d_dim, p) = (self.spec.k, self.spec.d, self.spec.p);
        let spec = &self.spec;
        let prm = self.params(theta);
        grad.iter_mut().for_each(|g| *g = 0.0);
        let f = spec.layout().free();
        let (off_trans, off_loc, off_w, off_sd) = (
            f.transition.start,
            f.loc.start,
            f.weights.start,
            f.sds.start,
        );
        // Every gradient entry is a function of the expected sufficient statistics (the
        // same forward-backward as the EM E-step): ∂/∂ log-emission = γ, ∂/∂Γ_ij = ξ_ij / Γ_ij.
        let seqs = sequences(data, b);
        let n_seq = seqs.len() as f64;
        let st = crate::hmm::estep::estep_sequences_body(spec, &prm, data, &seqs, fb);
        let ll = st.loglik;
        let (init, xi) = (&st.init, &st.trans);
        let q = p + 1;
        let mut wt = vec![0.0; q];
        for kd in 0..k * d_dim {
            let xx = &st.xx[kd * q * q..(kd + 1) * q * q];
            let xy = &st.xy[kd * q..(kd + 1) * q];
            wt[0] = prm.loc[kd];
            wt[1..].copy_from_slice(&prm.weights[kd * p..(kd + 1) * p]);
            match spec.kind {
                EmissionKind::Gaussian => {
                    // Σγ (y − η) x̃ / σ² and Σγ ((y − η)² / σ² − 1).
                    let v = prm.sds[kd] * prm.sds[kd];
                    let mut rss = st.yy[kd];
                    for a in 0..q {
                        let xw: f64 = (0..q).map(|c| xx[a * q + c] * wt[c]).sum();
                        let g = (xy[a] - xw) / v;
                        if a == 0 {
                            grad[off_loc + kd] += g;
                        } else {
                            grad[off_w + kd * p + a - 1] += g;
                        }
                        rss += wt[a] * (xw - 2.0 * xy[a]);
                    }
                    grad[off_sd + kd] += rss / v - xx[0];
                }
                EmissionKind::Bernoulli => {
                    grad[off_loc + kd] += xy[0];
                    for j in 0..p {
                        grad[off_w + kd * p + j] += xy[1 + j];
                    }
                }
            }
        }
        // Simplexes: likelihood counts plus Dirichlet (with Jacobian) pseudo-counts.
        let pr = &self.priors;
        let mut lp = ll;
        let c0 = pr.initial;
        for m in 0..k {
            lp += c0 * prm.initial[m].ln();
        }
        for m in 0..k - 1 {
            grad[m] += init[m] - n_seq * prm.initial[m] + c0 - k as f64 * c0 * prm.initial[m];
        }
        for i in 0..k {
            let row = &prm.transition[i * k..(i + 1) * k];
            let xs: f64 = xi[i * k..(i + 1) * k].iter().sum();
            let cs: f64 = (0..k).map(|j| self.conc(i, j)).sum();
            for j in 0..k {
                lp += self.conc(i, j) * row[j].ln();
            }
            for m in 0..k - 1 {
                grad[off_trans + i * (k - 1) + m] +=
                    xi[i * k + m] - row[m] * xs + self.conc(i, m) - cs * row[m];
            }
        }
        for (i, &v) in prm.loc.iter().enumerate() {
            let z = (v - pr.loc.mean) / pr.loc.sd;
            lp -= 0.5 * z * z;
            grad[off_loc + i] -= z / pr.loc.sd;
        }
        for (i, &v) in prm.weights.iter().enumerate() {
            let z = (v - pr.coef.mean) / pr.coef.sd;
            lp -= 0.5 * z * z;
            grad[off_w + i] -= z / pr.coef.sd;
        }
        if spec.has_sds() {
            for i in 0..k * d_dim {
                let (l, g) = pr.scale.logp_u(theta[off_sd + i]);
                lp += l;
                grad[off_sd + i] += g;
            }
        }
        math::sanitize(lp, grad)
    }

    /// Concentration of transition entry (i, j).
    fn conc(&self, i: usize, j: usize) -> f64 {
        self.priors.transition + if i == j { self.priors.stickiness } else { 0.0 }
    }
}

impl Model for Hmm {
    fn hidden_states(&self) -> usize {
        self.spec.k
    }

    fn state_probabilities(&self, data: &DataBatch, b: usize, theta: &[f64]) -> Option<Vec<f64>> {
        let prm = self.params(theta);
        Some(crate::hmm::posteriors(&self.spec, &prm, data, b).0)
    }

    fn name(&self) -> String {
        let s = &self.spec;
        match (s.kind, s.p) {
            (EmissionKind::Gaussian, 0) => format!("hmm-gaussian(K={}, D={})", s.k, s.d),
            (EmissionKind::Gaussian, p) => format!("glmhmm-gaussian(K={}, P={p})", s.k),
            (EmissionKind::Bernoulli, p) => format!("glmhmm-bernoulli(K={}, P={p})", s.k),
        }
    }

    fn dim(&self) -> usize {
        self.spec.layout().free().len
    }

    fn param_names(&self) -> Vec<String> {
        let (k, d, p) = (self.spec.k, self.spec.d, self.spec.p);
        let mut names: Vec<String> = (0..k).map(|i| format!("initial[{i}]")).collect();
        for i in 0..k {
            names.extend((0..k).map(|j| format!("transition[{i},{j}]")));
        }
        let glm = p > 0 || self.spec.kind == EmissionKind::Bernoulli;
        let kd = |s: usize, e: usize| {
            if d == 1 {
                format!("{s}")
            } else {
                format!("{s},{e}")
            }
        };
        for s in 0..k {
            for e in 0..d {
                names.push(if glm {
                    format!("bias[{}]", kd(s, e))
                } else {
                    format!("mean[{}]", kd(s, e))
                });
            }
        }
        for s in 0..k {
            for e in 0..d {
                names.extend((0..p).map(|j| format!("weight[{},{j}]", kd(s, e))));
            }
        }
        if self.spec.has_sds() {
            for s in 0..k {
                names.extend((0..d).map(|e| format!("sd[{}]", kd(s, e))));
            }
        }
        names
    }

    fn constrain(&self, theta: &[f64]) -> Vec<f64> {
        self.params(theta).to_flat().collect()
    }

    fn unconstrain(&self, params: &[f64]) -> Result<Vec<f64>> {
        self.theta(&HmmParams::from_flat(&self.spec, params)?)
    }

    fn check_data(&self, data: &DataBatch) -> Result<()> {
        self.spec.check_data(data)
    }

    fn log_density(
        &self,
        data: &DataBatch,
        b: usize,
        theta: &[f64],
        grad: &mut [f64],
        _scratch: &mut Vec<f64>,
    ) -> f64 {
        // The scratch is borrowed here, outside the AVX2 code: a closure passed to
        // `LocalKey::with` would be compiled without the target features.
        FB.with(|fb| {
            let mut fb = fb.borrow_mut();
            math::simd_dispatch!(math::simd(), (m: &Hmm = self,
                                                         data: &DataBatch = data,
                                                         b: usize = b,
                                                         theta: &[f64] = theta,
                                                         grad: &mut [f64] = grad,
                                                         fb: &mut FbScratch = &mut fb)
             -> f64 {
                m.log_density_body(data, b, theta, grad, fb)
            })
        })
    }

    fn constant(&self, _data: &DataBatch, _b: usize) -> f64 {
        let (k, d, p) = (self.spec.k, self.spec.d, self.spec.p);
        let pr = &self.priors;
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        let kf = k as f64;
        let mut c = math::lgamma(kf * pr.initial) - kf * math::lgamma(pr.initial);
        for i in 0..k {
            let cs: f64 = (0..k).map(|j| self.conc(i, j)).sum();
            c += math::lgamma(cs) - (0..k).map(|j| math::lgamma(self.conc(i, j))).sum::<f64>();
        }
        c += (k * d) as f64 * (-pr.loc.sd.ln() - half_log_2pi);
        c += (k * d * p) as f64 * (-pr.coef.sd.ln() - half_log_2pi);
        if self.spec.has_sds() {
            c += (k * d) as f64 * pr.scale.constant();
        }
        c
    }

    fn wgsl(&self) -> String {
        let s = &self.spec;
        let pr = &self.priors;
        let free = s.layout().free();
        crate::shader::Wgsl::new()
            .u32("K", s.k)
            .u32("DE", s.d)
            .u32("P", s.p)
            .u32("D", self.dim())
            .u32("NACC", 1 + self.dim())
            .u32("KK", s.k * s.k)
            .u32("KD", s.k * s.d)
            .u32("KDP_ARR", (s.k * s.d * s.p).max(1))
            .u32("KDIM", s.k * self.dim())
            .u32("OFF_TRANS", free.transition.start)
            .u32("OFF_LOC", free.loc.start)
            .u32("OFF_W", free.weights.start)
            .u32("OFF_SD", free.sds.start)
            .bool("GAUSSIAN", s.has_sds())
            .f32("C_INIT", pr.initial)
            .f32("C_TRANS", pr.transition)
            .f32("C_STICKY", pr.stickiness)
            .f32("LOC_MEAN", pr.loc.mean)
            .f32("LOC_SD", pr.loc.sd)
            .f32("W_MEAN", pr.coef.mean)
            .f32("W_SD", pr.coef.sd)
            .code(&pr.scale.wgsl_fn("scale_prior"))
            .part(crate::shader::LOGISTIC)
            .part(crate::shader::HMM)
            .code(&self.wgsl_point())
            .build()
    }

    fn max_lanes(&self) -> u32 {
        1
    }

    fn simulate(&self, n: usize, rng: &mut rand::rngs::StdRng) -> (Vec<f64>, Dataset) {
        use rand_distr::{Distribution, Gamma, Normal as N};
        let (k, d, p) = (self.spec.k, self.spec.d, self.spec.p);
        let pr = &self.priors;
        let mut dirichlet = |conc: &dyn Fn(usize) -> f64| -> Vec<f64> {
            let mut v: Vec<f64> = (0..k)
                .map(|j| {
                    Gamma::new(conc(j), 1.0)
                        .expect("validated")
                        .sample(rng)
                        .max(1e-300)
                })
                .collect();
            let s: f64 = v.iter().sum();
            v.iter_mut().for_each(|x| *x /= s);
            v
        };
        let initial = dirichlet(&|_| pr.initial);
        let mut transition = Vec::with_capacity(k * k);
        for i in 0..k {
            transition.extend(dirichlet(&|j| self.conc(i, j)));
        }
        let loc_d = N::new(pr.loc.mean, pr.loc.sd).expect("validated");
        let w_d = N::new(pr.coef.mean, pr.coef.sd).expect("validated");
        let prm = HmmParams {
            initial,
            transition,
            loc: (0..k * d).map(|_| loc_d.sample(rng)).collect(),
            weights: (0..k * d * p).map(|_| w_d.sample(rng)).collect(),
            sds: if self.spec.has_sds() {
                (0..k * d).map(|_| pr.scale.sample(rng).max(1e-3)).collect()
            } else {
                Vec::new()
            },
        };
        // One sequence of n steps.
        let (data, _) = crate::hmm::io::simulate(&self.spec, &prm, 1, n, rng);
        let theta = self.theta(&prm).expect("simulated parameters are valid");
        (theta, data)
    }

    fn label_groups(&self) -> Option<Vec<Vec<usize>>> {
        if self.spec.k < 2 {
            return None;
        }
        // Matching cost per state: initial prob, emission parameters, self-transition. The
        // second entry (the first mean or bias) is what a study sorts states by.
        let (k, d, p) = (self.spec.k, self.spec.d, self.spec.p);
        // Indices into the constrained (natural) parameter vector.
        let l = self.spec.layout().params();
        let (oi, ot, ol) = (l.initial.start, l.transition.start, l.loc.start);
        let (ow, os) = (l.weights.start, l.sds.start);
        Some(
            (0..k)
                .map(|s| {
                    let mut g = vec![oi + s];
                    g.extend((0..d).map(|e| ol + s * d + e));
                    g.push(ot + s * k + s);
                    g.extend((0..d * p).map(|e| ow + s * d * p + e));
                    if self.spec.has_sds() {
                        g.extend((0..d).map(|e| os + s * d + e));
                    }
                    g
                })
                .collect(),
        )
    }

    fn permute_labels(&self, params: &[f64], perm: &[usize]) -> Vec<f64> {
        HmmParams::from_flat(&self.spec, params)
            .expect("constrained parameters of this model")
            .permuted(&self.spec, perm)
            .to_flat()
            .collect()
    }

    fn cost_per_point(&self) -> (f64, f64) {
        let s = &self.spec;
        let k = s.k as f64;
        let e = (s.d * (s.p + 4)) as f64;
        (6.0 * k * k + 4.0 * k * e, k + 1.0)
    }
}
