"""The PB2 bandit step (methods.md §2.2–2.10, §3.4–3.6), as pure functions.

data table → transitions → window → normalisation → GP fit → pending rows → UCB → acquisition
maximised from random starts in [0, 1]^k → back-transform to raw hyperparameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from metapb2_core.gp.kernel import KernelSpec
from metapb2_core.gp.model import GPFit, fit_gp
from metapb2_core.space import SearchSpace

MAX_TRANSITIONS = 1000
MIN_WINDOW = 200
ACQ_RESTARTS = 10


def norm(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (v - lo) / (hi - lo + 1e-8)


def stdz(y: np.ndarray) -> np.ndarray:
    return np.clip((y - y.mean()) / (y.std() + 1e-8), -2.0, 2.0)


def data_table(
    records: pd.DataFrame,
    explore_rows: list[dict] | pd.DataFrame,
    exploit_times: dict[int, list[int]],
    names: list[str],
) -> pd.DataFrame:
    """The PB2 data table D (methods.md §2.1), each row tagged with the exploit segment it belongs to.

    ``records``: one record row per member and perturbation point (member, time, hyperparameters,
    reward). ``explore_rows``: the rows a method added where a member starts under a new
    configuration (member, time, hyperparameters, reward, segment = which exploit of that member
    it starts, 1-based). ``exploit_times``: every exploit's time per member, also those that added
    no explore row. A record row at the time of an exploit still belongs to the configuration before
    it. A method builds its live table with this function and ``meta.tables`` rebuilds a finished
    run's table from its record with it, so the two cannot drift apart.
    """
    cols = ["member", "time", *names, "reward"]
    rec = records[cols].assign(explore=False)
    seg = np.zeros(len(rec), dtype=np.int64)
    member, time = rec["member"].to_numpy(), rec["time"].to_numpy()
    for m, times in exploit_times.items():
        mine = member == m
        for t in times:
            seg[mine & (time > t)] += 1
    rec["segment"] = seg
    exp = pd.DataFrame(explore_rows, columns=[*cols, "segment"]).assign(explore=True)
    if exp.empty:
        return rec[[*cols, "explore", "segment"]].reset_index(drop=True)
    exp = exp.astype({"member": rec["member"].dtype, "time": rec["time"].dtype, "segment": np.int64})
    return pd.concat([rec, exp[[*cols, "explore", "segment"]]], ignore_index=True)


def transitions(
    table: pd.DataFrame, names: list[str], by_values: bool, cap: int | None = MAX_TRANSITIONS
) -> pd.DataFrame:
    """Reward change per time step between consecutive rows of one member under one configuration.

    ``table`` has columns member, time, reward, the hyperparameters and ``segment`` (which exploit
    of that member a row follows). Grouping by ``segment`` keeps a transition from ever spanning an
    exploit; ``by_values`` groups by exact hyperparameter values instead, as the original (Q39).
    Steps with a non-finite reward at either end are left out. Returns rows with time (end of the
    step), reward (at its end), r_before (reward at its start), the hyperparameters and y, sorted
    by time, the last ``cap`` (1000; None keeps all, as meta-data does).
    """
    d = table.sort_values("time", kind="stable")
    keys = ["member", *names] if by_values else ["member", "segment"]
    grouped = d.groupby(keys, sort=False)
    d_reward = grouped["reward"].diff()
    d_time = grouped["time"].diff()
    # a step from or to a non-finite reward (a diverged member) says nothing a GP can fit
    keep = (d_time > 0) & np.isfinite(d_reward.to_numpy(dtype=np.float64))
    out = d.loc[keep, ["member", "time", *names, "reward"]].assign(
        r_before=(d["reward"] - d_reward)[keep], y=(d_reward / d_time)[keep]
    )
    out = out.sort_values("time", kind="stable")
    return (out if cap is None else out.tail(cap)).reset_index(drop=True)


def fit_with_pending(
    X: np.ndarray, y: np.ndarray, fixed: np.ndarray, pending_u: np.ndarray, spec: KernelSpec, **fit_kw
) -> tuple[GPFit, GPFit]:
    """The model m and the pending model m1 (methods.md §2.8, §3.3).

    m1 is refitted on X plus one row (fixed, u) with target 0 per configuration already handed out
    this round, so the variance shrinks near them; without pending rows m1 is m.
    """
    model = fit_gp(X, y, spec, **fit_kw)
    if not len(pending_u):
        return model, model
    return model, fit_gp(*with_pending_rows(X, y, fixed, pending_u), spec)


def with_pending_rows(
    X: np.ndarray, y: np.ndarray, fixed: np.ndarray, pending_u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """X and y plus one row (fixed, u) with target 0 per pending configuration."""
    rows = np.hstack([np.tile(fixed, (len(pending_u), 1)), pending_u])
    return np.vstack([X, rows]), np.vstack([y, np.zeros((len(pending_u), 1))])


@dataclass(frozen=True)
class Scaling:
    """How raw hyperparameters map to the GP's [0, 1] coordinates."""

    space: SearchSpace
    log_scale: bool  # use each parameter's log flag (PB2*), or model every one linearly (Ray, Q31)
    clip: bool  # clip normalised values into [0, 1] (PB2*)

    def _g(self, values: np.ndarray, float32: bool = False) -> np.ndarray:
        out = np.asarray(values, dtype=np.float64).copy()
        for j, p in enumerate(self.space.params):
            if self.log_scale and p.log:
                column = out[..., j].astype(np.float32) if float32 else out[..., j]
                out[..., j] = np.log(column)
        return out

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.array([p.low for p in self.space.params], dtype=np.float64)
        hi = np.array([p.high for p in self.space.params], dtype=np.float64)
        return self._g(lo), self._g(hi)

    def to_unit(self, values: np.ndarray, float32: bool = False) -> np.ndarray:
        """Into [0, 1]; ``float32``: log-scaled columns logged as float32 values (quirk Q13/Q14)."""
        u = norm(self._g(values, float32), *self.bounds())
        return np.clip(u, 0.0, 1.0) if self.clip else u

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        """Back-transform (no 1e-8 term, Q13), exp for log-scaled parameters, then float32."""
        lo, hi = self.bounds()
        v = lo + np.asarray(u, dtype=np.float64) * (hi - lo)
        for j, p in enumerate(self.space.params):
            if self.log_scale and p.log:
                v[j] = math.exp(v[j])
        return v.astype(np.float32).astype(np.float64)


@dataclass
class Window:
    X: np.ndarray  # N × (2 + k): normalised time, reward-before, hyperparameters
    y: np.ndarray  # N × 1, standardised and clipped to ±2
    fixed: np.ndarray  # the new point's normalised (time, reward-before)


def normalise(
    trans: pd.DataFrame, names: list[str], newpoint: tuple[float, float], scaling: Scaling
) -> Window:
    tr = trans[["time", "r_before"]].to_numpy(dtype=np.float64)
    lo, hi = tr.min(axis=0), tr.max(axis=0)
    X = np.hstack([norm(tr, lo, hi), scaling.to_unit(trans[names].to_numpy(dtype=np.float64))])
    y = stdz(trans["y"].to_numpy(dtype=np.float64)).reshape(-1, 1)
    return Window(X, y, norm(np.asarray(newpoint, dtype=np.float64), lo, hi))


def select_length(
    trans: pd.DataFrame, names: list[str], newpoint: tuple[float, float], scaling: Scaling, spec: KernelSpec
) -> int:
    """Ray's window length: all rows below 200, else the length (200, 210, …) of best likelihood."""
    n = len(trans)
    if n < MIN_WINDOW:
        return n
    lengths = list(range(MIN_WINDOW, n + 1, 10))
    lls = []
    for length in lengths:
        w = normalise(trans.tail(length), names, newpoint, scaling)
        lls.append(fit_gp(w.X, w.y, spec).log_likelihood)
    return lengths[int(np.argmax(lls))]


class Surrogate(Protocol):
    """What an acquisition needs of a model: its row count and a prediction with gradients."""

    @property
    def n_rows(self) -> int: ...

    def predict_with_gradient(self, x: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]: ...


@dataclass
class UCB:
    """UCB with β = c1 + max(0, ln(0.4·N)), κ = √β: μ + κ·σ (PB2*) or μ + κ·σ² (Ray, Q9).

    The mean comes from ``model``, the variance (with noise, Q7) from ``pending_model``, the model
    that also holds the round's pending rows. Called on the hyperparameter coordinates ``u``; the
    fixed (time, reward) coordinates are prepended. A non-finite value reads as −9999.
    """

    model: Surrogate
    pending_model: Surrogate
    fixed: np.ndarray
    kappa: float
    use_std: bool

    def _x(self, u: np.ndarray) -> np.ndarray:
        return np.concatenate([self.fixed, np.asarray(u, dtype=np.float64)])

    def __call__(self, u: np.ndarray) -> float:
        return self.value_and_grad(u)[0]

    def value_and_grad(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        x, f = self._x(u), len(self.fixed)
        mean, var, d_mean, d_var = self.model.predict_with_gradient(x)
        if self.pending_model is not self.model:
            _, var, _, d_var = self.pending_model.predict_with_gradient(x)
        if self.use_std:
            spread = math.sqrt(max(var, 0.0))
            d_spread = d_var / (2.0 * spread) if spread > 0 else np.zeros_like(d_var)
        else:
            spread, d_spread = var, d_var
        value = mean + self.kappa * spread
        if not math.isfinite(value):
            return -9999.0, np.zeros(len(x) - f)
        return value, (d_mean + self.kappa * d_spread)[f:]


def ucb(
    model: Surrogate, pending_model: Surrogate, fixed: np.ndarray, exploration: float, use_std: bool
) -> tuple[UCB, float]:
    kappa = math.sqrt(exploration + max(0.0, math.log(0.4 * model.n_rows)))
    return UCB(model, pending_model, np.asarray(fixed, dtype=np.float64), kappa, use_std), kappa


def maximise(
    acq: Callable[[np.ndarray], float], k: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """L-BFGS-B on −acq in [0, 1]^k from 10 uniform starts.

    An acquisition with ``value_and_grad`` gives analytic gradients; otherwise scipy takes finite
    differences, as Ray does (the optimum is the same; analytic gradients are ~5× cheaper).
    """
    value_and_grad = getattr(acq, "value_and_grad", None)
    if value_and_grad is not None:

        def objective(u):
            v, g = value_and_grad(u)
            return -v, -g

    else:

        def objective(u):
            return -acq(u)

    best_u, best_v = None, -math.inf
    for _ in range(ACQ_RESTARTS):
        u0 = rng.uniform(0.0, 1.0, k)
        res = minimize(
            objective,
            u0,
            jac=value_and_grad is not None,
            method="L-BFGS-B",
            bounds=[(0.0, 1.0)] * k,
            options={"maxiter": 200, "maxfun": 200},
        )
        v = acq(res.x)
        if v > best_v:
            best_u, best_v = res.x, v
    return np.clip(best_u, 0.0, 1.0), best_v
