"""Completeness of the task × method × seed grid and alignment of the evaluation points.

The original averaged whatever seeds were present and dropped tasks with a missing method; we
compute the same, but every hole is listed here so that it is never averaged over silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

FAILED_COLUMNS = ["run_id", "task", "method", "seed", "reason"]


class IncompleteGridWarning(UserWarning):
    """Runs are missing, duplicated or evaluated at different points; see ``GridReport``."""


@dataclass(frozen=True)
class GridReport:
    tasks: list[str]
    methods: list[str]
    seeds: list[int]
    missing: pd.DataFrame  # task, method, seed: no run in the folder
    duplicates: pd.DataFrame  # task, method, seed, run_ids: more than one run
    misaligned: pd.DataFrame  # run_id, task, method, seed, timesteps, expected: other evaluation steps
    empty_points: pd.DataFrame  # run_id, point: no member has an evaluation return
    # run_id, task, method, seed, reason: failed their checks or hold non-finite returns; not ranked
    failed: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAILED_COLUMNS))

    @property
    def complete(self) -> bool:
        frames = (self.missing, self.duplicates, self.misaligned, self.empty_points, self.failed)
        return all(df.empty for df in frames)

    def lines(self) -> list[str]:
        """One human-readable line per problem, grouped by method and task."""
        out: list[str] = []
        for (method, task), df in self.missing.groupby(["method", "task"], sort=True):
            if len(df) == len(self.seeds):
                out.append(f"missing: {method} has no runs on {task}")
            else:
                out.append(f"missing: {method} on {task} lacks seed(s) {_join(df['seed'])}")
        for row in self.duplicates.itertuples():
            out.append(
                f"duplicate: {row.method} on {row.task} seed {row.seed} has runs {', '.join(row.run_ids)}"
            )
        for row in self.misaligned.itertuples():
            out.append(
                f"misaligned: {row.run_id} evaluates at steps {_join(row.timesteps)}, "
                f"the other runs on {row.task} at {_join(row.expected)}"
            )
        for run_id, df in self.empty_points.groupby("run_id", sort=True):
            out.append(f"no evaluation return: {run_id} at point(s) {_join(df['point'])}")
        for row in self.failed.sort_values("run_id").itertuples():
            out.append(f"failed, not ranked: {row.run_id} ({row.reason})")
        return out

    def summary(self) -> str:
        if self.complete:
            return (
                f"complete grid: {len(self.tasks)} tasks × {len(self.methods)} methods × "
                f"{len(self.seeds)} seeds, evaluation points aligned"
            )
        return f"incomplete grid ({len(self.lines())} problems):\n  " + "\n  ".join(self.lines())


def check_grid(scores: pd.DataFrame, failed: pd.DataFrame | None = None) -> GridReport:
    """Compare the runs behind ``scores`` (see ``run_scores``) with the full grid of every task,
    method and seed that occurs anywhere (failed runs included: their cells are holes, listed as
    failed rather than missing), and each run's evaluation steps with its task's usual ones."""
    failed = pd.DataFrame(columns=FAILED_COLUMNS) if failed is None else failed[FAILED_COLUMNS]
    cells = pd.concat([scores[["task", "method", "seed"]], failed[["task", "method", "seed"]]])
    tasks, methods = sorted(cells["task"].unique()), sorted(cells["method"].unique())
    seeds = sorted(int(s) for s in cells["seed"].unique())
    runs = scores.drop_duplicates("run_id")[["task", "method", "seed", "run_id"]]

    full = pd.MultiIndex.from_product([tasks, methods, seeds], names=["task", "method", "seed"])
    tried = pd.concat([runs[["task", "method", "seed"]], failed[["task", "method", "seed"]]])
    present = pd.MultiIndex.from_frame(tried.astype({"seed": int}))
    missing = full.difference(present).to_frame(index=False)

    per_cell = runs.groupby(["task", "method", "seed"], sort=True)["run_id"].agg(sorted)
    duplicates = per_cell[per_cell.map(len) > 1].rename("run_ids").reset_index()

    steps = scores.groupby("run_id", sort=True)["timesteps"].agg(lambda s: tuple(sorted(s)))
    runs = runs.set_index("run_id").assign(timesteps=steps)
    expected = runs.groupby("task")["timesteps"].agg(_usual)
    runs["expected"] = runs["task"].map(expected)
    misaligned = runs[runs["timesteps"] != runs["expected"]].reset_index()

    empty = scores[scores["score"].isna()][["run_id", "point"]].reset_index(drop=True)
    return GridReport(
        tasks,
        methods,
        seeds,
        missing,
        duplicates,
        misaligned[["run_id", "task", "method", "seed", "timesteps", "expected"]],
        empty,
        failed.reset_index(drop=True),
    )


def _usual(schedules: pd.Series) -> tuple:
    """The most common evaluation schedule of a task; among equally common ones the longest."""
    counts = schedules.value_counts()
    return max(counts.index, key=lambda s: (counts[s], len(s), s))


def _join(values) -> str:
    return ", ".join(str(int(v)) for v in values)
