"""Amortised posteriors with mixture density networks, as ``gpsamp mdn`` trains them: a
network from observations y to a Gaussian mixture over theta, trained once on simulated (or
your own) pairs, then a posterior for any y in microseconds.

    >>> net = gpsamp.mdn.train("beta-binomial", prior=(2, 5), trials=100, sims=200_000)
    >>> post = net.predict([10, 30, 60])        # weights (3, K), means and sds (3, K, T)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import _gpsamp
from . import _Progress

__all__ = ["train", "predict", "Mdn", "Posterior"]


@dataclass
class Posterior:
    """Mixtures for n observations: ``weights`` (n, K), ``means`` and ``sds`` (n, K, T)."""

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray

    def mean(self) -> np.ndarray:
        """The posterior mean of theta per observation, (n, T)."""
        return np.einsum("nk,nkt->nt", self.weights, self.means)

    def pdf(self, theta: np.ndarray) -> np.ndarray:
        """The density of each observation's posterior at the points ``theta`` (m, T) or
        (m,) for T = 1; returns (n, m)."""
        th = np.asarray(theta, dtype=np.float64)
        if th.ndim == 1:
            th = th[:, None]
        z = (th[None, None, :, :] - self.means[:, :, None, :]) / self.sds[:, :, None, :]
        comp = np.exp(-0.5 * z**2) / (self.sds[:, :, None, :] * np.sqrt(2 * np.pi))
        return np.einsum("nk,nkm->nm", self.weights, comp.prod(axis=-1))


def predict(model: str | os.PathLike, y: Sequence[float] | np.ndarray) -> Posterior:
    """The posterior mixtures a trained MDN (a folder written by ``gpsamp mdn train`` or
    :func:`train`) gives for observations ``y`` (n values, or (n, D) for D inputs)."""
    flat = np.ascontiguousarray(y, dtype=np.float64).ravel().tolist()
    res = json.loads(_gpsamp.mdn_predict(str(model), flat))
    mix = res["mixtures"]
    w = np.array([m["weights"] for m in mix])
    means = np.array([m["means"] for m in mix])
    sds = np.array([m["sds"] for m in mix])
    return Posterior(weights=w, means=means, sds=sds)


@dataclass
class Mdn:
    """A trained MDN: its folder (``model.json``, ``training.json``, for built-in simulators
    ``accuracy.csv`` and ``density.svg``), the training history and the accuracy against the
    exact posterior (built-in simulators)."""

    folder: Path
    history: Any
    accuracy: Any
    pairs: int
    best_epoch: int

    def predict(self, y: Sequence[float] | np.ndarray) -> Posterior:
        """The posterior mixtures for observations ``y``."""
        return predict(self.folder, y)


def train(simulator: str = "beta-binomial", *, prior: Sequence[float] = (),
          trials: float = 100, sims: int = 1_000_000, theta: np.ndarray | None = None,
          y: np.ndarray | None = None, components: int = 8,
          hidden: Sequence[int] = (24, 25, 16), epochs: int = 20, batch: int = 512,
          lr: float = 3e-3, val_frac: float = 0.05, patience: int = 0, grouped: bool = False,
          seed: int = 0, eval_y: Sequence[float] = (), backend: str = "auto",
          out: str | os.PathLike | None = None, progress: bool = True) -> Mdn:
    """Trains an MDN on ``sims`` pairs from a built-in simulator (``beta-binomial``: theta ~
    Beta(prior), y ~ Binomial(trials, theta); ``gamma-poisson``: theta ~ Gamma(shape, rate),
    y ~ Poisson(trials theta)), or on your own pairs ``theta`` (n, T) and ``y`` (n, D).
    Settings as ``gpsamp mdn train``'s flags. ``out`` keeps the folder; without it the folder
    lives as long as the returned :class:`Mdn`."""
    import pandas as pd

    kw: dict[str, Any] = {}
    if (theta is None) != (y is None):
        raise ValueError("theta, y: give both (pairs of your own) or neither")
    if theta is not None:
        th = np.asarray(theta, dtype=np.float64)
        yy = np.asarray(y, dtype=np.float64)
        th = th[:, None] if th.ndim == 1 else th
        yy = yy[:, None] if yy.ndim == 1 else yy
        if len(th) != len(yy):
            raise ValueError(f"theta, y: {len(th)} and {len(yy)} rows")
        kw = dict(theta=th.ravel().tolist(), y=yy.ravel().tolist(), theta_dim=th.shape[1],
                  y_dim=yy.shape[1])
    owned = None
    if out is None:
        owned = tempfile.mkdtemp(prefix="gpsamp-mdn-")
        folder = Path(owned) / "mdn"
    else:
        folder = Path(out)
    bar = _Progress(progress, unit="epoch")
    try:
        res = json.loads(_gpsamp.mdn_train(
            str(folder), simulator=simulator, prior=list(prior), trials=float(trials), sims=sims,
            components=components, hidden=list(hidden), epochs=epochs, batch=batch, lr=lr,
            val_frac=val_frac, patience=patience, grouped=grouped, seed=seed,
            eval_y=list(eval_y), backend=backend, progress=bar.callback, **kw))
    except BaseException:
        if owned:
            shutil.rmtree(owned, ignore_errors=True)
        raise
    finally:
        bar.close()
    net = Mdn(folder=folder, history=pd.DataFrame(res["history"]),
              accuracy=pd.DataFrame(res["accuracy"]), pairs=res["pairs"],
              best_epoch=res["best_epoch"])
    if owned:
        weakref.finalize(net, shutil.rmtree, owned, True)
    return net
