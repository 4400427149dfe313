"""The report's findings about tasks come from the numbers: ties where every method scores the
same, tasks that are one task several times, and no ordering to compare while our ranks all tie."""

import math

import numpy as np
import pandas as pd

from metapb2_core.evaluation.paper import CLASSIC, rank_agreement
from metapb2_core.evaluation.task_findings import (
    constant_columns,
    identical_columns,
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


def test_no_rank_agreement_is_computed_while_our_ranks_all_tie():
    tied = pd.DataFrame({"overall_rank": 4.5, "final_rank": 4.5}, index=CLASSIC.summary.index)
    agreement = rank_agreement(tied, CLASSIC, "overall_rank")
    assert agreement.n == len(CLASSIC.summary) and math.isnan(agreement.kendall_tau)
    ordered = CLASSIC.summary[["overall_rank", "final_rank"]]
    assert rank_agreement(ordered, CLASSIC, "overall_rank").kendall_tau == 1.0
