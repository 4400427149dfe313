"""Resume after a crash: a run checkpoints after every completed interval and the same request
continues from there, ending with the record an uninterrupted run makes (wall times aside); the
checkpoint goes when the record is written, and ``--restart`` ignores it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import META_TARGET, SHORT_PBT, SHORT_PBT_ID

from metapb2_core.methods import METHODS
from metapb2_core.run import RunRequest, execute_run, save_run
from metapb2_core.store import checkpoint_path, load_checkpoint, read_record

TIMING = ["wall_seconds", "total_run_time"]
SHORT, SHORT_ID = SHORT_PBT, SHORT_PBT_ID  # the short runs below are PBT: every method resumes above


def assert_same_run(a, b) -> None:
    """Points and perturbations equal value for value, wall times aside."""
    pd.testing.assert_frame_equal(a.points.drop(columns=TIMING), b.points.drop(columns=TIMING))
    pd.testing.assert_frame_equal(a.perturbations, b.perturbations)
    assert a.meta["final_configs"] == b.meta["final_configs"]
    assert a.meta["best_final_eval_return"] == b.meta["best_final_eval_return"]


class StopAfter(Exception):
    pass


def stop_at(interval: int):
    """A progress callback that interrupts the run when ``interval`` ends, before its checkpoint:
    the last checkpoint is then the one after ``interval - 1``."""

    def progress(r, *_):
        if r == interval:
            raise StopAfter

    return progress


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("portfolio")
    entries = [
        {
            "lr": 10 ** (-5 + 0.4 * k),
            "lambda": 0.9 + 0.015 * k,
            "clip_param": 0.1 + 0.07 * k,
            "source_task": "x",
        }
        for k in range(5)
    ]
    (folder / f"{META_TARGET}_portfolio.json").write_text(json.dumps(entries))
    return folder


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_resumes_to_the_uninterrupted_record(method, meta_dir, portfolio, tmp_path):
    req = RunRequest(META_TARGET, method, 5, "smoke", meta=str(meta_dir), portfolio=str(portfolio))
    run = req.resolve()
    whole = execute_run(run)
    with pytest.raises(StopAfter):
        execute_run(run, progress=stop_at(2), out_dir=tmp_path)
    ckpt = checkpoint_path(tmp_path, run.run_id)
    assert load_checkpoint(ckpt)["intervals_done"] == 1
    said = []
    resumed = execute_run(run, out_dir=tmp_path, say=said.append)
    assert said == [f"resuming from {ckpt.name}: 1 of 3 intervals done, continuing at interval 2"]
    assert resumed.meta["resumed_from_interval"] == 1
    assert_same_run(resumed, whole)
    save_run(resumed, tmp_path)
    assert not ckpt.exists()  # the record supersedes its checkpoint
    assert_same_run(read_record(tmp_path, run.run_id), whole)


def test_restart_ignores_a_checkpoint_and_another_request_never_reads_it(tmp_path):
    run = RunRequest("acrobot-earth", "pbt", 2, "smoke").resolve()
    with pytest.raises(StopAfter):
        execute_run(run, progress=stop_at(3), out_dir=tmp_path)
    ckpt = checkpoint_path(tmp_path, run.run_id)
    assert load_checkpoint(ckpt)["intervals_done"] == 2
    restarted = execute_run(run, out_dir=tmp_path, restart=True)
    assert restarted.meta["resumed_from_interval"] == 0

    # a checkpoint whose identity is another request's (a file copied over) is refused, not used
    with pytest.raises(StopAfter):
        execute_run(run, progress=stop_at(3), out_dir=tmp_path)
    other = RunRequest("acrobot-earth", "pbt", 2, "smoke", bounds={"lr": (1e-4, 2e-4)}).resolve()
    checkpoint_path(tmp_path, other.run_id).write_bytes(ckpt.read_bytes())
    said = []
    fresh = execute_run(other, out_dir=tmp_path, say=said.append)
    assert fresh.meta["resumed_from_interval"] == 0 and "made for another request" in said[0]

    # a truncated checkpoint (a disk filled up mid-write) makes the run start afresh, not fail
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    assert execute_run(run, out_dir=tmp_path).meta["resumed_from_interval"] == 0


# ---- a real crash: SIGKILL of the `metapb2 run` process, then the same command --------------------


def metapb2(*args: str, cwd: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("metapb2")
    return subprocess.Popen(
        [str(exe), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def kill_after_interval(proc: subprocess.Popen, ckpt: Path, interval: int, timeout: float = 300) -> int:
    """SIGKILL ``proc`` as soon as its checkpoint says ``interval`` intervals are done; returns
    the count in the checkpoint it leaves (stopped first, so it cannot move on meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = load_checkpoint(ckpt) if ckpt.exists() else None
        if state is not None and state["intervals_done"] >= interval:
            os.kill(proc.pid, signal.SIGSTOP)
            done = load_checkpoint(ckpt)["intervals_done"]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            return done
        if proc.poll() is not None:
            pytest.fail(f"the run ended before interval {interval}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no checkpoint after interval {interval} within {timeout:.0f} s")


def test_a_killed_metapb2_run_continues_at_interval_6_and_ends_as_an_uninterrupted_one(
    short_pbt_record, tmp_path
):
    out = tmp_path / "runs"
    ckpt = checkpoint_path(out, SHORT_ID)
    first = metapb2("run", *SHORT, "--out", str(out), cwd=tmp_path)
    assert kill_after_interval(first, ckpt, 5) == 5
    assert not (out / f"{SHORT_ID}.json").exists()  # killed: no record

    again = metapb2("run", *SHORT, "--out", str(out), cwd=tmp_path)
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err
    resumed = [line for line in err.splitlines() if "resuming" in line]
    assert resumed == [
        f"{SHORT_ID}: resuming from {ckpt.name}: 5 of 15 intervals done, continuing at interval 6"
    ]
    assert "[ 6/15]" in err and "[ 5/15]" not in err  # progress restarts at interval 6
    record = read_record(out, SHORT_ID)
    assert record.meta["resumed_from_interval"] == 5
    assert_same_run(record, short_pbt_record)
    assert not ckpt.exists()


# ---- the same through a Dagster partition --------------------------------------------------------

MATERIALISE = """
import sys, dagster as dg
sys.path.insert(0, {tests!r})
from test_resume import dagster_defs
defs = dagster_defs({home!r}, {address!r})
result = dg.materialize(
    list(defs.assets), instance=dg.DagsterInstance.from_config({home!r}), partition_key={pk!r},
    resources=defs.resources, selection=[dg.AssetKey(["classic", "evaluation_pbt"])],
    run_config={{"ops": {{"classic__evaluation_pbt": {{"config": {{"budget": "short"}}}}}}}},
)
sys.exit(0 if result.success else 1)
"""


def dagster_defs(home: str, address: str):
    from metapb2_assets.definitions import build_definitions
    from metapb2_assets.resources import RayResource, StudyStore

    # two CPUs per run: two XLA devices, as the reference `metapb2 run` has on this machine
    return build_definitions(RayResource(address=address, cpus_per_task=2), StudyStore(root=home))


def test_a_killed_partition_rematerialised_resumes_and_ends_as_an_uninterrupted_run(
    short_pbt_record, ray_head, tmp_path
):
    import dagster as dg

    from metapb2_assets.study_plan import partition_key

    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    pk = str(partition_key("cart_pole-earth", 0))
    script = MATERIALISE.format(tests=os.path.dirname(__file__), home=str(home), address=ray_head, pk=pk)
    ckpt = checkpoint_path(home / "runs", SHORT_ID)

    first = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    killed_at = kill_after_interval(first, ckpt, 3)
    assert killed_at >= 3
    time.sleep(3)  # the Ray worker of the dead step is stopped with its owner
    left = load_checkpoint(ckpt)["intervals_done"]
    assert left < 15, "the Ray task ran on to the end without its step"

    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    instance = dg.DagsterInstance.from_config(str(home))
    event = instance.get_latest_materialization_event(dg.AssetKey(["classic", "evaluation_pbt"]))
    md = event.asset_materialization.metadata
    assert md["resumed_from_interval"].value == left
    assert_same_run(read_record(home / "runs", SHORT_ID), short_pbt_record)
    assert not ckpt.exists()
