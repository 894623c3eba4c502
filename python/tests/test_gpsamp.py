"""The Python package against the CLI and ArviZ: the same seed gives the CLI's draws and
study tables, ArviZ accepts the InferenceData, Ctrl-C stops a run within a second, bad input
raises ValueError naming the column or keyword.

The CLI binary is ``$GPSAMP_BIN``, else ``target/release/gpsamp`` of this checkout (built by
the README's test command before these tests run).
"""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gpsamp

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("GPSAMP_BIN", str(ROOT / "target" / "release" / "gpsamp"))


def cli(*args):
    r = subprocess.run([BIN, *args, "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    """The tutorial's mixture of two regressions (N = 1 000), as a DataFrame and a CSV."""
    rng = np.random.default_rng(7)
    n = 1000
    x = rng.uniform(0, 10, n)
    z = rng.random(n) < 0.3
    y = np.where(z, 0.8 * x + 1.0 + rng.normal(0, 1, n), -0.5 * x - 1.0 + rng.normal(0, 2, n))
    df = pd.DataFrame({"x": x, "y": y})
    path = tmp_path_factory.mktemp("data") / "tut.csv"
    df.to_csv(path, index=False)
    return df, path


def test_sample_gives_the_cli_draws_and_arviz_accepts_them(tutorial, tmp_path):
    import arviz as az

    df, path = tutorial
    idata = gpsamp.sample("mixglm", df, x=["x"], y="y", components=2, chains=4, draws=500,
                          seed=3, backend="cpu", progress=False, y_rep=True)
    out = tmp_path / "cli"
    cli("sample", "--model", "mixglm", "--components", "2", "--data", str(path), "--x", "x",
        "--chains", "4", "--draws", "500", "--seed", "3", "--backend", "cpu", "--y-rep",
        "--out", str(out))
    draws = np.load(out / "draws.npy")
    post = idata.posterior
    assert post.sizes["chain"] == 4 and post.sizes["draw"] == 500
    np.testing.assert_array_equal(post["weights"].values[..., 1], draws[..., 1])
    np.testing.assert_array_equal(post["beta"].values[..., 1, 0], draws[..., 3])
    np.testing.assert_array_equal(post["sigma"].values[..., 0], draws[..., 6])
    stats = np.load(out / "sample_stats.npy")
    np.testing.assert_array_equal(idata.sample_stats["lp"].values, stats[..., 0])
    for name in ["lp", "acceptance_rate", "diverging", "energy", "n_steps", "step_size"]:
        assert name in idata.sample_stats
    assert idata.sample_stats["diverging"].dtype == bool

    summary = az.summary(idata, round_to="none")
    cli_summary = pd.read_csv(out / "summary.csv")
    # ArviZ's summary of our draws agrees with the CLI's summary (its own ArviZ twin); ArviZ
    # sums the f32 draws in f32, and folds and ranks them in f32 for the tail R-hat, which
    # moves R-hat in its fifth digit. On the same draws in f64 ArviZ's R-hat is the CLI's.
    for col, rtol in [("mean", 1e-5), ("sd", 1e-4), ("ess_bulk", 1e-3), ("r_hat", 1e-4)]:
        np.testing.assert_allclose(summary[col].values, cli_summary[col].values, rtol=rtol)
    rhat64 = [float(az.rhat(draws[..., k].astype(np.float64))) for k in range(draws.shape[2])]
    np.testing.assert_allclose(rhat64, cli_summary["r_hat"].values, rtol=1e-12)
    assert (summary["r_hat"] < 1.01).all()
    axes = az.plot_trace(idata, var_names=["weights", "sigma"])
    assert axes.shape[0] == 2
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo) and (loo.pareto_k.values < 0.7).mean() > 0.99
    # The pointwise log likelihood sums to the log likelihood part of lp: check one draw
    # against the model directly (Gaussian components, weights, constants included).
    w = post["weights"].values[0, 0]
    b = post["beta"].values[0, 0, :, 0]
    a = post["alpha"].values[0, 0]
    s = post["sigma"].values[0, 0]
    dens = sum(w[k] * np.exp(-0.5 * ((df.y - a[k] - b[k] * df.x) / s[k]) ** 2)
               / (s[k] * np.sqrt(2 * np.pi)) for k in range(2))
    ll = idata.log_likelihood["y"].values[0, 0]
    np.testing.assert_allclose(ll, np.log(dens), rtol=1e-4, atol=1e-4)
    # The posterior predictive group is the CLI's y_rep.npy, and ArviZ draws its PPC.
    np.testing.assert_array_equal(idata.posterior_predictive["y"].values,
                                  np.load(out / "y_rep.npy"))
    az.plot_ppc(idata, num_pp_samples=20)


def test_groups_become_a_dataset_dimension(tutorial):
    df, _ = tutorial
    d = df.assign(g=np.where(np.arange(len(df)) < 500, "a", "b"))
    idata = gpsamp.sample("glm", d, x=["x"], y="y", group="g", chains=4, draws=200, seed=1,
                          backend="cpu", progress=False)
    assert list(idata.posterior["dataset"].values) == ["a", "b"]
    assert idata.posterior["beta"].dims[:3] == ("chain", "draw", "dataset")
    assert idata.log_likelihood["y"].shape == (4, 200, 2, 500)


def test_sbc_tables_are_the_cli_csvs(tmp_path):
    args = dict(datasets=12, n=40, chains_per_dataset=4, warmup=150, draws=100, seed=5)
    res = gpsamp.sbc("glm", backend="cpu", progress=False, out=tmp_path / "py", **args)
    out = tmp_path / "cli"
    cli("sbc", "--model", "glm", "--datasets", "12", "--n", "40", "--chains-per-dataset", "4",
        "--warmup", "150", "--draws", "100", "--seed", "5", "--backend", "cpu", "--out", str(out))
    pd.testing.assert_frame_equal(res.datasets, pd.read_csv(out / "datasets.csv"))
    pd.testing.assert_frame_equal(res.summary, pd.read_csv(out / "summary.csv"))
    assert res.datasets["dataset"].nunique() == 12 and isinstance(res.calibrated, bool)
    # metric="dense" is the CLI's --metric dense: the same records, other than the diagonal's.
    dense = gpsamp.sbc("glm", backend="cpu", progress=False, metric="dense", **args)
    cli("sbc", "--model", "glm", "--datasets", "12", "--n", "40", "--chains-per-dataset", "4",
        "--warmup", "150", "--draws", "100", "--seed", "5", "--backend", "cpu", "--metric",
        "dense", "--out", str(tmp_path / "dense"))
    pd.testing.assert_frame_equal(dense.datasets, pd.read_csv(tmp_path / "dense" / "datasets.csv"))
    assert not dense.datasets["mean"].equals(res.datasets["mean"])
    with pytest.raises(ValueError, match="metric"):
        gpsamp.sbc("glm", datasets=2, metric="full", progress=False)


def test_grid_study_is_the_cli_study(tmp_path):
    grid = pd.DataFrame({"beta[0]": [0.0, 0.5], "n": [30, 60]})
    res = gpsamp.study("glm", grid, replicates=6, draws=100, seed=2, backend="cpu",
                       progress=False)
    grid.to_csv(tmp_path / "grid.csv", index=False)
    out = tmp_path / "cli"
    cli("study", "--model", "glm", "--grid", str(tmp_path / "grid.csv"), "--replicates", "6",
        "--draws", "100", "--seed", "2", "--backend", "cpu", "--out", str(out))
    pd.testing.assert_frame_equal(res.cells, pd.read_csv(out / "cells.csv"))
    pd.testing.assert_frame_equal(res.datasets, pd.read_csv(out / "datasets.csv"))
    assert list(res.cells["n"].unique()) == [30, 60]
    with pytest.raises(ValueError, match="beta\\[1\\] is not a parameter"):
        gpsamp.study("glm", {"beta[1]": [1.0]}, replicates=2, backend="cpu", progress=False)
    with pytest.raises(ValueError, match="whole number"):
        gpsamp.study("glm", {"n": [2.5]}, replicates=2, backend="cpu", progress=False)
    # The CLI's bound too: no study of 10^12 points per dataset.
    with pytest.raises(ValueError, match="whole number"):
        gpsamp.study("glm", {"n": [1e12]}, replicates=2, backend="cpu", progress=False)


def test_ctrl_c_interrupts_sampling_within_a_second(tutorial):
    df, _ = tutorial
    sent = []

    def interrupt():
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    # Python's own Ctrl-C handler, whatever this process inherited: a shell that starts a
    # job in the background without job control ignores SIGINT in it, and Python then
    # installs no handler, so the signal would be dropped and the sampling run to its end.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            gpsamp.sample("mixglm", df, x=["x"], y="y", chains=256, warmup=100000,
                          draws=100000, backend="cpu", progress=False, log_likelihood=False)
    finally:
        stopped = time.monotonic()
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert sent and stopped - sent[0] < 1.0, f"stopped {stopped - sent[0]:.2f} s after Ctrl-C"


def test_bad_input_raises_value_error_naming_the_column_or_keyword(tutorial):
    df, _ = tutorial
    bad = df.copy()
    bad.loc[17, "y"] = np.nan
    with pytest.raises(ValueError, match=r'column "y", row 17: NaN is not a finite number'):
        gpsamp.sample("glm", bad, x=["x"], y="y", progress=False)
    with pytest.raises(ValueError, match=r"column 'z' not found; the data has: x, y"):
        gpsamp.sample("glm", df, x=["z"], y="y", progress=False)
    words = df.assign(y=df.y.astype(str))
    words.loc[3, "y"] = "abc"
    with pytest.raises(ValueError, match=r'column "y", row 3: "abc" is not a number'):
        gpsamp.sample("glm", words, x=["x"], y="y", progress=False)
    binary = df.assign(y=(df.y > 0).astype(float) * 2)
    with pytest.raises(ValueError, match=r'column "y": value 2 .* bernoulli'):
        gpsamp.sample("glm", binary, x=["x"], y="y", family="bernoulli", progress=False)
    with pytest.raises(ValueError, match="compnents"):
        gpsamp.sample("mixglm", df, x=["x"], y="y", compnents=3, progress=False)
    with pytest.raises(ValueError, match="prior_sigma"):
        gpsamp.sample("glm", df, x=["x"], y="y", priors={"sigma": "halfnormal(-1)"},
                      progress=False)
    with pytest.raises(ValueError, match="chains"):
        gpsamp.sample("glm", df, x=["x"], y="y", chains=0, progress=False)


def test_out_keeps_the_folder_and_never_replaces_a_foreign_one(tutorial, tmp_path):
    df, _ = tutorial
    mine = tmp_path / "fit"
    gpsamp.sample("glm", df, x=["x"], y="y", draws=50, out=mine, progress=False)
    assert (mine / "draws.npy").exists() and (mine / "meta.json").exists()
    # An earlier output of the same command is replaced; a folder gpsamp did not write is not.
    gpsamp.sample("glm", df, x=["x"], y="y", draws=60, out=mine, progress=False)
    assert np.load(mine / "draws.npy").shape[1] == 60
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match="out"):
        gpsamp.sample("glm", df, x=["x"], y="y", draws=50, out=foreign, progress=False)
    assert (foreign / "thesis.tex").read_text() == "mine"


def test_devices_lists_adapters():
    devs = gpsamp.devices()
    assert isinstance(devs, list)
    assert all("name" in d and "backend" in d for d in devs)


def test_em_gives_the_cli_fit_and_hmm_sampling_runs(tmp_path):
    sim = tmp_path / "hmm.csv"
    subprocess.run([BIN, "simulate", "--model", "hmm", "--states", "3", "--sequences", "4",
                    "--steps", "150", "--seed", "2", "--out", str(sim)], check=True,
                   capture_output=True)
    df = pd.read_csv(sim)
    fit = gpsamp.em("hmm", df, y="y", states=3, seed=1, backend="cpu", progress=False)
    out = tmp_path / "cli"
    cli("em", "--model", "hmm", "--states", "3", "--data", str(sim), "--seed", "1",
        "--backend", "cpu", "--out", str(out))
    cli_params = __import__("json").loads((out / "params.json").read_text())["datasets"]
    assert fit.params[0]["means"] == cli_params[0]["means"]
    assert fit.log_likelihood[0] == cli_params[0]["log_likelihood"]
    pd.testing.assert_frame_equal(fit.states, pd.read_csv(out / "states.csv"))
    np.testing.assert_array_equal(fit.posteriors, np.load(out / "posteriors.npy"))
    # The Viterbi path recovers the simulated states (states sorted by mean, as simulated).
    assert (fit.states["state"].values == df["state"].values).mean() > 0.9
    # HMC of the same HMM from the same table, chains started around the EM fit.
    idata = gpsamp.sample("hmm", df, y="y", states=3, chains=4, warmup=200, draws=200,
                          backend="cpu", progress=False)
    means = idata.posterior["mean"].mean(("chain", "draw")).values
    np.testing.assert_allclose(np.sort(means), np.sort(fit.params[0]["means"]), atol=0.3)


def test_fit_warnings_are_gpsamp_warnings(tutorial):
    df, _ = tutorial
    # 4 chains x 20 draws cannot reach a bulk ESS of 100.
    with pytest.warns(gpsamp.GpsampWarning, match="bulk ESS"):
        gpsamp.sample("glm", df, x=["x"], y="y", draws=20, progress=False)


def test_mdn_train_and_predict_match_the_cli(tmp_path):
    import json

    net = gpsamp.mdn.train("beta-binomial", sims=20000, epochs=3, seed=2, backend="cpu",
                           progress=False)
    out = tmp_path / "cli"
    cli("mdn", "train", "--simulator", "beta-binomial", "--sims", "20000", "--epochs", "3",
        "--seed", "2", "--backend", "cpu", "--out", str(out))
    mine = json.loads((net.folder / "model.json").read_text())
    assert mine["params"] == json.loads((out / "model.json").read_text())["params"]
    assert len(net.history) == 3 and set(net.accuracy.columns) >= {"y", "tv", "kl"}
    post = net.predict([10, 30, 60])
    r = subprocess.run([BIN, "mdn", "predict", "--model", str(out), "--y", "10,30,60", "--json"],
                       capture_output=True, text=True, check=True)
    ref = json.loads(r.stdout)
    np.testing.assert_allclose(post.weights, [m["weights"] for m in ref], rtol=1e-12)
    np.testing.assert_allclose(post.means[..., 0], [m["means"] for m in ref], rtol=1e-12)
    # The Beta(2, 5) prior with y of 100 trials: posterior mean (2 + y) / 107.
    exact = (2 + np.array([10, 30, 60])) / 107
    np.testing.assert_allclose(post.mean()[:, 0], exact, atol=0.03)
    grid = np.linspace(0.001, 0.999, 999)
    mass = post.pdf(grid).sum(axis=1) * (grid[1] - grid[0])
    np.testing.assert_allclose(mass, 1, atol=0.02)
    with pytest.raises(ValueError, match="y: 101"):
        net.predict([101])


def test_the_gil_is_released_while_sampling(tutorial):
    df, _ = tutorial
    ticks = []
    done = threading.Event()

    def count():
        while not done.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    th = threading.Thread(target=count)
    th.start()
    t0 = time.monotonic()
    gpsamp.sample("mixglm", df, x=["x"], y="y", chains=64, draws=300, backend="cpu",
                  progress=False, log_likelihood=False)
    elapsed = time.monotonic() - t0
    done.set()
    th.join()
    # Another Python thread kept running: at least a third of the 10 ms ticks it could make.
    during = [t for t in ticks if t0 <= t <= t0 + elapsed]
    assert elapsed > 0.3 and len(during) > elapsed / 0.01 / 3, (elapsed, len(during))


def test_dense_metric_is_the_cli_run(tmp_path):
    """metric="dense" gives the CLI's --metric dense draws, and its adapted covariance of two
    collinear slopes is in the folder's meta.json; a metric that is neither is refused."""
    rng = np.random.default_rng(3)
    n = 200
    x1 = rng.normal(0, 1, n)
    x2 = x1 + rng.normal(0, 0.05, n)
    df = pd.DataFrame({"x1": x1, "x2": x2, "y": x1 + x2 + rng.normal(0, 1, n)})
    path = tmp_path / "col.csv"
    df.to_csv(path, index=False)
    idata = gpsamp.sample("glm", df, x=["x1", "x2"], y="y", chains=8, warmup=300, draws=200,
                          seed=4, metric="dense", backend="cpu", out=tmp_path / "py",
                          progress=False)
    cli("sample", "--model", "glm", "--data", str(path), "--x", "x1", "--x", "x2", "--chains",
        "8", "--warmup", "300", "--draws", "200", "--seed", "4", "--metric", "dense",
        "--backend", "cpu", "--no-plots", "--out", str(tmp_path / "cli"))
    a = np.load(tmp_path / "py" / "draws.npy")
    b = np.load(tmp_path / "cli" / "draws.npy")
    np.testing.assert_array_equal(a, b)
    meta = __import__("json").loads((tmp_path / "py" / "meta.json").read_text())
    dense = np.array(meta["report"]["datasets"][0]["inv_mass_dense"])
    names = meta["param_names"]
    i, j = names.index("beta[0]"), names.index("beta[1]")
    corr = dense[i, j] / np.sqrt(dense[i, i] * dense[j, j])
    assert corr < -0.9, corr
    assert "posterior" in idata.groups()
    with pytest.raises(ValueError, match="metric"):
        gpsamp.sample("glm", df, x=["x1", "x2"], y="y", metric="full", progress=False)
