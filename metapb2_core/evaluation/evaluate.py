"""Everything the report shows, computed once from a points DataFrame."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation import scores as sc
from metapb2_core.evaluation.fallbacks import fallback_table
from metapb2_core.evaluation.grid import FAILED_COLUMNS, GridReport, IncompleteGridWarning, check_grid
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
    # per method: model-based suggestions and how many fell back, with the reasons (fallbacks.py)
    fallbacks: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def final_point(self) -> int:
        return int(self.values.index.get_level_values("point").max())

    @property
    def points(self) -> list[int]:
        return sorted(self.values.index.get_level_values("point").unique())

    @property
    def tasks(self) -> list[str]:
        return sorted(self.table["task"].unique())


def evaluate(
    points: pd.DataFrame,
    alpha: float = 0.05,
    failed: pd.DataFrame | None = None,
    perturbations: pd.DataFrame | None = None,
) -> Evaluation:
    """Scores, normalised scores, ranks, tables and tests from run points (protocol.md §6).

    ``failed``: runs that failed their checks (run_id, task, method, seed, reason), listed and
    never ranked; so is any run in ``points`` with a non-finite evaluation return.
    ``perturbations`` (optional) give the fallbacks of each method's suggestions. Warns
    ``IncompleteGridWarning`` when runs are missing, duplicated, misaligned or failed; the details
    are in ``Evaluation.grid``."""
    points, failed = split_failed(points, failed)
    if points.empty and failed.empty:
        raise MetaPB2Error("no runs to evaluate")
    if points.empty:
        raise MetaPB2Error(
            f"every run failed: {'; '.join(f'{r.run_id} ({r.reason})' for r in failed.itertuples())}"
        )
    scores = sc.run_scores(points)
    if scores.empty:
        raise MetaPB2Error("the runs hold no evaluation returns")
    grid = check_grid(scores, failed)
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
        fallbacks=fallback_table(_of(perturbations, points), points),
    )


def _of(perturbations: pd.DataFrame | None, points: pd.DataFrame) -> pd.DataFrame:
    """The perturbations of the ranked runs (none when no perturbations were read)."""
    if perturbations is None or "run_id" not in perturbations:
        return pd.DataFrame()
    return perturbations[perturbations["run_id"].isin(points["run_id"])]


def split_failed(points: pd.DataFrame, failed: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points of the runs to rank, every failed run): a run with a non-finite evaluation return
    fails like a run whose finite_returns check failed; runs listed in ``failed`` are dropped."""
    failed = pd.DataFrame(columns=FAILED_COLUMNS) if failed is None else failed[FAILED_COLUMNS]
    fresh = (
        points["eval_is_fresh"].astype(bool) if "eval_is_fresh" in points else points["eval_return"].notna()
    )
    evals = points[fresh]
    bad = evals.groupby("run_id")["eval_return"].agg(lambda v: int((~np.isfinite(v.to_numpy(float))).sum()))
    counts = evals.groupby("run_id").size()
    found = [
        {
            **points.loc[points["run_id"] == rid, ["run_id", "task", "method", "seed"]].iloc[0].to_dict(),
            "reason": f"{int(bad[rid])} non-finite evaluation returns of {int(counts[rid])}",
        }
        for rid in bad.index[bad > 0]
        if rid not in set(failed["run_id"])
    ]
    failed = pd.concat([failed, pd.DataFrame(found, columns=FAILED_COLUMNS)], ignore_index=True)
    return points[~points["run_id"].isin(failed["run_id"])], failed


def _maybe_compare(table: pd.DataFrame, alpha: float, what: str, notes: list[str]) -> Comparison | None:
    n, k = table.shape
    if n < 2 or k < 2:
        notes.append(
            f"no Friedman/Nemenyi test over {what}: needs ≥ 2 methods and ≥ 2 blocks, got {k} and {n}"
        )
        return None
    return compare(table, alpha)
