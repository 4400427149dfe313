"""The report's findings about tasks come from the numbers: ties where every method scores the
same, tasks that are one task several times, and no ordering to compare while our ranks all tie."""

import math

import numpy as np
import pandas as pd
import pytest

from metapb2_core.evaluation.paper import CLASSIC, rank_agreement
from metapb2_core.evaluation.scores import normalise, ranks
from metapb2_core.evaluation.tables import rank_summary
from metapb2_core.evaluation.task_findings import (
    constant_columns,
    final_plateaus,
    group_weights,
    identical_columns,
    repeating_methods,
    task_findings_md,
    tied_tasks,
)
from metapb2_core.quirks import Quirks

METHODS = ["pb2", "pbt", "taf"]


def _values() -> pd.DataFrame:
    """Three points of two tasks: mountain car flat at -200 for every method, cart pole not."""
    index = pd.MultiIndex.from_product(
        [[1, 2, 3], ["cart_pole-earth", "mountain_car-earth"]], names=["point", "task"]
    )
    values = pd.DataFrame(-200.0, index=index, columns=METHODS)
    values.loc[(slice(None), "cart_pole-earth"), :] = [
        [10.0, 20.0, 30.0],
        [15.0, 25.0, 5.0],
        [50.0, 40.0, 60.0],
    ]
    return values


def _matrix() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    column = rng.normal(-900, 100, size=6)
    return pd.DataFrame(
        {
            "cart_pole-earth": rng.normal(300, 50, size=6),
            "mountain_car-earth": -200.0,
            "pendulum-earth": column,
            "pendulum-venus": column.copy(),
            "pendulum-uranus": column + 1e-9,  # one digit off: not the same task
        },
        index=[f"c{i}" for i in range(6)],
    )


def test_a_task_where_every_method_scores_the_same_at_every_point_is_a_tie():
    tied = tied_tasks(_values())
    assert tied.to_dict() == {"mountain_car-earth": -200.0}
    values = _values()
    values.loc[(2, "mountain_car-earth"), "taf"] = -199.0  # one method moved once: not a tie
    assert tied_tasks(values).empty


def test_identical_matrix_columns_group_the_same_task_and_leave_constant_ones_apart():
    matrix = _matrix()
    assert constant_columns(matrix).to_dict() == {"mountain_car-earth": -200.0}
    assert identical_columns(matrix) == [["pendulum-earth", "pendulum-venus"]]


def test_the_findings_name_the_quirk_only_in_the_mode_that_has_it():
    faithful = "\n".join(task_findings_md(_values(), _matrix(), Quirks.faithful()))
    assert (
        "On 1 of the 2 ranked tasks every method has the same score at every point: mountain_car-earth (-200)"
        in (faithful)
    )
    assert "pull every mean rank toward the middle by 1/2 of its distance" in faithful
    assert "All 6 candidates scored the same on mountain_car-earth (-200)" in faithful
    assert "**One task, 2 times.** pendulum-earth, pendulum-venus" in faithful
    assert "never reads the gravity CARL sets" in faithful
    assert "the portfolio (which leaves out only the target task, as the original)" in faithful
    fixed = "\n".join(task_findings_md(_values(), _matrix(), Quirks()))
    assert "**One task, 2 times.**" in fixed
    assert "never reads the gravity" not in fixed and "the portfolio (which" not in fixed
    assert (
        task_findings_md(_values().iloc[::2].drop(index="mountain_car-earth", level="task"), None, Quirks())
        == []
    )


def test_a_final_plateau_names_its_score_and_the_methods_that_left_it():
    values = _values()  # mountain car tied at every point: a tie, not a plateau
    values.loc[(3, "cart_pole-earth"), :] = [500.0, 500.0, 480.0]  # 2 of 3 end on 500, taf below
    plateaus = final_plateaus(values)
    assert plateaus.index.tolist() == ["cart_pole-earth"]
    assert plateaus.loc["cart_pole-earth"].tolist() == [500.0, 2, [], ["taf"]]
    values.loc[(3, "mountain_car-earth"), "pbt"] = -150.0  # one method escapes the floor at the end
    plateaus = final_plateaus(values)
    assert plateaus.loc["mountain_car-earth"].tolist() == [-200.0, 2, ["pbt"], []]
    text = "\n".join(task_findings_md(values, None, Quirks()))
    assert "**Plateaus at the final point.** On 2 of the 2 ranked tasks" in text
    assert "cart_pole-earth (500, 2 of 3; off it: taf below)" in text
    assert "mountain_car-earth (-200, 2 of 3; off it: pbt above)" in text
    assert "decided by the other 0 tasks" in text
    values.loc[(3, "cart_pole-earth"), :] = [500.0, 490.0, 480.0]  # one of three on a score: no plateau
    assert final_plateaus(values).index.tolist() == ["mountain_car-earth"]


def test_no_rank_agreement_is_computed_while_our_ranks_all_tie():
    tied = pd.DataFrame({"overall_rank": 4.5, "final_rank": 4.5}, index=CLASSIC.summary.index)
    agreement = rank_agreement(tied, CLASSIC, "overall_rank")
    assert agreement.n == len(CLASSIC.summary) and math.isnan(agreement.kendall_tau)
    ordered = CLASSIC.summary[["overall_rank", "final_rank"]]
    assert rank_agreement(ordered, CLASSIC, "overall_rank").kendall_tau == 1.0


def _pendulum_values() -> pd.DataFrame:
    """Two points of cart pole and three pendulum contexts; every method but taf repeats one
    pendulum result on all three."""
    tasks = ["cart_pole-earth", "pendulum-earth", "pendulum-uranus", "pendulum-venus"]
    index = pd.MultiIndex.from_product([[1, 2], tasks], names=["point", "task"])
    values = pd.DataFrame(0.0, index=index, columns=METHODS)
    for point in (1, 2):
        values.loc[(point, "cart_pole-earth")] = [30.0, 20.0, 10.0]  # pb2 best
        for task in tasks[1:]:
            values.loc[(point, task)] = [-900.0, -800.0, -700.0]  # taf best
    values.loc[(2, "pendulum-venus"), "taf"] = -950.0  # taf worst once
    return values


def test_the_methods_whose_runs_repeat_on_a_group_are_found_from_every_point():
    values = _pendulum_values()
    group = ["pendulum-earth", "pendulum-uranus", "pendulum-venus"]
    assert repeating_methods(values, group) == ["pb2", "pbt"]
    assert repeating_methods(values, ["pendulum-earth", "pendulum-neptune"]) == []  # one not ranked
    text = "\n".join(task_findings_md(values, _matrix_of(group), Quirks.faithful()))
    assert "2 of the 3 methods (not taf) score the same on all 3 at every point" in text
    assert "one result counts 3 times in every mean rank" in text


def _matrix_of(group: list[str]) -> pd.DataFrame:
    column = np.linspace(-1000.0, -300.0, 4)
    return pd.DataFrame({"cart_pole-earth": [1.0, 2.0, 3.0, 4.0], **{t: column for t in group}})


def test_counting_a_group_once_weighs_its_tasks_by_one_over_its_size():
    values = _pendulum_values()
    group = ["pendulum-earth", "pendulum-uranus", "pendulum-venus"]
    weights = group_weights([group])
    assert weights.to_dict() == {t: pytest.approx(1 / 3) for t in group}
    r = ranks(values)
    once = rank_summary(r, normalise(values), weights)
    # final point: cart pole ranks pb2 1, pbt 2, taf 3; the pendulum group, weighed as one task,
    # ranks taf (1 + 1 + 3) / 3 and pb2 (3 + 3 + 2) / 3: two tasks in all
    assert once.loc["taf", "final_rank"] == pytest.approx((3 + 5 / 3) / 2)
    assert once.loc["pb2", "final_rank"] == pytest.approx((1 + 8 / 3) / 2)
    plain = rank_summary(r, normalise(values))
    assert plain.loc["taf", "final_rank"] == pytest.approx((3 + 1 + 1 + 3) / 4)
    assert rank_summary(r, normalise(values), pd.Series(dtype=float)).equals(plain)
