"""The ask/tell population refuses what a user's loop gets wrong (a member told twice in a round, a
time going backwards) with one line naming the member, and saves its state as JSON that loads only
into a population built the same way (method, size, space)."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest

from metapb2_core.ask_tell import AskTellPopulation
from metapb2_core.errors import MetaPB2Error
from metapb2_core.gp.lcm_fit import LCMParams
from metapb2_core.state_file import decode, encode

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
    pop.save(tmp_path / "pop.json")
    back = AskTellPopulation.create("pb2_star", SPACE, 4, 0)
    back.load(tmp_path / "pop.json")
    with pytest.raises(MetaPB2Error, match="member 0 was already told time 30 \\(reward 1.0\\)"):
        back.tell(0, 30, 2.0)
    with pytest.raises(MetaPB2Error, match="member 1 told time 20, but its previous round was at time 20"):
        back.tell(1, 20, 2.0)
    for m in (1, 2, 3):
        back.tell(m, 30, 1.0)
    assert len(back.perturb()) == 1 and back.rounds == 3


# ---- save / load: JSON, checked against the population it loads into ----------------------------
@pytest.mark.parametrize("method", ["pb2", "pb2_star", "pbt", "random_search"])
def test_a_saved_state_is_json_and_a_loaded_population_goes_on_as_the_one_that_was_saved(tmp_path, method):
    a = AskTellPopulation.create(method, SPACE, 4, 7)
    drive(a, 2)
    a.tell(1, 30, float("nan"))  # a diverged member, mid-round
    a.save(tmp_path / "pop.state")

    def strict(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    saved = json.loads((tmp_path / "pop.state").read_text(), parse_constant=strict)
    assert (saved["method"], saved["size"]) == (method, 4)
    assert saved["space"] == {"lr": [1e-5, 1e-1, True], "gamma": [0.9, 0.999, False]}
    rng = saved["ask_tell"]["clone_rng"]
    assert rng["bit_generator"] == "PCG64" and all(isinstance(v, int) for v in rng["state"].values())
    assert saved["ask_tell"]["rows"][-1]["reward"] == {"$float": "nan"}
    assert not list(tmp_path.glob(".*tmp"))  # the temp file was renamed into place

    b = AskTellPopulation.create(method, SPACE, 4, 7)
    b.load(tmp_path / "pop.state")
    assert math.isnan(b.rows[-1]["reward"]) and b._reported[1][0] == 30
    for pop in (a, b):
        for m in (0, 2, 3):
            pop.tell(m, 30, reward(pop.ask()[m], 3))
        pop.perturb()
        drive(pop, 2, start=4)
    assert a.ask() == b.ask() and len(a.perturbations) == len(b.perturbations)
    assert [p.diagnostics for p in a.perturbations] == [p.diagnostics for p in b.perturbations]
    assert encode(a.rows) == encode(b.rows)  # the NaN reward too (NaN != NaN as a float)
    assert a.method.rng.bit_generator.state == b.method.rng.bit_generator.state


@pytest.mark.parametrize(
    ("other", "difference"),
    [
        ({"method": "pb2"}, "method 'pb2_star' there, 'pb2' here"),
        ({"size": 8}, "4 members there, 8 here"),
        ({"space": {"lr": (1e-5, 1e-1, "log")}}, "parameters ['lr', 'gamma'] there, ['lr'] here"),
        (
            {"space": {"lr": (1e-4, 1e-1, "log"), "gamma": (0.9, 0.999)}},
            "'lr' bounds [1e-05, 0.1] log there, [0.0001, 0.1] log here",
        ),
        (
            {"method": "pbt", "space": {"lr": (1e-5, 1e-1), "gamma": (0.9, 0.999)}},
            "method 'pb2_star' there, 'pbt' here; 'lr' bounds [1e-05, 0.1] log there, [1e-05, 0.1] here",
        ),
    ],
)
def test_a_state_of_another_population_is_refused_naming_what_differs(tmp_path, other, difference):
    pop = AskTellPopulation.create("pb2_star", SPACE, 4, 0)
    drive(pop, 1)
    pop.save(tmp_path / "pop.state")
    kw = {"method": "pb2_star", "space": SPACE, "size": 4, "seed": 0, **other}
    into = AskTellPopulation.create(**kw)
    before = into.ask()
    with pytest.raises(MetaPB2Error) as info:
        into.load(tmp_path / "pop.state")
    assert str(info.value) == f"{tmp_path / 'pop.state'} was saved by another population: {difference}"
    assert into.ask() == before and into.rounds == 0  # nothing was loaded


def test_an_old_pickle_state_or_a_foreign_file_is_one_clear_error(tmp_path):
    pop = AskTellPopulation.create("pb2_star", SPACE, 4, 0)
    old = tmp_path / "old.state"
    old.write_bytes(pickle.dumps({"format": 1, "ask_tell": pop.state_dict()}, protocol=4))
    with pytest.raises(MetaPB2Error) as info:
        pop.load(old)
    assert str(info.value) == (
        f"{old} is an old pickle state (saved before states were JSON); it is not loaded: "
        "start the ask/tell population afresh"
    )
    (tmp_path / "half.state").write_text('{"format": "metapb2-ask-tell-state", "vers')
    with pytest.raises(MetaPB2Error, match="half.state is not a saved ask/tell population \\(unreadable"):
        pop.load(tmp_path / "half.state")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(MetaPB2Error, match="other.json holds no saved ask/tell population"):
        pop.load(tmp_path / "other.json")


def test_a_failed_save_keeps_the_previous_state_and_leaves_no_temp_file(tmp_path):
    pop = AskTellPopulation.create("pb2_star", SPACE, 4, 0)
    target = tmp_path / "pop.state"
    target.mkdir()  # a folder where the file should go: the rename fails
    with pytest.raises(MetaPB2Error, match=f"cannot save the state file {target}: "):
        pop.save(target)
    assert target.is_dir() and list(tmp_path.iterdir()) == [target]


def test_the_encoding_round_trips_arrays_tuples_int_keys_non_finite_floats_and_lcm_parameters():
    params = LCMParams(
        np.array([[1.0, 0.5, 0.1]]), np.array([[0.3]]), np.array([[1e-3]]), np.array([np.inf]), ("a",)
    )
    value = {
        "times": {0: [10, 20], 3: [30]},
        "pair": (40, -math.inf),
        "x": np.arange(6, dtype=np.float32).reshape(2, 3),
        "n": np.int64(2**40),
        "fit": params,
        "$odd": None,
    }
    text = json.dumps(encode(value), allow_nan=False)
    back = decode(json.loads(text))
    assert back["times"] == {0: [10, 20], 3: [30]} and back["pair"] == (40, -math.inf)
    assert back["x"].dtype == np.float32 and back["x"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert type(back["n"]) is np.int64 and back["n"] == 2**40 and back["$odd"] is None
    fit = back["fit"]
    assert isinstance(fit, LCMParams) and fit.names == ("a",) and fit.noise.tolist() == [math.inf]
    assert fit.kernels.tolist() == [[1.0, 0.5, 0.1]] and fit.W.tolist() == [[0.3]]
    with pytest.raises(MetaPB2Error, match="cannot save a value of type set"):
        encode({"s": {1}})


def test_an_ask_tell_record_has_every_manifest_key_a_platform_run_record_has():
    """One record builder (metapb2_core.manifest): a user's ask/tell record carries the keys of a
    platform run's manifest (a committed study record), None where its loop has no value, and only
    the machine fields of a run the platform executed are missing."""
    from pathlib import Path

    from metapb2_core.manifest import LOOP_FIELDS

    committed = next((Path(__file__).parents[1] / "results" / "classic-short" / "runs").glob("pb2-*.json"))
    platform = set(json.loads(committed.read_text()))
    pop = AskTellPopulation.create("pb2", SPACE, 4, 0)
    drive(pop, 3)
    manifest = pop.to_record("mine", 0).meta
    machine_only = {"jax_version", "machine", "load_average_at_end", "record_files"}
    assert platform - set(manifest) == machine_only
    assert all(manifest[k] is None for k in (*LOOP_FIELDS, "meta_source", "portfolio_source"))
    assert manifest["status"] == "passed", manifest.get("failed_checks")
