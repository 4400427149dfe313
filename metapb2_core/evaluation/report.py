"""The report: text for the terminal, and plots and tables written into a folder."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pandas as pd

from metapb2_core.budgets import get_budget
from metapb2_core.envs import TASKS, get_task
from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation.evaluate import Evaluation
from metapb2_core.evaluation.inference_tables import headline, mean_ranks_table, tests_table
from metapb2_core.evaluation.plots_anytime import plot_anytime_normalised, plot_anytime_rank
from metapb2_core.evaluation.plots_cd import plot_cd_diagram
from metapb2_core.evaluation.plots_runs import plot_learning_curve, plot_runtime, plot_schedules
from metapb2_core.evaluation.study_ranking import RankedStudy
from metapb2_core.evaluation.tables import final_table_latex, final_table_wide


def write_report(
    ev: Evaluation, points: pd.DataFrame, out: str | Path, ranked: RankedStudy | None = None
) -> list[Path]:
    """Write every plot (PNG) and table (CSV, LaTeX) of ``ev`` into ``out``; return the paths.
    ``ranked``: also the tests and mean ranks with intervals (tests.csv, mean_ranks.csv), the
    tables the UI's method_ranks shows."""
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
    if ranked is not None:
        paper_interval = get_budget("paper", _family(ev)).interval
        tables["tests.csv"] = tests_table(ranked, paper_interval).to_csv()
        tables["mean_ranks.csv"] = mean_ranks_table(ranked).to_csv()
    for name, text in tables.items():
        (out / name).write_text(text)
        written.append(out / name)
    return written


def format_report(rs: RankedStudy) -> str:
    """What the data support, the tests on independent units beside the paper's, the mean ranks
    with intervals, the paper's rank table, per-task final scores and the grid check, as text."""
    ev = rs.evaluation
    summary = ev.summary.rename(
        columns={
            "final_rank": f"final rank (point {ev.final_point})",
            "overall_rank": "overall rank",
            "final_normalised": "final norm. score",
            "overall_normalised": "overall norm. score",
        }
    )
    n_tasks = ev.values.xs(ev.final_point, level="point").shape[0]
    paper_interval = get_budget("paper", _family(ev)).interval
    parts = [
        rs.count_line(),
        "",
        textwrap.fill(headline(rs, paper_interval), width=110),
        "",
        "Tests (the first on independent units is the primary one):",
        tests_table(rs, paper_interval).to_string(),
        "",
        f"Mean ranks on {rs.inference.units.n} independent units, with 95 % bootstrap intervals:",
        mean_ranks_table(rs).to_string(),
        "",
        f"Mean rank over all {n_tasks} tasks (1 = best), as the paper counts, ordered by overall rank:",
        summary.to_string(float_format=lambda x: f"{x:.2f}"),
        *ev.notes,
        *rs.inference.notes,
        "",
        "Final scores (best member's evaluation return, mean ± SE over seeds; * = best):",
        final_table_wide(ev.final).to_string(),
        "",
        _fallback_lines(ev),
        "",
        ev.grid.summary(),
    ]
    return "\n".join(line for line in parts if line is not None)


def _family(ev: Evaluation) -> str:
    known = [t for t in ev.tasks if t in TASKS]
    return get_task(known[0]).family if known else "classic"


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


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)
