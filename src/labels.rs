//! Label switching, in one place: for models with exchangeable components
//! ([`Model::label_groups`]: mixture components, HMM states), the permutation that matches
//! each chain's components to the ensemble's ([`permutations`], Hungarian matching of
//! standardised chain means; the matching itself is [`crate::diag::align`]), applied to
//! unconstrained positions in memory during warmup ([`apply_unconstrained`]) and to a run's
//! `draws.npy` afterwards ([`apply_to_npy`]); and the label-free canonical order that
//! simulation studies use ([`canonical_order`]).

use std::path::Path;

use crate::error::Result;
use crate::io::npy::NpyWriter;
use crate::model::Model;

/// Label permutations for every chain of every dataset, from the chains' means (None when
/// the model has no exchangeable components).
pub fn permutations(
    model: &dyn Model,
    chain_means: &[Vec<f64>],
    chains_per_dataset: usize,
) -> Option<Vec<Vec<usize>>> {
    let groups = model.label_groups()?;
    let mut perms = Vec::with_capacity(chain_means.len());
    for ds in chain_means.chunks(chains_per_dataset) {
        let np = ds[0].len();
        // Spread of each parameter across chains (floored), to standardise distances.
        let scale: Vec<f64> = (0..np)
            .map(|i| {
                let v: Vec<f64> = ds.iter().map(|m| m[i]).collect();
                let mu = v.iter().sum::<f64>() / v.len() as f64;
                let sd = (v.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
                sd.max(1e-3 * mu.abs().max(1.0))
            })
            .collect();
        perms.extend(crate::diag::align::align_chains(ds, &scale, &groups));
    }
    Some(perms)
}

/// Rewrites `dir/draws.npy` (chains x draws x params, all parameters kept) with each chain's
/// components permuted by `perms[chain]`.
pub fn apply_to_npy(
    dir: &Path,
    model: &dyn Model,
    perms: &[Vec<usize>],
    n_draws: usize,
) -> Result<()> {
    let np = model.param_names().len();
    let path = dir.join("draws.npy");
    let w = NpyWriter::open(&path, &[perms.len(), n_draws, np])?;
    let mut block = vec![0f32; n_draws * np];
    for (c, p) in perms.iter().enumerate() {
        if p.iter().enumerate().all(|(i, &j)| i == j) {
            continue;
        }
        w.read_at(c * n_draws * np, &mut block)?;
        for row in block.chunks_mut(np) {
            let x: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
            let y = model.permute_labels(&x, p);
            row.iter_mut().zip(&y).for_each(|(r, v)| *r = *v as f32);
        }
        w.write_at(c * n_draws * np, &block)?;
    }
    w.finish()
}

/// Applies `perms[chain]` to every chain's unconstrained position in `positions` (chains x
/// D); returns whether any chain changed. A chain whose permuted parameters cannot be mapped
/// back (weights that underflowed to 0) is left alone.
pub fn apply_unconstrained(model: &dyn Model, perms: &[Vec<usize>], positions: &mut [f64]) -> bool {
    let d = model.dim();
    let mut changed = false;
    for (c, p) in perms.iter().enumerate() {
        if p.iter().enumerate().all(|(i, &j)| i == j) {
            continue;
        }
        let q = &mut positions[c * d..(c + 1) * d];
        let x = model.permute_labels(&model.constrain(q), p);
        if let Ok(u) = model.unconstrain(&x) {
            q.copy_from_slice(&u);
            changed = true;
        }
    }
    changed
}

/// Sorts the components of a mixture (constrained parameters, in place) by the first
/// parameter of each component after its weight: a fixed function of the parameters, so
/// ranks of the sorted truth among sorted draws stay uniform, and it removes label
/// switching from every summary.
pub fn canonical_order(model: &dyn Model, groups: &[Vec<usize>], params: &mut [f64]) {
    let key = usize::from(groups[0].len() > 1);
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| params[groups[a][key]].total_cmp(&params[groups[b][key]]));
    let sorted = model.permute_labels(params, &order);
    params.copy_from_slice(&sorted);
}
