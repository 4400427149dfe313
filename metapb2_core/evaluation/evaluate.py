"""Everything the report shows, computed once from a points DataFrame."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import pandas as pd

from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation import scores as sc
from metapb2_core.evaluation.grid import GridReport, IncompleteGridWarning, check_grid
from metapb2_core.evaluation.stats import Comparison, compare
from metapb2_core.evaluation.tables import final_table, rank_summary


@dataclass
class Evaluation:
    methods: list[str]  # sorted by name
    scores: pd.DataFrame  # per run and evaluation point (run_scores)
    table: pd.DataFrame  # per task, method and point: mean and spread over seeds (seed_table)
    values: pd.DataFrame  # (point, task) × method seed means, rows where every method has one
    normalised: pd.DataFrame  # same shape, min–max per row
    ranks: pd.DataFrame  # same shape, 1 = best
    summary: pd.DataFrame  # per method: final/overall mean rank and normalised score
    final: pd.DataFrame  # final-performance table (tables.final_table)
    grid: GridReport
    runtimes: pd.DataFrame  # per run: seconds
    alpha: float
    final_test: Comparison | None  # over tasks at the last point
    anytime_test: Comparison | None  # over the stacked (task, point) rows, as the original (§6.5.4)
    notes: list[str] = field(default_factory=list)  # why a test was left out

    @property
    def final_point(self) -> int:
        return int(self.values.index.get_level_values("point").max())

    @property
    def points(self) -> list[int]:
        return sorted(self.values.index.get_level_values("point").unique())

    @property
    def tasks(self) -> list[str]:
        return sorted(self.table["task"].unique())


def evaluate(points: pd.DataFrame, alpha: float = 0.05) -> Evaluation:
    """Scores, normalised scores, ranks, tables and tests from run points (protocol.md §6).

    Warns ``IncompleteGridWarning`` when runs are missing, duplicated or misaligned; the details
    are in ``Evaluation.grid``."""
    scores = sc.run_scores(points)
    if scores.empty:
        raise MetaPB2Error("the runs hold no evaluation returns")
    grid = check_grid(scores)
    if not grid.complete:
        warnings.warn(IncompleteGridWarning(grid.summary()), stacklevel=2)
    methods = sorted(scores["method"].unique())
    table = sc.seed_table(scores)
    values = sc.stacked(table, methods)
    if values.empty:
        raise MetaPB2Error("no task has a score for every method at any evaluation point")
    normalised, ranks = sc.normalise(values), sc.ranks(values)

    notes: list[str] = []
    last = values.index.get_level_values("point").max()
    final_test = _maybe_compare(values.xs(last, level="point"), alpha, "final point", notes)
    anytime_test = _maybe_compare(values, alpha, "all points", notes)
    return Evaluation(
        methods=methods,
        scores=scores,
        table=table,
        values=values,
        normalised=normalised,
        ranks=ranks,
        summary=rank_summary(ranks, normalised),
        final=final_table(table, methods),
        grid=grid,
        runtimes=sc.run_runtimes(points),
        alpha=alpha,
        final_test=final_test,
        anytime_test=anytime_test,
        notes=notes,
    )


def _maybe_compare(table: pd.DataFrame, alpha: float, what: str, notes: list[str]) -> Comparison | None:
    n, k = table.shape
    if n < 2 or k < 2:
        notes.append(
            f"no Friedman/Nemenyi test over {what}: needs ≥ 2 methods and ≥ 2 blocks, got {k} and {n}"
        )
        return None
    return compare(table, alpha)
