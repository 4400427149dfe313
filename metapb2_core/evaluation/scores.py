"""Scores, seed means, normalised scores and ranks at each evaluation point (protocol.md §6.2–6.5).

An evaluation point p (1-based) is the p-th distinct step count at which a run evaluated its members.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RUN_KEYS = ["task", "method", "seed", "run_id"]


def run_scores(points: pd.DataFrame) -> pd.DataFrame:
    """Score of each run at each evaluation point: the best member's evaluation return (§6.2).

    Columns: task, method, seed, run_id, point, timesteps, score. A point at which no member has
    an evaluation return keeps a NaN score (reported by the grid check, left out of the means)."""
    fresh = (
        points["eval_is_fresh"].astype(bool) if "eval_is_fresh" in points else points["eval_return"].notna()
    )
    evals = points[fresh]
    scores = (
        evals.groupby(RUN_KEYS + ["timesteps"], sort=True)["eval_return"]
        .max()  # skips NaN: a diverged member never wins
        .rename("score")
        .reset_index()
    )
    scores["point"] = scores.groupby("run_id")["timesteps"].rank(method="dense").astype(int)
    return scores[RUN_KEYS + ["point", "timesteps", "score"]]


def seed_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per task, method and point (§6.3), with the spread over seeds.

    Columns: task, method, point, timesteps, mean, sem, min, max, n_seeds (seeds with a score)."""
    grouped = scores.groupby(["task", "method", "point"], sort=True)
    table = grouped["score"].agg(["mean", "sem", "min", "max", "count"]).rename(columns={"count": "n_seeds"})
    table["timesteps"] = grouped["timesteps"].min()
    return table.reset_index()[
        ["task", "method", "point", "timesteps", "mean", "sem", "min", "max", "n_seeds"]
    ]


def stacked(table: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Seed means as one row per (point, task) and one column per method, keeping only the rows
    where every method has a value (the original's ``dropna``, §6.3)."""
    wide = table.pivot(index=["point", "task"], columns="method", values="mean")
    return wide.reindex(columns=methods).dropna()


def normalise(wide: pd.DataFrame) -> pd.DataFrame:
    """Min–max normalise each row across methods: best 1, worst 0 (§6.4).

    A row where all methods are equal maps to 0 for every method, as the original's
    ``(x − min) / (max − min + 1e-8)`` does; other rows are exact (no 1e-8 shrinkage)."""
    low, high = wide.min(axis=1), wide.max(axis=1)
    span = (high - low).where(high > low, np.inf)
    return wide.sub(low, axis=0).div(span, axis=0)


def ranks(wide: pd.DataFrame) -> pd.DataFrame:
    """Rank of each method within each row, 1 = highest score, ties share the average rank (§6.5)."""
    return wide.rank(axis=1, ascending=False, method="average")


def anytime(values: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(mean, standard error) over tasks at each point; rows = points, columns = methods."""
    grouped = values.groupby(level="point")
    return grouped.mean(), grouped.sem().fillna(0.0)


def run_runtimes(points: pd.DataFrame) -> pd.DataFrame:
    """Wall-clock seconds of each run (``total_run_time``, else the last ``wall_seconds``).

    Columns: task, method, seed, run_id, seconds; empty when the points carry no timing."""
    column = next((c for c in ("total_run_time", "wall_seconds") if c in points), None)
    if column is None:
        return pd.DataFrame(columns=[*RUN_KEYS, "seconds"])
    return points.groupby(RUN_KEYS, sort=True)[column].max().rename("seconds").reset_index()
