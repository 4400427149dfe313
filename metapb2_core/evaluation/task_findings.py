"""What the data alone says about a study's tasks, before any method is compared on them: tasks
where every method ties at every point (they carry no ranking information but still count in every
mean rank), tasks where most methods end on one shared score (the final ranks there only tell
apart the few that left it), and tasks that are one task several times (every portfolio candidate
scored the same on them, to the last digit), and the weights that count each such group once."""

from __future__ import annotations

import pandas as pd

from metapb2_core.envs import get_task
from metapb2_core.quirks import Quirks


def tied_tasks(values: pd.DataFrame) -> pd.Series:
    """Tasks where every method has the same value at every point (``values``: (point, task) ×
    method, as ``Evaluation.values``), with that value at the last point."""
    if values.empty:
        return pd.Series(dtype=float)
    same = values.nunique(axis=1) == 1
    tied = same.groupby(level="task").all()
    return _last_point(values).iloc[:, 0][tied[tied].index].sort_index()


def _last_point(values: pd.DataFrame) -> pd.DataFrame:
    """Each task's row at its last point (task × method)."""
    return values.groupby(level="task").tail(1).droplevel("point")


def final_plateaus(values: pd.DataFrame) -> pd.DataFrame:
    """Tasks where at least half the methods share one score at the last point, and not every
    method at every point (those are ``tied_tasks``): one row per task with the shared ``score``,
    how many methods ``share`` it, and the methods ``above`` and ``below`` it."""
    columns = ["score", "share", "above", "below"]
    if values.empty:
        return pd.DataFrame(columns=columns)
    rows = {}
    for task, scores in _last_point(values).drop(index=tied_tasks(values).index).iterrows():
        counts = scores.value_counts()
        if counts.iloc[0] * 2 < len(scores):
            continue
        shared = counts.index[0]
        rows[task] = (
            shared,
            int(counts.iloc[0]),
            sorted(scores.index[scores > shared]),
            sorted(scores.index[scores < shared]),
        )
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).sort_index()


def constant_columns(matrix: pd.DataFrame) -> pd.Series:
    """Tasks of a performance matrix (candidates × tasks) where every candidate scored the same,
    with that score: no candidate learned anything there that the matrix can tell apart."""
    same = matrix.nunique(axis=0) == 1
    return matrix.loc[:, same].iloc[0].sort_index() if same.any() else pd.Series(dtype=float)


def identical_columns(matrix: pd.DataFrame) -> list[list[str]]:
    """Groups of two or more tasks whose matrix columns are equal for every candidate (constant
    columns left out): the data cannot tell these tasks apart."""
    varied = matrix.loc[:, matrix.nunique(axis=0) > 1]
    groups: dict[tuple, list[str]] = {}
    for task in sorted(varied.columns):
        groups.setdefault(tuple(varied[task].to_numpy()), []).append(task)
    return [g for g in groups.values() if len(g) > 1]


def repeating_methods(values: pd.DataFrame, group: list[str]) -> list[str]:
    """Methods whose score is the same on every task of ``group`` at every point (``values`` as
    ``Evaluation.values``): their runs on these tasks repeat one result."""
    tasks = values.index.get_level_values("task")
    rows = values[tasks.isin(group)]
    if rows.index.get_level_values("task").nunique() < len(group):
        return []
    same = rows.groupby(level="point").nunique() == 1
    return [m for m in values.columns if same[m].all()]


def group_weights(groups: list[list[str]]) -> pd.Series:
    """Task → weight that counts each group of ``groups`` as one task (1/size each); tasks in no
    group are left out (weight 1)."""
    return pd.Series({t: 1.0 / len(g) for g in groups for t in g}, dtype=float)


def known_cause(group: list[str], quirks: Quirks) -> str | None:
    """Why the tasks of ``group`` are one task, when a reproduced quirk explains it."""
    envs = {get_task(t).env_name for t in group}
    if envs == {"pendulum"} and quirks.pendulum_gravity_noop:
        return (
            "the original's Pendulum never reads the gravity CARL sets, so its five contexts have the "
            "same dynamics (protocol.md §1.2; reproduced in `faithful` mode)"
        )
    return None


def task_findings_md(values: pd.DataFrame, matrix: pd.DataFrame | None, quirks: Quirks) -> list[str]:
    """Markdown bullets of the findings above (``matrix`` None: no matrix in the study)."""
    lines = []
    tied = tied_tasks(values)
    ranked = values.index.get_level_values("task").nunique() if not values.empty else 0
    if len(tied):
        shared = ", ".join(f"{t} ({v:g})" for t, v in tied.items())
        lines.append(
            f"- **Ties.** On {len(tied)} of the {ranked} ranked tasks every method has the same score at "
            f"every point: {shared}. There every method gets the middle rank, so these tasks rank "
            f"nothing but pull every mean rank toward the middle by {len(tied)}/{ranked} of its distance."
        )
    plateaus = final_plateaus(values)
    if len(plateaus):
        lines.append(_plateaus_md(plateaus, ranked, len(values.columns)))
    if matrix is not None and not matrix.empty:
        flat = constant_columns(matrix)
        if len(flat):
            lines.append(
                f"- **No signal in the portfolio matrix.** All {len(matrix)} candidates scored the same on "
                f"{', '.join(f'{t} ({v:g})' for t, v in flat.items())}: the portfolio's greedy selection "
                "learns nothing from these columns."
            )
        leaky_portfolio = (
            " and the portfolio (which leaves out only the target task, as the original)"
            if quirks.portfolio_excludes_task_only
            else ""
        )
        for group in identical_columns(matrix):
            cause = known_cause(group, quirks)
            lines.append(
                f"- **One task, {len(group)} times.** {', '.join(group)}: every one of the {len(matrix)} "
                "candidates scored the same on each of them, to the last digit"
                + (f": {cause}." if cause else ".")
                + f" The leave-one-task-out meta-data{leaky_portfolio} then still hold runs on the target's "
                "own dynamics, which favours the methods that use them on these tasks."
                + _repeats_md(values, group)
            )
    return lines


def _repeats_md(values: pd.DataFrame, group: list[str]) -> str:
    same = repeating_methods(values, group)
    if not same:
        return ""
    others = [m for m in values.columns if m not in same]
    but = f" (not {', '.join(others)})" if others else ""
    return (
        f" The evaluation runs repeat too: {len(same)} of the {len(values.columns)} methods{but} score "
        f"the same on all {len(group)} at every point, so one result counts {len(group)} times in every "
        "mean rank."
    )


def _plateaus_md(plateaus: pd.DataFrame, ranked: int, methods: int) -> str:
    def left(row: pd.Series) -> str:
        moved = [f"{', '.join(row[side])} {side}" for side in ("above", "below") if row[side]]
        return f"; off it: {'; '.join(moved)}" if moved else ""

    shown = "; ".join(
        f"{task} ({row['score']:g}, {row['share']} of {methods}{left(row)})"
        for task, row in plateaus.iterrows()
    )
    return (
        f"- **Plateaus at the final point.** On {len(plateaus)} of the {ranked} ranked tasks at least half "
        f"of the {methods} methods end on one shared score (seed means): {shown}. The methods on a plateau "
        "share its middle rank, so there the final rank only tells apart the methods that left it, and "
        "one seed's escape from a floor moves a method's rank on the whole task. The final mean ranks "
        f"are decided by the other {ranked - len(plateaus)} tasks and by who left these plateaus; the "
        "overall ranks also count the points where the methods were still learning."
    )
