"""The paper's published comparison, as data (protocol.md §7: read off the figures of the released
notebook; ranks ±0.05, normalised scores ±0.02, "≈" values partly occluded and reconstructed),
and how a study's result agrees with it."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from metapb2_core.evaluation.stats import Comparison


@dataclass(frozen=True)
class PaperResult:
    name: str
    summary: pd.DataFrame  # per method: overall_rank, final_rank, final_normalised, approx (a "≈" cell)
    groups: tuple[tuple[str, ...], ...]  # the Nemenyi bars: methods not significantly different
    cd: float
    early_warm: tuple[float, float]  # PB2* warm's normalised score at points 3–5 (low, high)
    early_pb2: tuple[float, float]  # PB2's at the same points
    source: str


def _summary(rows: list[tuple[str, float, float, float, str]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["method", "overall_rank", "final_rank", "final_normalised", "approx"])
    return df.set_index("method")


CLASSIC = PaperResult(
    name="classic control (20 tasks, 4 members, 600k steps, 10 seeds)",
    summary=_summary(
        [
            ("multitask", 3.44, 3.10, 0.51, ""),
            ("pb2_star_warm", 3.69, 4.35, 0.53, ""),
            ("pb2_star", 4.04, 4.38, 0.43, ""),
            ("metaprior", 4.26, 4.65, 0.36, "final_rank"),
            ("taf", 5.0, 5.95, 0.21, "overall_rank"),
            ("pbt", 5.0, 4.58, 0.43, "overall_rank"),
            ("random_search", 5.07, 4.65, 0.45, "final_rank, final_normalised"),
            ("pb2", 5.46, 4.30, 0.43, "final_normalised"),
        ]
    ),
    groups=(
        ("pb2", "random_search", "taf", "pbt"),
        ("metaprior", "pb2_star", "pb2_star_warm"),
        ("pb2_star_warm", "multitask"),
    ),
    cd=0.61,
    early_warm=(0.77, 0.80),
    early_pb2=(0.17, 0.24),
    source="shared/design/protocol.md §7, main classic control",
)


@dataclass(frozen=True)
class Agreement:
    column: str
    kendall_tau: float
    kendall_p: float
    spearman_rho: float
    spearman_p: float
    n: int


def rank_agreement(ours: pd.DataFrame, paper: PaperResult, column: str) -> Agreement:
    """Kendall's τ and Spearman's ρ between our and the paper's mean ranks (``column``) over the
    methods both have; NaN while our ranks all tie (no ordering to compare yet)."""
    both = ours.index.intersection(paper.summary.index)
    a, b = ours.loc[both, column].astype(float), paper.summary.loc[both, column].astype(float)
    if a.nunique() < 2:
        nan = float("nan")
        return Agreement(column, nan, nan, nan, nan, len(both))
    tau = stats.kendalltau(a, b)
    rho = stats.spearmanr(a, b)
    return Agreement(
        column, float(tau.statistic), float(tau.pvalue), float(rho.statistic), float(rho.pvalue), len(both)
    )


@dataclass(frozen=True)
class GroupCheck:
    group: tuple[str, ...]
    holds: bool  # every pair of the paper's group is within our critical difference too
    spread: float  # our largest mean-rank distance inside the group
    cd: float


def paper_groups_hold(test: Comparison, paper: PaperResult) -> list[GroupCheck]:
    """For each of the paper's "not significantly different" groups: does our test say the same?"""
    out = []
    for group in paper.groups:
        ranks = test.mean_ranks.reindex(list(group)).dropna()
        spread = float(ranks.max() - ranks.min()) if len(ranks) else float("nan")
        out.append(GroupCheck(group, len(ranks) == len(group) and spread <= test.cd, spread, test.cd))
    return out


READING = 0.05  # a rank read off the paper's figure: ±0.05 (protocol.md §7)
OCCLUDED = 0.15  # a "≈" cell, partly occluded and reconstructed: assumed ±0.15


def approx(paper: PaperResult, method: str, column: str, value: float | None = None) -> str:
    """A paper value as printed here: every one is read off a figure ("≈"); "≈≈" marks a value
    the figure partly hid, reconstructed (protocol.md §7)."""
    v = paper.summary.loc[method, column] if value is None else value
    mark = "≈≈" if column in str(paper.summary.loc[method, "approx"]) else "≈"
    return f"{mark}{v:.2f}"


def reading_intervals(paper: PaperResult, column: str) -> pd.DataFrame:
    """Each method's paper value as the interval its reading allows (``READING``, ``OCCLUDED``)."""
    values = paper.summary[column].astype(float)
    width = paper.summary["approx"].map(lambda a: OCCLUDED if column in str(a) else READING)
    return pd.DataFrame({"low": values - width, "high": values + width})


def paper_orderings(paper: PaperResult, column: str, methods: list[str]) -> np.ndarray:
    """Every strict ranking (1 = best) of ``methods`` the paper's readings allow: a method's rank
    is fixed against another's only where their reading intervals do not overlap. Rows are
    rankings, columns follow ``methods``."""
    iv = reading_intervals(paper, column).loc[methods]
    low, high = iv["low"].to_numpy(), iv["high"].to_numpy()
    before = high[:, None] < low[None, :]  # i surely ranked better (lower) than j
    out = []
    for order in itertools.permutations(range(len(methods))):
        position = np.empty(len(methods), dtype=int)
        position[list(order)] = np.arange(len(methods))
        if not (before & (position[:, None] > position[None, :])).any():
            out.append(position + 1)
    return np.array(out)


def _pair_signs(x: np.ndarray) -> np.ndarray:
    """sign(x_i − x_j) for every pair i < j, along the last axis."""
    i, j = np.triu_indices(x.shape[-1], k=1)
    return np.sign(x[..., i] - x[..., j])


def _tau_b(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's τ-b of ``a`` with each row of ``b``."""
    sa, sb = _pair_signs(a), _pair_signs(b)
    den = np.sqrt((sa != 0).sum() * (sb != 0).sum(axis=-1))
    return (sb @ sa) / np.where(den > 0, den, np.nan)


def _rho(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ra = stats.rankdata(a)
    rb = stats.rankdata(b, axis=-1)
    ra, rb = ra - ra.mean(), rb - rb.mean(axis=-1, keepdims=True)
    return (rb @ ra) / np.sqrt((ra @ ra) * (rb * rb).sum(axis=-1))


@functools.cache
def _permutations(n: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n))))


def permutation_p(a: np.ndarray, b: np.ndarray, statistic) -> float:
    """Exact two-sided permutation p-value of ``statistic(a, b)``: the share of all orderings of
    ``b`` whose statistic is at least as far from 0 as the observed one (n! orderings, exact up
    to n = 9)."""
    observed = statistic(a, b[None, :])[0]
    null = statistic(a, b[_permutations(len(b))])
    return float(np.mean(np.abs(null) >= abs(observed) - 1e-12))


@dataclass(frozen=True)
class AgreementRange:
    """Rank agreement with the paper over every ranking its readings allow."""

    column: str
    n: int
    tau: float  # at the printed values (their ties as ties)
    tau_p: float  # exact permutation p
    tau_low: float
    tau_high: float
    tau_p_low: float
    tau_p_high: float
    rho: float
    rho_p: float
    rho_low: float
    rho_high: float
    orderings: int


def agreement_range(ours: pd.Series, paper: PaperResult, column: str) -> AgreementRange | None:
    """τ and ρ of our mean ranks (``ours``: method → rank) with the paper's, at its printed values
    and over every ordering its readings allow, each with an exact permutation p-value; None while
    our ranks all tie."""
    methods = [m for m in ours.index if m in paper.summary.index]
    a = ours.loc[methods].to_numpy(float)
    if len(set(a)) < 2:
        return None
    printed = paper.summary.loc[methods, column].to_numpy(float)
    orders = paper_orderings(paper, column, methods).astype(float)
    taus, rhos = _tau_b(a, orders), _rho(a, orders)
    tau_ps = [permutation_p(a, o, _tau_b) for o in orders[[int(np.argmin(taus)), int(np.argmax(taus))]]]
    return AgreementRange(
        column=column,
        n=len(methods),
        tau=float(_tau_b(a, printed[None, :])[0]),
        tau_p=permutation_p(a, printed, _tau_b),
        tau_low=float(taus.min()),
        tau_high=float(taus.max()),
        tau_p_low=min(tau_ps),
        tau_p_high=max(tau_ps),
        rho=float(_rho(a, printed[None, :])[0]),
        rho_p=permutation_p(a, printed, _rho),
        rho_low=float(rhos.min()),
        rho_high=float(rhos.max()),
        orderings=len(orders),
    )
