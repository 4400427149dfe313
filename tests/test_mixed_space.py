"""Mixed search spaces (issue 34): integer and categorical hyperparameters declared once, checked
with one-line errors, and honoured by every method: no method hands out a float where an integer
is declared or a value outside the choices, in the ask/tell loop, in meta-data and in Ray Tune."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from ray import tune

from metapb2_core.ask_tell import AskTellPopulation
from metapb2_core.errors import MetaPB2Error
from metapb2_core.meta.tables import build_meta_dir
from metapb2_core.methods import METHODS
from metapb2_core.space import SEARCH_SPACE, ChoiceParam, IntParam, Param, SearchSpace, parse_bounds
from metapb2_core.store import read_record, write_record
from metapb2_core.tune_space import domain_of, space_from_spec

SPACE = {"x": (0.0, 1.0), "n": ("int", 1, 30), "lr": (1e-4, 1e-1, "log"), "opt": ("choice", ["a", "b", "c"])}


# ---- the space ---------------------------------------------------------------------------------
def test_the_paper_space_describes_and_declares_as_before():
    assert SEARCH_SPACE.all_float
    assert SEARCH_SPACE.describe() == [["lr", 1e-5, 1e-3, True], ["lambda", 0.9, 0.99, False],
                                       ["clip_param", 0.1, 0.5, False]]  # fmt: skip
    assert SEARCH_SPACE.declaration() == {"lr": [1e-5, 1e-3, True], "lambda": [0.9, 0.99, False],
                                          "clip_param": [0.1, 0.5, False]}  # fmt: skip
    assert SearchSpace.from_dict(SEARCH_SPACE.declaration()) == SEARCH_SPACE


def test_a_mixed_space_round_trips_through_its_declaration_and_types_its_values():
    space = SearchSpace.from_dict({**SPACE, "batch": ("int", 16, 256, 16), "norm": ("choice", [True, False])})
    assert [p.kind for p in space.params] == ["float", "int", "float", "choice", "int", "choice"]
    assert SearchSpace.from_dict(json.loads(json.dumps(space.declaration()))) == space
    assert space.column_dtypes() == {"x": "float64", "n": "int64", "lr": "float64", "opt": "str",
                                     "batch": "int64", "norm": "bool"}  # fmt: skip
    rng = np.random.default_rng(0)
    draws = [space.sample(rng) for _ in range(300)]
    assert all(type(d["n"]) is int and 1 <= d["n"] <= 30 for d in draws)
    assert {d["batch"] for d in draws} <= set(range(16, 257, 16)) and len({d["batch"] for d in draws}) > 10
    assert {d["opt"] for d in draws} == {"a", "b", "c"} and {d["norm"] for d in draws} == {True, False}
    assert (
        space.validate({**draws[0], "n": 7.0})["n"] == 7
        and type(space.validate({**draws[0], "n": 7.0})["n"]) is int
    )
    assert IntParam("k", 1, 100, log=True).sample(rng) >= 1
    logs = [IntParam("k", 1, 1000, log=True).sample(rng) for _ in range(2000)]
    assert np.median(logs) < 100  # log-uniform: half the draws below √1000 ≈ 32, far below 500


@pytest.mark.parametrize(
    ("declaration", "match"),
    [
        (("choice", []), "at least two values"),
        (("choice", ["a"]), "at least two values"),
        (("choice", ["a", "b", "a"]), "duplicate choices 'a'"),
        (("choice", ["a", 1]), "mix types"),
        (("choice", "abc"), "must be a list"),
        (("choice", [None, 1]), "not a string, number or boolean"),
        (("int", 1.5, 10), "the low bound must be an integer, got 1.5"),
        (("int", 1, "10"), "the high bound must be an integer"),
        (("int", 16, 64, 10), "the step 10 does not divide the range 16..64"),
        (("int", 0, 8, "log"), "log-scaled integer needs low >= 1"),
        (("int", 5, 5), "the range is empty"),
        (("1e-5", "1e-3"), "bounds must be numbers"),
        ([16, 32, 64], "the scale must be 'log' or 'linear', got 64; for a list of values write"),
        ([16, 32, 64, 128], "for a list of values write ('choice'"),
        (("uniform", 0, 1), "unknown declaration 'uniform'"),
        ({"type": "int", "low": 1}, "needs 'low' and 'high'"),
        ({"type": "choice", "choices": [1, 2], "step": 1}, "takes no ['step']"),
    ],
)
def test_a_bad_declaration_is_one_line_naming_the_parameter(declaration, match):
    with pytest.raises(MetaPB2Error, match=None) as info:
        SearchSpace.from_dict({"bs": declaration})
    text = str(info.value)
    assert "\n" not in text and "'bs'" in text and match in text, text


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"n": 7.5}, "'n': the value must be an integer, got 7.5"),
        ({"n": 31}, "lies outside [1, 30]"),
        ({"opt": "d"}, "'opt' = 'd' is not one of ['a', 'b', 'c']"),
        ({"x": "0.5"}, "'x' = '0.5' is not a number"),
        ({"x": float("nan")}, "lies outside"),
    ],
)
def test_a_configuration_of_the_wrong_kind_is_refused(config, match):
    space = SearchSpace.from_dict(SPACE)
    good = {"x": 0.5, "n": 3, "lr": 1e-3, "opt": "a"}
    with pytest.raises(MetaPB2Error) as info:
        space.validate({**good, **config})
    assert match in str(info.value)


def test_tune_domains_convert_with_tunes_own_bounds():
    space = space_from_spec(
        {
            "a": tune.randint(1, 31),
            "b": tune.lograndint(1, 1025),
            "c": tune.qrandint(16, 256, 16),
            "d": tune.choice(["x", "y"]),
            "e": tune.loguniform(1e-5, 1e-2),
            "f": tune.uniform(0, 1),
            "g": ("int", 2, 4),
        }  # fmt: skip
    )
    assert space["a"] == IntParam("a", 1, 30)  # randint's upper bound is exclusive
    assert space["b"] == IntParam("b", 1, 1024, log=True)
    assert space["c"] == IntParam("c", 16, 256, step=16)  # qrandint's is inclusive
    assert space["d"] == ChoiceParam("d", ("x", "y"))
    assert space["e"] == Param("e", 1e-5, 1e-2, log=True) and space["f"] == Param("f", 0.0, 1.0)
    assert space["g"] == IntParam("g", 2, 4)
    for p in space.params:  # and back: the domain PBT's mutations get draws the same values
        draws = {domain_of(p).sample() for _ in range(200)} if p.kind != "float" else set()
        if p.kind == "int":
            assert draws <= set(p.values)
        elif p.kind == "choice":
            assert draws == set(p.choices)
    for bad, match in ((tune.quniform(0, 1, 0.1), "quantised floats"), (tune.randn(), "Normal sampler"),
                       (tune.qrandint(10, 100, 16), "lower bound must be one")):  # fmt: skip
        with pytest.raises(MetaPB2Error, match=match):
            space_from_spec({"h": bad})


def test_bounds_flags_take_integers_and_choices_merge_and_refuse_a_name_twice():
    flags = ["lr=1e-4:1e-2", "epochs=int:1:30", "norm=choice:true,false", "k=int:1:64:log"]
    assert parse_bounds(flags) == {"lr": (1e-4, 1e-2), "epochs": ("int", 1, 30),
                                   "norm": ("choice", [True, False]), "k": ("int", 1, 64, "log")}  # fmt: skip
    with pytest.raises(MetaPB2Error, match="bounds of 'lr' given twice"):
        parse_bounds(["lr=1e-4:1e-2", "lr=1e-5:1e-3"])
    with pytest.raises(MetaPB2Error, match="LOW and HIGH must be integers"):
        parse_bounds(["epochs=int:1:2.5"])
    space = SEARCH_SPACE.with_bounds({"lr": (1e-4, 1e-2), "clip_param": ("choice", [0.1, 0.2, 0.3])})
    assert space["lr"] == Param("lr", 1e-4, 1e-2, log=True) and space["clip_param"].kind == "choice"


def test_repeated_bounds_flags_of_metapb2_run_merge(capsys):
    from metapb2_core.cli import _build_parser

    args = _build_parser().parse_args(["run", "--task", "t", "--method", "pbt", "--bounds", "lr=1e-4:1e-2",
                                 "--bounds", "clip_param=0.1:0.3"])  # fmt: skip
    assert parse_bounds(args.bounds) == {"lr": (1e-4, 1e-2), "clip_param": (0.1, 0.3)}


# ---- every method ------------------------------------------------------------------------------
def _rate(c: dict, t: int) -> float:
    best = "a" if t <= 5 else "c"
    return 1 - (c["x"] - 0.3) ** 2 - ((c["n"] - 12) / 29) ** 2 + (0.6 if c["opt"] == best else 0.0)


def _run(pop: AskTellPopulation, rounds: int = 8) -> list[dict]:
    """The synthetic loop; every configuration handed out, checked as it comes."""
    seen, score = [], np.zeros(pop.size)
    for t in range(1, rounds + 1):
        for m, c in enumerate(pop.ask()):
            seen.append(c)
            score[m] += _rate(c, t)
            pop.tell(m, t * 100, float(score[m]))
        if t < rounds:
            for p in pop.perturb():
                score[p.member] = score[p.cloned_from]
    return seen


def _assert_in_space(configs: list[dict]) -> None:
    for c in configs:
        assert type(c["n"]) is int and 1 <= c["n"] <= 30, c
        assert c["opt"] in ("a", "b", "c"), c
        assert isinstance(c["x"], float) and 0.0 <= c["x"] <= 1.0, c
        assert 1e-4 <= c["lr"] <= 1e-1, c


@pytest.fixture(scope="module")
def mixed_meta(tmp_path_factory):
    """Meta-data of two tasks, from pb2 records of the mixed space (the records declare it)."""
    root = tmp_path_factory.mktemp("mixed_meta")
    for task in ("alpha", "beta"):
        for seed in (0, 1):
            pop = AskTellPopulation.create("pb2", SPACE, size=4, seed=seed, task=task)
            _run(pop)
            write_record(pop.to_record(task, seed), root / "runs")
    build_meta_dir(root / "runs", root / "meta", None, "pb2")
    return root


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_hands_out_integers_and_choices_in_range(method, mixed_meta):
    portfolio = [SearchSpace.from_dict(SPACE).sample(np.random.default_rng(i)) for i in range(8)]
    pop = AskTellPopulation.create(
        method, SPACE, size=4, seed=3, task="gamma", meta=mixed_meta / "meta", portfolio=portfolio
    )
    seen = _run(pop)
    _assert_in_space(seen)
    record = pop.to_record("gamma", 3)
    assert record.meta["status"] == "passed", record.meta.get("failed_checks")
    assert record.points["n"].dtype == np.int64 and set(record.points["opt"]) <= {"a", "b", "c"}
    if METHODS[method].perturbs:
        diags = [json.loads(d) for d in record.perturbations["diagnostics"]]
        assert len(diags) == 7 * 1  # one exploit per round of 4 (quantile 25 %)
        assert record.perturbations["new_n"].dtype == np.int64
        if method.startswith("pb2") or method in ("taf", "multitask", "metaprior"):
            assert any(d.get("mode") == "gp_ucb" for d in diags)
    if method in ("taf", "multitask", "metaprior"):
        assert sorted(record.meta["meta_tasks"]) == ["alpha", "beta"]


def test_the_bandit_learns_the_switch_of_the_best_category():
    """EXP3 on the plays: after the optimum moved from 'a' to 'c' the probability of 'c' rises
    above its uniform share, on most of 6 seeds; the diagnostics hold the probabilities."""
    late = []
    for seed in range(6):
        pop = AskTellPopulation.create("pb2", SPACE, size=8, seed=seed, categorical="bandit")
        _run(pop, rounds=14)
        bandit_diag = [d["categorical_bandit"]["opt"] for d in (p.diagnostics for p in pop.perturbations)
                       if "categorical_bandit" in d]  # fmt: skip
        assert bandit_diag and all(abs(sum(b["probabilities"].values()) - 1) < 1e-3 for b in bandit_diag)
        late.append(bandit_diag[-1]["probabilities"]["c"])
    assert sum(p > 1 / 3 for p in late) >= 4, late


def test_pb2_rounding_and_enumeration_are_options_and_a_bad_one_is_refused():
    for mode in ("index", "bandit", "enumerate"):
        _assert_in_space(_run(AskTellPopulation.create("pb2_star", SPACE, size=4, seed=0, categorical=mode)))
    with pytest.raises(MetaPB2Error, match="categorical must be one of auto, enumerate, bandit, index"):
        AskTellPopulation.create("pb2", SPACE, size=4, seed=0, categorical="onehot")


def test_pbt_perturbs_integers_by_grid_steps_and_shifts_choices():
    pop = AskTellPopulation.create(
        "pbt", {"n": ("int", 1, 4), "opt": ("choice", ["a", "b", "c"])}, size=4, seed=1
    )
    score = np.zeros(4)
    ops = []
    for t in range(1, 12):
        for m, c in enumerate(pop.ask()):
            score[m] += c["n"]
            pop.tell(m, t, float(score[m]))
        for p in pop.perturb():
            ops.append(p.diagnostics["operations"])
            assert p.new_config["n"] in (1, 2, 3, 4) and p.new_config["opt"] in ("a", "b", "c")
    kinds = {op["opt"] for op in ops}
    assert kinds & {"shift+1", "shift-1"} and {op["n"] for op in ops} & {"x1.2", "x0.8"}


# ---- meta-data of another space ----------------------------------------------------------------
def test_meta_data_without_a_parameter_of_the_target_is_one_line(mixed_meta):
    with pytest.raises(MetaPB2Error) as info:
        AskTellPopulation.create("taf", {**SPACE, "gamma": (0.9, 0.99)}, size=4, seed=0, task="gamma",
                                 meta=mixed_meta / "meta")  # fmt: skip
    assert "lack hyperparameter(s) ['gamma']" in str(info.value) and "\n" not in str(info.value)


def test_meta_data_outside_the_targets_space_is_recorded_as_a_warning(mixed_meta):
    narrow = {**SPACE, "x": (0.0, 0.5), "opt": ("choice", ["a", "c"])}
    pop = AskTellPopulation.create("taf", narrow, size=4, seed=0, task="gamma", meta=mixed_meta / "meta")
    warnings = pop.method.meta_warnings
    assert set(warnings) == {"alpha", "beta"}
    assert all("outside [0.0, 0.5]" in w and "not one of ['a', 'c'] dropped" in w for w in warnings.values())
    _run(pop)
    diags = [p.diagnostics for p in pop.perturbations if p.diagnostics.get("mode") == "gp_ucb"]
    assert diags and all(d["meta_warnings"] == warnings for d in diags)


def test_metapb2_meta_reads_each_records_own_space(mixed_meta, tmp_path):
    from metapb2_core.cli import main

    assert main(["meta", str(mixed_meta / "runs"), "--out", str(tmp_path / "meta")]) == 0
    tables = sorted((tmp_path / "meta").glob("*/*.parquet"))
    assert len(tables) == 4
    import pandas as pd

    t = pd.read_parquet(tables[0])
    assert {"x", "n", "lr", "opt"} <= set(t.columns) and t["n"].dtype == np.int64


# ---- Ray Tune ----------------------------------------------------------------------------------
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import mixed_space  # noqa: E402


@pytest.fixture(scope="module")
def ray_local(ray_head):
    from metapb2_assets import ray_cluster

    ray_cluster.connect(ray_head, 1)
    return ray_head


def _check_tune(scheduler, records: Path, method: str) -> None:
    rec = read_record(records, f"{method}-mixed-toy-tune-s0")
    assert rec.meta["status"] == "passed", rec.meta.get("failed_checks")
    assert rec.points["batch_size"].dtype == np.int64
    assert set(rec.points["batch_size"]) <= set(range(16, 257, 16))
    assert set(rec.points["optimizer"]) <= {"sgd", "adam", "rmsprop"}
    for c in scheduler.population.ask():
        assert type(c["batch_size"]) is int and c["optimizer"] in mixed_space.OPTIMIZER_BONUS


def test_a_tune_experiment_with_randint_and_choice_honours_the_param_space(ray_local, tmp_path):
    """pb2 in Tune on Tune's own domains; the batch sizes a user put in param_space are the
    trials' starts (recorded), the rest the method's; every value in range (the trainable
    itself refuses a float batch size)."""
    s = mixed_space.run("pb2", 0, records=tmp_path, storage=tmp_path / "tune",
                        param_space={"batch_size": tune.choice([32, 48])})  # fmt: skip
    _check_tune(s, tmp_path, "pb2")
    rec = read_record(tmp_path, "pb2-mixed-toy-tune-s0")
    first = rec.points[rec.points["training_iteration"] == 1]
    assert set(first["batch_size"]) <= {32, 48} and len(first) == 4
    assert rec.meta["started_from"] == {str(m): ["batch_size"] for m in range(4)}
    assert s.population.rounds == 3


def test_a_method_that_starts_from_its_portfolio_refuses_param_space_values():
    portfolio = [SearchSpace.from_dict(SPACE).sample(np.random.default_rng(i)) for i in range(8)]
    pop = AskTellPopulation.create("pb2_star_warm", SPACE, size=4, seed=0, portfolio=portfolio)
    with pytest.raises(MetaPB2Error, match="starts from its own configurations"):
        pop.start_from(0, {"n": 3})
    pop = AskTellPopulation.create("pb2", SPACE, size=4, seed=0)
    with pytest.raises(MetaPB2Error, match="'n' = 31 lies outside"):
        pop.start_from(0, {"n": 31})
    assert pop.start_from(1, {"n": 3})["n"] == 3 and pop.ask()[1]["n"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_a_tune_experiment_on_a_mixed_space(method, ray_local, tmp_path, mixed_meta):
    """Every method in a real Tuner on tune.loguniform/qrandint/choice (meta methods on meta-data of
    Tune experiments of the same space)."""
    meta = None
    if method in ("taf", "multitask", "metaprior"):
        runs = tmp_path / "meta_runs"
        for task in ("alpha", "beta"):
            mixed_space.run("pb2", 0, task=task, records=runs, storage=tmp_path / "tune")
        build_meta_dir(runs, tmp_path / "meta", None, "pb2")
        meta = tmp_path / "meta"
    portfolio = [space_from_spec(mixed_space.SPACE).sample(np.random.default_rng(i)) for i in range(8)]
    s = mixed_space.run(
        method, 0, records=tmp_path, storage=tmp_path / "tune", meta=meta, portfolio=portfolio
    )
    _check_tune(s, tmp_path, method)
    assert not math.isnan(s.record.best_final_eval)


def test_metapb2_run_bounds_add_a_tunable_ppo_setting_and_refuse_words():
    from metapb2_core.run import RunRequest

    run = RunRequest("cart_pole-earth", "pbt", 0, "smoke", bounds=parse_bounds(["gamma=0.9:0.999"])).resolve()
    assert run.space.names == ["lr", "lambda", "clip_param", "gamma"]
    assert run.variant["bounds"] == {"gamma": [0.9, 0.999]}
    with pytest.raises(MetaPB2Error, match="the PPO trainer takes numbers"):
        RunRequest(
            "cart_pole-earth", "pbt", 0, "smoke", bounds=parse_bounds(["clip_param=choice:a,b"])
        ).resolve()
    with pytest.raises(MetaPB2Error, match="'beta'"):
        RunRequest("cart_pole-earth", "pbt", 0, "smoke", bounds=parse_bounds(["beta=0:1"])).resolve()


def test_a_tune_domain_the_scheduler_does_not_tune_is_refused_not_copied_on_every_exploit(
    ray_local, tmp_path
):
    from ray.tune.error import TuneError

    with pytest.raises((TuneError, MetaPB2Error)) as info:
        mixed_space.run("pbt", 0, storage=tmp_path, param_space={"momentum": tune.choice([0.0, 0.9])})
    assert "momentum drawn by Tune from the param_space but not in pbt's space" in str(info.value)
