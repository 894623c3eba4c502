//! Streaming draws to disk: [`NpySink`] turns each transition's positions into constrained
//! parameters, buffers a chunk of draws per chain and writes it into `draws.npy`
//! (chains x draws x params, f32) and `sample_stats.npy` at their offsets, keeping only
//! running per-chain means in memory. [`summarize_npy`] computes the diagnostics back from
//! the file, a few parameters at a time (after [`crate::labels`] has aligned mixture labels).
//! [`MemorySink`] keeps every draw in memory instead, for tests and small runs.

use std::path::Path;

use rayon::prelude::*;

use super::{DrawSink, StepOut};
use crate::diag::{self, SummaryRow};
use crate::error::Result;
use crate::io::npy::NpyWriter;
use crate::model::Model;

/// Columns of `sample_stats.npy`, in order.
pub const STAT_NAMES: [&str; 5] = ["lp", "acceptance_rate", "diverging", "energy", "n_steps"];

/// Streams draws and sampler statistics to `.npy` files (see the module docs).
pub struct NpySink<'a> {
    model: &'a dyn Model,
    constants: Vec<f64>,
    chains_per_dataset: usize,
    n_chains: usize,
    n_draws: usize,
    keep: Vec<usize>,
    n_params: usize,
    draws: NpyWriter,
    stats: NpyWriter,
    chunk: usize,
    buf: Vec<f32>,
    sbuf: Vec<f32>,
    chunk_start: usize,
    filled: usize,
    sums: Vec<f64>,
    count: usize,
    /// Seed and first global chain of the random streams of generated quantities.
    stream: (u64, u32),
}

impl<'a> NpySink<'a> {
    /// Creates `dir/draws.npy` and `dir/sample_stats.npy` for `n_chains` chains of `n_draws`
    /// draws, storing the constrained parameters listed in `keep`. `constants[b]` is added to
    /// dataset `b`'s log density for the `lp` column.
    pub fn create(
        dir: &Path,
        model: &'a dyn Model,
        constants: Vec<f64>,
        chains_per_dataset: usize,
        n_chains: usize,
        n_draws: usize,
        keep: Vec<usize>,
    ) -> Result<Self> {
        let n_params = model.param_names().len();
        let k = keep.len();
        // Chunk so that the buffer stays near 64 MiB.
        let chunk =
            ((64usize << 20) / (4 * n_chains * (k + STAT_NAMES.len())).max(1)).clamp(1, n_draws);
        Ok(Self {
            model,
            constants,
            chains_per_dataset,
            n_chains,
            n_draws,
            draws: NpyWriter::create(&dir.join("draws.npy"), &[n_chains, n_draws, k])?,
            stats: NpyWriter::create(
                &dir.join("sample_stats.npy"),
                &[n_chains, n_draws, STAT_NAMES.len()],
            )?,
            keep,
            n_params,
            chunk,
            buf: vec![0.0; n_chains * chunk * k],
            sbuf: vec![0.0; n_chains * chunk * STAT_NAMES.len()],
            chunk_start: 0,
            filled: 0,
            sums: vec![0.0; n_chains * n_params],
            count: 0,
            stream: (0, 0),
        })
    }

    /// Draws the random numbers of generated quantities from the streams of `seed`, chain
    /// `chain_offset + c` for chain `c` of the sink (default: seed 0, offset 0).
    pub fn with_stream(mut self, seed: u64, chain_offset: u32) -> Self {
        self.stream = (seed, chain_offset);
        self
    }

    /// Uses chunks of `draws` draws (the default keeps the buffer near 64 MiB).
    pub fn with_chunk(mut self, draws: usize) -> Self {
        self.chunk = draws.clamp(1, self.n_draws);
        self.buf = vec![0.0; self.n_chains * self.chunk * self.keep.len()];
        self.sbuf = vec![0.0; self.n_chains * self.chunk * STAT_NAMES.len()];
        self
    }

    fn flush(&mut self) -> Result<()> {
        let (k, s) = (self.keep.len(), STAT_NAMES.len());
        for c in 0..self.n_chains {
            let src = &self.buf[c * self.chunk * k..c * self.chunk * k + self.filled * k];
            self.draws
                .write_at((c * self.n_draws + self.chunk_start) * k, src)?;
            let src = &self.sbuf[c * self.chunk * s..c * self.chunk * s + self.filled * s];
            self.stats
                .write_at((c * self.n_draws + self.chunk_start) * s, src)?;
        }
        self.chunk_start += self.filled;
        self.filled = 0;
        Ok(())
    }

    /// Flushes the last chunk and returns the per-chain means of every constrained parameter
    /// (chains x params).
    pub fn finish(mut self) -> Result<Vec<Vec<f64>>> {
        if self.filled > 0 {
            self.flush()?;
        }
        self.draws.finish()?;
        self.stats.finish()?;
        let n = self.count.max(1) as f64;
        Ok(self
            .sums
            .chunks(self.n_params)
            .map(|r| r.iter().map(|v| v / n).collect())
            .collect())
    }
}

impl DrawSink for NpySink<'_> {
    fn record(&mut self, _index: usize, out: &StepOut, steps: &[u32]) -> Result<()> {
        let d = self.model.dim();
        let (k, s, t, chunk, np) = (
            self.keep.len(),
            STAT_NAMES.len(),
            self.filled,
            self.chunk,
            self.n_params,
        );
        let (model, keep, consts, cpd, (seed, offset), draw) = (
            self.model,
            &self.keep,
            &self.constants,
            self.chains_per_dataset,
            self.stream,
            self.count as u32,
        );
        self.buf
            .par_chunks_mut(chunk * k)
            .zip(self.sbuf.par_chunks_mut(chunk * s))
            .zip(self.sums.par_chunks_mut(np))
            .enumerate()
            .for_each(|(c, ((b, sb), sums))| {
                let theta = &out.position[c * d..(c + 1) * d];
                let v = model.constrain_draw(theta, seed, offset + c as u32, draw);
                for (sm, x) in sums.iter_mut().zip(&v) {
                    *sm += x;
                }
                for (j, &i) in keep.iter().enumerate() {
                    b[t * k + j] = v[i] as f32;
                }
                let st = [
                    (out.logp[c] + consts[c / cpd]) as f32,
                    out.accept_prob[c] as f32,
                    f32::from(u8::from(out.divergent[c])),
                    out.energy[c] as f32,
                    steps[c] as f32,
                ];
                sb[t * s..(t + 1) * s].copy_from_slice(&st);
            });
        self.count += 1;
        self.filled += 1;
        if self.filled == self.chunk {
            self.flush()?;
        }
        Ok(())
    }
}

/// Diagnostics of every dataset from `draws.npy` (chains x draws x k), reading a few
/// parameters at a time (`budget_bytes` of draws in memory).
pub fn summarize_npy(
    dir: &Path,
    names: &[String],
    n_chains: usize,
    n_draws: usize,
    chains_per_dataset: usize,
    superchain_size: usize,
    budget_bytes: usize,
) -> Result<Vec<Vec<SummaryRow>>> {
    let k = names.len();
    let w = NpyWriter::open_read(&dir.join("draws.npy"), &[n_chains, n_draws, k])?;
    let n_datasets = n_chains / chains_per_dataset;
    let mut out: Vec<Vec<SummaryRow>> = vec![Vec::new(); n_datasets];
    let per_param = chains_per_dataset * n_draws * 8;
    let group = (budget_bytes / per_param.max(1)).clamp(1, k.max(1));
    let mut block = Vec::new();
    let scores = diag::NormalScores::new(diag::split_total(chains_per_dataset, n_draws));
    for (b, rows_b) in out.iter_mut().enumerate() {
        let mut start = 0;
        while start < k {
            let end = (start + group).min(k);
            let chains = b * chains_per_dataset..(b + 1) * chains_per_dataset;
            let cols = read_chains(&w, chains, n_draws, k, start..end, &mut block)?;
            // The parameters in memory at once in parallel (each one's diagnostics do not
            // depend on the number of threads); their sorts and transforms parallelise too.
            let rows: Vec<SummaryRow> = cols
                .par_iter()
                .enumerate()
                .map(|(g, chains)| {
                    diag::summarize_with(&names[start + g], chains, superchain_size, Some(&scores))
                })
                .collect();
            rows_b.extend(rows);
            start = end;
        }
    }
    Ok(out)
}

/// Parameters `params` of chains `chains` of a `draws.npy` (open as `w`, chains × `n_draws`
/// × `k`), as f64: `out[p][c]` holds the draws of parameter `params.start + p` in chain
/// `chains.start + c`. `block` is reused working memory (one chain's draws).
pub fn read_chains(
    w: &NpyWriter,
    chains: std::ops::Range<usize>,
    n_draws: usize,
    k: usize,
    params: std::ops::Range<usize>,
    block: &mut Vec<f32>,
) -> Result<Vec<Vec<Vec<f64>>>> {
    block.resize(n_draws * k, 0.0);
    let mut cols: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(chains.len()); params.len()];
    for c in chains {
        w.read_at(c * n_draws * k, block)?;
        for (g, col) in cols.iter_mut().enumerate() {
            col.push(
                block
                    .iter()
                    .skip(params.start + g)
                    .step_by(k)
                    .map(|&v| f64::from(v))
                    .collect(),
            );
        }
    }
    Ok(cols)
}

/// A sink that keeps every draw in memory: unconstrained positions (draws x chains x D)
/// and sampler statistics; for tests and small runs.
#[derive(Default)]
pub struct MemorySink {
    /// Unconstrained dimension.
    pub d: usize,
    /// Chains over all datasets.
    pub chains: usize,
    /// Positions, draw-major: draw t of chain c, parameter i is `draws[(t * chains + c) * d + i]`.
    pub draws: Vec<f64>,
    /// Log densities (draws x chains).
    pub logp: Vec<f64>,
    /// Acceptance probabilities (draws x chains).
    pub accept_prob: Vec<f64>,
    /// Divergences (draws x chains).
    pub divergent: Vec<bool>,
    /// Leapfrog steps (draws x chains).
    pub steps: Vec<u32>,
    /// Energies (draws x chains).
    pub energy: Vec<f64>,
}

impl DrawSink for MemorySink {
    fn record(&mut self, _index: usize, out: &StepOut, steps: &[u32]) -> Result<()> {
        self.chains = out.logp.len();
        self.d = out.position.len() / self.chains.max(1);
        self.draws.extend_from_slice(&out.position);
        self.logp.extend_from_slice(&out.logp);
        self.accept_prob.extend_from_slice(&out.accept_prob);
        self.divergent.extend_from_slice(&out.divergent);
        self.steps.extend_from_slice(steps);
        self.energy.extend_from_slice(&out.energy);
        Ok(())
    }
}

impl MemorySink {
    /// Number of draws per chain.
    pub fn n_draws(&self) -> usize {
        self.logp.len() / self.chains.max(1)
    }

    /// Draws of chain `c`, unconstrained parameter `i`, in order.
    pub fn trace(&self, c: usize, i: usize) -> Vec<f64> {
        (0..self.n_draws())
            .map(|t| self.draws[(t * self.chains + c) * self.d + i])
            .collect()
    }
}
