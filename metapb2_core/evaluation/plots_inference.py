"""Plots of the inference on independent units: mean ranks with their intervals, and rliable's
performance profile."""

from __future__ import annotations

from pathlib import Path

from metapb2_core.evaluation.inference import Inference
from metapb2_core.evaluation.style import method_colors, new_figure, save


def plot_rank_intervals(inf: Inference, path: str | Path) -> Path:
    """Final and overall mean rank per method on units, with the 95 % bootstrap intervals over
    seeds (thick) and over tasks and seeds (thin)."""
    table = inf.mean_ranks
    colors = method_colors(list(table.index))
    fig = new_figure(11, 4.2)
    axes = fig.subplots(1, 2, sharey=True)
    order = list(table.sort_values("final rank").index)[::-1]
    for ax, what in zip(axes, ("final", "overall"), strict=True):
        for y, m in enumerate(order):
            row = table.loc[m]
            c = colors[m]
            ax.hlines(y, row[f"{what} low (tasks+seeds)"], row[f"{what} high (tasks+seeds)"], color=c, lw=1.5)
            ax.hlines(y, row[f"{what} low (seeds)"], row[f"{what} high (seeds)"], color=c, lw=5, alpha=0.6)
            ax.plot(row[f"{what} rank"], y, "o", color=c, ms=7)
        ax.set_yticks(range(len(order)), order)
        ax.set_xlim(len(order) + 0.5, 0.5)  # best (1) on the right
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("mean rank over tasks counted once (1 = best)")
        ax.set_title(f"{what} rank: 95 % intervals over seeds (thick) and tasks + seeds (thin)", fontsize=9)
    fig.suptitle(f"{inf.units.n} tasks counted once × {inf.n_seeds} seeds", fontsize=10)
    return save(fig, path)


def plot_performance_profile(inf: Inference, path: str | Path) -> Path:
    """The fraction of runs whose run-normalised final score exceeds τ (rliable's performance
    profile), with 95 % bootstrap bands over seeds."""
    profile = inf.profile
    methods = list(dict.fromkeys(profile["method"]))
    colors = method_colors(methods)
    fig = new_figure(7.5, 4.5)
    ax = fig.subplots()
    for m in methods:
        rows = profile[profile["method"] == m]
        ax.plot(rows["tau"], rows["fraction"], color=colors[m], lw=2, label=m)
        ax.fill_between(rows["tau"], rows["lo"], rows["hi"], color=colors[m], alpha=0.12, lw=0)
    ax.set_xlabel("run-normalised final score τ (per task: worst run 0, best run 1)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return save(fig, path)
