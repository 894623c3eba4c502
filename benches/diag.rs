//! Criterion bench of the diagnostics of one parameter (`diag::summarize`: mean, sd, HDI,
//! bulk and tail ESS, R-hat, MCSE, nested R-hat) over many chains: the summary `gpsamp
//! sample` writes after its draws, which at thousands of chains costs as much as sampling.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gpsamp::diag;
use gpsamp::rng::{host_rng, Purpose};
use rand::RngExt;

fn bench(c: &mut Criterion) {
    let draws = 1000;
    let mut group = c.benchmark_group("summarize");
    group.sample_size(10);
    for chains in [64usize, 4096] {
        let mut rng = host_rng(3, 0, Purpose::Simulate);
        // AR(1) chains of draws rounded to f32, as draws.npy holds them.
        let x: Vec<Vec<f64>> = (0..chains)
            .map(|_| {
                let mut v = 0.0f64;
                (0..draws)
                    .map(|_| {
                        v = 0.5 * v + rng.random_range(-1.0..1.0);
                        f64::from(v as f32)
                    })
                    .collect()
            })
            .collect();
        group.throughput(Throughput::Elements((chains * draws) as u64));
        group.bench_function(format!("{chains}x{draws}"), |b| {
            b.iter(|| diag::summarize("x", &x, 4))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
