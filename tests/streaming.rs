//! Draws streamed to disk in chunks equal the draws kept in memory, and the file-based
//! summaries equal the in-memory ones; label alignment rewrites the file consistently.

mod common;

use std::sync::Arc;

use gpsamp::hmc::sink::{summarize_npy, NpySink};
use gpsamp::hmc::{sample, Config, CpuIntegrator, DrawSink, MemorySink, StepOut};
use gpsamp::io::npy::read_f32;
use gpsamp::{MixGlm, Model, Priors};

/// Feeds every record to two sinks.
struct Tee<'a, 'b>(&'a mut NpySink<'b>, &'a mut MemorySink);

impl DrawSink for Tee<'_, '_> {
    fn record(&mut self, i: usize, out: &StepOut, steps: &[u32]) -> gpsamp::Result<()> {
        self.0.record(i, out, steps)?;
        self.1.record(i, out, steps)
    }
}

#[test]
fn chunked_npy_equals_memory() {
    let m = MixGlm::mixreg(2, 1, Priors::default()).unwrap();
    let (data, _) = common::data_for(&m, &[60, 40], 3);
    let data = Arc::new(data);
    let cfg = Config {
        chains: 3,
        warmup: 50,
        draws: 37,
        seed: 1,
        ..Config::default()
    };
    let dir = std::env::temp_dir().join(format!("gpsamp-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n_chains = 6;
    let keep = vec![1, 2, 4, 7];
    let consts = vec![0.0, 0.0];
    let mut npy = NpySink::create(&dir, &m, consts, 3, n_chains, cfg.draws, keep.clone())
        .unwrap()
        .with_chunk(5);
    let mut mem = MemorySink::default();
    let mut integ = CpuIntegrator::new(Arc::new(m.clone()), data, 3, 1).unwrap();
    sample(
        &mut integ,
        &m,
        2,
        &cfg,
        &mut Tee(&mut npy, &mut mem),
        &mut |_, _, _, _| {},
    )
    .unwrap();
    npy.finish().unwrap();
    let (shape, draws) = read_f32(&dir.join("draws.npy")).unwrap();
    assert_eq!(shape, vec![n_chains, cfg.draws, keep.len()]);
    for c in 0..n_chains {
        for t in 0..cfg.draws {
            let q: Vec<f64> = (0..m.dim()).map(|i| mem.trace(c, i)[t]).collect();
            let v = m.constrain(&q);
            for (j, &k) in keep.iter().enumerate() {
                let got = draws[(c * cfg.draws + t) * keep.len() + j];
                assert_eq!(got, v[k] as f32, "chain {c} draw {t} param {k}");
            }
        }
    }
    let (sshape, stats) = read_f32(&dir.join("sample_stats.npy")).unwrap();
    assert_eq!(sshape, vec![n_chains, cfg.draws, 5]);
    assert_eq!(stats[1], mem.accept_prob[0] as f32);
    let names: Vec<String> = keep.iter().map(|&k| m.param_names()[k].clone()).collect();
    let rows = summarize_npy(&dir, &names, n_chains, cfg.draws, 3, 1, 1).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].len(), keep.len());
    // Dataset 1's first kept parameter from memory.
    let chains: Vec<Vec<f64>> = (3..6)
        .map(|c| {
            (0..cfg.draws)
                .map(|t| f64::from(draws[(c * cfg.draws + t) * keep.len()]))
                .collect()
        })
        .collect();
    let want = gpsamp::diag::summarize(&names[0], &chains, 1);
    assert_eq!(rows[1][0].mean, want.mean);
    assert_eq!(rows[1][0].ess_bulk, want.ess_bulk);
    std::fs::remove_dir_all(&dir).ok();
}
