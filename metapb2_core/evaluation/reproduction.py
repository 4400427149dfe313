"""REPORT.md of a reproduction study: what the data support first, the inference on independent
units, then our result beside the paper's (aligned by env steps), computed from the ranking of the
study's passed runs (``study_ranking.rank_study``), with nothing tuned to the paper's numbers."""

from __future__ import annotations

import math

import pandas as pd

from metapb2_core.budgets import get_budget
from metapb2_core.evaluation.evaluate import Evaluation
from metapb2_core.evaluation.inference import per_seed_ranks
from metapb2_core.evaluation.inference_tables import headline, mean_ranks_table, point_label, tests_table
from metapb2_core.evaluation.paper import (
    PaperResult,
    agreement_range,
    approx,
    paper_groups_hold,
    rank_agreement,
)
from metapb2_core.evaluation.study_ranking import RankedStudy, complete_seeds, ranked_seeds
from metapb2_core.evaluation.tables import final_table_wide
from metapb2_core.evaluation.task_findings import task_findings_md
from metapb2_core.portfolio import candidate_budget
from metapb2_core.quirks import Quirks
from metapb2_core.study_spec import StudySpec

FIGURES = (
    "rank_intervals.png",
    "performance_profile.png",
    "anytime_rank.png",
    "anytime_normalised.png",
    "cd_diagram_final.png",
    "cd_diagram.png",
    "runtime.png",
)


def _md(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    return df.to_markdown(floatfmt=floatfmt)


def _md_text(df: pd.DataFrame) -> str:
    """A table of cells already formatted as text: printed as they are."""
    return df.to_markdown(disable_numparse=True)


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
            "paper's standard error (at equal per-seed spread), so close methods swap ranks more often "
            "than in the paper. The Nemenyi critical difference depends on the number of independent "
            "units, not of seeds: more seeds sharpen each unit's mean, not the test's threshold."
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


def findings_md(ev: Evaluation, spec: StudySpec, matrix: pd.DataFrame | None) -> list[str]:
    """The bullets of *What the data says about the tasks*, in the study's mode."""
    return task_findings_md(ev.values, matrix, Quirks.from_flag(spec.faithful)) or [
        "Nothing: every ranked task separates the methods, and no two tasks are the same task."
    ]


def units_md(rs: RankedStudy) -> list[str]:
    """Mean ranks with intervals on independent units, per environment, per task and per pair."""
    inf = rs.inference
    decided = inf.per_unit.copy()
    decided["Kruskal–Wallis H"] = decided["Kruskal–Wallis H"].map(lambda x: "—" if pd.isna(x) else f"{x:.2f}")
    decided["p"] = decided["p"].map(lambda x: "—" if pd.isna(x) else f"{x:.2g}")
    pairwise = inf.pairwise.copy()
    pairwise["Δ norm. score"] = pairwise["Δ norm. score"].map("{:+.2f}".format)
    pairwise["P(a > b)"] = pairwise["P(a > b)"].map("{:.2f}".format)
    return [
        "## Independent units: mean ranks with 95 % intervals",
        "",
        f"Units: {inf.units.rule()}. Each unit's score per method and seed is the best member's "
        "evaluation return; a seed mean per unit is ranked across methods (1 = best). Intervals are "
        f"percentile bootstraps ({inf.reps} draws, fixed seed): over seeds, each unit's seeds redrawn "
        "with replacement, the same seeds for every method (a seed's runs share their initial "
        "population); over tasks and seeds, the units redrawn too. With "
        f"{inf.n_seeds} seed(s) the seed intervals are coarse.",
        "",
        _md_text(mean_ranks_table(rs)),
        "",
        "![mean ranks with intervals](report/rank_intervals.png)",
        "",
        "### Per environment",
        "",
        "Mean final rank over each environment's units, so a lead that comes from one environment shows.",
        "",
        _md(inf.env_ranks.astype({"units": str})),
        "",
        "### Per task: decided, or within noise",
        "",
        "Kruskal–Wallis test across the methods on each unit's final scores (one per seed and method). "
        "It assumes independent samples; a seed pairs the methods' runs, which it ignores, and with "
        f"{inf.n_seeds} seed(s) per method its χ² approximation is rough: read it as a screen.",
        "",
        _md_text(decided.astype(str)),
        "",
        "### Pairwise differences in final normalised score",
        "",
        "Δ: the mean over units of a's minus b's normalised final score (per unit, seed means scaled "
        "so the best method is 1 and the worst 0); its 95 % interval from the bootstrap over tasks "
        "and seeds, and whether it excludes 0 alone and after a Bonferroni correction. P(a > b): "
        "rliable's probability of improvement (a run of a beats a run of b on the same unit, ties "
        "half), averaged over units. The Nemenyi column is the family-wise test of the primary row of "
        "*Tests*.",
        "",
        _md_text(pairwise),
        "",
        "### Aggregate scores (rliable)",
        "",
        "Run-normalised final scores (per unit: the worst run of any method 0, the best 1): rliable's "
        "interquartile mean and mean over every (unit, seed) run, with stratified bootstrap "
        "intervals (seeds redrawn within units).",
        "",
        _md(inf.aggregates),
        "",
        "![performance profile](report/performance_profile.png)",
        "",
    ]


def tests_md(rs: RankedStudy, paper_interval: int) -> list[str]:
    inf = rs.inference
    lines = [
        "## Tests",
        "",
        "The primary test is Friedman's over units at the final point, with the Nemenyi critical "
        "difference (Demšar 2006): it assumes the units are independent blocks and the methods' "
        "ranks exchangeable under the null. The same test at the points that fall on the paper's "
        "evaluation steps follows. The last rows are the paper's ways, kept to compare with it: all "
        "tasks counted, and autorank over every point stacked (protocol.md §6.5), which treats "
        "repeated measures of the same runs as independent blocks and so overstates the evidence.",
        "",
        _md_text(tests_table(rs, paper_interval)),
        "",
    ]
    paper = inf.paper
    if paper is not None:
        normal = "all normal" if paper.all_normal else "not all normal (Shapiro–Wilk)"
        homo = "homoscedastic" if paper.homoscedastic else "heteroscedastic"
        same = ", ".join(paper.first_point_identical)
        lines += [
            f"autorank's checks on the stacked table: {normal}, {homo}, so it chose "
            f"{paper.omnibus}. {paper.tied_blocks} of its {paper.n_blocks} blocks tie every method"
            + (
                f"; at point 1 these methods hold one value on every task by construction: {same}"
                if same
                else ""
            )
            + ".",
            "",
        ]
    return lines + [f"- {n}" for n in [*rs.evaluation.notes, *inf.notes]] + [""]


def side_by_side(rs: RankedStudy, paper: PaperResult, budget_steps: int, paper_steps: int) -> pd.DataFrame:
    """Our mean ranks (on units, and over every task as the paper counts) beside the paper's, each
    column named with the env steps it stands at; the paper's values marked as read off a figure."""
    ev, mr = rs.evaluation, rs.inference.mean_ranks
    methods = list(mr.sort_values("overall rank").index)

    def theirs(column: str) -> list[str]:
        return [approx(paper, m, column) if m in paper.summary.index else "—" for m in methods]

    table = pd.DataFrame(
        {
            "overall, units": mr.loc[methods, "overall rank"].map("{:.2f}".format),
            "overall, all tasks": ev.summary.loc[methods, "overall_rank"].map("{:.2f}".format),
            "paper overall": theirs("overall_rank"),
            f"final at {budget_steps:,}, units": mr.loc[methods, "final rank"].map("{:.2f}".format),
            f"final at {budget_steps:,}, all tasks": ev.summary.loc[methods, "final_rank"].map(
                "{:.2f}".format
            ),
            f"paper final at {paper_steps:,}": theirs("final_rank"),
            "final norm., units": mr.loc[methods, "final normalised"].map("{:.2f}".format),
            f"paper final norm. at {paper_steps:,}": theirs("final_normalised"),
        },
        index=pd.Index(methods, name="method"),
    )
    return table


def agreement_md(rs: RankedStudy, paper: PaperResult) -> list[str]:
    """τ and ρ with the paper, at its printed values and over every ordering its readings allow,
    with exact permutation p-values; on units and over every task."""
    lines = [
        "| our ranks | paper's | methods | Kendall τ (printed values) | permutation p | τ over the "
        "readings' orderings | p range | Spearman ρ | permutation p | ρ range |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ours = {
        "overall, units": (rs.inference.mean_ranks["overall rank"], "overall_rank"),
        "overall, all tasks": (rs.evaluation.summary["overall_rank"], "overall_rank"),
        "final, units": (rs.inference.mean_ranks["final rank"], "final_rank"),
        "final, all tasks": (rs.evaluation.summary["final_rank"], "final_rank"),
    }
    for label, (ranks, column) in ours.items():
        a = agreement_range(ranks, paper, column)
        if a is None:
            lines.append(f"| {label} | {column} | — | our ranks all tie | | | | | | |")
            continue
        lines.append(
            f"| {label} | {column.replace('_', ' ')} | {a.n} | {a.tau:+.2f} | {a.tau_p:.2g} | "
            f"{a.tau_low:+.2f} to {a.tau_high:+.2f} ({a.orderings}) | {a.tau_p_low:.2g}–{a.tau_p_high:.2g} | "
            f"{a.rho:+.2f} | {a.rho_p:.2g} | {a.rho_low:+.2f} to {a.rho_high:+.2f} |"
        )
    return lines


def agreement_sentence(rs: RankedStudy, paper: PaperResult, paper_steps: int) -> str:
    """The agreement with the paper's ordering in one sentence, on units and as the paper counts."""
    parts = []
    for what, column in (("overall", "overall_rank"), ("final", "final_rank")):
        units = agreement_range(rs.inference.mean_ranks[f"{what} rank"], paper, column)
        every = agreement_range(rs.evaluation.summary[column], paper, column)
        if units is None or every is None:
            continue
        parts.append(
            f"{what}: τ = {units.tau:+.2f} on units (the readings allow {units.tau_low:+.2f} to "
            f"{units.tau_high:+.2f}; exact permutation p {units.tau_p:.2g}), {every.tau:+.2f} "
            f"(p {every.tau_p:.2g}) with every task counted"
        )
    if not parts:
        return ""
    return (
        "Agreement with the paper's ordering (Kendall τ-b of the mean ranks; the paper's read off its "
        f"figure, its final at {paper_steps:,} steps): " + "; ".join(parts) + ". See *Beside the paper*."
    )


def paper_md(rs: RankedStudy, spec: StudySpec, paper: PaperResult) -> list[str]:
    budget = get_budget(spec.budget, spec.family)
    full = get_budget("paper", spec.family)
    ev = rs.evaluation
    lines = [
        "## Beside the paper",
        "",
        f"The paper's values are read off its figures (protocol.md §7): ≈ means ±{0.05:g} in rank, "
        f"≈≈ a value the figure partly hid, reconstructed (taken as ±{0.15:g}). Its overall rank "
        f"averages its 15 points from {full.interval:,} to {full.total_steps:,} steps, its final "
        f"rank stands at {full.total_steps:,}; ours average the points from {budget.interval:,} to "
        f"{budget.total_steps:,} and stand at {budget.total_steps:,}. So the columns compare the end "
        "of each budget, not equal steps: no published rank stands at our final step count.",
        "",
        _md_text(side_by_side(rs, paper, budget.total_steps, full.total_steps)),
        "",
        "Agreement of the orderings. τ-b and ρ at the printed values (their ties as ties), then the "
        "range over every strict ordering the readings allow (methods whose reading intervals overlap "
        "may swap; the count of orderings in brackets), each with an exact two-sided permutation "
        "p-value over all orderings of 8 methods. It says how similar two orderings are, not whether "
        "either ordering is real: see *Tests* for that.",
        "",
        *agreement_md(rs, paper),
        "",
    ]
    test = ev.anytime_test
    if test is not None:
        lines += [
            f"The paper's significance groups (its CD ≈ {paper.cd:.2f}, over stacked points) against "
            f"the same test here (CD = {test.cd:.2f}), as in the paper:",
            "",
            "| paper's group | our largest mean-rank gap inside it | holds here |",
            "|---|---|---|",
        ]
        for g in paper_groups_hold(test, paper):
            gap = "—" if math.isnan(g.spread) else f"{g.spread:.2f}"
            lines.append(f"| {{{', '.join(g.group)}}} | {gap} | {'yes' if g.holds else 'no'} |")
        lines.append("")
    return lines


def per_seed_md(rs: RankedStudy, paper: PaperResult) -> list[str]:
    """Each seed ranked alone on units, and its agreement with the paper: how far one seed's
    ordering moves between replicates; empty with fewer than two seeds."""
    alone = per_seed_ranks(rs.inference)
    seeds = list(alone["final"].columns)
    if len(seeds) < 2:
        return []
    order = list(rs.inference.mean_ranks.sort_values("overall rank").index)
    table = pd.DataFrame(
        {
            **{f"overall, seed {s}": alone["overall"][s] for s in seeds},
            **{f"final, seed {s}": alone["final"][s] for s in seeds},
        }
    ).loc[order]
    table.index.name = "method"
    lines = [
        "## Each seed ranked alone",
        "",
        f"Each of the {len(seeds)} seeds ranked on its own runs (units, as above). How far a method "
        "moves between seeds is how far a single seed's ordering can be trusted.",
        "",
        _md(table),
        "",
        "| seed | overall: τ with the paper (printed) | final: τ with the paper (printed) |",
        "|---|---|---|",
    ]
    for s in seeds:
        cells = []
        for label, column in (("overall", "overall_rank"), ("final", "final_rank")):
            a = rank_agreement(alone[label][s].rename(column).to_frame(), paper, column)
            cells.append("—" if math.isnan(a.kendall_tau) else f"{a.kendall_tau:+.2f}")
        lines.append(f"| {s} | {' | '.join(cells)} |")
    return lines + [""]


def early_md(
    rs: RankedStudy, spec: StudySpec, paper: PaperResult, methods=("pb2_star_warm", "pb2")
) -> list[str]:
    """The paper's early PB2* warm effect, compared at equal env steps only."""
    inf = rs.inference
    full = get_budget("paper", spec.family)
    lo, hi = 3 * full.interval, 5 * full.interval
    aligned = [
        (p, t) for p, t in zip(inf.cube.points, inf.cube.timesteps, strict=True) if t % full.interval == 0
    ]
    rows = {}
    for p, _ in aligned:
        norm = rs.evaluation.normalised.xs(p, level="point")
        rows[point_label(inf, p, full.interval)] = {m: float(norm[m].mean()) for m in methods if m in norm}
    overlap = [label for (p, t), label in zip(aligned, rows, strict=True) if lo <= t <= hi]
    lines = [
        "## The early PB2* warm effect, at equal env steps",
        "",
        f"The paper reports PB2* warm at {paper.early_warm[0]:.2f}–{paper.early_warm[1]:.2f} normalised "
        f"and PB2 at {paper.early_pb2[0]:.2f}–{paper.early_pb2[1]:.2f} at its points 3–5 "
        f"({lo:,}–{hi:,} steps). Here, at the points that fall on the paper's evaluation steps "
        "(mean normalised score over every task, as the paper averages):",
        "",
    ]
    if not rows:
        return lines + ["No evaluation point of this study falls on one of the paper's.", ""]
    lines += [_md(pd.DataFrame(rows).T), ""]
    lines.append(
        f"Only {', '.join(overlap)} lies inside the paper's points 3–5; earlier rows have no published "
        "counterpart."
        if overlap
        else "None of them lies inside the paper's points 3–5: there is nothing to compare at equal steps."
    )
    return lines + [""]


def fallbacks_md(ev: Evaluation) -> list[str]:
    lines = ["## Fallbacks", ""]
    if ev.fallbacks.empty:
        return lines + ["None recorded (no model-based suggestions, or no perturbations read).", ""]
    return lines + [
        "Model-based suggestions that did not use the method's model, and why (round-1 draws are by "
        "design and not counted):",
        "",
        ev.fallbacks.to_markdown(index=False),
        "",
    ]


def runtime_md(ev: Evaluation, machines: pd.DataFrame | None) -> list[str]:
    """Run times per method, per machine type, over the (task, seed) cells where every method ran
    on that machine: medians and sums over equal task sets, so methods compare within a table."""
    runtimes = ev.runtimes.copy()
    if machines is not None and not machines.empty:
        runtimes = runtimes.merge(machines[["run_id", "machine"]], on="run_id", how="left")
    if "machine" not in runtimes:
        runtimes["machine"] = "not recorded"
    runtimes["machine"] = runtimes["machine"].fillna("not recorded")
    methods = sorted(runtimes["method"].unique())
    lines = [
        "## Runtime per method",
        "",
        "Wall seconds per run (2 runs at a time on the machine named). Run times compare only within "
        "one machine type, so each type has its own table, over the (task, seed) cells where every "
        "method ran on it; the sum is over those cells.",
        "",
    ]
    for kind, rows in runtimes.groupby("machine", sort=True):
        cells = rows.groupby(["task", "seed"])["method"].nunique()
        full = cells[cells == len(methods)].index
        kept = rows.set_index(["task", "seed"]).loc[full].reset_index() if len(full) else rows.iloc[:0]
        lines.append(f"**{kind}**: {len(full)} (task, seed) cells with every method.")
        lines.append("")
        if kept.empty:
            continue
        table = kept.groupby("method")["seconds"].agg(["median", "sum", "size"])
        table.columns = ["median s per run", "sum of s over these cells", "runs"]
        if "pb2" in table.index:
            base = table.loc["pb2", "median s per run"]
            table["median vs PB2"] = (table["median s per run"] / base - 1).map(lambda x: f"{x:+.1%}")
        lines += [_md(table, ".1f"), ""]
    return lines


def reproduction_markdown(
    rs: RankedStudy,
    spec: StudySpec,
    paper: PaperResult,
    command: str,
    machines: pd.DataFrame | None = None,
    matrix: pd.DataFrame | None = None,
    provenance: list[str] | None = None,
) -> str:
    """REPORT.md of a ranked study (``provenance``: the lines of its *Provenance* section, the
    first of which, when mixed code was allowed, is repeated above everything)."""
    ev = rs.evaluation
    budget = get_budget(spec.budget, spec.family)
    paper_budget = get_budget("paper", spec.family)
    cover = rs.coverage
    seeds = complete_seeds(cover) if cover is not None else ranked_seeds(ev)
    mode = "faithful (the original code's quirks)" if spec.faithful else "fixed"
    provenance = provenance or []
    warning = [provenance[0], ""] if provenance and provenance[0].startswith("> ") else []
    parts = [
        f"# {spec.name}: the paper's {spec.family} comparison, reproduced at a reduced scale",
        "",
        f"Generated from the committed run records by `{command}`; do not edit by hand. "
        f"{rs.count_line()}; the run ids it ranks are listed in `report/ranked_runs.csv`.",
        "",
        *(partial_md(ev, spec, cover) if cover is not None else []),
        *warning,
        "## What the data support",
        "",
        headline(rs, paper_budget.interval),
        "",
        agreement_sentence(rs, paper, paper_budget.total_steps),
        "",
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
        _md(cover) if cover is not None else "(no declared study)",
        "",
        *units_md(rs),
        *tests_md(rs, paper_budget.interval),
        *paper_md(rs, spec, paper),
        *per_seed_md(rs, paper),
        "## What differs from the paper by design",
        "",
        *differences_md(spec, paper, seeds),
        "",
        "## What the data says about the tasks",
        "",
        *findings_md(ev, spec, matrix),
        "",
        *early_md(rs, spec, paper),
        *fallbacks_md(ev),
        *runtime_md(ev, machines),
        *(["## Provenance", "", *provenance, ""] if provenance else []),
        "## Figures",
        "",
        *[f"![{f}](report/{f})" for f in FIGURES],
        "",
        "## Final scores per task",
        "",
        "Best member's evaluation return at the last point, mean ± SE over seeds (* = best of the row); "
        "the last row is each method's mean normalised final score over tasks counted once (raw "
        "returns are not averaged across tasks: their scales differ).",
        "",
        final_scores_md(rs),
        "",
    ]
    return "\n".join(parts)


def final_scores_md(rs: RankedStudy) -> str:
    final = rs.evaluation.final
    wide = final_table_wide(final[final["task"] != "mean"])
    norm = rs.inference.mean_ranks["final normalised"].reindex(wide.columns)
    wide.loc["mean normalised score (units)"] = norm.map("{:.2f}".format)
    return wide.to_markdown()
