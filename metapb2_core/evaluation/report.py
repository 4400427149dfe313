"""The report: text for the terminal, and plots and tables written into a folder."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation.evaluate import Evaluation
from metapb2_core.evaluation.plots_anytime import plot_anytime_normalised, plot_anytime_rank
from metapb2_core.evaluation.plots_cd import plot_cd_diagram
from metapb2_core.evaluation.plots_runs import plot_learning_curve, plot_runtime, plot_schedules
from metapb2_core.evaluation.stats import Comparison
from metapb2_core.evaluation.tables import final_table_latex, final_table_wide


def write_report(ev: Evaluation, points: pd.DataFrame, out: str | Path) -> list[Path]:
    """Write every plot (PNG) and table (CSV, LaTeX) of ``ev`` into ``out``; return the paths."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MetaPB2Error(f"cannot create the report directory {out}: {e.strerror}") from None
    written = [
        plot_anytime_rank(ev, out / "anytime_rank.png"),
        plot_anytime_normalised(ev, out / "anytime_normalised.png"),
    ]
    if ev.anytime_test is not None:
        what = f"all {len(ev.points)} points × tasks stacked"
        written.append(plot_cd_diagram(ev.anytime_test, out / "cd_diagram.png", what))
    if ev.final_test is not None:
        what = f"tasks at the final point {ev.final_point}"
        written.append(plot_cd_diagram(ev.final_test, out / "cd_diagram_final.png", what))
    written.append(plot_runtime(ev, out / "runtime.png"))
    for task in ev.tasks:
        written.append(plot_learning_curve(ev, task, out / "learning_curves" / f"{_safe(task)}.png"))
        written.append(plot_schedules(ev, points, task, out / "schedules" / f"{_safe(task)}.png"))

    tables = {
        "rank_table.csv": ev.summary.to_csv(float_format="%.4f"),
        "final_table.csv": ev.final.to_csv(index=False, float_format="%.4f"),
        "final_table.tex": final_table_latex(ev.final),
        "grid_report.txt": ev.grid.summary() + "\n",
        "fallbacks.csv": ev.fallbacks.to_csv(index=False),
    }
    for name, text in tables.items():
        (out / name).write_text(text)
        written.append(out / name)
    return written


def format_report(ev: Evaluation) -> str:
    """Rank table, tests, per-task final scores and the grid check, as plain text."""
    summary = ev.summary.rename(
        columns={
            "final_rank": f"final rank (point {ev.final_point})",
            "overall_rank": "overall rank",
            "final_normalised": "final norm. score",
            "overall_normalised": "overall norm. score",
        }
    )
    n_tasks = ev.values.xs(ev.final_point, level="point").shape[0]
    parts = [
        f"Mean rank over {n_tasks} tasks (1 = best), ordered by overall (anytime) rank:",
        summary.to_string(float_format=lambda x: f"{x:.2f}"),
        "",
        _test_line("over tasks at the final point", ev.final_test),
        _test_line("over all (task, point) blocks", ev.anytime_test),
        *ev.notes,
        "",
        "Final scores (best member's evaluation return, mean ± SE over seeds; * = best):",
        final_table_wide(ev.final).to_string(),
        "",
        _fallback_lines(ev),
        "",
        ev.grid.summary(),
    ]
    return "\n".join(line for line in parts if line is not None)


def _fallback_lines(ev: Evaluation) -> str:
    if ev.fallbacks.empty:
        return "Fallbacks: none recorded (no model-based suggestions, or no perturbations read)"
    lines = ["Fallbacks (model-based suggestions that did not use the method's model):"]
    for r in ev.fallbacks.itertuples():
        lines.append(
            f"  {r.method}: {r.fallbacks} of {r.suggestions} in {r.runs} run(s)"
            + (f"; {r.reasons}" if r.fallbacks else "")
        )
    return "\n".join(lines)


def _test_line(what: str, cmp: Comparison | None) -> str | None:
    if cmp is None:
        return None
    f = cmp.friedman
    groups = "; ".join("{" + ", ".join(g) + "}" for g in cmp.groups) or "none"
    return (
        f"Friedman {what}: chi2 = {f.statistic:.2f}, p = {f.p_value:.3g} (N = {f.n_blocks}, "
        f"k = {f.n_methods}); Nemenyi CD = {cmp.cd:.2f} at alpha = {cmp.alpha:g}; "
        f"not significantly different: {groups}"
    )


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)
