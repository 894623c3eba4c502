//! GPU against CPU: the Philox twin bit for bit, the shared struct layout, and the batch log
//! density + gradient of every family on random parameters and data (relative error in the
//! norm), from one point to 100 000 per dataset, ragged batches, extreme points.
//! Without an adapter these tests skip loudly (or fail under GPSAMP_REQUIRE_GPU=1).

mod common;

use std::sync::Arc;

use common::{arc, data_for, families, gpu, positions, rel_norm};
use gpsamp::backend::gpu::{EvalParams, GpuEvaluator};
use gpsamp::backend::{CpuEvaluator, Evaluator};
use gpsamp::rng::{box_muller, philox4x32_10, u32_to_uniform, Purpose, Stream};
use gpsamp::{Likelihood, MixGlm, Priors};

/// Binds `buffers` in order, runs `groups` workgroups of `pipe` once and waits.
fn dispatch_once(
    ctx: &gpsamp::backend::GpuContext,
    pipe: &wgpu::ComputePipeline,
    layout: &wgpu::BindGroupLayout,
    buffers: &[&wgpu::Buffer],
    groups: u32,
) {
    let bg = ctx.bind_group("test", layout, buffers).unwrap();
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(pipe);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(groups, 1, 1);
    }
    ctx.queue.submit([enc.finish()]);
}

fn run_philox(ctx: &gpsamp::backend::GpuContext, items: &[([u32; 4], [u32; 2])]) -> Vec<u32> {
    let mut input = Vec::new();
    for (c, k) in items {
        input.extend_from_slice(c);
        input.extend_from_slice(k);
        input.extend_from_slice(&[0, 0]);
    }
    let src = gpsamp::shader::philox_test();
    let layout = ctx.layout_for("philox_test", &src).unwrap();
    let pipe = ctx.pipeline("philox_test", &src, &layout).unwrap();
    let inb = ctx.storage_init("in", &input, false).unwrap();
    let size = (items.len() * 6 * 4) as u64;
    let outb = ctx.storage("out", size, true).unwrap();
    let staging = ctx.staging("staging", size).unwrap();
    dispatch_once(
        ctx,
        &pipe,
        &layout,
        &[&inb, &outb],
        (items.len() as u32).div_ceil(64),
    );
    ctx.read_back(&outb, &staging, size).unwrap()
}

#[test]
fn philox_is_bit_identical_on_gpu() {
    let Some(ctx) = gpu() else { return };
    // Random123 known answers.
    let kat = [
        (
            [0u32; 4],
            [0u32; 2],
            [0x6627_e8d5u32, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
        ),
        (
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
        ),
        (
            [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
            [0xa409_3822, 0x299f_31d0],
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
        ),
    ];
    let items: Vec<_> = kat.iter().map(|(c, k, _)| (*c, *k)).collect();
    let out = run_philox(&ctx, &items);
    for (i, (_, _, want)) in kat.iter().enumerate() {
        assert_eq!(&out[i * 6..i * 6 + 4], want, "known answer {i}");
    }
    // A stream as the samplers will use it: 4096 blocks, all words equal, uniforms equal
    // bit for bit, normals to f32 rounding.
    let s = Stream::new(0x1234_5678_9abc_def0, 17, 3, Purpose::Momentum);
    let key = [0x9abc_def0u32, 0x1234_5678];
    let items: Vec<_> = (0..4096u32)
        .map(|i| ([17, 3, Purpose::Momentum as u32, i], key))
        .collect();
    let out = run_philox(&ctx, &items);
    let mut worst: f64 = 0.0;
    for i in 0..4096u32 {
        let w = s.block(i);
        let o = &out[i as usize * 6..i as usize * 6 + 6];
        assert_eq!(&o[..4], &w, "block {i}");
        assert_eq!(philox4x32_10([17, 3, 0, i], key), w);
        assert_eq!(
            f64::from(f32::from_bits(o[4])),
            u32_to_uniform(w[0]),
            "uniform {i}"
        );
        let z = box_muller(u32_to_uniform(w[0]), u32_to_uniform(w[1]));
        worst = worst.max((f64::from(f32::from_bits(o[5])) - z).abs() / z.abs().max(1.0));
    }
    assert!(worst < 1e-5, "normals differ by {worst}");
}

#[test]
fn eval_params_layout_matches_wgsl() {
    assert_eq!(std::mem::size_of::<EvalParams>(), 32);
    assert_eq!(std::mem::offset_of!(EvalParams, n_chains), 0);
    assert_eq!(std::mem::offset_of!(EvalParams, chain_offset), 4);
    assert_eq!(std::mem::offset_of!(EvalParams, chains_per_dataset), 8);
    assert_eq!(std::mem::offset_of!(EvalParams, n_total), 12);
    assert_eq!(std::mem::offset_of!(EvalParams, groups_x), 16);
    let Some(ctx) = gpu() else { return };
    let p = EvalParams {
        n_chains: 11,
        chain_offset: 22,
        chains_per_dataset: 33,
        n_total: 44,
        groups_x: 55,
        ..Default::default()
    };
    let src = gpsamp::shader::LAYOUT_PROBE.source;
    let layout = ctx.layout_for("layout_probe", src).unwrap();
    let pipe = ctx.pipeline("layout_probe", src, &layout).unwrap();
    let ub = ctx.uniform("params", &p);
    let outb = ctx.storage("echo", 20, true).unwrap();
    let staging = ctx.staging("staging", 20).unwrap();
    dispatch_once(&ctx, &pipe, &layout, &[&ub, &outb], 1);
    let echo: Vec<u32> = ctx.read_back(&outb, &staging, 20).unwrap();
    assert_eq!(echo, vec![11, 22, 33, 44, 55]);
}

/// Evaluates on both backends and returns (relative logp error, relative gradient error).
fn compare(
    m: &MixGlm,
    sizes: &[usize],
    chains: usize,
    scale: f64,
    lanes: Option<u32>,
    seed: u64,
) -> (f64, f64) {
    let ctx = gpu().expect("checked by caller");
    let (data, truths) = data_for(m, sizes, seed);
    let data = Arc::new(data);
    let theta = positions(m, &truths, chains, scale, seed + 1);
    let n = sizes.len() * chains;
    let d = gpsamp::Model::dim(m);
    let (mut lc, mut gc) = (vec![0.0; n], vec![0.0; n * d]);
    let (mut lg, mut gg) = (vec![0.0; n], vec![0.0; n * d]);
    CpuEvaluator::new(arc(m), data.clone(), chains)
        .unwrap()
        .eval(&theta, &mut lc, &mut gc)
        .unwrap();
    let mut ge = GpuEvaluator::new(ctx, m, &data, chains, lanes).unwrap();
    ge.eval(&theta, &mut lg, &mut gg).unwrap();
    assert!(
        lg.iter().chain(&gg).all(|v| v.is_finite()),
        "{}: non-finite GPU output",
        gpsamp::Model::name(m)
    );
    (rel_norm(&lg, &lc), rel_norm(&gg, &gc))
}

#[test]
fn gpu_matches_cpu_for_every_family() {
    if gpu().is_none() {
        return;
    }
    for m in families() {
        for (sizes, chains, lanes) in [
            (vec![1usize], 3usize, None),
            (vec![100, 7, 1, 250], 5, None),
            (vec![1000], 64, Some(1)),
            (vec![1000, 999], 33, Some(16)),
            (vec![3000], 4, Some(64)),
        ] {
            let (el, eg) = compare(&m, &sizes, chains, 0.3, lanes, 7);
            let name = gpsamp::Model::name(&m);
            assert!(
                el <= 1e-4,
                "{name} {sizes:?} x {chains} lanes {lanes:?}: logp relative error {el:e}"
            );
            assert!(
                eg <= 1e-4,
                "{name} {sizes:?} x {chains} lanes {lanes:?}: gradient relative error {eg:e}"
            );
        }
    }
}

#[test]
fn gpu_matches_cpu_at_100k_points() {
    if gpu().is_none() {
        return;
    }
    for m in [
        MixGlm::mixreg(2, 1, Priors::default()).unwrap(),
        MixGlm::glm(Likelihood::Bernoulli, 2, Priors::default()).unwrap(),
        MixGlm::glm(Likelihood::Poisson, 1, Priors::default()).unwrap(),
    ] {
        let (el, eg) = compare(&m, &[100_000], 2, 0.1, None, 3);
        let name = gpsamp::Model::name(&m);
        assert!(
            el <= 1e-4 && eg <= 1e-4,
            "{name}: relative errors logp {el:e}, gradient {eg:e}"
        );
    }
}

#[test]
fn extreme_points_are_finite_on_the_gpu() {
    let Some(ctx) = gpu() else { return };
    for m in families() {
        let (data, truths) = data_for(&m, &[50], 4);
        let d = gpsamp::Model::dim(&m);
        let vals = [-800.0, -60.0, -30.0, 30.0, 60.0, 800.0, 1e6, -1e6];
        let mut theta = Vec::new();
        for &v in &vals {
            for i in 0..d {
                let mut th = truths[0].clone();
                th[i] = v;
                theta.extend(th);
            }
        }
        let n = vals.len() * d;
        let mut ge = GpuEvaluator::new(ctx.clone(), &m, &data, n, None).unwrap();
        let (mut lp, mut g) = (vec![0.0; n], vec![0.0; n * d]);
        ge.eval(&theta, &mut lp, &mut g).unwrap();
        assert!(
            lp.iter().all(|v| v.is_finite()),
            "{}: {lp:?}",
            gpsamp::Model::name(&m)
        );
        assert!(
            g.iter().all(|v| v.is_finite()),
            "{}",
            gpsamp::Model::name(&m)
        );
    }
}

#[test]
fn grid_spreads_large_dispatches() {
    let Some(ctx) = gpu() else { return };
    let max = ctx.limits.max_compute_workgroups_per_dimension;
    for groups in [1, 100, max, max + 1, 3 * max + 7] {
        let (x, y) = ctx.grid(groups);
        assert!(
            x <= max && x * y >= groups && x * (y - 1) < groups,
            "{groups}: {x} x {y}"
        );
    }
}
