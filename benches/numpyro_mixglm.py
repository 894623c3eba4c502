"""NumPyro NUTS on the tutorial's mixture of two regressions: time to a reliable posterior.

The comparison `gpsamp bench` and the README quote: wall time from a cold start (this
process's first line, so importing JAX and compiling count) until the pooled draws of every
parameter reach a bulk ESS target with R-hat below 1.01, the same rule as
`gpsamp sample --target-ess` (classic R-hat, as gpsamp uses for fewer than 64 chains).
NumPyro samples in chunks after its warmup and stops at the first chunk that meets it.

The model is gpsamp's `mixglm` with its default priors, written out:
weights ~ Dirichlet(1, 1), beta[k] ~ N(0, 1), alpha[k] ~ N(0, 1), sigma[k] ~ HalfNormal(1),
y ~ sum_k weights[k] N(alpha[k] + beta[k] x, sigma[k]). Chains are relabelled by their
mean slope (each chain's labels fixed to one order) before the diagnostics.

    python3 benches/numpyro_mixglm.py --write-data tut.csv          # the data (N = 1000)
    python3 benches/numpyro_mixglm.py --data tut.csv --chains 4 --json numpyro.json
    gpsamp sample --model mixglm --data tut.csv --x x0 --chains 1024 --target-ess 10000 --out fit

Only numpy, scipy, jax and numpyro are needed (the diagnostics are ArviZ's definitions,
written out here so that the script runs where ArviZ is not installed).
"""

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402


def write_data(path, seed=0):
    """The tutorial's generating process: 300 points of slope 0.8, intercept 1, sd 1 and
    700 of slope -0.5, intercept -1, sd 2, with x uniform on (1, 10)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for count, w, c, s in [(300, 0.8, 1.0, 1.0), (700, -0.5, -1.0, 2.0)]:
        x = rng.uniform(1.0, 10.0, count)
        xs.append(x)
        ys.append(w * x + c + rng.normal(0.0, s, count))
    x, y = np.concatenate(xs), np.concatenate(ys)
    if os.path.exists(path):
        sys.exit(f"{path} exists; not overwriting it")
    with open(path, "w") as f:
        f.write("x0,y\n")
        for a, b in zip(x, y):
            f.write(f"{float(a)!r},{float(b)!r}\n")


def read_data(path):
    d = np.genfromtxt(path, delimiter=",", names=True)
    return np.asarray(d["x0"], float), np.asarray(d["y"], float)


def rank_normalize(chains):
    from scipy.stats import norm, rankdata

    r = rankdata(chains, method="average").reshape(chains.shape)
    return norm.ppf((r - 0.375) / (chains.size + 0.25))


def split(chains):
    n = chains.shape[1] // 2
    return np.concatenate([chains[:, :n], chains[:, -n:]], axis=0)


def ess_basic(chains):
    """ArviZ's `_ess` (Geyer's initial monotone sequence over the chains' mean
    autocovariance)."""
    m, n = chains.shape
    x = chains - chains.mean(axis=1, keepdims=True)
    f = np.fft.rfft(x, n=2 * n, axis=1)
    acov = np.fft.irfft(f * np.conj(f), axis=1)[:, :n] / n
    chain_var = acov[:, 0] * n / (n - 1.0)
    mean_var = chain_var.mean()
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus += chains.mean(axis=1).var(ddof=1)
    rho = np.zeros(n)
    even, odd = 1.0, 1.0 - (mean_var - acov[:, 1].mean()) / var_plus
    rho[0], rho[1] = even, odd
    t = 1
    while t < n - 3 and even + odd > 0.0:
        even = 1.0 - (mean_var - acov[:, t + 1].mean()) / var_plus
        odd = 1.0 - (mean_var - acov[:, t + 2].mean()) / var_plus
        if even + odd >= 0:
            rho[t + 1], rho[t + 2] = even, odd
        t += 2
    max_t = t - 2
    if even > 0:
        rho[max_t + 1] = even
    t = 1
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = (rho[t - 1] + rho[t]) / 2.0
            rho[t + 2] = rho[t + 1]
        t += 2
    tau = -1.0 + 2.0 * rho[: max_t + 1].sum() + rho[max_t + 1 : max_t + 2].sum()
    tau = max(tau, 1.0 / np.log10(m * n))
    return m * n / tau


def rhat_basic(chains):
    m, n = chains.shape
    w = chains.var(axis=1, ddof=1).mean()
    b = n * chains.mean(axis=1).var(ddof=1)
    return np.sqrt(((n - 1) / n * w + b / n) / w)


def bulk_ess(chains):
    return ess_basic(rank_normalize(split(chains)))


def rhat(chains):
    s = split(chains)
    folded = np.abs(s - np.median(s))
    return max(rhat_basic(rank_normalize(s)), rhat_basic(rank_normalize(folded)))


def run_info(chains):
    """What ran: the sampler, NumPyro's and JAX's versions, the device, the chains."""
    import jax
    import numpyro

    return {
        "sampler": "numpyro NUTS",
        "numpyro": numpyro.__version__,
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "chains": chains,
    }


def emit(out, path):
    """Prints the result as JSON, and writes it to `path` when one is given."""
    print(json.dumps(out, indent=1))
    if path:
        with open(path, "w") as f:
            json.dump(out, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="CSV with columns x0,y")
    ap.add_argument("--write-data", help="write the tutorial-like dataset here and stop")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=500, help="draws per chain between checks")
    ap.add_argument("--max-draws", type=int, default=20000)
    ap.add_argument("--target-ess", type=float, default=10000)
    ap.add_argument("--platform", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the result here as JSON")
    a = ap.parse_args()
    if a.write_data:
        write_data(a.write_data)
        return
    if not a.data:
        ap.error("give --data (or --write-data)")

    import numpyro

    numpyro.set_platform("cuda" if a.platform == "gpu" else "cpu")
    if a.platform == "cpu":
        numpyro.set_host_device_count(a.chains)
    import jax
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    x, y = read_data(a.data)

    def model(x, y):
        w = numpyro.sample("weights", dist.Dirichlet(jnp.ones(2)))
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]))
        alpha = numpyro.sample("alpha", dist.Normal(0.0, 1.0).expand([2]))
        sigma = numpyro.sample("sigma", dist.HalfNormal(1.0).expand([2]))
        mu = alpha + beta * x[:, None]
        lp = jnp.log(w) + dist.Normal(mu, sigma).log_prob(y[:, None])
        numpyro.factor("y", jax.nn.logsumexp(lp, axis=1).sum())

    method = "parallel" if a.platform == "cpu" else "vectorized"
    mcmc = MCMC(
        NUTS(model),
        num_warmup=a.warmup,
        num_samples=a.chunk,
        num_chains=a.chains,
        chain_method=method,
        progress_bar=False,
    )
    key = jax.random.PRNGKey(a.seed)
    parts = []
    checks = []
    grads = 0
    first = True
    while True:
        if first:
            mcmc.run(key, x, y, extra_fields=("num_steps",))
            first = False
        else:
            mcmc.post_warmup_state = mcmc.last_state
            mcmc.run(mcmc.post_warmup_state.rng_key, x, y, extra_fields=("num_steps",))
        s = mcmc.get_samples(group_by_chain=True)
        grads += int(np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"]).sum())
        parts.append({k: np.asarray(v, float) for k, v in s.items()})
        draws = {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}
        # Each chain's labels in one order: by its mean slope.
        order = np.argsort(draws["beta"].mean(axis=1), axis=1)
        cols = []
        for k in ["weights", "beta", "alpha", "sigma"]:
            v = np.take_along_axis(draws[k], order[:, None, :], axis=2)
            cols.extend(v[:, :, i] for i in range(2))
        n = cols[0].shape[1]
        ess = min(bulk_ess(c) for c in cols)
        rh = max(rhat(c) for c in cols)
        now = time.perf_counter() - T0
        checks.append({"draws": int(n), "min_ess_bulk": float(ess), "max_rhat": float(rh), "seconds": now})
        print(f"{n} draws per chain: min bulk ESS {ess:.0f}, max R-hat {rh:.4f}, {now:.1f} s", file=sys.stderr)
        if (ess >= a.target_ess and rh < 1.01) or n >= a.max_draws:
            break
    out = {
        **run_info(a.chains),
        "chain_method": method,
        "warmup": a.warmup,
        "draws": checks[-1]["draws"],
        "target_ess": a.target_ess,
        "reached": bool(checks[-1]["min_ess_bulk"] >= a.target_ess and checks[-1]["max_rhat"] < 1.01),
        "seconds": checks[-1]["seconds"],
        "sampling_gradient_evals": grads,
        "checks": checks,
    }
    emit(out, a.json)


if __name__ == "__main__":
    main()
