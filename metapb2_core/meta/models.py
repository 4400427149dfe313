"""Meta-models: one GP per meta task, and the maps between a target window and a meta task
(methods.md §5.3–5.5).

A meta task's inputs are normalised over all its rows; a target window's over the window. To
compare them, the target's window-normalised (time, reward-before) are read as positions inside the
range the meta task covers during the same raw time window, then expressed in the meta model's own
normalisation; outputs are re-standardised by the meta task's targets in that window.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metapb2_core import bandit
from metapb2_core.gp.kernel import KernelSpec
from metapb2_core.gp.model import GPFit, fit_gp

log = logging.getLogger(__name__)
EPS = 1e-8


@dataclass(frozen=True)
class Alignment:
    """Affine maps between target-window and meta-task coordinates, for one raw time window."""

    f_min: np.ndarray  # (time, reward-before) min over all meta rows
    f_max: np.ndarray
    m_min: np.ndarray  # ... over the meta rows inside the window's time range
    m_max: np.ndarray
    y_mean: float  # raw meta targets, all rows
    y_std: float
    w_mean: float  # raw meta targets inside the time range
    w_std: float
    single_time: bool

    @property
    def slope(self) -> np.ndarray:
        return (self.m_max - self.m_min + EPS) / (self.f_max - self.f_min + EPS)

    @property
    def shift(self) -> np.ndarray:
        return (self.m_min - self.f_min) / (self.f_max - self.f_min + EPS)

    def to_meta(self, X: np.ndarray) -> np.ndarray:
        """x' = x · slope + shift on the (time, reward-before) columns."""
        out = np.array(X, dtype=np.float64, copy=True)
        out[..., :2] = out[..., :2] * self.slope + self.shift
        return out

    def to_target(self, X: np.ndarray) -> np.ndarray:
        out = np.array(X, dtype=np.float64, copy=True)
        out[..., :2] = (out[..., :2] * (self.f_max - self.f_min + EPS) + self.f_min - self.m_min) / (
            self.m_max - self.m_min + EPS
        )
        if self.single_time:
            out[..., 0] *= 1e-9
        return out

    @property
    def out_scale(self) -> float:
        return self.y_std / self.w_std

    def scale_mean(self, y: np.ndarray) -> np.ndarray:
        return (y * self.y_std + self.y_mean - self.w_mean) / self.w_std


@dataclass
class MetaTask:
    name: str
    run_ids: list[str]
    X: np.ndarray  # normalised over all rows (time, reward-before, hyperparameters)
    y: np.ndarray  # standardised over all rows, N × 1
    F: np.ndarray  # raw (time, reward-before)
    Y: np.ndarray  # raw targets
    model: GPFit

    def align(self, t_min: float, t_max: float) -> Alignment | None:
        """The maps for a target window spanning raw times [t_min, t_max]; None without meta rows in it."""
        inside = (self.F[:, 0] >= t_min) & (self.F[:, 0] <= t_max)
        if not inside.any():
            return None
        mrows, yw = self.F[inside], self.Y[inside]
        return Alignment(
            self.F.min(0),
            self.F.max(0),
            mrows.min(0),
            mrows.max(0),
            float(self.Y.mean()),
            float(self.Y.std() + EPS),
            float(yw.mean()),
            float(yw.std() + EPS),
            t_min == t_max,
        )

    def predict_mean(self, X_target: np.ndarray, al: Alignment) -> np.ndarray:
        """Meta mean at target-window inputs, in the window's standardised units."""
        return al.scale_mean(self.model.predict_mean(al.to_meta(X_target)))

    def data_slice(self, time: float, n: int) -> tuple[np.ndarray, np.ndarray, float]:
        """n consecutive (time-sorted) rows centred on the first row at ``time`` (§5.5); if no row has
        exactly that time (Q28), on the first row of the nearest time. Returns X, y, the time used."""
        times = self.F[:, 0]
        used = time if (times == time).any() else float(times[np.argmin(np.abs(times - time))])
        c = int(np.flatnonzero(times == used)[0])
        lo = max(0, c - n // 2)
        hi = min(len(times), lo + n)
        lo = max(0, hi - n)
        return self.X[lo:hi], self.y[lo:hi], used


def fit_meta_task(
    name: str, table: pd.DataFrame, names: list[str], scaling: bandit.Scaling, spec: KernelSpec
) -> MetaTask:
    """Normalise a pooled meta table over all its rows (§5.3 step 5) and fit its GP."""
    F = table[["time", "r_before"]].to_numpy(dtype=np.float64)
    Y = table["y"].to_numpy(dtype=np.float64)
    X = np.hstack([bandit.norm(F, F.min(0), F.max(0)), scaling.encode_frame(table)])
    y = bandit.stdz(Y).reshape(-1, 1)
    key = (hashlib.sha1(X.tobytes() + y.tobytes()).hexdigest(), spec)
    model = _MODELS.get(key)
    if model is None:
        model = fit_gp(X, y, spec)
        if model.fallback:
            log.warning("meta-model of %s: %s", name, model.fallback)
        if len(_MODELS) >= 256:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = model
    return MetaTask(name, sorted(set(table["run_id"])), X, y, F, Y, model)


# Fitted meta-models by content: leave-one-task-out sets of one study share all but one task, and a
# process (a worker, a benchmark) builds many runs from the same meta-data. Fits are deterministic.
_MODELS: dict[tuple, GPFit] = {}


class StackedMeans:
    """The means of several meta-models at one target row, in one vectorised pass: each model's
    value (in the window's standardised units, via its alignment) and gradient. The acquisition
    optimiser calls this ~1000 times per suggestion, over ~10⁴ stacked meta rows."""

    def __init__(self, tasks: list[MetaTask], alignments: list[Alignment]):
        sizes = [t.model.n_rows for t in tasks]
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        seg = np.repeat(np.arange(len(tasks)), sizes)
        self.X = np.vstack([t.model.X for t in tasks])
        self.alpha = np.concatenate([t.model.alpha[:, 0] for t in tasks])
        self.var = np.array([t.model.variance for t in tasks])[seg]
        self.ls = np.array([t.model.lengthscale for t in tasks])[seg]
        self.log_decay = np.log1p(-np.array([t.model.epsilon for t in tasks]))[seg]
        self.slope = np.array([a.slope for a in alignments])  # M × 2
        self.shift = np.array([a.shift for a in alignments])
        self.seg = seg
        self.scale = np.array([a.out_scale for a in alignments])
        self.offset = np.array([a.scale_mean(0.0) for a in alignments])

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        head = x[:2] * self.slope[self.seg] + self.shift[self.seg]  # aligned (time, reward) per row
        dt = np.abs(head[:, 0] - self.X[:, 0]) / 2.0
        dz = np.hstack([head[:, 1:2] - self.X[:, 1:2], x[None, 2:] - self.X[:, 2:]])
        k = self.var * np.exp(-np.sum(dz * dz, axis=1) / self.ls + dt * self.log_decay)
        ka = k * self.alpha
        values = np.add.reduceat(ka, self.starts) * self.scale + self.offset
        g = np.add.reduceat((ka * (-2.0 / self.ls))[:, None] * dz, self.starts, axis=0)
        grads = np.zeros((len(values), len(x)))
        grads[:, 1] = g[:, 0] * self.slope[:, 1]
        grads[:, 2:] = g[:, 1:]
        return values, grads * self.scale[:, None]


@dataclass
class WeightedPrior:
    """Σ w_i · (meta mean i at the aligned input), in the target window's standardised units."""

    tasks: list[MetaTask]
    alignments: list[Alignment]
    weights: np.ndarray

    def __post_init__(self) -> None:
        self.stacked = StackedMeans(self.tasks, self.alignments) if self.tasks else None

    def mean_with_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient at one row; exact in the hyperparameter columns (the ones optimised)."""
        if self.stacked is None:
            return 0.0, np.zeros(len(x))
        values, grads = self.stacked(x)
        return float(self.weights @ values), self.weights @ grads
