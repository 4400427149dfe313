"""Anytime curves over evaluation points: mean rank and mean normalised score (protocol.md §6.4–6.5)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.ticker import MaxNLocator

from metapb2_core.evaluation.evaluate import Evaluation
from metapb2_core.evaluation.scores import anytime
from metapb2_core.evaluation.style import method_colors, new_figure, point_label, save


def _curves(ax, values: pd.DataFrame, order: list[str], colors: dict, labels: dict[str, str]) -> None:
    mean, sem = anytime(values)
    for m in order:
        ax.plot(mean.index, mean[m], marker="o", ms=4, lw=2, color=colors[m], label=labels[m])
        ax.fill_between(mean.index, mean[m] - sem[m], mean[m] + sem[m], color=colors[m], alpha=0.15, lw=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def _n_tasks(values: pd.DataFrame) -> str:
    counts = values.groupby(level="point").size()
    return f"{counts.min()}" if counts.min() == counts.max() else f"{counts.min()}–{counts.max()}"


def plot_anytime_rank(ev: Evaluation, path: str | Path) -> Path:
    """Mean rank over tasks at each point (± standard error over tasks); on the right, each
    method's final and overall mean rank. Legend ordered by overall rank."""
    order = list(ev.summary.index)
    colors = method_colors(ev.methods)
    labels = {m: f"{m} ({ev.summary.loc[m, 'overall_rank']:.2f})" for m in order}
    fig = new_figure(11, 5)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1.2]})
    _curves(left, ev.ranks, order, colors, labels)
    left.set_xlabel(point_label(ev.table))
    left.set_ylabel("Mean rank over tasks (1 = best)")
    left.set_ylim(0.8, len(ev.methods) + 0.2)
    left.set_title(f"Anytime mean rank ({_n_tasks(ev.ranks)} tasks, band = ± SE over tasks)")
    left.legend(
        title="method (overall mean rank)",
        fontsize=9,
        ncol=4,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
    )

    y = range(len(order))
    for i, m in enumerate(order):
        right.scatter(ev.summary.loc[m, "overall_rank"], i, s=70, color=colors[m], zorder=3)
        right.scatter(
            ev.summary.loc[m, "final_rank"], i, s=70, marker="D", facecolor="white", edgecolor=colors[m], lw=2
        )
    right.set_yticks(list(y), order)
    right.set_ylim(len(order) - 0.5, -0.5)
    right.set_xlim(0.8, len(ev.methods) + 0.2)
    right.set_xlabel("Mean rank (1 = best)")
    right.set_title("Mean rank: ● all points, ◇ final point")
    right.grid(axis="x", alpha=0.3)
    return save(fig, path)


def plot_anytime_normalised(ev: Evaluation, path: str | Path) -> Path:
    """Mean min–max normalised score over tasks at each point (± standard error over tasks)."""
    order = list(ev.summary.sort_values("final_normalised", ascending=False, kind="stable").index)
    colors = method_colors(ev.methods)
    labels = {m: f"{m} ({ev.summary.loc[m, 'final_normalised']:.2f})" for m in order}
    fig = new_figure(10, 5)
    ax = fig.subplots()
    _curves(ax, ev.normalised, order, colors, labels)
    ax.set_xlabel(point_label(ev.table))
    ax.set_ylabel("Mean normalised score (1 = best method on the task)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"Anytime normalised score ({_n_tasks(ev.normalised)} tasks, band = ± SE over tasks)")
    ax.legend(title="method (final score)", fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1))
    return save(fig, path)
