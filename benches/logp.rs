//! Criterion benches of the batch log density + gradient (the kernels `gpsamp bench`
//! measures), CPU backend for every family and the GPU backend when an adapter exists.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gpsamp::backend::{CpuEvaluator, Evaluator, GpuContext, GpuEvaluator};
use gpsamp::rng::{host_rng, Purpose};
use gpsamp::{DataBatch, Likelihood, MixGlm, Model, Priors};

fn families() -> Vec<(&'static str, MixGlm)> {
    let p = Priors::default();
    vec![
        (
            "glm-gaussian",
            MixGlm::glm(Likelihood::Gaussian, 1, p).unwrap(),
        ),
        (
            "glm-bernoulli",
            MixGlm::glm(Likelihood::Bernoulli, 1, p).unwrap(),
        ),
        (
            "glm-poisson",
            MixGlm::glm(Likelihood::Poisson, 1, p).unwrap(),
        ),
        ("gmm", MixGlm::gmm(2, p).unwrap()),
        ("mixglm", MixGlm::mixreg(2, 1, p).unwrap()),
    ]
}

fn bench(c: &mut Criterion) {
    let gpu = GpuContext::new().ok();
    let n = 1000;
    for (name, m) in families() {
        let mut group = c.benchmark_group(format!("logp_grad/{name}/N{n}"));
        group.sample_size(10);
        let mut rng = host_rng(1, 0, Purpose::Simulate);
        let (truth, d) = m.simulate(n, &mut rng);
        let data = Arc::new(DataBatch::new(m.features(), &[d]).unwrap());
        for chains in [1usize, 64, 1024] {
            let dim = m.dim();
            let theta: Vec<f64> = (0..chains).flat_map(|_| truth.iter().copied()).collect();
            let (mut lp, mut g) = (vec![0.0; chains], vec![0.0; chains * dim]);
            group.throughput(Throughput::Elements(chains as u64));
            let mut cpu = CpuEvaluator::new(Arc::new(m.clone()), data.clone(), chains).unwrap();
            group.bench_function(BenchmarkId::new("cpu", chains), |b| {
                b.iter(|| cpu.eval(&theta, &mut lp, &mut g).unwrap())
            });
            if let Some(ctx) = &gpu {
                let mut ge = GpuEvaluator::new(ctx.clone(), &m, &data, chains, None).unwrap();
                group.bench_function(BenchmarkId::new("gpu", chains), |b| {
                    b.iter(|| ge.eval(&theta, &mut lp, &mut g).unwrap())
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
