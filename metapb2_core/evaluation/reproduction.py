"""REPORT.md of a reproduction study: our result beside the paper's, computed from the evaluation
(``evaluate``) of the study's passed runs, with nothing tuned to the paper's numbers."""

from __future__ import annotations

import math

import pandas as pd

from metapb2_core.budgets import get_budget
from metapb2_core.evaluation import scores as sc
from metapb2_core.evaluation.evaluate import Evaluation, evaluate
from metapb2_core.evaluation.paper import PaperResult, paper_groups_hold, rank_agreement
from metapb2_core.evaluation.stats import Comparison
from metapb2_core.evaluation.tables import final_table_wide, rank_summary
from metapb2_core.evaluation.task_findings import group_weights, identical_columns, task_findings_md
from metapb2_core.portfolio import candidate_budget
from metapb2_core.quirks import Quirks
from metapb2_core.study_spec import StudySpec

FIGURES = (
    "anytime_rank.png",
    "anytime_normalised.png",
    "cd_diagram.png",
    "cd_diagram_final.png",
    "runtime.png",
)
EARLY_POINTS = (3, 4, 5)


def _md(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    return df.to_markdown(floatfmt=floatfmt)


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


def study_ranking(
    points: pd.DataFrame,
    spec: StudySpec,
    failed: pd.DataFrame | None = None,
    perturbations: pd.DataFrame | None = None,
    alpha: float = 0.05,
) -> tuple[Evaluation, pd.DataFrame]:
    """(the evaluation a study's report ranks, the ``coverage`` of every declared seed).

    A seed midway beside complete ones would enter some methods' seed means on a task and not
    others' (a task's methods finish one after another), so while at least one seed is complete
    the ranking keeps the complete seeds alone; before any is, it ranks what there is and the
    report says so (``partial_md``). Warns ``IncompleteGridWarning`` as ``evaluate`` does."""
    ev = evaluate(points, alpha=alpha, failed=failed, perturbations=perturbations)
    cover = coverage(ev, spec)
    done = complete_seeds(cover)
    if not done or set(ranked_seeds(ev)) <= set(done):
        return ev, cover

    kept = of_seeds(failed, done) if failed is not None else None
    return evaluate(of_seeds(points, done), alpha=alpha, failed=kept, perturbations=perturbations), cover


def ranked_seeds(ev: Evaluation) -> list[int]:
    """The seeds ``ev`` ranks or lists as failed."""
    return sorted({int(s) for s in pd.concat([ev.scores["seed"], ev.grid.failed["seed"]])})


def of_seeds(runs: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """The rows of ``runs`` (points or failed runs, with a ``seed`` column) of ``seeds``."""
    return runs[runs["seed"].astype(int).isin(seeds)]


def ranked_points(ev: Evaluation, points: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``points`` that ``ev`` ranks: a seed left out midway (``study_ranking``) is not."""
    return of_seeds(points, ranked_seeds(ev))


def partial_md(ev: Evaluation, spec: StudySpec, cover: pd.DataFrame) -> list[str]:
    """A warning above everything else while the study is unfinished (``cover``: ``coverage``):
    the grid check sees only the tasks that have runs, so it alone would not say so."""
    planned, passed, failed = (int(cover[c].sum()) for c in ("planned", "passed", "failed"))
    if passed >= planned:
        return []
    done = complete_seeds(cover)
    if done and ranked_seeds(ev) == done:
        midway = [int(s) for s in cover.index if int(s) not in done]
        left_out = int(cover.loc[midway, "passed"].sum())
        whose = (
            f"whose {left_out} finished run{'s are' if left_out != 1 else ' is'} left out until their "
            "seed is complete"
            if left_out
            else "with no finished evaluation run yet"
        )
        return [
            f"> **Partial result.** {passed} of {planned} planned evaluation runs have passed their "
            f"checks ({failed} failed). Not complete yet: seed(s) {_seeds(midway)}, {whose}. "
            "Every rank, test and score below "
            f"is over the complete seed(s) {_seeds(done)} alone (every task × method), and compares "
            f"with the paper's at {len(done)} of its 10 seeds.",
            "",
        ]
    ranked = ev.values.index.get_level_values("task").nunique() if not ev.values.empty else 0
    return [
        f"> **Partial result.** {passed} of {planned} planned evaluation runs have passed their "
        f"checks ({failed} failed). Every rank, test and score below is over the {ranked} of "
        f"{len(spec.tasks)} tasks where all {len(spec.methods)} methods have a run, and moves as the "
        "study continues: do not compare it with the paper's yet.",
        "",
    ]


def _seeds(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds))


def side_by_side(ev: Evaluation, paper: PaperResult) -> pd.DataFrame:
    ours = ev.summary[["overall_rank", "final_rank", "final_normalised"]]
    theirs = paper.summary[["overall_rank", "final_rank", "final_normalised"]]
    table = ours.join(theirs.add_suffix("_paper"), how="outer")
    cols = [
        ("overall_rank", "overall rank"),
        ("overall_rank_paper", "overall rank (paper)"),
        ("final_rank", "final rank"),
        ("final_rank_paper", "final rank (paper)"),
        ("final_normalised", "final norm. score"),
        ("final_normalised_paper", "final norm. score (paper)"),
    ]
    table = table[[c for c, _ in cols]].rename(columns=dict(cols))
    return table.sort_values("overall rank", kind="stable")


def early_effect(ev: Evaluation, methods: tuple[str, ...] = ("pb2_star_warm", "pb2")) -> pd.DataFrame:
    """Mean normalised score of ``methods`` at ``EARLY_POINTS`` (the paper's early PB2* warm effect)."""
    norm = ev.normalised
    rows = {}
    for p in EARLY_POINTS:
        if p in norm.index.get_level_values("point"):
            at = norm.xs(p, level="point")
            rows[f"point {p}"] = {m: float(at[m].mean()) for m in methods if m in at}
    return pd.DataFrame(rows).T


def runtime_table(runtimes: pd.DataFrame) -> pd.DataFrame:
    """Seconds per run by method (``runtimes``: one row per run, as ``Evaluation.runtimes``)."""
    per_task = runtimes.groupby(["method", "task"])["seconds"].mean().reset_index()
    table = per_task.groupby("method")["seconds"].agg(["median", "sum"])
    table["runs"] = runtimes.groupby("method").size()
    table = table.rename(columns={"median": "median s per run (over tasks)", "sum": "total s (seed mean)"})
    if "pb2" in table.index:
        base = table.loc["pb2", "median s per run (over tasks)"]
        table["vs PB2"] = (table["median s per run (over tasks)"] / base - 1).map(lambda x: f"{x:+.1%}")
    return table.sort_index()


def runtime_md(ev: Evaluation, machines: pd.DataFrame | None) -> list[str]:
    """The runtime section: one table while every ranked run ran on one machine type, else one
    table per machine type (run times, and the ratio to PB2, compare only within one)."""
    if machines is None or machines.empty:
        return [_md(runtime_table(ev.runtimes), ".1f")]
    runtimes = ev.runtimes.merge(machines[["run_id", "machine"]], on="run_id", how="left")
    runtimes["machine"] = runtimes["machine"].fillna("not recorded")
    kinds = sorted(runtimes["machine"].unique())
    if len(kinds) == 1:
        return [
            _md(runtime_table(runtimes), ".1f"),
            "",
            f"Every ranked run ran on one machine type: {kinds[0]}.",
        ]
    per_method = runtimes.groupby(["method", "machine"]).size().unstack(fill_value=0)
    lines = [
        f"The ranked runs ran on {len(kinds)} machine types (runs per method below); run times and "
        "the ratio to PB2 compare only within one, so each has its own table (its medians are over "
        "the tasks that ran on it, which differ between machines).",
        "",
        _md(per_method, ".0f"),
    ]
    for kind in kinds:
        lines += ["", f"On {kind}:", "", _md(runtime_table(runtimes[runtimes["machine"] == kind]), ".1f")]
    return lines


def differences_md(spec: StudySpec, paper: PaperResult, seeds: list[int]) -> list[str]:
    """What in this study's design, as opposed to its result, differs from the paper's, each with
    what it predicts, so a reader can tell a scale effect from a disagreement (``seeds``: the
    complete ones)."""
    budget = get_budget(spec.budget, spec.family)
    full = get_budget("paper", spec.family)
    lines = []
    if budget.total_steps < full.total_steps:
        at, share = budget.total_steps / full.interval, budget.total_steps / full.total_steps
        lines.append(
            f"- **Budget.** {budget.total_steps:,} steps per member, {share:.1%} "
            f"of the paper's {full.total_steps:,}: our last point lies at the paper's point {at:g} of "
            f"{full.num_intervals} in env steps. Our final ranks compare the methods where the paper's "
            "curves are early, where it reports PB2* warm ahead (normalised "
            f"{paper.early_warm[0]:.2f}–{paper.early_warm[1]:.2f} at points 3–5, PB2 "
            f"{paper.early_pb2[0]:.2f}–{paper.early_pb2[1]:.2f}): if that carries over, a warm start "
            "and meta-data weigh more here than at the paper's end. Candidates, matrix and meta runs "
            "are at this budget too: "
            f"the candidates are chosen after {candidate_budget(budget).total_steps:,} steps, not the "
            f"paper's {candidate_budget(full).total_steps:,}."
        )
    if len(seeds) < 10:
        lines.append(
            f"- **Seeds.** {len(seeds)} complete seed(s) of the paper's 10: a task's mean over seeds "
            f"carries about √(10/{max(len(seeds), 1)}) = {math.sqrt(10 / max(len(seeds), 1)):.1f}× the "
            "paper's standard error (at equal per-seed spread). The Nemenyi CD does not shrink with seeds "
            "(its blocks are tasks × points), so close methods swap ranks more often than in the paper."
        )
    lines.append(
        "- **Seeds are replicates.** Each seed searches its own candidates (on that seed), scores them "
        "in its own matrix, builds its own portfolio and reads only its own seed's meta runs, so adding "
        "a seed changes nothing an earlier one computed. The paper searched 30 draws × 4 seeds once "
        "and built one portfolio for every seed, and its meta methods pooled the PB2 runs of every "
        "seed (one run per other task here; protocol.md §5.5), so the meta methods learn from less "
        "data here than there."
    )
    lines.append(
        "- **Mode.** "
        + (
            "The original code's quirks are reproduced (`faithful`), so no difference comes from our fixes."
            if spec.faithful
            else "The fixed behaviour, not the original's quirks: the paper's numbers come from the quirks."
        )
    )
    return lines


def _test_md(name: str, test: Comparison | None) -> str:
    if test is None:
        return f"- {name}: not computed (too few blocks or methods)"
    f = test.friedman
    groups = "; ".join("{" + ", ".join(g) + "}" for g in test.groups) or "none"
    return (
        f"- {name}: Friedman χ² = {f.statistic:.2f}, p = {f.p_value:.3g} ({f.n_blocks} blocks × "
        f"{f.n_methods} methods); Nemenyi CD = {test.cd:.2f} at α = {test.alpha:g}; "
        f"not significantly different: {groups}"
    )


def _agreement_md(summary: pd.DataFrame, paper: PaperResult, of: str = "") -> list[str]:
    lines = ["| ranks compared | methods | Kendall τ | p | Spearman ρ | p |", "|---|---|---|---|---|---|"]
    tied = False
    for column, label in (("overall_rank", "overall (anytime) mean rank"), ("final_rank", "final mean rank")):
        a = rank_agreement(summary, paper, column)
        label += of
        if math.isnan(a.kendall_tau):
            tied = True
            lines.append(f"| {label} | {a.n} | — | — | — | — |")
            continue
        lines.append(
            f"| {label} | {a.n} | {a.kendall_tau:+.2f} | {a.kendall_p:.2g} | "
            f"{a.spearman_rho:+.2f} | {a.spearman_p:.2g} |"
        )
    note = ["", "— : our mean ranks all tie, so there is no ordering to compare yet."]
    return lines + (note if tied else [])


def _groups_md(ev: Evaluation, paper: PaperResult) -> list[str]:
    test = ev.anytime_test
    if test is None:
        return ["No anytime test: the paper's groups cannot be checked."]
    lines = [
        f"The paper's groups (its CD ≈ {paper.cd:.2f}) against our anytime test (CD = {test.cd:.2f}):",
        "",
        "| paper's group | our largest mean-rank gap inside it | holds here |",
        "|---|---|---|",
    ]
    for g in paper_groups_hold(test, paper):
        gap = "—" if math.isnan(g.spread) else f"{g.spread:.2f}"
        lines.append(f"| {{{', '.join(g.group)}}} | {gap} | {'yes' if g.holds else 'no'} |")
    return lines


def per_seed_summary(ev: Evaluation) -> dict[int, pd.DataFrame]:
    """Each seed's ``rank_summary`` of its own runs (the seed ranked alone, not in the seed means),
    for the seeds with a task where every method has a run."""
    out = {}
    for seed, scores in ev.scores.groupby("seed", sort=True):
        values = sc.stacked(sc.seed_table(scores), ev.methods)
        if not values.empty:
            out[int(seed)] = rank_summary(sc.ranks(values), sc.normalise(values))
    return out


def per_seed_md(ev: Evaluation, paper: PaperResult) -> list[str]:
    """The mean ranks of each seed ranked alone, and each one's agreement with the paper: how far
    one seed's ordering moves between replicates; empty with fewer than two seeds."""
    summaries = per_seed_summary(ev)
    if len(summaries) < 2:
        return []
    table = pd.DataFrame(
        {
            **{f"overall, seed {s}": v["overall_rank"] for s, v in summaries.items()},
            "overall (paper)": paper.summary["overall_rank"],
            **{f"final, seed {s}": v["final_rank"] for s, v in summaries.items()},
            "final (paper)": paper.summary["final_rank"],
        }
    ).loc[ev.summary.index]
    table.index.name = "method"
    lines = [
        "## Each seed ranked alone",
        "",
        f"The tables above rank the seed means; here each of the {len(summaries)} seeds is ranked on its "
        "own runs, in the order of the first table. How far a method moves between seeds is how far a "
        "single seed's ordering can be trusted.",
        "",
        _md(table),
        "",
        "| seed | overall: Kendall τ with the paper | p | final: Kendall τ with the paper | p |",
        "|---|---|---|---|---|",
    ]
    for seed, summary in summaries.items():
        cells = []
        for column in ("overall_rank", "final_rank"):
            a = rank_agreement(summary, paper, column)
            cells += (
                ["—", "—"] if math.isnan(a.kendall_tau) else [f"{a.kendall_tau:+.2f}", f"{a.kendall_p:.2g}"]
            )
        lines.append(f"| {seed} | {' | '.join(cells)} |")
    return lines + [""]


def findings_md(ev: Evaluation, spec: StudySpec, matrix: pd.DataFrame | None) -> list[str]:
    """The bullets of *What the data says about the tasks*, in the study's mode."""
    return task_findings_md(ev.values, matrix, Quirks.from_flag(spec.faithful)) or [
        "Nothing: every ranked task separates the methods, and no two tasks are the same task."
    ]


def counted_once_md(ev: Evaluation, paper: PaperResult, matrix: pd.DataFrame | None) -> list[str]:
    """A second view of the mean ranks where each group of tasks the portfolio matrix cannot tell
    apart (``identical_columns``) weighs as one task; empty when there is no such group."""
    groups = identical_columns(matrix) if matrix is not None and not matrix.empty else []
    ranked = set(ev.values.index.get_level_values("task")) if not ev.values.empty else set()
    groups = [g for g in ([t for t in g if t in ranked] for g in groups) if len(g) > 1]
    if not groups:
        return []
    weights = group_weights(groups)
    once = rank_summary(ev.ranks, ev.normalised, weights)
    effective = len(ranked) - sum(len(g) - 1 for g in groups)
    table = pd.DataFrame(
        {
            "overall rank": ev.summary["overall_rank"],
            "overall, counted once": once["overall_rank"],
            "overall rank (paper)": paper.summary["overall_rank"],
            "final rank": ev.summary["final_rank"],
            "final, counted once": once["final_rank"],
            "final rank (paper)": paper.summary["final_rank"],
        }
    ).sort_values("overall, counted once", kind="stable")
    table.index.name = "method"
    named = "; ".join("{" + ", ".join(g) + "}" for g in groups)
    return [
        "## The same ranks with each repeated task counted once",
        "",
        f"A second view beside the faithful ranks above, not instead of them: {named} cannot be told "
        f"apart by the portfolio matrix (see *What the data says about the tasks*), so here each group "
        f"weighs as one task and the {len(ranked)} ranked tasks as {effective}. The paper's ranks count "
        "every task, as our first table does; its code has the same Pendulum.",
        "",
        _md(table),
        "",
        *_agreement_md(once, paper, " (counted once)"),
        "",
    ]


def reproduction_markdown(
    ev: Evaluation,
    spec: StudySpec,
    paper: PaperResult,
    command: str,
    machines: pd.DataFrame | None = None,
    matrix: pd.DataFrame | None = None,
    cover: pd.DataFrame | None = None,
) -> str:
    """REPORT.md of ``ev`` (``cover``: the coverage of every declared seed, as ``study_ranking``
    gives it beside an evaluation of the complete seeds; default: ``ev``'s own)."""
    budget = get_budget(spec.budget, spec.family)
    paper_budget = get_budget("paper", spec.family)
    cover = coverage(ev, spec) if cover is None else cover
    seeds = complete_seeds(cover)
    mode = "faithful (the original code's quirks)" if spec.faithful else "fixed"
    parts = [
        f"# {spec.name}: the paper's {spec.family} comparison, reproduced at a reduced scale",
        "",
        f"Generated from the committed run records by `{command}`; do not edit by hand.",
        "",
        *partial_md(ev, spec, cover),
        "## Scale",
        "",
        f"- Study: {len(spec.tasks)} tasks × {len(spec.methods)} methods, budget `{spec.budget}` "
        f"({budget.total_steps:,} steps per member, {budget.num_intervals} perturbation intervals of "
        f"{budget.interval:,} steps, {budget.population_size} members), {mode}.",
        f"- Paper: {paper.name}; our `paper` budget is {paper_budget.total_steps:,} steps per member, "
        f"{paper_budget.num_intervals} intervals.",
        f"- Seeds declared: {', '.join(map(str, spec.seeds))}; complete (every task × method passed its "
        f"checks): {', '.join(map(str, seeds)) or 'none yet'} ({len(seeds)} of the paper's 10).",
        f"- Portfolio candidates: {spec.candidate_configs} random configurations per task and seed, the "
        f"best {spec.candidate_best} kept; meta-data: the study's own PB2 `meta_runs` of the same seed, "
        "leave-one-task-out.",
        f"- Grid check (over the tasks that have runs): {ev.grid.summary().splitlines()[0]}",
        "",
        "Evaluation runs per seed:",
        "",
        _md(cover),
        "",
        "## Mean ranks beside the paper's",
        "",
        "Ranks of 8 methods (1 = best) averaged over tasks (final: at the last point; overall: over every "
        "evaluation point), and the min–max normalised score at the last point.",
        "",
        _md(side_by_side(ev, paper)),
        "",
        "## Do the orderings agree?",
        "",
        *_agreement_md(ev.summary, paper),
        "",
        *_groups_md(ev, paper),
        "",
        *counted_once_md(ev, paper, matrix),
        *per_seed_md(ev, paper),
        "## What differs from the paper by design",
        "",
        *differences_md(spec, paper, seeds),
        "",
        "## What the data says about the tasks",
        "",
        *findings_md(ev, spec, matrix),
        "",
        "## Tests",
        "",
        _test_md("over tasks at the final point", ev.final_test),
        _test_md("over all (task, point) blocks, as the original", ev.anytime_test),
        *[f"- {n}" for n in ev.notes],
        "",
        "## The early PB2* warm effect",
        "",
        f"Mean normalised score at points {', '.join(map(str, EARLY_POINTS))}. The paper: PB2* warm "
        f"{paper.early_warm[0]:.2f}–{paper.early_warm[1]:.2f}, "
        f"PB2 {paper.early_pb2[0]:.2f}–{paper.early_pb2[1]:.2f}.",
        "",
        _md(early_effect(ev)),
        "",
        "## Runtime per method",
        "",
        *runtime_md(ev, machines),
        "",
        "## Figures",
        "",
        *[f"![{f}](report/{f})" for f in FIGURES],
        "",
        "## Final scores per task",
        "",
        "Best member's evaluation return at the last point, mean ± SE over seeds (* = best of the row).",
        "",
        final_table_wide(ev.final).to_markdown(),
        "",
    ]
    return "\n".join(parts)
