"""Evaluation on synthetic run points with known answers: best-member scores, seed means,
normalisation, ranks, the grid check, final tables, Friedman/Nemenyi against Demšar (2006)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation import IncompleteGridWarning, evaluate, load_points, run_scores
from metapb2_core.evaluation.scores import normalise, ranks
from metapb2_core.evaluation.stats import (
    compare,
    critical_difference,
    friedman,
    friedman_from_mean_ranks,
    groups,
    nemenyi_q,
)
from metapb2_core.evaluation.tables import final_table_latex, final_table_wide
from metapb2_core.store import RunRecord, write_record

INTERVAL = 800


def make_points(scores: dict[tuple[str, str, int], list[float]], members: int = 3) -> pd.DataFrame:
    """Points of runs whose best member at evaluation point p scores ``scores[...][p-1]``; the
    other members score less, and a non-evaluating iteration precedes every evaluation."""
    rows = []
    for (task, method, seed), best in scores.items():
        run_id = f"{method}-{task}-smoke-s{seed}"
        for p, value in enumerate(best, start=1):
            for m in range(members):
                base = {"run_id": run_id, "task": task, "method": method, "seed": seed, "member": m}
                rows.append({**base, "timesteps": p * INTERVAL - 400, "eval_return": math.nan})
                rows[-1].update(eval_is_fresh=False, lr=1e-4, total_run_time=10.0 + seed)
                rows.append(
                    {**base, "timesteps": p * INTERVAL, "eval_return": value - m * (m != 1) - 2 * (m == 1)}
                )
                rows[-1].update(eval_is_fresh=True, lr=1e-4, total_run_time=10.0 + seed)
    return pd.DataFrame(rows)


def grid(tasks, methods, seeds, value) -> dict:
    return {(t, m, s): value(t, m, s) for t in tasks for m in methods for s in seeds}


TASKS, METHODS, SEEDS, POINTS = ["t1", "t2", "t3", "t4"], ["a", "b", "c"], [0, 1, 2], 5


def quiet_evaluate(points, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteGridWarning)  # complete grids must not warn
        return evaluate(points, **kw)


# ----------------------------------------------------------------------------- scores and seed means


def test_score_is_the_best_members_fresh_evaluation():
    points = make_points({("t", "a", 0): [5.0, 7.0]})
    points.loc[(points["member"] == 2) & (points["timesteps"] == INTERVAL), "eval_return"] = (
        np.nan
    )  # diverged
    s = run_scores(points)
    assert s["point"].tolist() == [1, 2]
    assert s["timesteps"].tolist() == [INTERVAL, 2 * INTERVAL]
    assert s["score"].tolist() == [5.0, 7.0]


def test_seed_mean_and_standard_error():
    points = make_points(
        {("t1", "a", 0): [1.0], ("t1", "a", 1): [3.0], ("t1", "b", 0): [0], ("t1", "b", 1): [0]}
    )
    ev = quiet_evaluate(points)
    row = ev.table[(ev.table["method"] == "a")].iloc[0]
    assert (row["mean"], row["sem"], row["min"], row["max"], row["n_seeds"]) == (2.0, 1.0, 1.0, 3.0, 2)


# ----------------------------------------------------------------------------- ranks and normalisation


def test_dominating_method_has_rank_one_at_every_point():
    rng = np.random.default_rng(0)
    noise = {k: list(rng.normal(0, 10, POINTS)) for k in grid(TASKS, METHODS, SEEDS, lambda *_: 0)}
    # "a" beats the others' best seed at every point of every task
    dominated = {k: v for k, v in noise.items() if k[1] != "a"}
    values = {k: [100 + abs(x) for x in v] if k[1] == "a" else v for k, v in noise.items()}
    assert all(
        min(values[(t, "a", s)]) > max(max(v) for v in dominated.values()) for t in TASKS for s in SEEDS
    )
    ev = quiet_evaluate(make_points(values))
    assert len(ev.ranks) == len(TASKS) * POINTS
    assert (ev.ranks["a"] == 1.0).all()
    assert (ev.normalised["a"] == 1.0).all()
    assert ev.summary.index[0] == "a"
    assert ev.summary.loc["a", ["final_rank", "overall_rank", "final_normalised"]].tolist() == [1.0, 1.0, 1.0]
    assert ev.summary["overall_rank"].sum() == pytest.approx(6.0)  # ranks of 3 methods sum to 6


def test_ties_share_the_average_rank():
    wide = pd.DataFrame({"a": [5.0, 1.0, 2.0], "b": [5.0, 1.0, 3.0], "c": [1.0, 1.0, 3.0]})
    r = ranks(wide)
    assert r.iloc[0].tolist() == [1.5, 1.5, 3.0]
    assert r.iloc[1].tolist() == [2.0, 2.0, 2.0]
    assert r.iloc[2].tolist() == [3.0, 1.5, 1.5]


def test_normalisation_maps_best_to_one_and_worst_to_zero():
    wide = pd.DataFrame({"a": [-200.0, 10.0], "b": [-150.0, 10.0], "c": [-100.0, 10.0]})
    n = normalise(wide)
    assert n.iloc[0].tolist() == [0.0, 0.5, 1.0]  # exact, negative returns included
    # all methods equal: every method gets 0, as the original's (x − min)/(max − min + 1e-8)
    assert n.iloc[1].tolist() == [0.0, 0.0, 0.0]


def test_anytime_curves_average_over_tasks():
    values = grid(["t1", "t2"], ["a", "b"], [0], lambda t, m, s: [1.0, 2.0] if m == "a" else [2.0, 1.0])
    values[("t2", "b", 0)] = [0.0, 0.0]  # on t2, b is worst at both points
    ev = quiet_evaluate(make_points(values))
    assert ev.ranks.xs(1, level="point")["a"].tolist() == [2.0, 1.0]
    assert ev.summary.loc["a", "final_rank"] == 1.0
    assert ev.summary.loc["a", "overall_rank"] == pytest.approx(1.25)
    assert ev.summary.loc["b", "overall_normalised"] == pytest.approx(0.25)


# ----------------------------------------------------------------------------- incomplete grids


def test_missing_seed_is_flagged_and_warned():
    values = grid(TASKS, METHODS, SEEDS, lambda t, m, s: [1.0, 2.0])
    del values[("t2", "b", 1)]
    with pytest.warns(IncompleteGridWarning, match="b on t2 lacks seed"):
        ev = evaluate(make_points(values))
    assert not ev.grid.complete
    assert ev.grid.missing.to_dict("records") == [{"task": "t2", "method": "b", "seed": 1}]
    assert ev.grid.lines() == ["missing: b on t2 lacks seed(s) 1"]
    cell = ev.table[(ev.table["task"] == "t2") & (ev.table["method"] == "b")]
    assert (cell["n_seeds"] == 2).all()  # averaged over the seeds present, and said so


def test_method_missing_a_task_is_flagged_and_the_task_left_out_of_ranks():
    values = grid(["t1", "t2"], ["a", "b"], [0, 1], lambda t, m, s: [float(m == "a")])
    del values[("t2", "b", 0)], values[("t2", "b", 1)]
    with pytest.warns(IncompleteGridWarning):
        ev = evaluate(make_points(values))
    assert ev.grid.lines() == ["missing: b has no runs on t2"]
    assert ev.ranks.index.get_level_values("task").unique().tolist() == ["t1"]


def test_misaligned_and_duplicate_runs_are_flagged():
    values = grid(["t1"], ["a", "b"], [0, 1], lambda t, m, s: [1.0, 2.0, 3.0])
    values[("t1", "b", 1)] = [1.0, 2.0]  # stopped one evaluation early
    points = make_points(values)
    extra = make_points({("t1", "a", 0): [9.0, 9.0, 9.0]}).assign(run_id="a-t1-smoke-s0-faithful")
    with pytest.warns(IncompleteGridWarning):
        ev = evaluate(pd.concat([points, extra]))
    mis = ev.grid.misaligned.iloc[0]
    assert (mis["run_id"], mis["timesteps"], mis["expected"]) == (
        "b-t1-smoke-s1",
        (800, 1600),
        (800, 1600, 2400),
    )
    assert ev.grid.duplicates["run_ids"].tolist() == [["a-t1-smoke-s0", "a-t1-smoke-s0-faithful"]]
    assert len(ev.grid.lines()) == 2


def test_a_run_with_a_non_finite_evaluation_is_failed_listed_and_not_ranked():
    points = make_points(grid(["t1", "t2"], ["a", "b"], [0], lambda *_: [1.0, 2.0]))
    points.loc[(points["run_id"] == "a-t1-smoke-s0") & (points["timesteps"] == 1600), "eval_return"] = np.nan
    with pytest.warns(IncompleteGridWarning, match=r"failed, not ranked: a-t1-smoke-s0 \(3 non-finite"):
        ev = evaluate(points)
    assert ev.grid.failed["run_id"].tolist() == ["a-t1-smoke-s0"]
    assert ev.grid.missing.empty  # a failed run is listed as failed, not as missing
    assert ev.tasks == ["t1", "t2"] and ev.values.index.get_level_values("task").unique().tolist() == ["t2"]


def test_an_all_nan_run_and_a_run_failed_by_its_checks_never_crash_the_evaluation():
    points = make_points(grid(["t1", "t2"], ["a", "b"], [0], lambda *_: [1.0, 2.0]))
    points.loc[points["run_id"] == "b-t2-smoke-s0", "eval_return"] = np.nan  # diverged from the start
    checked = pd.DataFrame(
        [{"run_id": "x-t1-smoke-s0", "task": "t1", "method": "a", "seed": 1, "reason": "no_target_leakage"}]
    )
    with pytest.warns(IncompleteGridWarning):
        ev = evaluate(points, failed=checked)
    assert sorted(ev.grid.failed["run_id"]) == ["b-t2-smoke-s0", "x-t1-smoke-s0"]
    assert any("x-t1-smoke-s0 (no_target_leakage)" in line for line in ev.grid.lines())


# ----------------------------------------------------------------------------- final table


def test_final_table_marks_bold_and_underline():
    values = {
        ("t1", "a", 0): [0.0, 10.0],
        ("t1", "a", 1): [0.0, 12.0],  # a: 11 ± 1
        ("t1", "b", 0): [0.0, 4.0],
        ("t1", "b", 1): [0.0, 6.0],  # b: 5 ± 1  → a is bold and underlined (10 > 6)
        ("t2", "a", 0): [0.0, 5.0],
        ("t2", "a", 1): [0.0, 7.0],  # a: 6 ± 1
        ("t2", "b", 0): [0.0, 4.0],
        ("t2", "b", 1): [0.0, 6.0],  # b: 5 ± 1  → a bold, not underlined (5 < 6)
    }
    ev = quiet_evaluate(make_points(values))
    f = ev.final.set_index(["task", "method"])
    assert f.loc[("t1", "a"), ["mean", "sem", "point"]].tolist() == [11.0, 1.0, 2]
    assert bool(f.loc[("t1", "a"), "bold"]) and bool(f.loc[("t1", "a"), "underline"])
    assert bool(f.loc[("t2", "a"), "bold"]) and not bool(f.loc[("t2", "a"), "underline"])
    assert not f["bold"].xs("b", level="method").any()
    assert f.loc[("mean", "a"), ["mean", "sem"]].tolist() == [8.5, 1.0]
    assert final_table_wide(ev.final).loc["t1", "a"] == "11.00 ± 1.00 *"
    tex = final_table_latex(ev.final)
    assert r"\textbf{\underline{11.00 $\pm$ 1.00}}" in tex and r"\textbf{6.00 $\pm$ 1.00}" in tex


def test_final_table_has_no_bold_for_a_tie():
    ev = quiet_evaluate(make_points(grid(["t1"], ["a", "b"], [0], lambda *_: [3.0])))
    assert not ev.final["bold"].any()


# ----------------------------------------------------------------------------- statistics

# Demšar (2006), Table 6: AUC of C4.5 with and without tuning m and cf on 14 data sets.
DEMSAR = pd.DataFrame(
    [
        [0.763, 0.768, 0.771, 0.798],
        [0.599, 0.591, 0.590, 0.569],
        [0.954, 0.971, 0.968, 0.967],
        [0.628, 0.661, 0.654, 0.657],
        [0.882, 0.888, 0.886, 0.898],
        [0.936, 0.931, 0.916, 0.931],
        [0.661, 0.668, 0.609, 0.685],
        [0.583, 0.583, 0.563, 0.625],
        [0.775, 0.838, 0.866, 0.875],
        [1.000, 1.000, 1.000, 1.000],
        [0.940, 0.962, 0.965, 0.962],
        [0.619, 0.666, 0.614, 0.669],
        [0.972, 0.981, 0.975, 0.975],
        [0.957, 0.978, 0.946, 0.970],
    ],
    columns=["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"],
)


def test_friedman_matches_demsars_worked_example():
    # §3.2.2: mean ranks 3.143, 2.000, 2.893, 1.964 give chi2_F = 9.28 and F_F = 3.69, above the
    # critical F(3, 39) = 2.85 at alpha 0.05.
    f = friedman_from_mean_ranks([3.143, 2.000, 2.893, 1.964], 14)
    assert f.statistic == pytest.approx(9.28, abs=0.01)
    assert f.iman_davenport == pytest.approx(3.69, abs=0.01)
    assert stats.f.ppf(0.95, 3, 39) == pytest.approx(2.85, abs=0.01)
    assert f.iman_davenport_p < 0.05


def test_friedman_on_the_table_data_with_and_without_tie_correction():
    # The table's values rank C4.5+cf at 41/14 and C4.5+m+cf at 27/14 (the printed ranks differ
    # by one tie); by hand: 8.4 · (Σ R² − 25) = 9.857.
    cmp = compare(DEMSAR)
    assert cmp.mean_ranks.to_dict() == pytest.approx(
        {"C4.5+m+cf": 27 / 14, "C4.5+m": 2.0, "C4.5+cf": 41 / 14, "C4.5": 44 / 14}
    )
    assert friedman(DEMSAR, tie_correction=False).statistic == pytest.approx(9.857, abs=1e-3)
    scipy_result = stats.friedmanchisquare(*DEMSAR.to_numpy().T)
    assert cmp.friedman.statistic == pytest.approx(scipy_result.statistic)
    assert cmp.friedman.p_value == pytest.approx(scipy_result.pvalue)


def test_friedman_hand_computed_separated_example():
    # 3 methods always in the same order on 5 blocks: chi2 = 12·5/12 · ((1−2)² + 0 + (3−2)²) = 10,
    # and the chi2 survival function with 2 degrees of freedom is exp(−x/2).
    table = pd.DataFrame({"a": [3.0, 5, 7, 9, 11], "b": [2.0, 4, 6, 8, 10], "c": [1.0, 3, 5, 7, 9]})
    f = friedman(table)
    assert f.statistic == pytest.approx(10.0)
    assert f.p_value == pytest.approx(math.exp(-5.0))
    assert math.isinf(f.iman_davenport) and f.iman_davenport_p == 0.0


def test_friedman_all_tied_gives_no_evidence():
    f = friedman(pd.DataFrame(np.ones((4, 3)), columns=["a", "b", "c"]))
    assert (f.statistic, f.p_value) == (0.0, 1.0)


@pytest.mark.parametrize(
    "k, alpha, q", [(2, 0.05, 1.960), (3, 0.05, 2.343), (4, 0.05, 2.569), (10, 0.05, 3.164), (4, 0.10, 2.291)]
)
def test_nemenyi_critical_values_match_demsars_table_5a(k, alpha, q):
    assert nemenyi_q(k, alpha) == pytest.approx(q, abs=1e-3)


def test_critical_difference_of_the_published_examples():
    assert critical_difference(4, 14, 0.05) == pytest.approx(1.25, abs=5e-3)  # Demšar §3.2.2
    assert critical_difference(4, 14, 0.10) == pytest.approx(1.12, abs=5e-3)
    # protocol.md §6.5: 8 methods on the stacked classic (300 rows) and brax (675 rows) tables
    assert critical_difference(8, 300) == pytest.approx(0.61, abs=5e-3)
    assert critical_difference(8, 675) == pytest.approx(0.40, abs=5e-3)


def test_nemenyi_groups_of_demsars_example():
    # alpha 0.05: even best vs worst is within CD; alpha 0.10: C4.5+cf joins both groups
    assert compare(DEMSAR, 0.05).groups == [["C4.5+m+cf", "C4.5+m", "C4.5+cf", "C4.5"]]
    assert compare(DEMSAR, 0.10).groups == [["C4.5+m+cf", "C4.5+m", "C4.5+cf"], ["C4.5+cf", "C4.5"]]


def test_groups_leave_out_a_method_that_differs_from_all():
    r = pd.Series({"a": 1.0, "b": 1.2, "c": 3.0, "d": 3.5})
    assert groups(r, 0.5) == [["a", "b"], ["c", "d"]]
    assert groups(r, 0.1) == []


def test_comparison_rejects_too_small_or_incomplete_tables():
    with pytest.raises(MetaPB2Error, match="≥ 2 methods"):
        compare(pd.DataFrame({"a": [1.0, 2.0]}))
    with pytest.raises(MetaPB2Error, match="missing values"):
        compare(pd.DataFrame({"a": [1.0, np.nan], "b": [1.0, 2.0]}))


def test_single_task_evaluation_notes_the_missing_final_test():
    ev = quiet_evaluate(make_points(grid(["t1"], ["a", "b"], [0], lambda t, m, s: [1.0, float(m == "a")])))
    assert ev.final_test is None and ev.anytime_test is not None
    assert ev.notes == [
        "no Friedman/Nemenyi test over final point: needs ≥ 2 methods and ≥ 2 blocks, got 2 and 1"
    ]


# ----------------------------------------------------------------------------- loading


def test_load_points_from_a_folder_and_a_dataframe(tmp_path):
    points = make_points(grid(["t1"], ["a", "b"], [0], lambda *_: [1.0]))
    for run_id, df in points.groupby("run_id"):
        ident = df[["run_id", "task", "method", "seed"]].iloc[0].to_dict()
        meta = {**ident, "seed": int(ident["seed"]), "budget": "smoke", "budget_sizes": {}}
        write_record(RunRecord(run_id, df, pd.DataFrame(), meta), tmp_path / "nested")
    (tmp_path / ".x.points.parquet.123.tmp").write_text("half-written")
    # points without a manifest: a writer killed before its record was complete
    points.head(3).assign(run_id="c-t1-smoke-s0").to_parquet(
        tmp_path / "nested" / "c-t1-smoke-s0.points.parquet"
    )
    loaded = load_points(tmp_path)
    assert sorted(loaded["run_id"].unique()) == ["a-t1-smoke-s0", "b-t1-smoke-s0"]
    assert len(load_points(points)) == len(points)


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: p, "no run records"),
        (lambda p: p / "runs.duckdb", "does not exist"),
    ],
)
def test_load_points_errors(tmp_path, make, needle):
    with pytest.raises(MetaPB2Error, match=needle):
        load_points(make(tmp_path))


def test_load_points_rejects_missing_columns():
    with pytest.raises(MetaPB2Error, match="lacks the point column.*seed"):
        load_points(make_points({("t", "a", 0): [1.0]}).drop(columns="seed"))


def test_duckdb_file_without_run_points_is_a_clear_error(tmp_path):
    path = tmp_path / "runs.duckdb"
    path.write_bytes(b"not a database")
    with pytest.raises(MetaPB2Error, match="duckdb"):
        load_points(path)


def test_run_times_of_several_machine_types_are_tabled_per_machine_over_equal_task_sets():
    """A study that spans machines shows one runtime table per machine type, each over the (task,
    seed) cells where every method ran on it (so medians and sums compare equal task sets), with
    its own ratio to PB2, never one median over both."""
    from metapb2_core.evaluation.reproduction import runtime_md

    points = make_points(grid(TASKS, ["a", "pb2"], SEEDS, lambda t, m, s: [1.0] * POINTS))
    ev = quiet_evaluate(points)
    runs = ev.runtimes[["run_id", "method", "seed", "task"]].copy()
    runs["machine"] = runs["seed"].map(lambda s: "slow box, 2 cores" if s == 0 else "fast box, 2 cores")
    # one cell where only method a ran on the slow box: it is left out of both tables' sums
    odd = (runs["seed"] == 1) & (runs["task"] == TASKS[0]) & (runs["method"] == "a")
    runs.loc[odd, "machine"] = "slow box, 2 cores"
    text = "\n".join(runtime_md(ev, runs.drop(columns=["seed", "task"])))
    slow = text.split("**slow box, 2 cores**")[1]
    fast = text.split("**fast box, 2 cores**")[1].split("**slow box")[0]
    assert f": {len(TASKS)} (task, seed) cells with every method." in slow
    assert f": {2 * len(TASKS) - 1} (task, seed) cells with every method." in fast
    # total_run_time is 10 + seed: seed 0 alone on the slow box
    assert "| a " in slow and "10.0" in slow and "11.0" not in slow
    assert "sum of s over these cells" in text and "median vs PB2" in text


def test_a_study_ranks_its_complete_seeds_alone_while_another_is_midway():
    """Seeds 0 and 1 are complete; seed 2 has only PBT's runs so far, far better than anything.
    Mixed into the seed means they would put PBT first; the report ranks seeds 0 and 1 alone,
    counts seed 2's runs in its coverage and says which seed is left out."""
    from metapb2_core.evaluation.reproduction import partial_md
    from metapb2_core.evaluation.study_ranking import rank_study, ranked_points
    from metapb2_core.study_spec import StudySpec

    tasks, methods = ["cart_pole-earth", "acrobot-earth", "pendulum-earth"], ["pb2", "pbt", "random_search"]
    spec = StudySpec("midway", "classic", tasks, (0, 1, 2), "smoke", methods=methods)
    quality = {"pb2": 3.0, "pbt": 2.0, "random_search": 1.0}
    done = make_points(grid(tasks, methods, [0, 1], lambda t, m, s: [quality[m] + s] * POINTS))
    midway = make_points(grid(tasks, ["pbt"], [2], lambda t, m, s: [100.0] * POINTS))
    points = pd.concat([done, midway], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteGridWarning)
        mixed = evaluate(points)
        rs = rank_study(points, spec, reps=200)
    ev, cover = rs.evaluation, rs.coverage
    assert mixed.summary["final_rank"].idxmin() == "pbt"  # what mixing the seeds would say
    pd.testing.assert_frame_equal(ev.summary, quiet_evaluate(done).summary)
    assert ev.summary["final_rank"].to_dict() == {"pb2": 1.0, "pbt": 2.0, "random_search": 3.0}
    assert rs.inference.mean_ranks["final rank"].to_dict() == {"pb2": 1.0, "pbt": 2.0, "random_search": 3.0}
    assert cover["passed"].tolist() == [9, 9, 3] and cover["planned"].tolist() == [9, 9, 9]
    assert (
        rs.count_line()
        == "21 of 27 planned evaluation runs passed their checks; 18 ranked (the complete seeds alone)"
    )
    banner = partial_md(ev, spec, cover)[0]
    assert "21 of 27 planned evaluation runs have passed their checks (0 failed)" in banner
    assert "Not complete yet: seed(s) 2, whose 3 finished runs are left out" in banner
    assert "over the complete seed(s) 0, 1 alone" in banner and "at 2 of its 10 seeds" in banner
    assert set(ranked_points(ev, points)["seed"]) == {0, 1}

    # a seed declared but not started yet is named as such, not as "0 finished runs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteGridWarning)
        rs = rank_study(done, spec, reps=200)
    banner = partial_md(rs.evaluation, spec, rs.coverage)[0]
    assert "Not complete yet: seed(s) 2, with no finished evaluation run yet. Every rank" in banner

    # before any seed is complete there is nothing to keep apart: it ranks what there is, and says so
    early = points[~((points["seed"] == 1) | ((points["seed"] == 0) & (points["task"] == "pendulum-earth")))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteGridWarning)
        rs = rank_study(early, spec, reps=200)
        pd.testing.assert_frame_equal(rs.evaluation.summary, evaluate(early).summary)
    assert rs.coverage["passed"].tolist() == [6, 0, 3]
    assert "do not compare it with the paper's yet" in partial_md(rs.evaluation, spec, rs.coverage)[0]


def test_the_ranks_asset_says_which_seeds_it_ranks_when_one_is_left_out():
    from metapb2_assets.ranks import completeness
    from metapb2_core.study_spec import StudySpec

    tasks, methods = ["cart_pole-earth", "acrobot-earth"], ["pb2", "pbt"]
    spec = StudySpec("midway", "classic", tasks, (0, 1), "smoke", methods=methods)
    done = make_points(grid(tasks, methods, [0], lambda t, m, s: [1.0] * POINTS))
    midway = make_points(grid(tasks[:1], methods, [1], lambda t, m, s: [1.0] * POINTS))
    points, failed = pd.concat([done, midway]), pd.DataFrame(columns=["run_id"])
    text = completeness(spec, points, failed, [0])
    assert text.startswith(
        "6 of 8 planned evaluation runs passed their checks (2 tasks × 2 seeds × 2 methods)"
    )
    assert text.endswith("; ranked: the complete seed(s) 0 alone, seed(s) 1 left out until complete")
    assert "ranked:" not in completeness(spec, points, failed, [0, 1])
