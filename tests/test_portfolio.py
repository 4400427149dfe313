"""Portfolio step 3 (methods.md §9.3): greedy coverage, exclusion of the target, the Q34 switch."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from metapb2_core.errors import MetaPB2Error
from metapb2_core.method_inputs import load_portfolio
from metapb2_core.portfolio import greedy_select, normalise_columns, portfolio_for
from metapb2_core.quirks import Quirks


def coverage(scores, rows):
    return float(scores[list(rows)].max(axis=0).sum())


@pytest.mark.parametrize("seed", range(20))
def test_greedy_equals_brute_force_step_by_step(seed):
    rng = np.random.default_rng(seed)
    scores = rng.random((7, 5))
    picked = greedy_select(scores, 3)
    assert len(set(picked)) == 3
    for i in range(3):  # every step is the brute-force best extension of the previous steps
        best = max(coverage(scores, picked[:i] + [c]) for c in range(7) if c not in picked[:i])
        assert coverage(scores, picked[: i + 1]) == pytest.approx(best)
    # the first pick is the brute-force optimum of size 1; the set is within (1 − 1/e) of the optimum
    assert coverage(scores, picked[:1]) == max(coverage(scores, [c]) for c in range(7))
    optimum = max(coverage(scores, s) for s in itertools.combinations(range(7), 3))
    assert coverage(scores, picked) >= (1 - 1 / math.e) * optimum


def test_greedy_prefers_coverage_over_row_sums_and_the_quirk_restores_row_sums():
    # rows 0 and 1 are good on the same task; row 2 is the only one good on task b
    scores = np.array([[1.0, 0.0, 0.9], [0.95, 0.0, 1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.5]])
    assert greedy_select(scores, 2) == [0, 2] or greedy_select(scores, 2) == [1, 2]
    assert greedy_select(scores, 2, row_sums=True) == [1, 0]  # sums 1.95, 1.9, 1.0, 1.5
    ties = np.ones((3, 2))
    assert greedy_select(ties, 2) == [0, 1]  # ties go to the first candidate
    with pytest.raises(MetaPB2Error, match="only 3 candidates"):
        greedy_select(ties, 4)


def test_normalisation_maps_each_column_to_unit_range():
    m = pd.DataFrame({"a": [1.0, 3.0, 2.0], "b": [-5.0, -5.0, 5.0]})
    n = normalise_columns(m)
    np.testing.assert_allclose(n["a"], [0, 1, 0.5], atol=1e-7)
    np.testing.assert_allclose(n["b"], [0, 0, 1], atol=1e-7)


def test_portfolio_never_sees_the_target_environment():
    tasks = ["cart_pole-earth", "cart_pole-venus", "acrobot-earth", "pendulum-earth"]
    cands = {f"{t}-s0-0": t for t in tasks}
    rng = np.random.default_rng(0)
    matrix = pd.DataFrame(rng.random((4, 4)), index=list(cands), columns=tasks)
    matrix.loc["cart_pole-venus-s0-0"] = 100.0  # would win everywhere if it were allowed
    picked = portfolio_for(matrix, cands, "cart_pole-earth", 2)
    assert all(not p.startswith("cart_pole") for p in picked)
    # the original excludes only the target task itself
    faithful = portfolio_for(matrix, cands, "cart_pole-earth", 2, Quirks.faithful())
    assert faithful[0] == "cart_pole-venus-s0-0" and "cart_pole-earth-s0-0" not in faithful


def test_load_portfolio_errors_name_the_file(tmp_path):
    with pytest.raises(MetaPB2Error, match="no portfolio for task 'x'"):
        load_portfolio(tmp_path, "x")
    (tmp_path / "x_portfolio.json").write_text("{not json")
    with pytest.raises(MetaPB2Error, match="not valid JSON"):
        load_portfolio(tmp_path, "x")


def test_each_task_draws_its_own_candidates_reproducibly():
    from metapb2_core.portfolio import candidate_draws
    from metapb2_core.space import SEARCH_SPACE

    a, b = (
        candidate_draws("cart_pole-earth", 0, SEARCH_SPACE, 30),
        candidate_draws("acrobot-earth", 0, SEARCH_SPACE, 30),
    )
    assert a == candidate_draws("cart_pole-earth", 0, SEARCH_SPACE, 30)  # seeded by task and seed
    assert not {tuple(c.values()) for c in a} & {tuple(c.values()) for c in b}  # no shared configuration
    assert a != candidate_draws("cart_pole-earth", 1, SEARCH_SPACE, 30)


def test_a_portfolio_never_holds_one_configuration_twice():
    tasks = ["acrobot-earth", "pendulum-earth", "mountain_car-earth"]
    cands = {f"{t}-s0-{k}": t for t in tasks for k in range(2)}
    same = {"lr": 1e-4, "lambda": 0.95, "clip_param": 0.2}
    configs = {c: {"lr": 1e-4 * (1 + i), "lambda": 0.95, "clip_param": 0.2} for i, c in enumerate(cands)}
    configs["pendulum-earth-s0-0"] = configs["acrobot-earth-s0-0"] = same  # one configuration, two candidates
    matrix = pd.DataFrame(np.random.default_rng(0).random((6, 3)), index=list(cands), columns=tasks)
    matrix.loc[["acrobot-earth-s0-0", "pendulum-earth-s0-0"]] = 1.0  # both would be picked first
    picked = portfolio_for(matrix, cands, "cart_pole-earth", 5, configs=configs)
    chosen = [tuple(configs[c].values()) for c in picked]
    assert len(chosen) == len(set(chosen)) == 5
    assert picked[0] == "acrobot-earth-s0-0" and "pendulum-earth-s0-0" not in picked
