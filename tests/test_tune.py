"""The methods as Ray Tune schedulers, in real Tuner runs on the local Ray (4 trials of a toy
trainable whose reward rate peaks at lr = 1e-3): PB2* moves the population toward the peak faster
than random search on every seed; the records a Tune experiment writes are read by `metapb2
report`; bad input is one error before any trial starts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from metapb2_core.ask_tell import AskTellPopulation
from metapb2_core.cli import main
from metapb2_core.errors import MetaPB2Error
from metapb2_core.store import read_record, record_ids
from metapb2_core.tune_scheduler import MethodScheduler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import toy_tune  # noqa: E402

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def ray_local(ray_head):
    from metapb2_assets import ray_cluster

    ray_cluster.connect(ray_head, 1)
    return ray_head


def _experiments(records: Path, seeds: tuple[int, ...]) -> dict:
    return {
        (m, s): toy_tune.run(m, s, records=records, storage=records / "tune")
        for m in ("pb2_star", "random_search")
        for s in seeds
    }


@pytest.fixture(scope="module")
def first_seed(ray_local, tmp_path_factory):
    """Both methods on seed 0: the default run's experiments (about a minute on 2 cores)."""
    records = tmp_path_factory.mktemp("tune_records")
    return records, _experiments(records, SEEDS[:1])


@pytest.fixture(scope="module")
def comparison(first_seed):
    """The same experiments on every seed (three minutes more: -m slow)."""
    records, runs = first_seed
    return records, {**runs, **_experiments(records, SEEDS[1:])}


@pytest.mark.slow
def test_pb2_star_moves_the_population_toward_the_peak_faster_than_random_search(comparison):
    _, runs = comparison
    for s in SEEDS:
        star, rs = (
            toy_tune.distance_to_peak(runs["pb2_star", s]),
            toy_tune.distance_to_peak(runs["random_search", s]),
        )
        assert star < rs, (s, star, rs)
    mean_star = np.mean([toy_tune.distance_to_peak(runs["pb2_star", s]) for s in SEEDS])
    assert mean_star < 0.5  # within half a decade of lr = 1e-3 after 5 rounds
    assert all(runs["pb2_star", s].population.rounds == 5 for s in SEEDS)  # iterations 2, 4, ..., 10


def test_a_tune_experiment_writes_a_checked_record_that_metapb2_report_reads(first_seed, capsys):
    records, runs = first_seed
    assert record_ids(records) == sorted(f"{m}-toy-tune-s0" for m in ("pb2_star", "random_search"))
    rec = read_record(records, "pb2_star-toy-tune-s0")
    assert rec.meta["status"] == "passed", rec.meta.get("failed_checks")
    assert len(rec.perturbations) == 5 and rec.points["member"].nunique() == 4
    diags = [json.loads(d) for d in rec.perturbations["diagnostics"]]
    assert [d["mode"] for d in diags] == ["prior_draw", "gp_ucb", "gp_ucb", "gp_ucb", "gp_ucb"]
    assert all("variance" in d and "kappa" in d for d in diags[1:])  # the GP diagnostics our runs record
    # the records' configurations are the ones the trials trained with
    final = runs["pb2_star", 0].population.ask()
    last = rec.points[rec.points["timesteps"] == rec.points["timesteps"].max()].sort_values("member")
    assert last["lr"].tolist() == pytest.approx([c["lr"] for c in final])
    assert main(["report", str(records), "--out", str(records / "report")]) == 0
    out = capsys.readouterr().out
    assert (
        "pb2_star" in out and "random_search" in out and "complete grid: 1 tasks × 2 methods × 1 seeds" in out
    )


def test_bad_input_is_refused_before_any_trial_starts(tmp_path):
    with pytest.raises(MetaPB2Error, match="'lambda': bounds \\[0.5, 2\\] leave its domain \\[0, 1\\]"):
        MethodScheduler.create(
            "pb2_star", {"lambda": (0.5, 2.0)}, 4, 0, metric="score", perturbation_interval=2
        )
    with pytest.raises(MetaPB2Error, match="method 'taf' needs meta-data"):
        MethodScheduler.create("taf", toy_tune.SPACE, 4, 0, metric="score", perturbation_interval=2)
    with pytest.raises(MetaPB2Error, match="unknown method 'pb3'"):
        MethodScheduler.create("pb3", toy_tune.SPACE, 4, 0, metric="score", perturbation_interval=2)
    with pytest.raises(MetaPB2Error, match="perturbation_interval must be a positive integer"):
        MethodScheduler.create("pb2", toy_tune.SPACE, 4, 0, metric="score", perturbation_interval=0)


def silent_trainable(config):
    from ray import tune

    while True:
        tune.report({"loss": 1.0})


@pytest.mark.slow  # a Tune experiment that times out (21 s)
def test_a_trainable_that_never_reports_the_metric_is_one_clear_error(ray_local, tmp_path):
    with pytest.raises(Exception) as info:  # Tune wraps the scheduler's error; its message stays
        toy_tune.run("pb2_star", 0, iterations=4, storage=tmp_path, trainable=silent_trainable)
    assert "did not include the specified metric(s) `score` that `MethodScheduler` expects" in str(info.value)


def test_the_ask_tell_state_saves_and_loads_mid_run(tmp_path):
    """A population saved after two rounds and loaded into a fresh one hands out the same
    configurations as the one that went on (a user's loop resumes)."""

    def drive(pop, rounds, start=1):
        for r in range(start, start + rounds):
            pop.tell_all(r * 10, [toy_tune.rate(c["lr"], -3.0) * r for c in pop.ask()])
            pop.perturb()

    a = AskTellPopulation.create("pb2_star", toy_tune.SPACE, 4, 7)
    drive(a, 2)
    a.save(tmp_path / "pop.state")
    b = AskTellPopulation.create("pb2_star", toy_tune.SPACE, 4, 7)
    b.load(tmp_path / "pop.state")
    drive(a, 3, start=3)
    drive(b, 3, start=3)
    assert a.ask() == b.ask() and len(a.perturbations) == len(b.perturbations) == 5
    assert [p.diagnostics for p in a.perturbations] == [p.diagnostics for p in b.perturbations]
    with pytest.raises(MetaPB2Error, match="holds no saved ask/tell population"):
        b.load(tmp_path / "missing.state")


def test_fewer_trials_than_the_population_is_one_clear_error_at_the_first_round(ray_local, tmp_path):
    """num_samples=2 for a population of 4: the first round says so (it was Tune's KeyError: 2)."""
    import ray
    from ray import tune

    scheduler = MethodScheduler.create(
        "pb2", toy_tune.SPACE, population_size=4, seed=0, metric="score", perturbation_interval=2
    )
    ray.cloudpickle.register_pickle_by_value(toy_tune)
    tuner = tune.Tuner(
        tune.with_resources(toy_tune.toy_trainable, {"cpu": 0.25}),
        param_space={"checkpoint_every": 2},
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=2, reuse_actors=True),
        run_config=tune.RunConfig(
            name="too-few", stop={"training_iteration": 6}, storage_path=str(tmp_path), verbose=0
        ),
    )
    with pytest.raises(Exception) as info:  # Tune wraps the scheduler's error; its message stays
        tuner.fit()
    assert "pb2 was built for 4 trials but only 2 were started: set num_samples to 4" in str(info.value)
    assert "KeyError" not in str(info.value)
    assert len(scheduler._members) == 2 and scheduler.population.rounds == 0  # refused before any round
