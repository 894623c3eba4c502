"""gpsamp from Python: ensemble HMC for thousands of chains or datasets at once, results as
ArviZ InferenceData.

The Rust library does the work (the same workflow functions the ``gpsamp`` command runs, so
the same seed gives the same draws as the CLI); this package hands it your columns and turns
the folder it writes into ``arviz.InferenceData`` and pandas DataFrames.

    >>> import gpsamp, pandas as pd
    >>> df = pd.read_csv("tut.csv")
    >>> idata = gpsamp.sample("mixglm", df, x=["x0"], y="y", components=2, chains=1024)
    >>> az.summary(idata); az.loo(idata)

Model settings are keywords named as the CLI's model flags without dashes
(``components=2``, ``family="bernoulli"``, ``prior_sigma="halfnormal(2)"``, ``states=3``), or
``priors={"coef": "normal(0,2)", "intercept": ..., "sigma": ..., "weights": 1.0}``.
Bad data or settings raise ``ValueError`` naming the column and row, or the keyword; Ctrl-C
stops a run and raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import _gpsamp

__version__ = _gpsamp.__version__
__all__ = ["sample", "sbc", "study", "em", "mdn", "devices", "SbcResult", "StudyResult",
           "EmResult", "GpsampWarning", "__version__"]

# A log likelihood array larger than this (chains x draws x observations) is not computed
# unless asked for with log_likelihood=True: 50 million f32 values, 200 MB.
LOG_LIK_AUTO_LIMIT = 50_000_000

_PRIOR_KEYS = {"coef": "prior_coef", "intercept": "prior_intercept", "sigma": "prior_sigma",
               "weights": "prior_weights", "sigma_x": "prior_sigma_x",
               "sigma_w": "prior_sigma_w", "sigma_obs": "prior_sigma_obs"}


class GpsampWarning(UserWarning):
    """A warning about a fit: divergences, stuck chains, R-hat above 1.01, low ESS."""


def _names(data: Any) -> list[str]:
    if hasattr(data, "columns"):
        return [str(c) for c in data.columns]
    if isinstance(data, Mapping):
        return [str(c) for c in data.keys()]
    raise TypeError(
        f"data: expected a pandas DataFrame or a dict of columns, got {type(data).__name__}")


def _columns(data: Any, numeric: Sequence[str], text: Sequence[str]) -> dict[str, Any]:
    """The columns the model reads: numbers as contiguous float64 arrays (the Rust side
    borrows them without a copy), keys (group, sequence id) as text."""
    have = _names(data)
    out: dict[str, Any] = {}
    for name in list(numeric) + list(text):
        if name not in have:
            raise ValueError(f"column {name!r} not found; the data has: {', '.join(have)}")
        v = np.asarray(data[name])
        if v.ndim != 1:
            raise ValueError(f"column {name!r}: expected one value per row, got shape {v.shape}")
        if name in text or v.dtype.kind not in "biuf":
            out[name] = [str(s) for s in v.tolist()]
        else:
            out[name] = np.ascontiguousarray(v, dtype=np.float64)
    return out


def _model_json(model: str, priors: Mapping[str, Any] | None, settings: dict[str, Any]) -> str:
    spec = {"model": model, **settings}
    for k, v in (priors or {}).items():
        if k not in _PRIOR_KEYS:
            raise ValueError(f"priors: unknown key {k!r}; known: {', '.join(_PRIOR_KEYS)}")
        spec[_PRIOR_KEYS[k]] = v
    return json.dumps(spec)


class _Progress:
    """A progress bar per phase (tqdm.auto: a terminal bar, or a widget in Jupyter)."""

    def __init__(self, enabled: bool, unit: str = "it"):
        self.bar = None
        self.phase = None
        self.unit = unit
        self.tqdm = None
        if enabled:
            try:
                from tqdm.auto import tqdm
                self.tqdm = tqdm
            except ImportError:
                pass

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.tqdm is None:
            return
        if phase != self.phase:
            self.close()
            self.phase = phase
            self.bar = self.tqdm(total=total, desc=phase, unit=self.unit, leave=False)
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @property
    def callback(self):
        return self if self.tqdm is not None else None


def _split_name(name: str) -> tuple[str, tuple[int, ...]]:
    m = re.fullmatch(r"(.+?)\[([0-9, ]+)\]", name)
    if not m:
        return name, ()
    return m.group(1), tuple(int(i) for i in m.group(2).split(","))


def _variables(names: Sequence[str], values: np.ndarray) -> dict[str, np.ndarray]:
    """`values[..., k]` for parameter k named like ``beta[1,0]``, grouped into one array per
    variable with its index dimensions last."""
    groups: dict[str, list[tuple[tuple[int, ...], int]]] = {}
    for k, n in enumerate(names):
        base, idx = _split_name(n)
        groups.setdefault(base, []).append((idx, k))
    out = {}
    for base, items in groups.items():
        if items[0][0] == ():
            out[base] = values[..., items[0][1]]
            continue
        shape = tuple(max(i[d] for i, _ in items) + 1 for d in range(len(items[0][0])))
        arr = np.full(values.shape[:-1] + shape, np.nan, dtype=values.dtype)
        for idx, k in items:
            arr[(Ellipsis,) + idx] = values[..., k]
        out[base] = arr
    return out


def _by_dataset(a: np.ndarray, datasets: int, chains: int) -> np.ndarray:
    """(datasets x chains, draws, ...) -> (chains, draws, dataset, ...) for several
    datasets; unchanged for one."""
    if datasets == 1:
        return a
    a = a.reshape((datasets, chains) + a.shape[1:])
    return np.moveaxis(a, 0, 2)


def _load_sample(folder: Path, result: dict, observed: dict[str, np.ndarray]):
    import arviz as az

    meta = result["meta"]
    names = meta["param_names"]
    B, C = meta["datasets"], meta["chains_per_dataset"]
    draws = np.load(folder / "draws.npy")
    stats = np.load(folder / "sample_stats.npy")
    coords: dict[str, Any] = {}
    dims: dict[str, list[str]] = {}
    lead = []
    if B > 1:
        coords["dataset"] = meta["groups"]
        lead = ["dataset"]
    posterior = {k: _by_dataset(v, B, C) for k, v in _variables(names, draws).items()}
    for k, v in posterior.items():
        extra = v.ndim - 2 - len(lead)
        dims[k] = lead + [f"{k}_dim_{d}" for d in range(extra)]
    cols = meta["sample_stats_columns"]
    ss = {c: _by_dataset(stats[..., i], B, C) for i, c in enumerate(cols)}
    ss["diverging"] = ss["diverging"] > 0.5
    ss["n_steps"] = ss["n_steps"].astype(np.int64)
    steps = np.array([d["step_size"] for d in meta["report"]["datasets"]])
    ss["step_size"] = (np.broadcast_to(steps, ss["lp"].shape) if B > 1
                       else np.full(ss["lp"].shape, steps[0]))
    for k in ss:
        dims[k] = list(lead)
    groups: dict[str, Any] = {"posterior": posterior, "sample_stats": ss}
    y_name = next(iter(observed)) if observed else None
    if (folder / "log_lik.npy").exists() and y_name is not None:
        ll = _by_dataset(np.load(folder / "log_lik.npy"), B, C)
        groups["log_likelihood"] = {y_name: ll}
        dims[y_name] = lead + ["obs"]
        if B == 1:
            groups["observed_data"] = observed
    elif B == 1 and observed:
        groups["observed_data"] = observed
        dims[y_name] = ["obs"]
    if (folder / "y_rep.npy").exists() and y_name is not None:
        groups["posterior_predictive"] = {y_name: _by_dataset(np.load(folder / "y_rep.npy"), B, C)}
        dims[y_name] = lead + ["obs"]
    attrs = {"gpsamp_version": meta["gpsamp_version"], "model": meta["model"],
             "seed": meta["seed"], "backend": meta["backend"],
             "warmup_iterations": meta["report"]["warmup_iterations"],
             "draws_completed": meta["draws_completed"]}
    with warnings.catch_warnings():
        # An ensemble has more chains than draws on purpose (--target-ess).
        warnings.filterwarnings("ignore", message="More chains")
        return az.from_dict(**groups, coords=coords, dims=dims, attrs=attrs)


def _warn(result: dict, quiet: bool) -> None:
    for w in result.get("warnings", []):
        warnings.warn(w, GpsampWarning, stacklevel=3)
    if not quiet:
        for n in result.get("notes", []):
            print(f"gpsamp: {n}", file=sys.stderr)


def sample(model: str = "glm", data: Any = None, *, x: Sequence[str] | None = None,
           y: str | Sequence[str] = "y", group: str | None = None, seq: str = "seq",
           t: str = "t", chains: int = 4, warmup: int | None = None, draws: int = 1000,
           thin: int = 1, seed: int = 0, target_accept: float | None = None,
           target_ess: float | None = None, superchain_size: int | None = None,
           init_steps: int = 200, max_steps: int = 1024, init: str = "auto",
           metric: str = "diag", keep: Sequence[str] | None = None, backend: str = "auto",
           precision: str = "f32", log_likelihood: bool | str = "auto", out: str | os.PathLike | None = None,
           progress: bool = True, plots: bool = False, y_rep: bool = False,
           priors: Mapping[str, Any] | None = None, **model_settings: Any):
    """Ensemble HMC of a built-in family on your data; returns ``arviz.InferenceData``.

    ``model``: glm, gmm, mixglm, eiv, hmm or glmhmm; further model settings as keywords
    (``components``, ``family``, ``sigma_fixed``, ``prior_*``, ``w``, ``states``,
    ``emission``, ``stickiness``; see ``gpsamp sample --help``), or ``priors=``.
    ``data``: a DataFrame or dict of columns; ``x`` the input columns, ``y`` the response
    (several for a multivariate Gaussian HMM), ``group`` a column whose values split the rows
    into datasets fitted together (a ``dataset`` dimension in the result); HMMs read
    sequences from the ``seq`` and ``t`` columns.
    The sampler's settings are the CLI's (``warmup=None``: at most 1000 iterations, ending
    early once an ensemble of 64 or more chains is adapted; ``metric="dense"`` adapts the
    whole covariance, for strongly correlated posteriors).
    ``log_likelihood``: store the pointwise log likelihood (for ``az.loo``); "auto" does when
    it holds at most 50 million values (chains x draws kept x observations). ``out``: also keep the folder ``gpsamp sample``
    writes there (``plots=True`` adds its figures). ``y_rep=True`` adds a posterior
    predictive replicate of the data per draw (the ``posterior_predictive`` group, for
    ``az.plot_ppc``). Warnings about the fit are issued as :class:`GpsampWarning`.
    """
    if data is None:
        raise ValueError("data: give a DataFrame or a dict of columns")
    x = list(x or [])
    ys = [y] if isinstance(y, str) else list(y)
    is_hmm = model in ("hmm", "glmhmm")
    text = ([group] if group else []) + ([seq] if is_hmm else [])
    numeric = x + ys + ([t] if is_hmm else [])
    cols = _columns(data, numeric, text)
    if log_likelihood == "auto":
        log_lik_limit = LOG_LIK_AUTO_LIMIT
    else:
        log_lik_limit = 2**63 if log_likelihood else None
    spec = _model_json(model, priors, model_settings)
    bar = _Progress(progress)
    with tempfile.TemporaryDirectory(prefix="gpsamp-") as tmp:
        folder = Path(out) if out is not None else Path(tmp) / "fit"
        try:
            result = json.loads(_gpsamp.sample(
                spec, cols, x, ys, str(folder), group=group, seq=seq, t=t, chains=chains,
                warmup=warmup, draws=draws, thin=thin, seed=seed, target_accept=target_accept,
                target_ess=target_ess, superchain_size=superchain_size, init_steps=init_steps,
                max_steps=max_steps, init=init, metric=metric, keep=list(keep or []),
                backend=backend,
                precision=precision, log_lik=log_lik_limit, plots=plots, y_rep=y_rep,
                progress=bar.callback))
        finally:
            bar.close()
        _warn(result, quiet=not progress)
        observed = {ys[0]: np.asarray(cols[ys[0]], dtype=np.float64)}
        return _load_sample(folder, result, observed)


@dataclass
class SbcResult:
    """A simulation-based calibration study: one row per dataset and quantity (truth, rank,
    coverage, warmup length) and one per quantity (the uniformity tests), as
    ``datasets.csv`` and ``summary.csv`` of ``gpsamp sbc``."""

    datasets: Any
    summary: Any
    meta: dict = field(default_factory=dict)
    folder: Path | None = None

    @property
    def calibrated(self) -> bool:
        """Whether no quantity's uniformity test rejected."""
        col = "pass" if "pass" in self.summary.columns else None
        return bool(self.summary[col].all()) if col else True


def sbc(model: str = "glm", *, features: int = 1, n: int = 100, datasets: int = 1000,
        chains_per_dataset: int = 4, warmup: int | None = None, draws: int = 500,
        seed: int = 0, batch: int | None = None, alpha: float = 0.001, backend: str = "auto",
        precision: str = "f32", metric: str = "diag", out: str | os.PathLike | None = None,
        progress: bool = True, priors: Mapping[str, Any] | None = None,
        **model_settings: Any) -> SbcResult:
    """Simulation-based calibration of a built-in family: ``datasets`` datasets of ``n``
    points simulated from the prior, each fitted, the ranks of the truths tested for
    uniformity at level ``alpha``. Returns the CLI's ``datasets.csv`` and ``summary.csv`` as
    DataFrames; ``out`` also keeps the folder (with its figures). ``metric="dense"`` adapts
    each fit's whole covariance, as in :func:`sample`."""
    import pandas as pd

    def tables(folder: Path) -> dict:
        return {"datasets": pd.read_csv(folder / "datasets.csv"),
                "summary": pd.read_csv(folder / "summary.csv")}

    spec = _model_json(model, priors, model_settings)
    found, meta = _run_study(spec, out, progress, tables, features=features, n=n,
                             datasets=datasets, chains_per_dataset=chains_per_dataset,
                             warmup=warmup, draws=draws, seed=seed, batch=batch, alpha=alpha,
                             backend=backend, precision=precision, metric=metric)
    return SbcResult(**found, meta=meta, folder=Path(out) if out is not None else None)


def _run_study(spec: str, out, progress: bool, tables, **settings: Any) -> tuple[dict, dict]:
    """Runs the library's study (``_gpsamp.sbc``) into ``out`` (a temporary folder when
    None) with a progress bar; returns ``tables(folder)``, read before a temporary folder
    goes, and the run's ``meta``."""
    bar = _Progress(progress, unit="datasets")
    with tempfile.TemporaryDirectory(prefix="gpsamp-") as tmp:
        folder = Path(out) if out is not None else Path(tmp) / "study"
        try:
            result = json.loads(_gpsamp.sbc(spec, str(folder), progress=bar.callback,
                                            **settings))
        finally:
            bar.close()
        return tables(folder), result["meta"]


@dataclass
class StudyResult:
    """A study at chosen values, as ``gpsamp study --grid`` writes it: one row per cell and
    parameter (``cells``: n, values, bias, rmse, coverage_50/80/95, coverage_p, power) and
    one per dataset and quantity (``datasets``)."""

    cells: Any
    datasets: Any
    meta: dict = field(default_factory=dict)
    folder: Path | None = None


def study(model: str = "glm", grid: Any = None, *, replicates: int = 100, n: int = 100,
          null: float = 0.0, features: int = 1, chains_per_dataset: int = 4,
          warmup: int | None = None, draws: int = 500, seed: int = 0, batch: int | None = None,
          backend: str = "auto", precision: str = "f32", metric: str = "diag",
          out: str | os.PathLike | None = None, progress: bool = True,
          priors: Mapping[str, Any] | None = None, **model_settings: Any) -> StudyResult:
    """A recovery and power study at chosen values, as ``gpsamp study --grid``: ``grid`` is a
    DataFrame (or dict of columns) with a column per chosen parameter (named as in the
    summary: ``"beta[0]"``, ``"sigma"``) and optionally ``"n"``, one row per cell; each cell
    gets ``replicates`` simulated datasets (parameters the grid does not name are drawn from
    the prior). Returns the per-cell report (bias, RMSE, coverage with its binomial p-value,
    power: the share of 95% intervals excluding ``null``) as DataFrames."""
    import pandas as pd

    if grid is None:
        raise ValueError("grid: give a DataFrame or dict of columns, one row per cell")
    frame = pd.DataFrame(grid)
    if frame.empty:
        raise ValueError("grid: no rows (cells)")
    columns = [str(c) for c in frame.columns]
    try:
        rows = frame.astype(np.float64).values.tolist()
    except (TypeError, ValueError) as e:
        raise ValueError(f"grid: every value must be a number ({e})") from None
    def tables(folder: Path) -> dict:
        return {"cells": pd.read_csv(folder / "cells.csv"),
                "datasets": pd.read_csv(folder / "datasets.csv")}

    spec = _model_json(model, priors, model_settings)
    found, meta = _run_study(spec, out, progress, tables, features=features, n=n,
                             chains_per_dataset=chains_per_dataset, warmup=warmup, draws=draws,
                             seed=seed, batch=batch, backend=backend, precision=precision,
                             grid_columns=columns, grid_rows=rows, replicates=replicates,
                             null=null, metric=metric)
    return StudyResult(**found, meta=meta, folder=Path(out) if out is not None else None)


@dataclass
class EmResult:
    """A batched EM fit of an HMM or GLM-HMM, as ``gpsamp em`` writes it: per dataset the
    fitted, state-aligned parameters (``params``: initial distribution, transition matrix,
    emission parameters, log likelihood, convergence), the Viterbi path of every training row
    (``states``: seq, t, state), and the smoothed state probabilities (``posteriors``: rows x
    states)."""

    params: list
    states: Any
    posteriors: np.ndarray
    heldout: list = field(default_factory=list)
    folder: Path | None = None

    @property
    def log_likelihood(self) -> list[float]:
        """The log likelihood of each dataset at its fitted parameters."""
        return [d["log_likelihood"] for d in self.params]


def em(model: str = "hmm", data: Any = None, *, y: str | Sequence[str] = "y",
       x: Sequence[str] | None = None, seq: str = "seq", t: str = "t", group: str | None = None,
       states: int = 3, emission: str = "gaussian", stickiness: float = 0.0,
       restarts: int = 10, max_iters: int = 200, tol: float = 1e-6, init: str | None = None,
       concentration: float = 1.1, coef_sd: float = 10.0, var_floor: float = 1e-4,
       holdout: int = 0, seed: int = 0, backend: str = "auto",
       out: str | os.PathLike | None = None, progress: bool = True) -> EmResult:
    """Batched EM (``restarts`` restarts of every dataset, the best kept) of an HMM
    (``model="hmm"``, Gaussian emissions in the ``y`` columns) or GLM-HMM (``"glmhmm"``,
    inputs ``x``, ``emission`` gaussian or bernoulli) on sequences: rows of a sequence
    together (column ``seq``) in time order (column ``t``). ``holdout`` sequences per dataset
    are scored, not fitted. Returns an :class:`EmResult`."""
    import pandas as pd

    if data is None:
        raise ValueError("data: give a DataFrame or a dict of columns")
    x = list(x or [])
    ys = [y] if isinstance(y, str) else list(y)
    cols = _columns(data, x + ys + [t], [seq] + ([group] if group else []))
    spec = json.dumps({"model": model, "states": states, "emission": emission,
                       "stickiness": stickiness})
    bar = _Progress(progress, unit="job-it")
    with tempfile.TemporaryDirectory(prefix="gpsamp-") as tmp:
        folder = Path(out) if out is not None else Path(tmp) / "em"
        try:
            result = json.loads(_gpsamp.em(
                spec, cols, x, ys, str(folder), seq=seq, t=t, group=group, restarts=restarts,
                max_iters=max_iters, tol=tol, init=init, concentration=concentration,
                coef_sd=coef_sd, var_floor=var_floor, holdout=holdout, seed=seed,
                backend=backend, progress=bar.callback))
        finally:
            bar.close()
        return EmResult(params=result["params"]["datasets"],
                        states=pd.read_csv(folder / "states.csv"),
                        posteriors=np.load(folder / "posteriors.npy"),
                        heldout=result["heldout"],
                        folder=Path(out) if out is not None else None)


def devices() -> list[dict]:
    """The GPU adapters wgpu sees (empty: the CPU backend is used)."""
    return json.loads(_gpsamp.devices())


from . import mdn  # noqa: E402  (uses _Progress above)
