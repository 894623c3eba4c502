//! Criterion bench of the Stan CPU kernel (the plan, f64): log density and gradient of the
//! tutorial's mixture-of-regressions program against the hand-written mixglm family on the
//! same data at 1 024 chains (the ratio), and of posteriordb's diamonds (5 000
//! rows, 24 predictors) at 16 chains, the CPU posterior test's slowest program.

use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gpsamp::backend::{Backend, Precision};
use gpsamp::stan::StanModel;
use gpsamp::{DataBatch, MixGlm, Model, Priors};

/// Evaluates `model` at random positions of `chains` chains, as the sampler's batches do.
fn bench_model(
    c: &mut Criterion,
    group: &str,
    name: &str,
    model: Arc<dyn Model>,
    data: Arc<DataBatch>,
    chains: usize,
) {
    let backend = Backend::Cpu(Precision::F64);
    let mut eval = backend.evaluator(model.clone(), data, chains).unwrap();
    let d = model.dim();
    let theta = gpsamp::tutorial::positions(5, chains * d);
    let (mut lp, mut g) = (vec![0.0; chains], vec![0.0; chains * d]);
    let mut group = c.benchmark_group(group);
    group.sample_size(10);
    group.throughput(Throughput::Elements(chains as u64));
    group.bench_function(name, |b| {
        b.iter(|| eval.eval(&theta, &mut lp, &mut g).unwrap())
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sim = gpsamp::tutorial::mixreg(0);
    let json = sim.stan_json(2);
    let batch = Arc::new(DataBatch::new(1, &[sim.data]).unwrap());
    let program = root.join("examples/stan/mixture.stan");
    let source = std::fs::read_to_string(&program).unwrap();
    let stan = StanModel::compile(&program, &source, Some((Path::new("tutorial"), &json))).unwrap();
    let placeholder = Arc::new(gpsamp::stan::placeholder_data());
    bench_model(
        c,
        "mixture_1024",
        "stan",
        Arc::new(stan),
        placeholder.clone(),
        1024,
    );
    let mixglm = MixGlm::mixreg(2, 1, Priors::default()).unwrap();
    bench_model(c, "mixture_1024", "mixglm", Arc::new(mixglm), batch, 1024);
    let dir = root.join("tests/fixtures/posteriordb/diamonds-diamonds");
    let diamonds =
        StanModel::from_files(&dir.join("model.stan"), Some(&dir.join("data.json"))).unwrap();
    bench_model(
        c,
        "diamonds_16",
        "stan",
        Arc::new(diamonds),
        placeholder,
        16,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
