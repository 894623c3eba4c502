"""NumPyro NUTS on posteriordb's eight schools (non-centred): the same case as
`gpsamp bench`'s eight-schools row and `gpsamp sample --stan`.

Wall time from a cold start (this process's first line, so importing JAX and compiling
count) through 1 000 warmup + 1 000 draws on every chain, and the smallest bulk ESS (ArviZ's
definition, as gpsamp's summary) over theta, mu and tau, so that the two samplers compare
as ESS per second of the whole run:

    python3 benches/numpyro_eight_schools.py --platform gpu --chains 4096 --json ns.json
    gpsamp sample --stan tests/fixtures/posteriordb/eight_schools-eight_schools_noncentered/model.stan \
        --data tests/fixtures/posteriordb/eight_schools-eight_schools_noncentered/data.json \
        --chains 4096 --backend gpu --out fit

The model is the Stan program's, written out in NumPyro (theta = mu + tau * theta_trans).
"""

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpyro_mixglm import bulk_ess, emit, rhat, run_info  # noqa: E402

DATA = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "tests/fixtures/posteriordb/eight_schools-eight_schools_noncentered/data.json",
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--platform", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the result here as JSON")
    a = ap.parse_args()

    import numpyro

    numpyro.set_platform("cuda" if a.platform == "gpu" else "cpu")
    import jax
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    with open(DATA) as f:
        d = json.load(f)
    y, sigma = jnp.asarray(d["y"], float), jnp.asarray(d["sigma"], float)

    def model(y, sigma):
        theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0).expand([len(d["y"])]))
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        theta = numpyro.deterministic("theta", theta_trans * tau + mu)
        numpyro.sample("y", dist.Normal(theta, sigma), obs=y)

    mcmc = MCMC(
        NUTS(model),
        num_warmup=a.warmup,
        num_samples=a.draws,
        num_chains=a.chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(a.seed), y, sigma, extra_fields=("num_steps",))
    s = mcmc.get_samples(group_by_chain=True)
    grads = int(np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"]).sum())
    seconds = time.perf_counter() - T0
    cols = {"mu": np.asarray(s["mu"], float), "tau": np.asarray(s["tau"], float)}
    theta = np.asarray(s["theta"], float)
    for j in range(theta.shape[2]):
        cols[f"theta[{j + 1}]"] = theta[:, :, j]
    ess = {k: float(bulk_ess(v)) for k, v in cols.items()}
    out = {
        **run_info(a.chains),
        "warmup": a.warmup,
        "draws": a.draws,
        "seconds": seconds,
        "min_ess_bulk": min(ess.values()),
        "max_rhat": max(float(rhat(v)) for v in cols.values()),
        "min_ess_bulk_per_sec": min(ess.values()) / seconds,
        "sampling_gradient_evals": grads,
        "mean": {k: float(v.mean()) for k, v in cols.items()},
    }
    emit(out, a.json)


if __name__ == "__main__":
    main()
