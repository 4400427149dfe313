"""The paper's published comparison, as data (protocol.md §7: read off the figures of the released
notebook; ranks ±0.05, normalised scores ±0.02, "≈" values partly occluded and reconstructed),
and how a study's result agrees with it."""

from __future__ import annotations

from dataclasses import dataclass

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
