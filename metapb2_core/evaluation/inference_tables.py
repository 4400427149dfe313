"""The inference of a ranked study as tables and sentences, built once for every reader: REPORT.md
renders them as Markdown, ``method_ranks`` as Dagster table metadata, ``metapb2 report`` as text.
So the UI, the CLI and the report state the same tests."""

from __future__ import annotations

import pandas as pd

from metapb2_core.evaluation.inference import Inference, separated_pairs
from metapb2_core.evaluation.study_ranking import RankedStudy


def steps(n: int) -> str:
    return f"{n:,} steps"


def point_label(inf: Inference, point: int, paper_interval: int | None) -> str:
    """ "120,000 steps (point 15; the paper's point 3)": a point named by its env steps first."""
    at = inf.cube.timesteps[inf.cube.points.index(point)]
    text = f"{steps(at)} (point {point}"
    if paper_interval and at % paper_interval == 0:
        text += f"; the paper's point {at // paper_interval}"
    return text + ")"


def _pairs_text(pairs: list[tuple[str, str]]) -> str:
    return "; ".join(f"{a} > {b}" for a, b in pairs) or "none"


def tests_table(rs: RankedStudy, paper_interval: int | None = None) -> pd.DataFrame:
    """Every test the study states, the primary one first, each with the unit it treats as
    independent and n: Friedman + Nemenyi on units at the final point and at the points aligned
    with the paper's, then the paper's own test over stacked points, labelled so."""
    inf, ev = rs.inference, rs.evaluation
    unit = f"task counted once ({inf.units.n}), seed mean over {inf.n_seeds} seed(s)"
    rows = []
    for point in sorted(inf.tests, key=lambda p: (p != inf.final_point, p)):
        test = inf.tests[point]
        role = "primary" if point == inf.final_point else "at an aligned point"
        pairs = _separated(test, inf.alpha)
        rows.append(
            {
                "test": f"Friedman + Nemenyi at {point_label(inf, point, paper_interval)}, {role}",
                "unit treated as independent": unit,
                "n": test.friedman.n_blocks,
                "p": f"{test.friedman.p_value:.2g}",
                "CD": f"{test.cd:.2f}",
                "pairs separated": _pairs_text(pairs),
            }
        )
    if ev.final_test is not None and ev.final_test.n_blocks != inf.units.n:
        test = ev.final_test
        rows.append(
            {
                "test": "Friedman + Nemenyi at the final point, every task counted (as in the paper)",
                "unit treated as independent": f"task ({test.n_blocks}; identical tasks counted each time)",
                "n": test.n_blocks,
                "p": f"{test.friedman.p_value:.2g}",
                "CD": f"{test.cd:.2f}",
                "pairs separated": _pairs_text(_separated(test, inf.alpha)),
            }
        )
    paper = inf.paper
    if paper is not None:
        stacked = separated_pairs(paper.mean_ranks, paper.cd, paper.p_value, inf.alpha)
        rows.append(
            {
                "test": f"autorank ({paper.omnibus}) over every point stacked, as in the paper; "
                "not a valid test: its blocks are repeated measures of the same runs",
                "unit treated as independent": f"(task, point) block, {paper.tied_blocks} of them fully tied",
                "n": paper.n_blocks,
                "p": f"{paper.p_value:.2g}",
                "CD": f"{paper.cd:.2f}" if paper.cd is not None else "—",
                "pairs separated": _pairs_text(stacked),
            }
        )
    columns = ["test", "unit treated as independent", "n", "p", "CD", "pairs separated"]
    return pd.DataFrame(rows, columns=columns).set_index("test")  # empty: too few units for any test


def _separated(test, alpha: float) -> list[tuple[str, str]]:
    return separated_pairs(test.mean_ranks, test.cd, test.friedman.p_value, alpha)


def verdict_counts(inf: Inference) -> dict[str, int]:
    return inf.per_unit["verdict"].value_counts().to_dict()


def headline(rs: RankedStudy, paper_interval: int | None = None) -> str:
    """The paragraph a reader can quote: which differences the data support at α on independent
    units, and which they do not."""
    inf = rs.inference
    n, k, alpha = inf.units.n, len(inf.cube.methods), inf.alpha
    test = inf.final_test
    at = point_label(inf, inf.final_point, paper_interval)
    parts = [
        f"At α = {alpha:g} on {n} independent task{'s' if n != 1 else ''} "
        f"({'identical tasks counted once, ' if inf.units.groups else ''}"
        f"{inf.n_seeds} seed{'s' if inf.n_seeds != 1 else ''} each) at the final point, {at}:"
    ]
    pairs = inf.supported_pairs()
    total = k * (k - 1) // 2
    if test is None:
        parts.append("no test (too few tasks).")
    elif test.friedman.p_value >= alpha:
        parts.append(
            f"the Friedman test does not reject that the {k} methods perform alike "
            f"(p = {test.friedman.p_value:.2g}), so no difference between methods is supported."
        )
    elif not pairs:
        r = test.mean_ranks
        gap = float(r.max() - r.min())
        parts.append(
            f"the Friedman test rejects that the {k} methods perform alike (p = "
            f"{test.friedman.p_value:.2g}), but the Nemenyi test separates no pair: the largest gap "
            f"in mean rank, {gap:.2f} ({r.index[0]} to {r.index[-1]}), is within its critical "
            f"difference of {test.cd:.2f}. The data do not say which methods differ."
        )
    else:
        parts.append(
            f"the Friedman test rejects (p = {test.friedman.p_value:.2g}) and the Nemenyi test "
            f"(CD = {test.cd:.2f}) separates {len(pairs)} of {total} pairs: {_pairs_text(pairs)}; "
            "no other pair differs."
        )
    counts = verdict_counts(inf)
    noise = counts.get("within noise", 0) + counts.get("all equal", 0)
    parts.append(
        f"On {noise} of {n} tasks the methods' final returns are within noise of each other "
        f"(Kruskal–Wallis over the seeds, p ≥ {alpha:g}, or every run equal)"
        + (f"; {counts.get('decided', 0)} decided." if counts.get("decided") else ".")
    )
    if "excludes 0" in inf.pairwise:
        excl = inf.pairwise.index[inf.pairwise["excludes 0"] == "yes"].tolist()
        strict = [c for c in inf.pairwise.columns if c.startswith("excludes 0 (Bonferroni")]
        strict_n = int((inf.pairwise[strict[0]] == "yes").sum()) if strict else 0
        parts.append(
            f"Bootstrap 95 % intervals (over tasks and seeds) of the difference in final normalised "
            f"score exclude zero for {len(excl)} of {total} pairs"
            + (f" ({', '.join(excl)})" if excl else "")
            + f", {strict_n} after a Bonferroni correction for the {total} comparisons."
        )
    if len(pairs) * 4 < total:
        parts.append(
            "**At this budget the study cannot separate most methods;** the mean ranks below "
            "order them, but their intervals overlap."
        )
    earlier = [p for p in inf.tests if p != inf.final_point]
    for p in sorted(earlier):
        sep = _separated(inf.tests[p], alpha)
        parts.append(f"At {point_label(inf, p, paper_interval)}: {_pairs_text(sep)} separated.")
    if inf.paper is not None:
        parts.append(
            f"The paper's own test (autorank over all {inf.paper.n_blocks} (task, point) blocks) "
            f"gives p = {inf.paper.p_value:.2g}; it counts repeated measures of the same runs as "
            "independent blocks and is shown only to compare with the paper."
        )
    return " ".join(parts)


def mean_ranks_table(rs: RankedStudy) -> pd.DataFrame:
    """Per method (best final rank first): the final and overall mean rank on units with their
    95 % bootstrap intervals, and the final normalised score, as text cells."""
    mr = rs.inference.mean_ranks

    def ci(what: str, over: str) -> pd.Series:
        return mr.apply(lambda r: f"{r[f'{what} low ({over})']:.2f}–{r[f'{what} high ({over})']:.2f}", axis=1)

    table = pd.DataFrame(
        {
            "final rank": mr["final rank"].map("{:.2f}".format),
            "95% CI over seeds": ci("final", "seeds"),
            "95% CI over tasks + seeds": ci("final", "tasks+seeds"),
            "overall rank": mr["overall rank"].map("{:.2f}".format),
            "overall 95% CI (tasks + seeds)": ci("overall", "tasks+seeds"),
            "final norm. score": mr["final normalised"].map("{:.2f}".format),
        }
    )
    table.index.name = "method"
    return table
