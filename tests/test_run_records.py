"""One run from names to records: the points and perturbations tables, determinism, writing and reading,
the smoke grid over every method and task, and the faithful pendulum quirk."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from metapb2_core.budgets import get_budget
from metapb2_core.envs import TASKS
from metapb2_core.errors import MetaPB2Error, UnknownNameError
from metapb2_core.methods import METHODS
from metapb2_core.run import RunRequest, execute_run
from metapb2_core.store import RunRecord, read_record, write_record

TASK = "cart_pole-earth"
HPARAMS = ["lr", "lambda", "clip_param"]
BOUNDS = {"lr": (1e-5, 1e-3), "lambda": (0.9, 0.99), "clip_param": (0.1, 0.5)}
# The smoke budget: 4 members, batches of 400 steps, intervals of 800 steps (2 iterations), 2400 steps.
MEMBERS, BATCH, ITERS_PER_INTERVAL, INTERVALS = 4, 400, 2, 3
ITERATIONS = ITERS_PER_INTERVAL * INTERVALS
POINT_COLUMNS = [
    "run_id",
    "task",
    "env",
    "context",
    "method",
    "seed",
    "budget",
    "member",
    "training_iteration",
    "timesteps",
    *HPARAMS,
    "train_return",
    "eval_return",
    "eval_is_fresh",
    "wall_seconds",
]
PERTURBATION_COLUMNS = [
    "run_id",
    "round",
    "timesteps",
    "member",
    "cloned_from",
    "member_score",
    "clone_score",
    *[f"old_{n}" for n in HPARAMS],
    *[f"new_{n}" for n in HPARAMS],
    "explore_time",
    "explore_reward",
    "diagnostics",
]
TIMING = ["wall_seconds", "total_run_time"]
# Bounds on the mean return of an evaluation episode, from each environment's rewards and time limit.
RETURN_RANGE = {
    "cart_pole": (1.0, 500.0),  # +1 per step, at most 500 steps
    "mountain_car": (-200.0, -1.0),  # -1 per step, at most 200 steps
    "acrobot": (-500.0, 0.0),  # -1 per non-terminal step, at most 500 steps
    "pendulum": (-200 * (math.pi**2 + 0.1 * 8.0**2 + 0.001 * 2.0**2), 0.0),  # cost/step ≤ π² + 6.4 + 0.004
}


@pytest.fixture(scope="module")
def pbt() -> RunRecord:
    return execute_run(RunRequest(TASK, "pbt", 0))


@pytest.fixture(scope="module")
def rs() -> RunRecord:
    return execute_run(RunRequest(TASK, "random_search", 0))


def config_at(points: pd.DataFrame, member: int, timesteps: int) -> dict[str, float]:
    row = points[(points["member"] == member) & (points["timesteps"] == timesteps)]
    assert len(row) == 1
    return {n: float(row[n].iloc[0]) for n in HPARAMS}


def fresh_scores(points: pd.DataFrame, timesteps: int) -> np.ndarray:
    rows = points[(points["timesteps"] == timesteps) & points["eval_is_fresh"]].sort_values("member")
    assert rows["member"].tolist() == list(range(MEMBERS))
    return rows["eval_return"].to_numpy()


def test_smoke_budget_sizes():
    b = get_budget("smoke")
    assert (b.population_size, b.train_batch_size, b.iterations_per_interval, b.num_intervals) == (
        MEMBERS,
        BATCH,
        ITERS_PER_INTERVAL,
        INTERVALS,
    )


# ---- (a) the points table ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["pbt", "rs"])
def test_points_table(which, request):
    record: RunRecord = request.getfixturevalue(which)
    method = {"pbt": "pbt", "rs": "random_search"}[which]
    pts = record.points
    assert len(pts) == MEMBERS * ITERATIONS == 24
    assert set(POINT_COLUMNS) <= set(pts.columns)
    assert pts.columns[:7].tolist() == POINT_COLUMNS[:7]

    ident = {
        "run_id": f"{method}-{TASK}-smoke-s0",
        "task": TASK,
        "env": "cart_pole",
        "context": "earth",
        "method": method,
        "seed": 0,
        "budget": "smoke",
    }
    for col, value in ident.items():
        assert pts[col].tolist() == [value] * 24, col

    pairs = sorted(zip(pts["member"], pts["training_iteration"], strict=True))
    assert pairs == [(m, it) for m in range(MEMBERS) for it in range(1, ITERATIONS + 1)]

    assert (pts["timesteps"] % BATCH == 0).all()
    assert (pts["timesteps"] == pts["training_iteration"] * BATCH).all()
    for _, g in pts.groupby("member"):
        ts = g.sort_values("training_iteration")["timesteps"].to_numpy()
        assert np.all(np.diff(ts) > 0)
        assert ts[-1] == ITERATIONS * BATCH

    # Evaluation happens at the end of each interval: fresh there, NaN elsewhere.
    fresh = pts["eval_is_fresh"].to_numpy(dtype=bool)
    np.testing.assert_array_equal(fresh, pts["training_iteration"].to_numpy() % ITERS_PER_INTERVAL == 0)
    assert fresh.sum() == MEMBERS * INTERVALS
    ev = pts["eval_return"].to_numpy(dtype=float)
    assert np.isfinite(ev[fresh]).all()
    assert np.isnan(ev[~fresh]).all()

    for name, (lo, hi) in BOUNDS.items():
        assert pts[name].between(lo, hi).all(), name
    # Hyperparameters change only between intervals: both iterations of an interval share them.
    for _, g in pts.groupby(["member", (pts["training_iteration"] - 1) // ITERS_PER_INTERVAL]):
        assert len(g) == ITERS_PER_INTERVAL
        assert (g[HPARAMS].nunique() == 1).all()

    assert (pts["wall_seconds"] > 0).all()
    assert record.meta["best_final_eval_return"] == fresh_scores(pts, ITERATIONS * BATCH).max()
    assert record.best_final_eval == record.meta["best_final_eval_return"]


# ---- (b) the perturbations table -----------------------------------------------------------------------


def test_pbt_perturbations(pbt):
    pts, pert = pbt.points, pbt.perturbations
    assert pert.columns.tolist() == PERTURBATION_COLUMNS
    # population 4 → quantile ceil(4 · 0.25) = 1 exploit per round, none after the last interval
    assert len(pert) == (INTERVALS - 1) * 1
    assert pert["round"].tolist() == [1, 2]
    assert pert["timesteps"].tolist() == [800, 1600]
    assert set(pert["run_id"]) == {pbt.run_id}

    for _, p in pert.iterrows():
        t = int(p["timesteps"])
        scores = fresh_scores(pts, t)
        worst = int(np.flatnonzero(scores == scores.min())[0])  # ties: lowest index ranks lowest
        best = int(np.flatnonzero(scores == scores.max())[-1])  # ties: highest index ranks highest
        assert int(p["member"]) == worst
        assert int(p["cloned_from"]) == best
        assert p["member"] != p["cloned_from"]
        assert p["member_score"] == scores[worst] == scores.min()
        assert p["clone_score"] == scores[best] == scores.max()

        old = config_at(pts, worst, t)
        clone_old = config_at(pts, best, t)
        new_cfg = {n: float(p[f"new_{n}"]) for n in HPARAMS}
        assert {n: float(p[f"old_{n}"]) for n in HPARAMS} == old
        for name, (lo, hi) in BOUNDS.items():
            assert lo <= new_cfg[name] <= hi
        # The member trains the next interval with the new configuration; the others keep theirs.
        assert config_at(pts, worst, t + BATCH) == new_cfg
        for m in set(range(MEMBERS)) - {worst}:
            assert config_at(pts, m, t + BATCH) == config_at(pts, m, t)

        diag = json.loads(p["diagnostics"])
        ops = diag["operations"]
        assert sorted(ops) == sorted(HPARAMS)
        for name, op in ops.items():
            lo, hi = BOUNDS[name]
            if op == "resample":
                continue
            factor = {"x1.2": 1.2, "x0.8": 0.8}[op]
            assert new_cfg[name] == pytest.approx(min(max(clone_old[name] * factor, lo), hi), rel=1e-12)


def test_random_search_never_perturbs(rs, pbt):
    pert = rs.perturbations
    assert len(pert) == 0
    assert pert.columns.tolist() == PERTURBATION_COLUMNS == pbt.perturbations.columns.tolist()
    pts = rs.points
    assert (pts.groupby("member")[HPARAMS].nunique() == 1).all().all()
    finals = [config_at(pts, m, ITERATIONS * BATCH) for m in range(MEMBERS)]
    assert rs.meta["final_configs"] == finals
    assert len({tuple(c.values()) for c in finals}) == MEMBERS  # independent draws


# ---- (c) determinism -----------------------------------------------------------------------------------


def test_same_seed_same_records(pbt):
    again = execute_run(RunRequest(TASK, "pbt", 0))
    pd.testing.assert_frame_equal(again.points.drop(columns=TIMING), pbt.points.drop(columns=TIMING))
    pd.testing.assert_frame_equal(again.perturbations, pbt.perturbations)
    assert again.meta["final_configs"] == pbt.meta["final_configs"]


def test_other_seed_other_initial_configs(pbt):
    other = execute_run(RunRequest(TASK, "pbt", 1))
    assert other.run_id == f"pbt-{TASK}-smoke-s1"
    for m in range(MEMBERS):
        a, b = config_at(pbt.points, m, BATCH), config_at(other.points, m, BATCH)
        assert all(a[n] != b[n] for n in HPARAMS), (m, a, b)


# ---- (d) writing and reading ---------------------------------------------------------------------------


def test_write_read_round_trip_and_replace(pbt, tmp_path):
    rid = pbt.run_id
    paths = write_record(pbt, tmp_path)
    names = {f"{rid}.points.parquet", f"{rid}.perturbations.parquet", f"{rid}.json"}
    assert {p.name for p in paths.values()} == names
    assert {p.name for p in tmp_path.iterdir()} == names

    back = read_record(tmp_path, rid)
    points, pert, meta = back.points, back.perturbations, back.meta
    pd.testing.assert_frame_equal(points, pbt.points)
    pd.testing.assert_frame_equal(pert, pbt.perturbations)
    assert meta == pbt.meta

    # A second write of the same run replaces all three files and leaves no temporary file behind.
    changed = RunRecord(
        pbt.run_id,
        pbt.points[pbt.points["member"] == 2].reset_index(drop=True),
        pbt.perturbations.iloc[:1],
        {**pbt.meta, "note": "second write"},
    )
    write_record(changed, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == names
    back = read_record(tmp_path, rid)
    points, pert, meta = back.points, back.perturbations, back.meta
    assert len(points) == ITERATIONS and set(points["member"]) == {2}
    assert len(pert) == 1
    assert meta["note"] == "second write"


def test_round_trip_of_an_empty_perturbations_table(rs, tmp_path):
    write_record(rs, tmp_path / "a" / "b")  # creates missing parents
    back = read_record(tmp_path / "a" / "b", rs.run_id)
    points, pert, meta = back.points, back.perturbations, back.meta
    pd.testing.assert_frame_equal(points, rs.points)
    assert len(pert) == 0 and pert.columns.tolist() == PERTURBATION_COLUMNS
    assert meta == rs.meta


def test_write_into_unwritable_location(pbt, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(MetaPB2Error, match="cannot create output directory"):
        write_record(pbt, blocker / "out")
    with pytest.raises(MetaPB2Error, match="is a file, not a directory"):
        write_record(pbt, blocker)
    assert blocker.read_text() == "not a directory"

    # A target path that is a directory: the write fails, and no temporary file is left behind.
    out = tmp_path / "out"
    (out / f"{pbt.run_id}.json").mkdir(parents=True)
    with pytest.raises(
        MetaPB2Error, match=r"cannot write the record of pbt-cart_pole-earth-smoke-s0 in .*out"
    ):
        write_record(pbt, out)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_request_is_checked_before_running():
    with pytest.raises(UnknownNameError, match="unknown task 'cart_pole-mars'"):
        execute_run(RunRequest("cart_pole-mars", "pbt", 0))
    with pytest.raises(UnknownNameError, match="unknown method"):
        execute_run(RunRequest(TASK, "nope", 0))
    with pytest.raises(UnknownNameError, match="unknown budget"):
        execute_run(RunRequest(TASK, "pbt", 0, budget="huge"))
    with pytest.raises(MetaPB2Error, match=r"seed must be an integer in \[0, 2\^32\)"):
        execute_run(RunRequest(TASK, "pbt", -1))
    with pytest.raises(MetaPB2Error, match="'lr'.*reversed"):
        execute_run(RunRequest(TASK, "pbt", 0, bounds={"lr": (1e-3, 1e-5)}))


def test_custom_bounds_are_respected():
    bounds = {"lr": (2e-4, 3e-4), "clip_param": (0.25, 0.26)}
    rec = execute_run(RunRequest(TASK, "pbt", 0, bounds=bounds))
    for frame in (rec.points, rec.perturbations.rename(columns=lambda c: c.removeprefix("new_"))):
        assert frame["lr"].between(2e-4, 3e-4).all()
        assert frame["clip_param"].between(0.25, 0.26).all()
        assert frame["lambda"].between(0.9, 0.99).all()
    assert rec.meta["bounds"] == {
        "lr": [2e-4, 3e-4, True],
        "lambda": [0.9, 0.99, False],
        "clip_param": [0.25, 0.26, False],
    }


# ---- (e) the smoke grid --------------------------------------------------------------------------------


# Brax tasks run their smoke budget in test_brax.py.
CLASSIC_TASKS = [k for k, t in TASKS.items() if t.family == "classic"]


# methods that need meta-data or a portfolio run end to end in test_meta_e2e.py
@pytest.mark.parametrize("method", [m for m, cls in METHODS.items() if not cls.requires])
@pytest.mark.parametrize("task", CLASSIC_TASKS)
def test_smoke_grid(task, method):
    assert len(CLASSIC_TASKS) == 20
    rec = execute_run(RunRequest(task, method, 0))
    pts = rec.points
    assert len(pts) == MEMBERS * ITERATIONS
    assert set(pts["task"]) == {task} and set(pts["method"]) == {method}
    ev = pts.loc[pts["eval_is_fresh"], "eval_return"].to_numpy(dtype=float)
    assert len(ev) == MEMBERS * INTERVALS
    assert np.isfinite(ev).all()
    lo, hi = RETURN_RANGE[TASKS[task].env_name]
    assert ((ev >= lo) & (ev <= hi)).all(), ev
    assert math.isfinite(rec.meta["best_final_eval_return"])
    expected_perturbations = (INTERVALS - 1) if METHODS[method].perturbs else 0
    assert len(rec.perturbations) == expected_perturbations


# ---- (f) the faithful pendulum quirk -------------------------------------------------------------------


def test_faithful_pendulum_ignores_the_context():
    runs = {
        (ctx, faithful): execute_run(RunRequest(f"pendulum-{ctx}", "pbt", 0, faithful=faithful))
        for ctx in ("uranus", "neptune")
        for faithful in (True, False)
    }
    a, b = runs["uranus", True], runs["neptune", True]
    assert a.run_id == "pbt-pendulum-uranus-smoke-s0-faithful"
    assert a.meta["faithful"] is True and runs["uranus", False].meta["faithful"] is False

    # Faithful: gravity never reaches the dynamics, and the seed fixes everything else.
    drop = [*TIMING, "run_id", "task", "context"]
    pd.testing.assert_frame_equal(a.points.drop(columns=drop), b.points.drop(columns=drop))
    pd.testing.assert_frame_equal(
        a.perturbations.drop(columns="run_id"), b.perturbations.drop(columns="run_id")
    )

    def evals(rec):
        return rec.points.loc[rec.points["eval_is_fresh"], "eval_return"].to_numpy(dtype=float)

    np.testing.assert_array_equal(evals(a), evals(b))
    # Intended behaviour: uranus (8.7 m/s²) and neptune (11.0 m/s²) are different pendulums.
    u, n = evals(runs["uranus", False]), evals(runs["neptune", False])
    assert not np.array_equal(u, n)
    assert np.mean(u != n) > 0.5
    # The initial configurations come from the seed alone, whatever the context.
    first = lambda rec: rec.points[rec.points["training_iteration"] == 1][HPARAMS]  # noqa: E731
    pd.testing.assert_frame_equal(first(runs["uranus", False]), first(runs["neptune", False]))


def test_a_record_names_the_machine_it_ran_on(pbt):
    """Run times of a study that spans sessions are comparable only within one machine."""
    machine = pbt.meta["machine"]
    assert machine["backend"] == "cpu"
    assert machine["cores"] == len(os.sched_getaffinity(0))
    assert isinstance(machine["avx512"], bool) and machine["cpu"].strip()
    assert 0 <= pbt.meta["load_average_at_end"] < 1000


def test_the_machine_survives_the_manifest(pbt, tmp_path):
    write_record(pbt, tmp_path)
    assert read_record(tmp_path, pbt.run_id).meta["machine"] == pbt.meta["machine"]
