"""How a study is ranked, once for every place that ranks one (``metapb2 report``, ``metapb2
study-report``, the ``method_ranks`` asset and the main command's summary): which runs enter,
the paper's evaluation (``evaluate``) and the inference on independent units (``inference``).

A seed midway beside complete ones would enter some methods' seed means on a task and not others'
(a task's methods finish one after another), so while at least one seed of a declared study is
complete the ranking keeps the complete seeds alone; before any is, it ranks what there is and says
so. Without a declared study (a folder of runs) every run that passed its checks is ranked.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from metapb2_core.budgets import get_budget
from metapb2_core.evaluation.evaluate import Evaluation, evaluate
from metapb2_core.evaluation.inference import BOOTSTRAP_REPS, Inference, infer
from metapb2_core.quirks import Quirks
from metapb2_core.study_spec import StudySpec


@dataclass
class RankedStudy:
    evaluation: Evaluation
    inference: Inference
    coverage: pd.DataFrame | None  # per declared seed: planned, passed, failed, tasks complete
    planned: int | None  # evaluation runs the declared study plans; None without a declaration

    @property
    def ranked_runs(self) -> int:
        return int(self.evaluation.scores["run_id"].nunique())

    @property
    def passed(self) -> int:
        return int(self.coverage["passed"].sum()) if self.coverage is not None else self.ranked_runs

    @property
    def partial(self) -> bool:
        return self.planned is not None and self.passed < self.planned

    def count_line(self) -> str:
        """ "N of M" first: how much of the declared study the ranking rests on."""
        if self.planned is None:
            return f"{self.ranked_runs} evaluation runs ranked (no declared study to measure them against)"
        text = f"{self.passed} of {self.planned} planned evaluation runs passed their checks"
        if self.ranked_runs != self.passed:
            text += f"; {self.ranked_runs} ranked (the complete seeds alone)"
        return text


def complete_seeds(cover: pd.DataFrame) -> list[int]:
    """Seeds with a passed evaluation run for every task and method (``cover``: ``coverage``)."""
    return [int(s) for s in cover.index[cover["passed"] == cover["planned"]]]


def coverage(ev: Evaluation, spec: StudySpec) -> pd.DataFrame:
    """Per declared seed: evaluation runs planned, passed and failed, and the tasks whose every
    method passed (those alone are ranked)."""
    need = len(spec.methods)
    passed = ev.scores[["task", "method", "seed"]].drop_duplicates()
    failed = ev.grid.failed[["task", "method", "seed"]].drop_duplicates()
    rows = {}
    for seed in spec.seeds:
        mine = passed[(passed["seed"].astype(int) == seed) & passed["task"].isin(spec.tasks)]
        per_task = mine.groupby("task")["method"].nunique()
        rows[seed] = {
            "planned": len(spec.tasks) * need,
            "passed": len(mine),
            "failed": int((failed["seed"].astype(int) == seed).sum()),
            f"tasks complete (of {len(spec.tasks)})": int((per_task == need).sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("seed")


def ranked_seeds(ev: Evaluation) -> list[int]:
    """The seeds ``ev`` ranks or lists as failed."""
    return sorted({int(s) for s in pd.concat([ev.scores["seed"], ev.grid.failed["seed"]])})


def of_seeds(runs: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """The rows of ``runs`` (points or failed runs, with a ``seed`` column) of ``seeds``."""
    return runs[runs["seed"].astype(int).isin(seeds)]


def ranked_points(ev: Evaluation, points: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``points`` that ``ev`` ranks: a seed left out midway is not."""
    return of_seeds(points, ranked_seeds(ev))


def faithful_runs(points: pd.DataFrame) -> bool:
    """Whether every run was made in the original code's mode (a run id names the quirk switch)."""
    ids = points["run_id"].drop_duplicates()
    return bool(len(ids)) and bool(ids.str.contains("-faithful").all())


def rank_study(
    points: pd.DataFrame,
    spec: StudySpec | None = None,
    failed: pd.DataFrame | None = None,
    perturbations: pd.DataFrame | None = None,
    alpha: float = 0.05,
    reps: int = BOOTSTRAP_REPS,
) -> RankedStudy:
    """The ranking of a study's passed evaluation runs (``spec``: the declared study, or None for a
    folder of runs). Warns ``IncompleteGridWarning`` as ``evaluate`` does."""
    ev = evaluate(points, alpha=alpha, failed=failed, perturbations=perturbations)
    cover = planned = None
    if spec is not None and spec.declared:
        cover = coverage(ev, spec)
        planned = int(cover["planned"].sum())
        done = complete_seeds(cover)
        if done and not set(ranked_seeds(ev)) <= set(done):
            kept = of_seeds(failed, done) if failed is not None else None
            ev = evaluate(of_seeds(points, done), alpha=alpha, failed=kept, perturbations=perturbations)
    faithful = spec.faithful if spec is not None else faithful_runs(points)
    family = spec.family if spec is not None else "classic"
    aligned = get_budget("paper", family).interval
    inference = infer(ev.scores, ev.values, Quirks.from_flag(faithful), aligned, alpha, reps)
    return RankedStudy(ev, inference, cover, planned)
