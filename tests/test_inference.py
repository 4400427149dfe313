"""Inference on independent units, with known answers: which tasks count once, paired bootstraps
over seeds, the primary test on units beside the paper's stacked test, rank agreement with the
paper over every ordering its readings allow, exact permutation p-values."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from rliable import metrics as rly
from scipy import stats

from metapb2_core.evaluation import IncompleteGridWarning, evaluate
from metapb2_core.evaluation.inference import (
    _draws,
    _improvement,
    _improvement_draws,
    infer,
    task_units,
    unit_scores,
)
from metapb2_core.evaluation.inference_tables import headline
from metapb2_core.evaluation.inference_tables import tests_table as table_of_tests
from metapb2_core.evaluation.paper import (
    CLASSIC,
    _tau_b,
    agreement_range,
    paper_orderings,
    permutation_p,
    reading_intervals,
)
from metapb2_core.evaluation.study_ranking import rank_study
from metapb2_core.quirks import Quirks
from metapb2_core.study_spec import StudySpec

CONTEXTS = ["earth", "neptune", "saturn", "uranus", "venus"]
POINTS, STEP = 5, 8000


def points_of(scores: dict[tuple[str, str, int], list[float]]) -> pd.DataFrame:
    """Run points whose single member scores ``scores[task, method, seed][p - 1]`` at point p."""
    rows = []
    for (task, method, seed), values in scores.items():
        rid = f"{method}-{task}-smoke-s{seed}-faithful"
        for p, v in enumerate(values, start=1):
            rows.append(
                {"run_id": rid, "task": task, "method": method, "seed": seed, "member": 0,
                 "timesteps": p * STEP, "eval_return": v, "eval_is_fresh": True, "total_run_time": 10.0}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_tasks_identical_by_construction_are_one_unit_decided_from_the_registry():
    tasks = [f"pendulum-{c}" for c in CONTEXTS] + [f"cart_pole-{c}" for c in CONTEXTS] + ["my_own_task"]
    faithful = task_units(tasks, Quirks.faithful())
    assert faithful.n == 7 and faithful.groups == (tuple(f"pendulum-{c}" for c in CONTEXTS),)
    assert {faithful.of_task[f"pendulum-{c}"] for c in CONTEXTS} == {"pendulum (5 contexts)"}
    assert "count once" in faithful.rule() and "(11 tasks, 7 units)" in faithful.rule()
    fixed = task_units(tasks, Quirks())  # the fixed Pendulum reads its gravity: five tasks
    assert fixed.n == 11 and fixed.groups == ()


def test_a_merged_unit_scores_the_mean_over_its_tasks():
    scores = {(f"pendulum-{c}", m, 0): [float(i + (m == "b"))] * POINTS for i, c in enumerate(CONTEXTS)
              for m in ("a", "b")}  # fmt: skip
    ev = evaluate(points_of(scores))
    us = unit_scores(ev.scores, task_units(ev.tasks, Quirks.faithful()))
    assert set(us["unit"]) == {"pendulum (5 contexts)"}
    final = us[us["point"] == POINTS].set_index("method")["score"]
    assert final.to_dict() == {"a": 2.0, "b": 3.0}  # mean of 0..4, and of 1..5


def _study(effect: dict[str, float], seeds: int = 3, noise: float = 0.0, seed_effect: bool = False):
    """16 units (the faithful Pendulum's five contexts are one) on which each method scores
    ``effect[method]`` plus noise; ``seed_effect``: a shift shared by every method of a seed."""
    rng = np.random.default_rng(0)
    tasks = [f"{e}-{c}" for e in ("cart_pole", "acrobot", "mountain_car", "pendulum") for c in CONTEXTS]
    scores = {}
    for t in tasks:
        shift = {s: rng.normal() * 10 if seed_effect else 0.0 for s in range(seeds)}
        for m, e in effect.items():
            for s in range(seeds):
                base = e + shift[s] + (rng.normal() * noise if noise else 0.0)
                scores[(t, m, s)] = [base * p / POINTS for p in range(1, POINTS + 1)]
    return points_of(scores)


def test_a_clear_ordering_is_separated_on_units_and_paired_seed_intervals_are_points():
    """a > b > c by a wide margin on every unit; each seed shifts every method alike: resampling
    seeds (paired) cannot change any unit's ranks, so the intervals over seeds are points."""
    points = _study({"a": 30.0, "b": 20.0, "c": 10.0}, seed_effect=True)
    ev = evaluate(points)
    inf = infer(ev.scores, ev.values, Quirks.faithful(), aligned_every=2 * STEP, reps=300)
    assert inf.units.n == 16 and inf.final_test.friedman.n_blocks == 16
    mr = inf.mean_ranks
    assert mr["final rank"].to_dict() == {"a": 1.0, "b": 2.0, "c": 3.0}
    for m in "abc":
        assert mr.loc[m, "final low (seeds)"] == mr.loc[m, "final high (seeds)"] == mr.loc[m, "final rank"]
    assert sorted(inf.supported_pairs()) == [("a", "b"), ("a", "c"), ("b", "c")]  # gaps 1 > CD 0.83
    assert inf.final_test.cd == pytest.approx(0.8286, abs=1e-3)
    assert sorted(inf.tests) == [2, 4, 5]  # every 16,000 steps (the "paper's" interval here) and the last
    assert inf.pairwise.loc["a − c", "excludes 0"] == "yes"
    assert inf.pairwise.loc["a − c", "P(a > b)"] > 0.9  # runs of different seeds compare too
    # Kruskal–Wallis ignores the pairing by seed: the shared seed shifts hide what Friedman sees
    assert (inf.per_unit["verdict"] == "within noise").mean() > 0.5
    plain = evaluate(_study({"a": 30.0, "b": 20.0, "c": 10.0}))
    unpaired = infer(plain.scores, plain.values, Quirks.faithful(), reps=100)
    assert (unpaired.per_unit["verdict"] == "decided").all()


def test_methods_that_do_not_differ_are_reported_as_not_separated():
    methods = ("pb2", "pbt", "random_search", "taf")
    points = _study(dict.fromkeys(methods, 10.0), noise=5.0)
    ev = evaluate(points)
    inf = infer(ev.scores, ev.values, Quirks.faithful(), reps=300)
    assert inf.supported_pairs() == []
    assert (inf.per_unit["verdict"] == "within noise").mean() > 0.8
    spec = StudySpec("null", "classic", tuple(sorted(ev.tasks)), (0, 1, 2), "smoke", True, methods)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IncompleteGridWarning)
        rs = rank_study(points, spec, reps=300)
    text = headline(rs)
    assert text.startswith("At α = 0.05 on 16 independent tasks (identical tasks counted once, 3 seeds each)")
    assert "**At this budget the study cannot separate most methods;**" in text
    table = table_of_tests(rs)
    assert table.index[0].endswith("primary") and table.iloc[0]["n"] == 16
    assert "as in the paper" in table.index[-1] and table.iloc[-1]["n"] == 16 * POINTS + 4 * POINTS


def test_the_vectorised_probability_of_improvement_is_rliables():
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 4, size=(6, 3)).astype(float), rng.integers(0, 4, size=(6, 3)).astype(float)
    seeds = np.full(6, 3)
    unit, seed, mask = _draws(rng, seeds, 3, 50, True)
    draws = _improvement_draws(x, y, unit, seed, mask)
    for r in range(50):
        xs = np.take_along_axis(x[unit[r]], seed[r], axis=1)
        ys = np.take_along_axis(y[unit[r]], seed[r], axis=1)
        assert draws[r] == pytest.approx(rly.probability_of_improvement(xs.T, ys.T))
    assert _improvement(x, y, seeds) == pytest.approx(rly.probability_of_improvement(x.T, y.T))


def test_the_exact_permutation_p_of_kendalls_tau_is_scipys_exact_one():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    b = np.array([2.0, 1.0, 4.0, 3.0, 6.0, 8.0, 5.0, 7.0])
    exact = stats.kendalltau(a, b, method="exact")
    assert _tau_b(a, b[None, :])[0] == pytest.approx(exact.statistic)
    assert permutation_p(a, b, _tau_b) == pytest.approx(exact.pvalue, abs=1e-9)


def test_the_papers_readings_allow_several_orderings_and_the_agreement_spans_them():
    methods = list(CLASSIC.summary.index)
    orders = paper_orderings(CLASSIC, "final_rank", methods)
    iv = reading_intervals(CLASSIC, "final_rank").loc[methods]
    for i, j in itertools.permutations(range(len(methods)), 2):
        if iv["high"].iloc[i] < iv["low"].iloc[j]:  # surely better: ranked better in every ordering
            assert (orders[:, i] < orders[:, j]).all()
    mp, rs = methods.index("metaprior"), methods.index("random_search")  # both ≈≈4.65
    assert (orders[:, mp] < orders[:, rs]).any() and (orders[:, mp] > orders[:, rs]).any()
    ours = CLASSIC.summary["final_rank"]  # the paper against itself: τ at the printed values is 1
    a = agreement_range(ours, CLASSIC, "final_rank")
    assert (
        a.tau == pytest.approx(1.0) and a.tau_high == pytest.approx(1.0, abs=0.1) and a.tau_low < a.tau_high
    )
    assert a.orderings == len(orders)


def test_the_papers_stacked_test_is_autorank_and_counts_its_tied_blocks():
    scores = {}
    for t in ("cart_pole-earth", "acrobot-earth", "mountain_car-earth", "pendulum-earth"):
        for m, e in (("a", 3.0), ("b", 2.0), ("c", 1.0)):
            for s in range(2):
                scores[(t, m, s)] = [0.0, *(e + s + p for p in range(POINTS - 1))]  # point 1 all tie
    ev = evaluate(points_of(scores))
    inf = infer(ev.scores, ev.values, Quirks(), reps=100)
    assert inf.paper.n_blocks == 4 * POINTS and inf.paper.tied_blocks == 4
    assert inf.paper.first_point_identical == ["a", "b", "c"]
    assert inf.paper.omnibus in ("friedman", "anova", "rmanova")
    assert list(inf.paper.mean_ranks.index[:1]) == ["a"]
