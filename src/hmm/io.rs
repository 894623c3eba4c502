//! Sequence data: reading `seq,t,x..,y` CSV files into the HMM layout of a [`DataBatch`]
//! (see the [module docs](super)), and simulating sequences like the tutorial's.

use std::collections::HashMap;
use std::path::Path;

use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

use super::{EmissionKind, HmmParams, HmmSpec};
use crate::data::{DataBatch, Dataset};
use crate::error::{Error, Result};
use crate::io::csv::CsvReader;
use crate::io::table::{Rows, Table, TableRows};

/// Which columns hold what.
#[derive(Clone, Debug)]
pub struct SeqSpec {
    /// Sequence id column.
    pub seq: String,
    /// Time column (must increase within a sequence).
    pub t: String,
    /// Input columns of a GLM emission.
    pub x: Vec<String>,
    /// Emission columns (D of them).
    pub y: Vec<String>,
    /// Optional column splitting sequences into datasets fitted separately.
    pub group: Option<String>,
    /// Emissions must be 0 or 1.
    pub binary: bool,
}

/// Sequences read from a file.
#[derive(Clone, Debug)]
pub struct SeqData {
    /// The HMM-layout batch, one dataset per group.
    pub batch: DataBatch,
    /// Sequence ids of each dataset, in order.
    pub seq_ids: Vec<Vec<String>>,
    /// Group names (one `"all"` without a group column).
    pub groups: Vec<String>,
    /// The time value of every point.
    pub t: Vec<f64>,
}

/// Reads a sequence CSV. Rows of a sequence must be contiguous with increasing `t`; every
/// error names the file, line and column.
pub fn read_sequences(path: &Path, spec: &SeqSpec) -> Result<SeqData> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_sequences_from(path, file, spec)
}

/// [`read_sequences`] from any reader; `path` is only used in messages.
pub fn read_sequences_from(
    path: &Path,
    reader: impl std::io::Read,
    spec: &SeqSpec,
) -> Result<SeqData> {
    read_sequence_rows(CsvReader::new(path, reader)?, spec)
}

/// Sequences from an in-memory table, as [`read_sequences_from`] reads a file holding the
/// same values; errors name the column and row.
pub fn read_sequences_table(table: &Table<'_>, spec: &SeqSpec) -> Result<SeqData> {
    read_sequence_rows(TableRows::new(table), spec)
}

/// The sequences `spec` selects from `r`.
fn read_sequence_rows(mut r: impl Rows, spec: &SeqSpec) -> Result<SeqData> {
    if spec.y.is_empty() {
        return Err(r.err(1, "-", "no emission column given".into()));
    }
    let si = r.column(&spec.seq)?;
    let ti = r.column(&spec.t)?;
    let xi: Vec<usize> = spec.x.iter().map(|c| r.column(c)).collect::<Result<_>>()?;
    let yi: Vec<usize> = spec.y.iter().map(|c| r.column(c)).collect::<Result<_>>()?;
    let gi = spec.group.as_deref().map(|g| r.column(g)).transpose()?;

    struct Group {
        cols: Vec<Vec<f64>>,
        y: Vec<f64>,
        t: Vec<f64>,
        ids: Vec<String>,
    }
    let n_cols = 1 + xi.len() + yi.len() - 1;
    let mut groups: Vec<Group> = Vec::new();
    let mut group_names: Vec<String> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    // (group, sequence id) -> the line it started on; the sequence being read and its last
    // t. Ids are per group: sequence "0" of two groups are two sequences.
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut current: Option<((String, String), f64)> = None;
    while r.next_row()? {
        let line = r.line();
        let id = r.text(si).to_string();
        if id.is_empty() {
            return Err(r.err(line, &spec.seq, "missing sequence id".into()));
        }
        let t = r.number(ti, &spec.t)?;
        let gname = gi.map_or_else(|| "all".to_string(), |g| r.text(g).to_string());
        let key = (gname.clone(), id.clone());
        let starts = match &current {
            Some((cur, last_t)) if *cur == key => {
                if t <= *last_t {
                    return Err(r.err(
                        line,
                        &spec.t,
                        format!(
                            "sequence {id:?} is out of order: t = {t} after t = {last_t} (sort by sequence, then time)"
                        ),
                    ));
                }
                false
            }
            _ => {
                if let Some(&first) = seen.get(&key) {
                    return Err(r.err(
                        line,
                        &spec.seq,
                        format!(
                            "sequence {id:?} started on {} and resumes here after another sequence: rows of a sequence must be contiguous",
                            r.place(first)
                        ),
                    ));
                }
                seen.insert(key.clone(), line);
                true
            }
        };
        current = Some((key, t));
        let next = groups.len();
        let g = *group_of.entry(gname.clone()).or_insert(next);
        if g == groups.len() {
            groups.push(Group {
                cols: vec![Vec::new(); n_cols],
                y: Vec::new(),
                t: Vec::new(),
                ids: Vec::new(),
            });
            group_names.push(gname);
        }
        let grp = &mut groups[g];
        if starts {
            grp.ids.push(id);
        }
        grp.cols[0].push(if starts { 1.0 } else { 0.0 });
        for (j, (&i, name)) in xi.iter().zip(&spec.x).enumerate() {
            grp.cols[1 + j].push(r.number(i, name)?);
        }
        for (d, (&i, name)) in yi.iter().zip(&spec.y).enumerate() {
            let v = r.number(i, name)?;
            if spec.binary && v != 0.0 && v != 1.0 {
                return Err(r.err(
                    line,
                    name,
                    format!("{v} is not 0 or 1 (Bernoulli emission)"),
                ));
            }
            if d == 0 {
                grp.y.push(v);
            } else {
                grp.cols[xi.len() + d].push(v);
            }
        }
        grp.t.push(t);
    }
    if groups.is_empty() {
        return Err(r.err(2, "-", "the input has a header but no data rows".into()));
    }
    let datasets: Vec<Dataset> = groups
        .iter()
        .map(|g| Dataset {
            x: g.cols.clone(),
            y: g.y.clone(),
        })
        .collect();
    let mut batch = DataBatch::new(n_cols, &datasets)?;
    batch.x_names = std::iter::once("start".to_string())
        .chain(spec.x.iter().cloned())
        .chain(spec.y.iter().skip(1).cloned())
        .collect();
    batch.y_name = spec.y[0].clone();
    if spec.group.is_some() {
        batch.groups = group_names.clone();
    }
    Ok(SeqData {
        batch,
        seq_ids: groups.iter().map(|g| g.ids.clone()).collect(),
        groups: group_names,
        t: groups.iter().flat_map(|g| g.t.iter().copied()).collect(),
    })
}

/// The tutorial's parameters for `spec` when it has them: the 3-state Gaussian HMM (means
/// −3/0/4, variance 0.7, 0.8 on the diagonal) and the 3-state switching regression on one
/// input (weights 1/−0.8/0.2, biases 2/0/−1, sds 1/0.8/1.5).
pub fn tutorial_params(spec: &HmmSpec) -> Option<HmmParams> {
    if spec.k != 3 || spec.d != 1 || spec.kind != EmissionKind::Gaussian {
        return None;
    }
    let third = vec![1.0 / 3.0; 3];
    match spec.p {
        0 => Some(HmmParams {
            initial: third,
            transition: vec![0.8, 0.1, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1, 0.8],
            loc: vec![-3.0, 0.0, 4.0],
            weights: Vec::new(),
            sds: vec![0.7f64.sqrt(); 3],
        }),
        1 => Some(HmmParams {
            initial: third,
            transition: vec![0.5, 0.4, 0.1, 0.1, 0.5, 0.4, 0.4, 0.1, 0.5],
            loc: vec![2.0, 0.0, -1.0],
            weights: vec![1.0, -0.8, 0.2],
            sds: vec![1.0, 0.8, 1.5],
        }),
        _ => None,
    }
}

/// Random parameters for `spec`: sticky transitions (0.8 on the diagonal), well-separated
/// locations, unit-scale weights, sds of 1.
pub fn random_params(spec: &HmmSpec, rng: &mut rand::rngs::StdRng) -> HmmParams {
    let (k, d, p) = (spec.k, spec.d, spec.p);
    let mut transition = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            transition[i * k + j] = if k == 1 {
                1.0
            } else if i == j {
                0.8
            } else {
                0.2 / (k - 1) as f64
            };
        }
    }
    let spread = if spec.kind == EmissionKind::Gaussian {
        3.0
    } else {
        1.0
    };
    let mut normal = || -> f64 { StandardNormal.sample(rng) };
    let loc = (0..k * d)
        .map(|i| spread * ((i / d) as f64 - (k as f64 - 1.0) / 2.0) + 0.3 * normal())
        .collect();
    let weights = (0..k * d * p).map(|_| 1.5 * normal()).collect();
    HmmParams {
        initial: vec![1.0 / k as f64; k],
        transition,
        loc,
        weights,
        sds: if spec.has_sds() {
            vec![1.0; k * d]
        } else {
            Vec::new()
        },
    }
}

/// The tutorial's data for `spec`, as `gpsamp sample` fits it without `--data`: sequences
/// simulated from [`tutorial_params`] with `seed` (the Gaussian HMM: 3 sequences x 200
/// steps; the switching regression: 10 x 100), the parameters, and a description. None for
/// shapes the tutorial has no parameters for.
pub fn tutorial_sequences(spec: &HmmSpec, seed: u64) -> Option<(Dataset, HmmParams, String)> {
    let truth = tutorial_params(spec)?;
    let (n_seq, t_len) = if spec.p == 0 { (3, 200) } else { (10, 100) };
    let mut rng = crate::rng::host_rng(seed, 0, crate::rng::Purpose::Simulate);
    let (d, _) = simulate(spec, &truth, n_seq, t_len, &mut rng);
    let what = if spec.p == 0 {
        "Gaussian HMM"
    } else {
        "switching regression"
    };
    Some((
        d,
        truth,
        format!("tutorial's {what}: {n_seq} sequences x {t_len} steps"),
    ))
}

/// Draws `n_seq` sequences of length `t_len` from `prm`: inputs are uniform on [0, 10] for
/// Gaussian GLM emissions (the tutorial's) and standard normal for Bernoulli ones. Returns
/// one HMM-layout dataset and the true states.
pub fn simulate(
    spec: &HmmSpec,
    prm: &HmmParams,
    n_seq: usize,
    t_len: usize,
    rng: &mut rand::rngs::StdRng,
) -> (Dataset, Vec<usize>) {
    let (k, d_dim, p) = (spec.k, spec.d, spec.p);
    let n = n_seq * t_len;
    let mut x = vec![Vec::with_capacity(n); spec.data_columns()];
    let mut y = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let draw = |probs: &[f64], rng: &mut rand::rngs::StdRng| -> usize {
        let mut u = rng.random::<f64>();
        for (i, &v) in probs.iter().enumerate() {
            if u < v {
                return i;
            }
            u -= v;
        }
        probs.len() - 1
    };
    for _ in 0..n_seq {
        let mut z = 0;
        for t in 0..t_len {
            z = if t == 0 {
                draw(&prm.initial, rng)
            } else {
                draw(&prm.transition[z * k..(z + 1) * k], rng)
            };
            states.push(z);
            x[0].push(if t == 0 { 1.0 } else { 0.0 });
            let inputs: Vec<f64> = (0..p)
                .map(|_| match spec.kind {
                    EmissionKind::Gaussian => 10.0 * rng.random::<f64>(),
                    EmissionKind::Bernoulli => StandardNormal.sample(rng),
                })
                .collect();
            for (j, &v) in inputs.iter().enumerate() {
                x[1 + j].push(v);
            }
            for d in 0..d_dim {
                let kd = z * d_dim + d;
                let eta = prm.loc[kd]
                    + (0..p)
                        .map(|j| prm.weights[kd * p + j] * inputs[j])
                        .sum::<f64>();
                let v = match spec.kind {
                    EmissionKind::Gaussian => {
                        let e: f64 = StandardNormal.sample(rng);
                        eta + prm.sds[kd] * e
                    }
                    EmissionKind::Bernoulli => {
                        if rng.random::<f64>() < crate::math::sigmoid(eta) {
                            1.0
                        } else {
                            0.0
                        }
                    }
                };
                if d == 0 {
                    y.push(v);
                } else {
                    x[p + d].push(v);
                }
            }
        }
    }
    (Dataset { x, y }, states)
}

/// `prm` as JSON with the keys of `gpsamp em`'s `params.json`: `initial`, `transition`
/// (rows = from), and `means` + `sds` (Gaussian HMM), `weights` + `biases` + `sds`
/// (regression) or `weights` + `biases` (Bernoulli). Per-state vectors are nested K × D (or
/// K × P for weights) when D > 1 or P > 0, else flat.
pub fn params_to_json(spec: &HmmSpec, prm: &HmmParams) -> serde_json::Value {
    use serde_json::json;
    let (k, d, p) = (spec.k, spec.d, spec.p);
    let rows = |v: &[f64], w: usize| -> serde_json::Value {
        json!((0..k)
            .map(|s| v[s * w..(s + 1) * w].to_vec())
            .collect::<Vec<_>>())
    };
    let per_state = |v: &[f64]| -> serde_json::Value {
        if d == 1 {
            json!(v)
        } else {
            rows(v, d)
        }
    };
    let mut o = serde_json::Map::new();
    o.insert("initial".into(), json!(prm.initial));
    o.insert("transition".into(), rows(&prm.transition, k));
    let glm = p > 0 || spec.kind == EmissionKind::Bernoulli;
    if glm {
        o.insert("weights".into(), rows(&prm.weights, d * p));
        o.insert("biases".into(), per_state(&prm.loc));
    } else {
        o.insert("means".into(), per_state(&prm.loc));
    }
    if spec.has_sds() {
        o.insert("sds".into(), per_state(&prm.sds));
    }
    serde_json::Value::Object(o)
}

/// Reads parameters written by [`params_to_json`] for `spec`.
pub fn params_from_json(spec: &HmmSpec, v: &serde_json::Value) -> Result<HmmParams> {
    let flat = |key: &str| -> Result<Vec<f64>> {
        let mut out = Vec::new();
        fn walk(v: &serde_json::Value, out: &mut Vec<f64>) -> bool {
            match v {
                serde_json::Value::Number(n) => n.as_f64().map(|x| out.push(x)).is_some(),
                serde_json::Value::Array(a) => a.iter().all(|x| walk(x, out)),
                _ => false,
            }
        }
        match v.get(key) {
            Some(x) if walk(x, &mut out) => Ok(out),
            Some(_) => Err(Error::Invalid(format!("{key:?} must hold numbers"))),
            None => Err(Error::Invalid(format!("missing key {key:?}"))),
        }
    };
    let glm = spec.p > 0 || spec.kind == EmissionKind::Bernoulli;
    let (k, d, p) = (spec.k, spec.d, spec.p);
    // Each key checked on its own, so that an error names it.
    let sized = |key: &str, want: usize, what: &str| -> Result<Vec<f64>> {
        let v = flat(key)?;
        if v.len() != want {
            return Err(Error::Invalid(format!(
                "key {key:?}: {} numbers, expected {want} ({what})",
                v.len()
            )));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::Invalid(format!(
                "key {key:?}: value {i} is not a finite number"
            )));
        }
        Ok(v)
    };
    let simplex = |key: &str, v: &[f64]| -> Result<()> {
        for (r, row) in v.chunks(k).enumerate() {
            if !row.iter().all(|&x| (0.0..=1.0).contains(&x))
                || (row.iter().sum::<f64>() - 1.0).abs() >= 1e-6
            {
                return Err(Error::Invalid(format!(
                    "key {key:?}: row {r} is not a probability vector (values in [0, 1] summing to 1)"
                )));
            }
        }
        Ok(())
    };
    let loc_key = if glm { "biases" } else { "means" };
    let prm = HmmParams {
        initial: sized("initial", k, "one per state")?,
        transition: sized("transition", k * k, "K x K")?,
        loc: sized(loc_key, k * d, "one per state and emission dimension")?,
        weights: if glm {
            sized("weights", k * d * p, "K x inputs")?
        } else {
            Vec::new()
        },
        sds: if spec.has_sds() {
            sized("sds", k * d, "one per state and emission dimension")?
        } else {
            Vec::new()
        },
    };
    simplex("initial", &prm.initial)?;
    simplex("transition", &prm.transition)?;
    if let Some(i) = prm.sds.iter().position(|&s| s <= 0.0) {
        return Err(Error::Invalid(format!(
            "key \"sds\": value {i} is not positive"
        )));
    }
    prm.validate(spec)?;
    Ok(prm)
}

impl SeqData {
    /// Splits off the last `n` sequences of every dataset as a held-out test set; an error
    /// when a dataset would keep no training sequence.
    pub fn split_holdout(&self, n: usize) -> Result<(SeqData, SeqData)> {
        let p = self.batch.p();
        let mut train = (Vec::new(), Vec::new(), Vec::new());
        let mut test = (Vec::new(), Vec::new(), Vec::new());
        for b in 0..self.batch.n_datasets() {
            let seqs = super::sequences(&self.batch, b);
            if seqs.len() <= n {
                return Err(Error::Invalid(format!(
                    "--holdout {n}: dataset {:?} has only {} sequence(s); keep at least one for training",
                    self.groups[b],
                    seqs.len()
                )));
            }
            let cut = seqs.len() - n;
            for (part, range, ids) in [
                (
                    &mut train,
                    seqs[0].start..seqs[cut].start,
                    &self.seq_ids[b][..cut],
                ),
                (
                    &mut test,
                    seqs[cut].start..seqs[seqs.len() - 1].end,
                    &self.seq_ids[b][cut..],
                ),
            ] {
                part.0.push(Dataset {
                    x: (0..p)
                        .map(|j| self.batch.x_col(j)[range.clone()].to_vec())
                        .collect(),
                    y: self.batch.y()[range.clone()].to_vec(),
                });
                part.1.push(ids.to_vec());
                part.2.extend_from_slice(&self.t[range]);
            }
        }
        let make = |(ds, ids, t): (Vec<Dataset>, Vec<Vec<String>>, Vec<f64>)| -> Result<SeqData> {
            let mut batch = DataBatch::new(p, &ds)?;
            batch.x_names = self.batch.x_names.clone();
            batch.y_name = self.batch.y_name.clone();
            Ok(SeqData {
                batch,
                seq_ids: ids,
                groups: self.groups.clone(),
                t,
            })
        };
        Ok((make(train)?, make(test)?))
    }
}
