"""The ask/tell population refuses what a user's loop gets wrong (a member told twice in a round, a
time going backwards) with one line naming the member."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metapb2_core.ask_tell import AskTellPopulation
from metapb2_core.errors import MetaPB2Error

SPACE = {"lr": (1e-5, 1e-1, "log"), "gamma": (0.9, 0.999)}


def reward(config: dict, r: int) -> float:
    return (1.0 - (math.log10(config["lr"]) + 3.0) ** 2) * r + config["gamma"]


def drive(pop: AskTellPopulation, rounds: int, start: int = 1) -> None:
    for r in range(start, start + rounds):
        pop.tell_all(r * 10, [reward(c, r) for c in pop.ask()])
        pop.perturb()


# ---- tell: one report per member and round, times increasing ----------------------------------
def test_a_second_tell_in_a_round_is_refused_naming_the_member_and_both_reports():
    pop = AskTellPopulation.create("pb2_star", SPACE, 4, 0)
    pop.tell(2, 10, 1.5)
    with pytest.raises(MetaPB2Error) as info:
        pop.tell(2, 10, 2.25)
    assert str(info.value) == (
        "member 2 was already told time 10 (reward 1.5) this round; a second tell "
        "(time 10, reward 2.25) before perturb() is refused"
    )
    assert pop.rows == [{"member": 2, "time": 10, **pop.ask()[2], "reward": 1.5}]  # the first one kept
    for m in (0, 1, 3):
        pop.tell(m, 10, float(m))
    assert len(pop.perturb()) == 1 and pop.rounds == 1
    pop.tell(2, 20, 3.0)  # a new round: told again
    assert pop.rows[-1]["time"] == 20


@pytest.mark.parametrize("time", [10, 5])
def test_a_time_not_after_the_previous_round_is_refused_naming_member_and_times(time):
    pop = AskTellPopulation.create("pb2_star", SPACE, 4, 0)
    drive(pop, 1)
    with pytest.raises(MetaPB2Error) as info:
        pop.tell(3, time, 1.0)
    assert str(info.value) == (
        f"member 3 told time {time}, but its previous round was at time 10: "
        "times must increase from round to round"
    )
    assert len(pop.rows) == 4 and pop._reported == {}


def test_tell_all_runs_round_after_round_and_a_repeated_tell_all_is_refused():
    pop = AskTellPopulation.create("pb2", SPACE, 4, 3)
    drive(pop, 4)
    assert pop.rounds == 4 and len(pop.rows) == 16 and len(pop.perturbations) == 4
    assert sorted({r["time"] for r in pop.rows}) == [10, 20, 30, 40]
    pop.tell_all(50, np.ones(4))
    with pytest.raises(MetaPB2Error, match="member 0 was already told time 50 \\(reward 1.0\\) this round"):
        pop.tell_all(50, np.ones(4))


def test_the_time_check_survives_a_save_and_load(tmp_path):
    pop = AskTellPopulation.create("pb2_star", SPACE, 4, 0)
    drive(pop, 2)
    pop.tell(0, 30, 1.0)  # mid-round
    pop.save(tmp_path / "pop.state")
    back = AskTellPopulation.create("pb2_star", SPACE, 4, 0)
    back.load(tmp_path / "pop.state")
    with pytest.raises(MetaPB2Error, match="member 0 was already told time 30 \\(reward 1.0\\)"):
        back.tell(0, 30, 2.0)
    with pytest.raises(MetaPB2Error, match="member 1 told time 20, but its previous round was at time 20"):
        back.tell(1, 20, 2.0)
    for m in (1, 2, 3):
        back.tell(m, 30, 1.0)
    assert len(back.perturb()) == 1 and back.rounds == 3
