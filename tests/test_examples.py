"""Every example runs, at a small size, and does what it says: the ask/tell loop (PB2* and
MultiTaskPB2 with meta-data from earlier runs of the same loop), Ray Tune around a user's CartPole
agent, and meta-data from past Tune experiments feeding TAF-PB2 and MultiTaskPB2 in a new one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from metapb2_core.cli import main as metapb2
from metapb2_core.store import read_record, record_ids

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))


@pytest.fixture(scope="module")
def ray_local(ray_head):
    from metapb2_assets import ray_cluster

    ray_cluster.connect(ray_head, 1)


def test_examples_are_listed_in_the_readme():
    readme = (EXAMPLES.parent / "README.md").read_text()
    for example in ("toy_tune.py", "ask_tell_loop.py", "tune_cartpole.py", "tune_meta_from_past_runs.py"):
        assert f"python examples/{example}" in readme, example


def test_ask_tell_loop(tmp_path, capsys):
    import ask_tell_loop

    summary = ask_tell_loop.main(["--out", str(tmp_path), "--intervals", "5", "--episodes", "3"])
    assert summary["pb2_star"]["rounds"] == summary["multitask"]["rounds"] == 4
    assert summary["multitask"]["lcm_fits"] >= 1  # the multi-task model of the earlier runs was fitted
    assert summary["pb2_star"]["lcm_fits"] == 0
    assert sorted(record_ids(tmp_path / "earth")) == [
        "multitask-cartpole-earth-ask_tell-s1",
        "pb2_star-cartpole-earth-ask_tell-s1",
    ]
    meta = read_record(tmp_path / "earth", "multitask-cartpole-earth-ask_tell-s1").meta
    assert meta["status"] == "passed" and set(meta["meta_tasks"]) == {"cartpole-moon", "cartpole-mars"}
    assert metapb2(["report", str(tmp_path / "earth")]) == 0
    assert "multitask" in capsys.readouterr().out


@pytest.mark.slow  # a PPO Tune experiment (19 s); the mixed-space Tune test covers the scheduler
def test_tune_cartpole(ray_local, tmp_path):
    import tune_cartpole

    s = tune_cartpole.main(["--iterations", "6", "--records", str(tmp_path)])
    assert s.population.rounds == 2 and s.record.meta["status"] == "passed"
    assert record_ids(tmp_path) == ["pb2_star-cartpole-earth-tune-s0"]
    points = read_record(tmp_path, "pb2_star-cartpole-earth-tune-s0").points
    assert points["member"].nunique() == 4 and points["eval_return"].between(1, 500).all()
    assert points["lr"].between(1e-4, 0.5).all() and points["gamma"].between(0.8, 0.999).all()


@pytest.mark.slow  # ~36 s: two Tune experiments on top of four meta-data runs; run with -m slow
def test_tune_meta_from_past_runs(ray_local, tmp_path, capsys):
    import tune_meta_from_past_runs

    summary = tune_meta_from_past_runs.main(
        ["--out", str(tmp_path), "--iterations", "8", "--methods", "taf", "multitask"]
    )
    assert summary["meta_tables"] == 2
    for method in ("taf", "multitask"):
        assert set(summary[method]["meta_tasks"]) == {"cartpole-moon", "cartpole-mars"}
        assert summary[method]["suggestions_informed_by_meta_data"] >= 1, summary
        assert summary[method]["status"] == "passed"
    assert summary["multitask"]["lcm_fits"] >= 1
    assert metapb2(["report", str(tmp_path / "earth")]) == 0
    out = capsys.readouterr().out
    assert "taf" in out and "multitask" in out
