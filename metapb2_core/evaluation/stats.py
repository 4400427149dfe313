"""Friedman test and Nemenyi critical difference (Demšar 2006, JMLR 7, §3.2.2), with scipy.

Input is a table with one row per block (a task, or a task at one evaluation point) and one
column per method; higher values are better. Ranks are 1 = best, ties averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from metapb2_core.errors import MetaPB2Error


@dataclass(frozen=True)
class Friedman:
    statistic: float  # chi-square, tie-corrected unless asked otherwise
    p_value: float
    iman_davenport: float  # F_F = (N−1)χ² / (N(k−1) − χ²), less conservative
    iman_davenport_p: float
    n_blocks: int
    n_methods: int


@dataclass(frozen=True)
class Comparison:
    """Friedman test plus Nemenyi post-hoc: two methods differ significantly iff their mean ranks
    are more than ``cd`` apart; ``groups`` are the maximal runs of methods that do not."""

    mean_ranks: pd.Series  # ascending: best method first
    friedman: Friedman
    alpha: float
    cd: float
    groups: list[list[str]]

    @property
    def n_blocks(self) -> int:
        return self.friedman.n_blocks


def block_ranks(table: pd.DataFrame) -> pd.DataFrame:
    return table.rank(axis=1, ascending=False, method="average")


def friedman(table: pd.DataFrame, tie_correction: bool = True) -> Friedman:
    """Friedman's chi-square over the rows of ``table``; with ``tie_correction`` it equals
    ``scipy.stats.friedmanchisquare``; without it, Demšar's formula (12N/k(k+1))[ΣR_j² − k(k+1)²/4]."""
    n, k = _check(table)
    r = block_ranks(table).to_numpy()
    chi2 = 12.0 * n / (k * (k + 1)) * (np.sum(r.mean(axis=0) ** 2) - k * (k + 1) ** 2 / 4.0)
    if tie_correction:
        ties = sum(float(np.sum(c**3 - c)) for c in (np.unique(row, return_counts=True)[1] for row in r))
        c = 1.0 - ties / (n * k * (k * k - 1))
        chi2 = chi2 / c if c > 0 else 0.0  # every block fully tied: no evidence of a difference
    return _friedman_result(float(chi2), n, k)


def friedman_from_mean_ranks(mean_ranks: list[float], n_blocks: int) -> Friedman:
    """The uncorrected test from published mean ranks (Demšar's worked example)."""
    k = len(mean_ranks)
    r = np.asarray(mean_ranks, dtype=float)
    chi2 = 12.0 * n_blocks / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4.0)
    return _friedman_result(float(chi2), n_blocks, k)


def _friedman_result(chi2: float, n: int, k: int) -> Friedman:
    chi2 = max(chi2, 0.0)  # rounding can leave −1e-15 for equal ranks
    denom = n * (k - 1) - chi2
    ff = (n - 1) * chi2 / denom if denom > 1e-12 else math.inf
    ff_p = float(stats.f.sf(ff, k - 1, (k - 1) * (n - 1))) if math.isfinite(ff) else 0.0
    return Friedman(chi2, float(stats.chi2.sf(chi2, k - 1)), ff, ff_p, n, k)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Critical value q_α of the Nemenyi test: studentized range (k, ∞) quantile / √2 (2.569 for k=4)."""
    if k < 2:
        raise MetaPB2Error(f"the Nemenyi test needs at least 2 methods, got {k}")
    if not 0 < alpha < 1:
        raise MetaPB2Error(f"alpha must lie in (0, 1), got {alpha}")
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)


def critical_difference(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """CD = q_α · sqrt(k(k+1) / (6N)) (Demšar eq. in §3.2.2)."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n_blocks))


def groups(mean_ranks: pd.Series, cd: float) -> list[list[str]]:
    """Maximal sets of methods, consecutive in mean rank, whose ranks lie within ``cd``
    (the bars of a CD diagram); a method that differs from all others forms no group."""
    r = mean_ranks.sort_values()
    names, values = list(r.index), r.to_numpy()
    out: list[list[str]] = []
    previous_end = -1
    for i in range(len(values)):
        j = int(np.searchsorted(values, values[i] + cd, side="right")) - 1
        if j > i and j > previous_end:  # otherwise it lies inside the previous group
            out.append(names[i : j + 1])
            previous_end = j
    return out


def compare(table: pd.DataFrame, alpha: float = 0.05) -> Comparison:
    """Friedman test and Nemenyi critical difference over the rows of ``table``."""
    n, k = _check(table)
    mean_ranks = block_ranks(table).mean().sort_values(kind="stable")
    cd = critical_difference(k, n, alpha)
    return Comparison(mean_ranks, friedman(table), alpha, cd, groups(mean_ranks, cd))


def _check(table: pd.DataFrame) -> tuple[int, int]:
    if table.isna().to_numpy().any():
        raise MetaPB2Error("the comparison table has missing values; drop incomplete rows first")
    n, k = table.shape
    if k < 2 or n < 2:
        raise MetaPB2Error(f"a Friedman test needs ≥ 2 methods and ≥ 2 blocks, got {k} methods, {n} blocks")
    return n, k
