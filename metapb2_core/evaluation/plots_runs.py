"""Per-task learning curves, runtime per method and the best member's hyperparameter schedules
(protocol.md §6.7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from metapb2_core.evaluation.evaluate import Evaluation
from metapb2_core.evaluation.style import method_colors, new_figure, save
from metapb2_core.space import SEARCH_SPACE

REFERENCE_METHOD = "pb2"  # runtime differences are shown relative to its median, as the original


def plot_learning_curve(ev: Evaluation, task: str, path: str | Path) -> Path:
    """Mean over seeds of the best-member score against env steps, band = min–max over seeds."""
    colors = method_colors(ev.methods)
    fig = new_figure(8, 5)
    ax = fig.subplots()
    rows = ev.table[ev.table["task"] == task]
    for m, df in rows.groupby("method", sort=True):
        n = int(df["n_seeds"].max())
        label = f"{m} ({n} seed{'s' if n > 1 else ''})"
        ax.plot(df["timesteps"], df["mean"], marker="o", ms=4, lw=2, color=colors[m], label=label)
        ax.fill_between(df["timesteps"], df["min"], df["max"], color=colors[m], alpha=0.15, lw=0)
    ax.set_xlabel("Env steps per member")
    ax.set_ylabel("Best member's evaluation return")
    ax.set_title(f"{task}: mean over seeds, band = min–max over seeds")
    ax.ticklabel_format(axis="x", style="plain")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="best")
    return save(fig, path)


def plot_runtime(ev: Evaluation, path: str | Path) -> Path:
    """Box plot over tasks of each method's mean wall-clock time over seeds, median labelled; the
    right axis gives the difference from the median of PB2 when PB2 is present."""
    per_task = ev.runtimes.groupby(["method", "task"])["seconds"].mean().reset_index()
    methods = [m for m in ev.methods if m in set(per_task["method"])]
    colors = method_colors(ev.methods)
    data = [per_task.loc[per_task["method"] == m, "seconds"].to_numpy() for m in methods]
    fig = new_figure(max(6, 1.2 * len(methods) + 2), 5)
    ax = fig.subplots()
    if not methods:
        ax.text(0.5, 0.5, "no timing in these runs", ha="center", va="center", transform=ax.transAxes)
        return save(fig, path)
    box = ax.boxplot(data, patch_artist=True, widths=0.6, medianprops={"color": "black"}, showfliers=False)
    ax.set_xticks(range(1, len(methods) + 1), methods, rotation=20, ha="right")
    for patch, m in zip(box["boxes"], methods, strict=True):
        patch.set_facecolor(colors[m])
        patch.set_alpha(0.6)
    rng = np.random.default_rng(0)  # horizontal jitter of the per-task dots only
    for i, (m, d) in enumerate(zip(methods, data, strict=True), start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(d)), d, s=14, color=colors[m], edgecolor="black", lw=0.5)
        median = float(np.median(d))
        ax.annotate(
            f"median {median:.0f} s" if median >= 100 else f"median {median:.1f} s",
            (i, float(np.max(d))),
            xytext=(0, 5),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
            fontweight="bold",
        )
    ax.margins(y=0.1)
    ax.set_ylabel("Wall-clock seconds per run (mean over seeds)")
    ax.set_title(f"Runtime per method ({per_task['task'].nunique()} tasks)")
    ax.grid(axis="y", alpha=0.3)
    if REFERENCE_METHOD in methods:
        ref = float(np.median(data[methods.index(REFERENCE_METHOD)]))
        sec = ax.secondary_yaxis(
            "right", functions=(lambda s: 100 * (s / ref - 1), lambda p: ref * (1 + p / 100))
        )
        sec.set_ylabel(f"Difference from the {REFERENCE_METHOD} median (%)")
    return save(fig, path)


def best_member_schedule(points: pd.DataFrame, run_id: str) -> tuple[int, pd.DataFrame]:
    """(member, its rows) of the member with the highest evaluation return at the run's last
    evaluation. Hyperparameters are per member slot: a slot that exploited keeps its index."""
    run = points[points["run_id"] == run_id].sort_values(["timesteps", "member"])
    evals = run[run["eval_return"].notna()]
    last = evals[evals["timesteps"] == evals["timesteps"].max()]
    if last.empty or not np.isfinite(last["eval_return"].to_numpy(float)).any():
        return int(run["member"].min()), run[run["member"] == run["member"].min()]  # no best: the first
    member = int(last.loc[last["eval_return"].idxmax(), "member"])
    return member, run[run["member"] == member]


def plot_schedules(ev: Evaluation, points: pd.DataFrame, task: str, path: str | Path) -> Path:
    """Hyperparameters (and evaluation return) of each method's best final member on ``task``,
    for the lowest seed every method ran."""
    params = [p for p in SEARCH_SPACE.params if p.name in points.columns]
    runs = ev.scores[ev.scores["task"] == task].drop_duplicates("run_id")
    common = set.intersection(*(set(df["seed"]) for _, df in runs.groupby("method")))
    seed = min(common) if common else int(runs["seed"].min())
    colors = method_colors(ev.methods)
    fig = new_figure(9, 2.1 * (len(params) + 1) + 0.6)
    axes = fig.subplots(len(params) + 1, 1, sharex=True)
    for row in runs[runs["seed"] == seed].itertuples():
        member, df = best_member_schedule(points, row.run_id)
        label = f"{row.method} (member {member})"
        evals = df[df["eval_return"].notna()]
        axes[0].plot(
            evals["timesteps"], evals["eval_return"], marker="o", color=colors[row.method], label=label
        )
        for ax, p in zip(axes[1:], params, strict=True):
            # a row's configuration trained the iteration that ends at its step count
            ax.step(df["timesteps"], df[p.name], where="pre", lw=2, color=colors[row.method])
    axes[0].set_ylabel("Evaluation return")
    axes[0].legend(fontsize=8, loc="best")
    for ax, p in zip(axes[1:], params, strict=True):
        ax.set_ylabel(p.name)
        for bound in (p.low, p.high):  # the search-space bounds, which also fix the axis range
            ax.axhline(bound, color="grey", ls=":", lw=1)
        if p.log:
            ax.set_yscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("Env steps per member")
    axes[-1].ticklabel_format(axis="x", style="plain")
    axes[0].set_title(f"{task}, seed {seed}: hyperparameters of the best final member of each method")
    return save(fig, path)
