//! Criterion benches of the HMM kernels `gpsamp bench` measures: the EM E-step (CPU and,
//! when an adapter exists, GPU) and the HMC log density + gradient on the tutorial's data.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gpsamp::backend::{CpuEvaluator, Evaluator, GpuContext};
use gpsamp::hmm::{em, gpu::GpuEstep, io, HmmSpec};
use gpsamp::rng::{host_rng, Purpose};
use gpsamp::{DataBatch, Hmm, HmmPriors};

fn estep(c: &mut Criterion) {
    let gpu = GpuContext::new().ok();
    let (seqs, steps) = (256, 1000);
    for k in [3usize, 8] {
        let mut group = c.benchmark_group(format!("hmm_estep/K{k}/{seqs}x{steps}"));
        group.sample_size(10);
        group.throughput(Throughput::Elements((seqs * steps) as u64));
        let spec = HmmSpec::gaussian(k, 1).unwrap();
        let mut rng = host_rng(3, 0, Purpose::Simulate);
        let truth = io::random_params(&spec, &mut rng);
        let (d, _) = io::simulate(&spec, &truth, seqs, steps, &mut rng);
        let data = DataBatch::new(spec.data_columns(), &[d]).unwrap();
        group.bench_function(BenchmarkId::new("cpu", k), |b| {
            b.iter(|| em::estep_cpu(&spec, &truth, &data, 0))
        });
        if let Some(ctx) = &gpu {
            let e = GpuEstep::new(ctx.clone(), &spec, &data, 1).unwrap();
            let prm = vec![truth.clone()];
            group.bench_function(BenchmarkId::new("gpu", k), |b| {
                b.iter(|| e.run(&prm).unwrap())
            });
        }
        group.finish();
    }
}

fn hmc_density(c: &mut Criterion) {
    let spec = HmmSpec::gaussian(3, 1).unwrap();
    let truth = io::tutorial_params(&spec).unwrap();
    let mut rng = host_rng(1, 0, Purpose::Simulate);
    let (d, _) = io::simulate(&spec, &truth, 3, 200, &mut rng);
    let data = Arc::new(DataBatch::new(spec.data_columns(), &[d]).unwrap());
    let model = Hmm::new(spec, HmmPriors::default()).unwrap();
    let theta0 = model.theta(&truth).unwrap();
    let mut group = c.benchmark_group("hmm_logp_grad/tutorial_3x200");
    group.sample_size(10);
    for chains in [1usize, 64] {
        let dim = theta0.len();
        let theta: Vec<f64> = (0..chains).flat_map(|_| theta0.iter().copied()).collect();
        let (mut lp, mut g) = (vec![0.0; chains], vec![0.0; chains * dim]);
        let mut cpu = CpuEvaluator::new(Arc::new(model.clone()), data.clone(), chains).unwrap();
        group.throughput(Throughput::Elements(chains as u64));
        group.bench_function(BenchmarkId::new("cpu", chains), |b| {
            b.iter(|| cpu.eval(&theta, &mut lp, &mut g).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, estep, hmc_density);
criterion_main!(benches);
