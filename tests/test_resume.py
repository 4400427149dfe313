"""Resume after a crash: a run checkpoints after every completed interval and the same request
continues from there, ending with the record an uninterrupted run makes (wall times aside); the
checkpoint goes when the record is written, and ``--restart`` ignores it."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import META_TARGET, pbt_args, pbt_run_id

from metapb2_core.methods import METHODS
from metapb2_core.run import RunRequest, execute_run, save_run
from metapb2_core.store import checkpoint_path, load_checkpoint, read_record
from metapb2_core.store.checkpoints import CheckpointError

TIMING = ["wall_seconds", "total_run_time"]


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


# ---- a checkpoint that cannot be written: the last good one stays, one line says so ---------------


def test_a_checkpoint_that_cannot_be_saved_keeps_the_last_good_one_and_fails_in_one_line(
    tmp_path, monkeypatch
):
    run = RunRequest("cart_pole-earth", "pbt", 0, "smoke").resolve()
    ckpt = checkpoint_path(tmp_path, run.run_id)
    real = os.replace

    def full_from_the_second_save(src, dst):
        if Path(dst) == ckpt and ckpt.exists():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", full_from_the_second_save)
    with pytest.raises(CheckpointError) as e:
        execute_run(run, out_dir=tmp_path)
    assert str(e.value) == (
        f"interval 2 of 3 done, but cannot save the checkpoint {ckpt}: No space left on device; the one "
        "after interval 1 is kept: free space or fix the folder, then run again to continue from it"
    )
    assert load_checkpoint(ckpt)["intervals_done"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.name]  # no temporary file left
    monkeypatch.undo()  # space again: the same request continues from the kept checkpoint
    assert execute_run(run, out_dir=tmp_path).meta["resumed_from_interval"] == 1


def test_a_folder_made_immutable_mid_run_keeps_the_last_checkpoint_and_fails_in_one_line(tmp_path):
    out = tmp_path / "runs"
    out.mkdir()
    (out / "probe").write_text("")
    if subprocess.run(["chattr", "+i", str(out / "probe")], capture_output=True).returncode:
        pytest.skip("chattr +i is not available on this file system")
    subprocess.run(["chattr", "-i", str(out / "probe")], check=True)
    (out / "probe").unlink()
    run = RunRequest("cart_pole-earth", "pbt", 0, "smoke").resolve()
    ckpt = checkpoint_path(out, run.run_id)

    def freeze_after_the_first_checkpoint(r, *_):
        if r == 2:  # interval 2 ends; its checkpoint comes next
            subprocess.run(["chattr", "+i", str(out)], check=True)

    try:
        with pytest.raises(CheckpointError) as e:
            execute_run(run, progress=freeze_after_the_first_checkpoint, out_dir=out)
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True)
    assert str(e.value).startswith(
        f"interval 2 of 3 done, but cannot save the checkpoint {ckpt}: Operation not permitted; the one "
        "after interval 1 is kept"
    )
    assert load_checkpoint(ckpt)["intervals_done"] == 1 and [p.name for p in out.iterdir()] == [ckpt.name]


def test_metapb2_run_under_a_file_size_limit_fails_in_one_line_before_writing_anything(tmp_path):
    """``ulimit -f``: the first checkpoint is too large; the command says so in one line."""
    exe = Path(sys.executable).with_name("metapb2")
    cmd = f"ulimit -f 64; exec {exe} run --task cart_pole-earth --method pbt --quiet --out runs"
    done = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    ckpt = Path("runs") / f"{RunRequest('cart_pole-earth', 'pbt', 0, 'smoke').resolve().run_id}.checkpoint"
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"metapb2: error: interval 1 of 3 done, but cannot save the checkpoint {ckpt}: File too large; there "
        "is no earlier one: free space or fix the folder, then run again"
    ], done.stderr[-3000:]
    assert list((tmp_path / "runs").iterdir()) == []


# ---- a real crash: SIGKILL of the `metapb2 run` process, then the same command --------------------


def metapb2(*args: str, cwd: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("metapb2")
    return subprocess.Popen(
        [str(exe), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def logged(argv: list[str], log: Path) -> subprocess.Popen:
    """A process whose output goes to ``log``: a pipe nobody reads while it runs fills up (64 KiB of
    Dagster and Ray logs) and blocks the writer, which then never reaches its next checkpoint."""
    with log.open("w") as f:
        return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, text=True)


def tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else ""


def kill_after_interval(
    proc: subprocess.Popen, ckpt: Path, interval: int, timeout: float = 600, log: Path | None = None
) -> int:
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
            said = tail(log) if log else proc.stderr.read()[-3000:]
            pytest.fail(f"the run ended before interval {interval}: {said}")
        time.sleep(0.02)
    proc.kill()
    proc.wait(30)
    said = tail(log) if log else proc.stderr.read()[-3000:]
    pytest.fail(f"no checkpoint after interval {interval} within {timeout:.0f} s; it said:\n{said}")


# (budget, the interval after which the first process is killed, intervals in all); the short
# budget is the case (killed after interval 5 of 15), demo its small default-suite twin
SIZES = [
    pytest.param("demo", 2, 5, id="demo"),
    pytest.param("short", 5, 15, id="short", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("budget, kill_at, total", SIZES)
def test_a_killed_metapb2_run_continues_where_it_stopped_and_ends_as_an_uninterrupted_one(
    budget, kill_at, total, pbt_record, tmp_path
):
    reference, rid, args = pbt_record(budget), pbt_run_id(budget), pbt_args(budget)
    out = tmp_path / "runs"
    ckpt = checkpoint_path(out, rid)
    log = tmp_path / "first.log"
    exe = str(Path(sys.executable).with_name("metapb2"))
    first = logged([exe, "run", *args, "--out", str(out)], log)
    done = kill_after_interval(first, ckpt, kill_at, log=log)
    assert kill_at <= done < total
    assert not (out / f"{rid}.json").exists()  # killed: no record

    again = metapb2("run", *args, "--out", str(out), cwd=tmp_path)
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err
    resumed = [line for line in err.splitlines() if "resuming" in line]
    assert resumed == [
        f"{rid}: resuming from {ckpt.name}: {done} of {total} intervals done, "
        f"continuing at interval {done + 1}"
    ]
    width = len(str(total))
    assert f"[{done + 1:>{width}}/{total}]" in err and f"[{done:>{width}}/{total}]" not in err
    record = read_record(out, rid)
    assert record.meta["resumed_from_interval"] == done
    assert_same_run(record, reference)
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
    run_config={{"ops": {{"classic__evaluation_pbt": {{"config": {{"budget": {budget!r}}}}}}}}},
)
sys.exit(0 if result.success else 1)
"""


def dagster_defs(home: str, address: str):
    from metapb2_assets.definitions import build_definitions
    from metapb2_assets.resources import RayResource, StudyStore

    # two CPUs per run: two XLA devices, as the reference `metapb2 run` has on this machine
    return build_definitions(RayResource(address=address, cpus_per_task=2), StudyStore(root=home))


@pytest.mark.slow  # about 3 minutes on 2 cores; run with -m slow
def test_a_killed_partition_rematerialised_resumes_and_ends_as_an_uninterrupted_run(
    pbt_record, ray_head, tmp_path
):
    """At the short budget: its intervals last seconds, so the Ray worker of the killed step is gone
    before it could finish (at the demo budget it would finish within the second it takes)."""
    import dagster as dg

    from metapb2_assets.family import partition_key

    budget, kill_at, total = "short", 3, 15
    reference, rid = pbt_record(budget), pbt_run_id(budget)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    pk = str(partition_key("cart_pole-earth", 0))
    script = MATERIALISE.format(
        tests=os.path.dirname(__file__), home=str(home), address=ray_head, pk=pk, budget=budget
    )
    ckpt = checkpoint_path(home / "runs", rid)

    log = tmp_path / "first.log"
    first = logged([sys.executable, "-c", script], log)
    killed_at = kill_after_interval(first, ckpt, kill_at, log=log)
    assert killed_at >= kill_at
    time.sleep(3)  # the Ray worker of the dead step is stopped with its owner
    left = load_checkpoint(ckpt)["intervals_done"]
    assert left < total, "the Ray task ran on to the end without its step"

    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    instance = dg.DagsterInstance.from_config(str(home))
    event = instance.get_latest_materialization_event(dg.AssetKey(["classic", "evaluation_pbt"]))
    md = event.asset_materialization.metadata
    assert md["resumed_from_interval"].value == left
    assert_same_run(read_record(home / "runs", rid), reference)
    assert not ckpt.exists()
