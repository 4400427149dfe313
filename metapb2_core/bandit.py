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

from metapb2_core.errors import MetaPB2Error
from metapb2_core.gp.kernel import KernelSpec
from metapb2_core.gp.model import GPFit, fit_gp
from metapb2_core.space import AnyParam, SearchSpace

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
    """How raw hyperparameters map to the GP's [0, 1] coordinates.

    A float or integer parameter is one column, scaled by its bounds (an integer's suggestion is
    rounded to its grid when decoded). A categorical one is, with ``categorical="onehot"``, one
    0/1 column per choice, fixed to the choice the categorical bandit made while the acquisition
    is maximised over the others (PB2-Mix, Parker-Holder et al., NeurIPS 2021); ``"index"`` is
    the naive baseline, one column for the choice's position, maximised and rounded like an
    integer. A space of floats only takes ``to_unit``/``from_unit``, the original path."""

    space: SearchSpace
    log_scale: bool  # use each parameter's log flag (PB2*), or model every one linearly (Ray, Q31)
    clip: bool  # clip normalised values into [0, 1] (PB2*)
    categorical: str = "onehot"

    def __post_init__(self) -> None:
        if self.categorical not in ("onehot", "index"):
            raise MetaPB2Error(f"categorical encoding must be 'onehot' or 'index', got {self.categorical!r}")

    @property
    def mixed(self) -> bool:
        return not self.space.all_float

    def layout(self) -> list[tuple[AnyParam, int, int]]:
        """(parameter, first column, number of columns) in the encoded coordinates."""
        out, start = [], 0
        for p in self.space.params:
            w = len(p.choices) if p.kind == "choice" and self.categorical == "onehot" else 1
            out.append((p, start, w))
            start += w
        return out

    @property
    def width(self) -> int:
        return sum(w for _, _, w in self.layout())

    def encode_frame(self, frame: pd.DataFrame, float32: bool = False) -> np.ndarray:
        """The hyperparameter columns of ``frame`` in the GP's coordinates (rows × ``width``)."""
        names = self.space.names
        if not self.mixed:
            return self.to_unit(frame[names].to_numpy(dtype=np.float64), float32)
        return self._encode([frame[n].to_numpy() for n in names], float32)

    def encode_configs(self, configs: list[dict], float32: bool = False) -> np.ndarray:
        names = self.space.names
        if not self.mixed:
            return self.to_unit(
                np.array([[c[n] for n in names] for c in configs]).reshape(-1, len(names)), float32
            )
        return self._encode([np.array([c[n] for c in configs], dtype=object) for n in names], float32)

    def _encode(self, columns: list[np.ndarray], float32: bool) -> np.ndarray:
        parts = []
        for (p, _, w), col in zip(self.layout(), columns, strict=True):
            if p.kind == "choice":
                idx = np.array([p.index(v) for v in col], dtype=np.int64)
                if w == 1:
                    parts.append((idx / (len(p.choices) - 1)).reshape(-1, 1))
                else:
                    parts.append(np.eye(w)[idx].reshape(-1, w))
                continue
            v = np.asarray(col, dtype=np.float64)
            use_log = self.log_scale and p.log
            if use_log:
                v = np.log(v.astype(np.float32) if float32 else v)
            lo, hi = (math.log(p.low), math.log(p.high)) if use_log else (float(p.low), float(p.high))
            u = norm(v, lo, hi)
            parts.append((np.clip(u, 0.0, 1.0) if self.clip else u).reshape(-1, 1))
        return np.hstack(parts)

    def decode(self, u: np.ndarray, chosen: dict | None = None) -> dict:
        """A configuration from encoded coordinates: numbers back-transformed (float32, as
        ``from_unit``) and clipped, integers rounded to their grid, categories the ``chosen`` ones
        (one-hot) or the nearest position (index)."""
        config = {}
        for p, start, w in self.layout():
            x = float(u[start])
            if p.kind == "choice":
                if w > 1:
                    config[p.name] = (chosen or {})[p.name]
                else:
                    config[p.name] = p.choices[int(round(min(max(x, 0.0), 1.0) * (len(p.choices) - 1)))]
                continue
            use_log = self.log_scale and p.log
            lo, hi = (math.log(p.low), math.log(p.high)) if use_log else (float(p.low), float(p.high))
            v = lo + x * (hi - lo)
            v = float(np.float32(math.exp(v) if use_log else v))
            config[p.name] = p.clip(v)
        return config

    def fixed_columns(self, chosen: dict) -> dict[int, float]:
        """The one-hot columns a categorical choice fixes: column → 0 or 1."""
        out = {}
        for p, start, w in self.layout():
            if p.kind == "choice" and w > 1:
                hot = p.index(chosen[p.name])
                out.update({start + i: float(i == hot) for i in range(w)})
        return out

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
    X = np.hstack([norm(tr, lo, hi), scaling.encode_frame(trans)])
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


class Conditioned:
    """An acquisition over all encoded columns, seen as a function of the free ones: the columns
    in ``fixed`` (a categorical choice's one-hot) hold their values."""

    def __init__(self, acq: Callable[[np.ndarray], float], width: int, fixed: dict[int, float]):
        self.acq, self.width, self.fixed = acq, width, fixed
        self.free = np.array([j for j in range(width) if j not in fixed], dtype=np.int64)
        self._base = np.zeros(width)
        for j, v in fixed.items():
            self._base[j] = v
        if hasattr(acq, "value_and_grad"):
            self.value_and_grad = self._value_and_grad

    def full(self, u_free: np.ndarray) -> np.ndarray:
        x = self._base.copy()
        x[self.free] = u_free
        return x

    def __call__(self, u_free: np.ndarray) -> float:
        return self.acq(self.full(u_free))

    def _value_and_grad(self, u_free: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = self.acq.value_and_grad(self.full(u_free))
        return v, np.asarray(g)[self.free]


def maximise_conditioned(
    acq: Callable[[np.ndarray], float], width: int, fixed: dict[int, float], rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """``maximise`` over the columns not in ``fixed``; returns all ``width`` columns."""
    cond = Conditioned(acq, width, fixed)
    if not len(cond.free):  # only categorical parameters: nothing left to optimise
        u = cond.full(np.zeros(0))
        return u, float(acq(u))
    u_free, value = maximise(cond, len(cond.free), rng)
    return cond.full(u_free), value


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
