//! Mixture density networks for amortised posteriors: an MLP (ReLU hidden layers) whose
//! head gives, for an input y, a K-component diagonal Gaussian mixture over theta; trained
//! by Adam on simulated (theta, y) pairs ([`train`]), checked against exact conjugate
//! posteriors ([`eval`]).
//!
//! The CPU kernel here is the reference: forward and backward for a minibatch, blocks of
//! [`LANES`] samples side by side so the inner loops run across samples in SIMD registers,
//! fixed chunks of samples whose gradients are summed in a fixed order (the same result on
//! any number of threads).
//!
//! Parameter layout: for each linear layer, its weights (out x in, row-major) then its
//! biases. The head has K (1 + 2T) outputs: K logits, K T means, K T raw log variances. The
//! log variance is `LV_BOUND tanh(raw / LV_BOUND)` (bounded, so a collapsing component
//! cannot produce an infinite density), all on standardised inputs and theta.

// Kernel loops index several arrays by the same unit, lane or component.
#![allow(clippy::needless_range_loop)]

pub mod eval;
pub mod gpu;
pub mod sim;
pub mod train;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rng::{host_rng, Purpose};

/// Samples processed side by side in the CPU kernel.
pub const LANES: usize = 16;
/// Samples per gradient chunk (a multiple of [`LANES`]); chunks are summed in order.
pub const CHUNK: usize = 64;
/// Bound on the standardised log variance.
pub const LV_BOUND: f32 = 12.0;
const LN_2PI: f32 = 1.837_877_1;

/// The network's sizes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    /// Input dimension (y).
    pub input: usize,
    /// Hidden layer sizes.
    pub hidden: Vec<usize>,
    /// Mixture components.
    pub k: usize,
    /// Dimension of theta.
    pub theta: usize,
}

impl Shape {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.input == 0 || self.theta == 0 {
            return Err(Error::Invalid(
                "the MDN needs an input and a theta of dimension at least 1".into(),
            ));
        }
        if self.k == 0 {
            return Err(Error::config("--components", "must be at least 1"));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(Error::config(
                "--hidden",
                "give at least one hidden layer, each of size at least 1 (e.g. 24,25,16)",
            ));
        }
        if self.hidden.iter().any(|&h| h > 1024) || self.k * (1 + 2 * self.theta) > 4096 {
            return Err(Error::config("--hidden", "layers of at most 1024 units"));
        }
        Ok(())
    }

    /// Head outputs: K logits, K T means, K T raw log variances.
    pub fn head(&self) -> usize {
        self.k * (1 + 2 * self.theta)
    }

    /// (inputs, outputs) of each linear layer, the head last.
    pub fn layers(&self) -> Vec<(usize, usize)> {
        let mut dims = vec![self.input];
        dims.extend(&self.hidden);
        dims.push(self.head());
        dims.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Offsets of each layer's weights in the parameter vector.
    pub fn offsets(&self) -> Vec<usize> {
        let mut off = vec![0];
        for (i, o) in self.layers() {
            off.push(off.last().unwrap() + o * i + o);
        }
        off
    }

    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        *self.offsets().last().unwrap()
    }

    /// Widest layer (activations buffer size).
    pub fn widest(&self) -> usize {
        self.layers()
            .iter()
            .map(|&(i, o)| i.max(o))
            .max()
            .unwrap_or(1)
    }
}

/// He-uniform weights for the ReLU layers, a smaller scale for the head, zero biases.
pub fn init_params(shape: &Shape, seed: u64) -> Vec<f32> {
    let mut rng = host_rng(seed, 0, Purpose::Init);
    let layers = shape.layers();
    let mut p = Vec::with_capacity(shape.n_params());
    for (l, &(i, o)) in layers.iter().enumerate() {
        let head = l + 1 == layers.len();
        let bound = if head { 0.5 } else { (6.0 / i as f64).sqrt() }
            / if head { (i as f64).sqrt() } else { 1.0 };
        for _ in 0..o * i {
            let u: f64 = rand::RngExt::random(&mut rng);
            p.push(((2.0 * u - 1.0) * bound) as f32);
        }
        p.extend(std::iter::repeat_n(0.0f32, o));
    }
    p
}

/// The standardised mixture of one sample: log weights, means and log variances
/// (component-major, T per component).
#[derive(Clone, Debug, PartialEq)]
pub struct Mixture {
    /// log pi_k.
    pub log_w: Vec<f32>,
    /// mu_kt.
    pub mean: Vec<f32>,
    /// log sigma^2_kt.
    pub log_var: Vec<f32>,
}

/// A block of [`LANES`] samples: activations of every layer, feature-major, and all the
/// working memory of a forward and backward pass, so that none is allocated per block.
struct Block {
    /// The layers' (inputs, outputs) and parameter offsets ([`Shape::layers`],
    /// [`Shape::offsets`]).
    layers: Vec<(usize, usize)>,
    offs: Vec<usize>,
    /// acts[l][unit][lane]: input, each hidden layer after ReLU, then the head.
    acts: Vec<Vec<[f32; LANES]>>,
    delta: Vec<[f32; LANES]>,
    delta_next: Vec<[f32; LANES]>,
    /// theta[d][lane] and the lanes' loss weights (0 for padding lanes).
    theta: Vec<[f32; LANES]>,
    weight: [f32; LANES],
    /// One sample's log weights, log variances and component log densities.
    log_w: Vec<f32>,
    log_var: Vec<f32>,
    comp: Vec<f32>,
}

impl Block {
    fn new(shape: &Shape) -> Self {
        let mut dims = vec![shape.input];
        dims.extend(&shape.hidden);
        dims.push(shape.head());
        Self {
            layers: shape.layers(),
            offs: shape.offsets(),
            acts: dims.iter().map(|&d| vec![[0.0; LANES]; d]).collect(),
            delta: vec![[0.0; LANES]; shape.widest()],
            delta_next: vec![[0.0; LANES]; shape.widest()],
            theta: vec![[0.0; LANES]; shape.theta],
            weight: [0.0; LANES],
            log_w: vec![0.0; shape.k],
            log_var: vec![0.0; shape.k * shape.theta],
            comp: vec![0.0; shape.k],
        }
    }

    /// Loads the inputs of samples `start..start + live` (at most [`LANES`]) into the lanes;
    /// the padding lanes repeat the first sample.
    fn load_inputs(&mut self, shape: &Shape, x: &[f32], start: usize, live: usize) {
        for s in 0..LANES {
            let i = if s < live { start + s } else { start };
            for d in 0..shape.input {
                self.acts[0][d][s] = x[i * shape.input + d];
            }
        }
    }

    /// [`Block::load_inputs`], and the thetas and loss weights (0 for padding lanes).
    fn load(&mut self, shape: &Shape, batch: &Batch, start: usize, live: usize, uniform: f32) {
        self.load_inputs(shape, batch.x, start, live);
        for s in 0..LANES {
            let i = if s < live { start + s } else { start };
            for d in 0..shape.theta {
                self.theta[d][s] = batch.theta[i * shape.theta + d];
            }
            self.weight[s] = if s < live {
                batch.weight.map_or(uniform, |w| w[i])
            } else {
                0.0
            };
        }
    }
}

/// Forward pass of a block (inputs already in `acts[0]`).
fn forward_block(params: &[f32], b: &mut Block) {
    let (layers, offs) = (&b.layers, &b.offs);
    for (l, &(n_in, n_out)) in layers.iter().enumerate() {
        let w = &params[offs[l]..offs[l] + n_out * n_in];
        let bias = &params[offs[l] + n_out * n_in..offs[l + 1]];
        let (before, after) = b.acts.split_at_mut(l + 1);
        let a_in = &before[l];
        let a_out = &mut after[0];
        let relu = l + 1 < layers.len();
        for o in 0..n_out {
            let mut z = [bias[o]; LANES];
            let row = &w[o * n_in..(o + 1) * n_in];
            for (i, &wi) in row.iter().enumerate() {
                let a = &a_in[i];
                for s in 0..LANES {
                    z[s] += wi * a[s];
                }
            }
            if relu {
                for v in z.iter_mut() {
                    *v = v.max(0.0);
                }
            }
            a_out[o] = z;
        }
    }
}

/// The head's outputs for lane `s` turned into log weights (log-sum-exp of the logits) and
/// bounded log variances; the means are the head's outputs `K..K + K T` as they are.
fn head_params(
    shape: &Shape,
    head: &[[f32; LANES]],
    s: usize,
    log_w: &mut [f32],
    log_var: &mut [f32],
) {
    let (k, t) = (shape.k, shape.theta);
    let m = (0..k).fold(f32::NEG_INFINITY, |a, j| a.max(head[j][s]));
    let lse = m + (0..k).map(|j| (head[j][s] - m).exp()).sum::<f32>().ln();
    for j in 0..k {
        log_w[j] = head[j][s] - lse;
    }
    for i in 0..k * t {
        log_var[i] = LV_BOUND * (head[k + k * t + i][s] / LV_BOUND).tanh();
    }
}

/// Mixture of sample `s` of a block from the head's outputs.
fn mixture_of(shape: &Shape, head: &[[f32; LANES]], s: usize) -> Mixture {
    let (k, t) = (shape.k, shape.theta);
    let mut mix = Mixture {
        log_w: vec![0.0; k],
        mean: (0..k * t).map(|j| head[k + j][s]).collect(),
        log_var: vec![0.0; k * t],
    };
    head_params(shape, head, s, &mut mix.log_w, &mut mix.log_var);
    mix
}

/// log q(theta) of a standardised mixture at standardised `theta` (T values).
pub fn mixture_log_density(mix: &Mixture, theta: &[f32]) -> f32 {
    let t = theta.len();
    let k = mix.log_w.len();
    let comp: Vec<f32> = (0..k)
        .map(|j| {
            let mut l = mix.log_w[j];
            for d in 0..t {
                let lv = mix.log_var[j * t + d];
                let r = theta[d] - mix.mean[j * t + d];
                l -= 0.5 * (lv + LN_2PI + r * r * (-lv).exp());
            }
            l
        })
        .collect();
    let m = comp.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    m + comp.iter().map(|v| (v - m).exp()).sum::<f32>().ln()
}

/// Loss of a block's live lanes (weighted sum of -log q) and the gradient with respect to
/// the head's outputs (into `b.delta`, scaled by each sample's weight).
fn head_grad(shape: &Shape, b: &mut Block) -> f64 {
    let (k, t) = (shape.k, shape.theta);
    let last = b.acts.len() - 1;
    let head = &b.acts[last];
    let mut loss = 0.0f64;
    for s in 0..LANES {
        let w = b.weight[s];
        if w == 0.0 {
            for d in b.delta.iter_mut().take(shape.head()) {
                d[s] = 0.0;
            }
            continue;
        }
        head_params(shape, head, s, &mut b.log_w, &mut b.log_var);
        for j in 0..k {
            let mut l = b.log_w[j];
            for d in 0..t {
                let lv = b.log_var[j * t + d];
                let r = b.theta[d][s] - head[k + j * t + d][s];
                l -= 0.5 * (lv + LN_2PI + r * r * (-lv).exp());
            }
            b.comp[j] = l;
        }
        let cm = b.comp.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let logp = cm + b.comp.iter().map(|v| (v - cm).exp()).sum::<f32>().ln();
        loss -= (w * logp) as f64;
        for j in 0..k {
            let r = (b.comp[j] - logp).exp(); // responsibility
            b.delta[j][s] = -w * (r - b.log_w[j].exp());
            for d in 0..t {
                let i = j * t + d;
                let lv = b.log_var[i];
                let iv = (-lv).exp();
                let res = b.theta[d][s] - head[k + i][s];
                b.delta[k + i][s] = -w * r * res * iv;
                let th = lv / LV_BOUND;
                b.delta[k + k * t + i][s] = -w * r * 0.5 * (res * res * iv - 1.0) * (1.0 - th * th);
            }
        }
    }
    loss
}

/// Backward pass of a block: accumulates the parameter gradient into `grad`, starting from
/// the head's output gradient in `b.delta`.
fn backward_block(params: &[f32], b: &mut Block, grad: &mut [f32]) {
    for l in (0..b.layers.len()).rev() {
        let (n_in, n_out) = b.layers[l];
        let offs = &b.offs;
        let w = &params[offs[l]..offs[l] + n_out * n_in];
        let (gw, gb) = grad[offs[l]..offs[l + 1]].split_at_mut(n_out * n_in);
        let a_in = &b.acts[l];
        for o in 0..n_out {
            let d = &b.delta[o];
            gb[o] += d.iter().sum::<f32>();
            let grow = &mut gw[o * n_in..(o + 1) * n_in];
            for (i, g) in grow.iter_mut().enumerate() {
                let a = &a_in[i];
                let mut s = 0.0;
                for lane in 0..LANES {
                    s += d[lane] * a[lane];
                }
                *g += s;
            }
        }
        if l == 0 {
            break;
        }
        for i in 0..n_in {
            let mut acc = [0.0f32; LANES];
            for o in 0..n_out {
                let wi = w[o * n_in + i];
                let d = &b.delta[o];
                for s in 0..LANES {
                    acc[s] += wi * d[s];
                }
            }
            // ReLU: the activation is zero where the unit was off.
            let a = &a_in[i];
            for s in 0..LANES {
                if a[s] <= 0.0 {
                    acc[s] = 0.0;
                }
            }
            b.delta_next[i] = acc;
        }
        std::mem::swap(&mut b.delta, &mut b.delta_next);
    }
}

/// Minibatch of standardised inputs and thetas (sample-major) with per-sample weights.
pub struct Batch<'a> {
    /// Inputs, `n x input`.
    pub x: &'a [f32],
    /// Thetas, `n x theta`.
    pub theta: &'a [f32],
    /// Weights (the loss is sum w_i (-log q_i)); None: 1 / n each.
    pub weight: Option<&'a [f32]>,
}

/// Loss (weighted sum of -log q) and gradient (into `grad`, overwritten) of a minibatch on
/// the CPU. `scratch` holds one gradient row per chunk of [`CHUNK`] samples.
pub fn loss_and_grad(
    shape: &Shape,
    params: &[f32],
    batch: &Batch,
    grad: &mut [f32],
    scratch: &mut Vec<f32>,
) -> f64 {
    let n = batch.x.len() / shape.input;
    let p = shape.n_params();
    let n_chunks = n.div_ceil(CHUNK);
    scratch.clear();
    scratch.resize(n_chunks * p, 0.0);
    let uniform = 1.0 / n as f32;
    let losses: Vec<f64> = scratch
        .par_chunks_mut(p)
        .enumerate()
        .map_init(
            || Block::new(shape),
            |blk, (c, g)| {
                let mut loss = 0.0;
                let start = c * CHUNK;
                let end = (start + CHUNK).min(n);
                for s0 in (start..end).step_by(LANES) {
                    blk.load(shape, batch, s0, (end - s0).min(LANES), uniform);
                    forward_block(params, blk);
                    loss += head_grad(shape, blk);
                    backward_block(params, blk, g);
                }
                loss
            },
        )
        .collect();
    grad.iter_mut().for_each(|g| *g = 0.0);
    for row in scratch.chunks(p) {
        grad.iter_mut().zip(row).for_each(|(g, r)| *g += r);
    }
    losses.iter().sum()
}

/// Mean of -log q over a minibatch (weighted when it has weights), forward pass only.
pub fn loss(shape: &Shape, params: &[f32], batch: &Batch) -> f64 {
    let n = batch.x.len() / shape.input;
    let uniform = 1.0 / n as f32;
    let chunks: Vec<f64> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map_init(
            || Block::new(shape),
            |blk, c| {
                let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
                let mut loss = 0.0;
                for s0 in (start..end).step_by(LANES) {
                    blk.load(shape, batch, s0, (end - s0).min(LANES), uniform);
                    forward_block(params, blk);
                    loss += head_grad(shape, blk);
                }
                loss
            },
        )
        .collect();
    chunks.iter().sum()
}

/// Standardised mixtures of standardised inputs `x` (`n x input`).
pub fn predict(shape: &Shape, params: &[f32], x: &[f32]) -> Vec<Mixture> {
    let n = x.len() / shape.input;
    let mut blk = Block::new(shape);
    let mut out = Vec::with_capacity(n);
    for s0 in (0..n).step_by(LANES) {
        let live = (n - s0).min(LANES);
        blk.load_inputs(shape, x, s0, live);
        forward_block(params, &mut blk);
        let last = blk.acts.len() - 1;
        for s in 0..live {
            out.push(mixture_of(shape, &blk.acts[last], s));
        }
    }
    out
}

/// The optimiser of MDN training (f32).
pub type Adam = crate::math::Adam<f32>;
