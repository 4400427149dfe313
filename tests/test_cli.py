"""The ``metapb2`` command as a user runs it: a subprocess, its exit code, stdout and stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

ENVS = ["mountain_car", "cart_pole", "pendulum", "acrobot"]
BRAX_ENVS = [
    "humanoid",
    "halfcheetah",
    "hopper",
    "humanoid_standup",
    "inverted_double_pendulum",
    "inverted_pendulum",
    "pusher",
    "reacher",
    "walker2d",
]
CONTEXTS = ["uranus", "venus", "saturn", "earth", "neptune"]


def metapb2(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "metapb2_core.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_list_tasks(tmp_path):
    res = metapb2("list", "tasks", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    expected = [f"{env}-{ctx}" for env in ENVS + BRAX_ENVS for ctx in CONTEXTS]
    assert len(expected) == 20 + 45
    assert res.stdout.splitlines() == expected
    assert res.stdout.endswith("\n")


def test_list_methods(tmp_path):
    res = metapb2("list", "methods", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    names = res.stdout.splitlines()
    assert {"pbt", "random_search"} <= set(names)
    assert len(names) == len(set(names))


def test_list_budgets(tmp_path):
    res = metapb2("list", "budgets", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["smoke", "short", "paper"]


RUN = ["run", "--task", "cart_pole-earth", "--method", "pbt", "--quiet"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--task", "cart_pole-mars", "--method", "pbt"], "unknown task 'cart_pole-mars'"),
        (["run", "--task", "cart_pole-earth", "--method", "pb3"], "unknown method 'pb3'"),
        ([*RUN, "--budget", "huge"], "unknown budget 'huge'"),
        ([*RUN, "--bounds", "lr=1e-3:1e-5"], "'lr': bounds are reversed"),
        ([*RUN, "--bounds", "lr=0:1e-3"], "'lr': log-scaled bounds must be positive"),
        ([*RUN, "--bounds", "lr=-1e-5:1e-3"], "'lr': log-scaled bounds must be positive"),
        ([*RUN, "--bounds", "lr1e-5:1e-3"], "bad bounds 'lr1e-5:1e-3'"),
        ([*RUN, "--bounds", "lr=1e-5"], "bad bounds 'lr=1e-5'"),
        ([*RUN, "--bounds", "lr=x:1e-3"], "must be numbers"),
        ([*RUN, "--bounds", "gamma=0.9:0.99"], "'gamma'"),
        ([*RUN, "--seed", "-1"], "seed must be an integer in [0, 2^32)"),
        (["run", "--method", "pbt"], "--task"),
        (["list", "things"], "invalid choice"),
        (["run", "--task", "cart_pole-earth", "--method", "taf"], "needs meta-data: pass --meta"),
        (
            ["run", "--task", "cart_pole-earth", "--method", "taf", "--meta", "nowhere"],
            "nowhere does not exist",
        ),
        (["run", "--task", "cart_pole-earth", "--method", "pb2_star_warm"], "needs a portfolio"),
        (
            ["run", "--task", "cart_pole-earth", "--method", "pb2_star_warm", "--portfolio", "p"],
            "no portfolio for task 'cart_pole-earth'",
        ),
        (["meta", "nowhere", "--out", "m"], "no 'pb2' run records"),
    ],
    ids=[
        "unknown-task",
        "unknown-method",
        "bad-budget",
        "reversed-bounds",
        "zero-log-bound",
        "negative-log-bound",
        "bounds-without-equals",
        "bounds-without-colon",
        "bounds-not-a-number",
        "bounds-unknown-name",
        "negative-seed",
        "missing-task",
        "bad-list",
        "meta-method-without-meta",
        "missing-meta-dir",
        "warm-without-portfolio",
        "missing-portfolio",
        "meta-from-no-runs",
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    res = metapb2(*args, cwd=tmp_path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("metapb2: error: ")
    assert needle in lines[0]
    assert "Traceback" not in res.stderr + res.stdout
    assert res.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing written (no ./runs)


def test_run_smoke_writes_the_three_files(tmp_path):
    out = tmp_path / "records"
    res = metapb2(*RUN, "--budget", "smoke", "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    run_id = "pbt-cart_pole-earth-smoke-s0"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{run_id}.points.parquet", f"{run_id}.perturbations.parquet", f"{run_id}.json"]
    )
    assert res.stdout.startswith(f"{run_id}: best final eval return ")
    assert "2 perturbations" in res.stdout
    assert not [line for line in res.stderr.splitlines() if line.startswith("[")]  # --quiet: no progress

    points = pd.read_parquet(out / f"{run_id}.points.parquet")
    assert len(points) == 4 * 6
    assert set(points["run_id"]) == {run_id}
    assert len(pd.read_parquet(out / f"{run_id}.perturbations.parquet")) == 2
    meta = json.loads((out / f"{run_id}.json").read_text())
    assert meta["run_id"] == run_id and meta["task"] == "cart_pole-earth" and meta["method"] == "pbt"
    assert meta["faithful"] is False and meta["seed"] == 0 and meta["budget"] == "smoke"
    assert not (tmp_path / "runs").exists()  # --out was honoured, no default ./runs


def test_run_pb2_star_smoke_records_gp_diagnostics(tmp_path):
    import json

    import pandas as pd

    out = tmp_path / "records"
    args = ["run", "--task", "acrobot-earth", "--method", "pb2_star", "--budget", "smoke", "--quiet"]
    res = metapb2(*args, "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    pert = pd.read_parquet(out / "pb2_star-acrobot-earth-smoke-s0.perturbations.parquet")
    modes = [json.loads(d)["mode"] for d in pert["diagnostics"]]
    assert modes == ["prior_draw", "gp_ucb"]  # round 1 has no data; round 2 fits the GP
    gp = json.loads(pert["diagnostics"].iloc[1])
    assert gp["fallback"] is None and gp["n_rows"] == 4 and 0.01 <= gp["variance"] <= 100


def test_a_run_from_the_compilation_cache_prints_no_cpu_feature_noise(tmp_path):
    # jaxlib logs an error-level "could lead to ... SIGILL" per cached program on AMD Zen CPUs
    # (a tuning hint mistaken for an instruction set); the run itself is fine
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "XLA_FLAGS")}
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "cache")
    outs = []
    for seed in ("0", "1"):
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "metapb2_core.cli",
                *RUN,
                "--seed",
                seed,
                "--budget",
                "smoke",
                "--out",
                "r",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
        outs.append(res.stdout + res.stderr)
    assert any((tmp_path / "cache").iterdir())  # the second run loaded what the first compiled
    assert "SIGILL" not in outs[1] and "cpu_aot_loader" not in outs[1], outs[1][:2000]
