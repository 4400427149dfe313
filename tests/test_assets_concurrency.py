"""Concurrent partitions (a 4-partition backfill, 4 runs at once, one process each) and a run
killed midway: no lock errors, no duplicate or partial rows, re-materialising replaces."""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest

from metapb2_assets.family import partition_key

META = dg.AssetKey(["classic", "meta_runs"])
TASKS = ["cart_pole-neptune", "acrobot-uranus", "pendulum-venus", "mountain_car-saturn"]
PARTITIONS = [partition_key(t, 0) for t in TASKS]
N = len(PARTITIONS)


def _instance(home: str) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(home)


def _defs(home: str, address: str):
    from metapb2_assets.definitions import build_definitions
    from metapb2_assets.resources import RayResource, StudyStore

    return build_definitions(RayResource(address=address), StudyStore(root=home))


def _materialise(home: str, address: str, partitions: list[str], asset: list[str], out) -> None:
    defs, instance = _defs(home, address), _instance(home)
    for pk in partitions:
        result = dg.materialize(
            list(defs.assets), instance=instance, partition_key=pk, resources=defs.resources,
            selection=[dg.AssetKey(asset)], raise_on_error=False,
        )  # fmt: skip
        out.put((pk, result.success))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return str(home)


def _catalog(home: str):
    from metapb2_core.store import Catalog

    return Catalog(os.path.join(home, "metapb2.duckdb"))


def test_backfill_of_4_partitions_as_4_concurrent_runs(home, ray_head):
    from metapb2_assets.study_runner import prepare_instance

    prepare_instance(home)  # as a deployment does once; parallel runs must not race to create it
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    shares = [PARTITIONS[i::4] for i in range(4)]
    procs = [ctx.Process(target=_materialise, args=(home, ray_head, s, META.path, out)) for s in shares]
    for p in procs:
        p.start()
    for p in procs:
        p.join(600)
    results = dict(out.get(timeout=5) for _ in PARTITIONS)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert results == dict.fromkeys(PARTITIONS, True)  # a lock error would have failed its run
    assert _instance(home).get_materialized_partitions(META) == set(PARTITIONS)
    cat = _catalog(home)
    runs = cat.query("SELECT run_id, partition FROM runs WHERE role = 'meta'")
    assert len(runs) == N and runs["run_id"].is_unique and set(runs["partition"]) == set(PARTITIONS)
    dup = cat.query(
        "SELECT count(*) - count(DISTINCT (run_id, member, training_iteration)) AS d, count(*) AS n "
        "FROM run_points"
    )
    assert dup["d"].iloc[0] == 0 and dup["n"].iloc[0] == N * 4 * 6
    assert cat.count("lineage") == N and len(list((cat.path.parent / "meta").rglob("*.parquet"))) == N

    # re-materialising one partition replaces its rows
    defs, pk = _defs(home, ray_head), PARTITIONS[0]
    again = dg.materialize(list(defs.assets), instance=_instance(home), partition_key=pk,
                           resources=defs.resources, selection=[META])  # fmt: skip
    assert cat.count("run_points") == N * 4 * 6 and cat.count("runs") == N
    row = cat.query("SELECT dagster_run_id FROM runs WHERE partition = ?", [pk])
    assert row["dagster_run_id"].tolist() == [again.run_id]


KILL_SCRIPT = """
import sys, dagster as dg
sys.path.insert(0, {tests!r})
from test_assets_concurrency import _defs, _instance
defs = _defs({home!r}, {address!r})
dg.materialize(list(defs.assets), instance=_instance({home!r}), partition_key={pk!r},
               resources=defs.resources, selection=[dg.AssetKey(["classic", "evaluation_pbt"])])
"""


def test_a_run_killed_midway_leaves_no_partial_rows_and_can_be_rerun(home, ray_head):
    pk = partition_key("acrobot-neptune", 3)
    script = KILL_SCRIPT.format(tests=os.path.dirname(__file__), home=home, address=ray_head, pk=pk)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen([sys.executable, "-c", script], **quiet)
    instance, deadline = _instance(home), time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the run has started its step, then kill it
        runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": pk}))
        if runs and runs[0].dagster_run.status == dg.DagsterRunStatus.STARTED:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the run never started")
    time.sleep(2.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    cat = _catalog(home)
    rid = "pbt-acrobot-neptune-smoke-s3"
    assert cat.count("runs", {"run_id": rid}) == 0 and cat.count("run_points", {"run_id": rid}) == 0
    defs = _defs(home, ray_head)
    result = dg.materialize(
        list(defs.assets), instance=instance, partition_key=pk, resources=defs.resources,
        selection=[dg.AssetKey(["classic", "evaluation_pbt"])],
    )  # fmt: skip
    assert result.success
    assert cat.count("runs", {"run_id": rid}) == 1 and cat.count("run_points", {"run_id": rid}) == 4 * 6


def _hold_and_write(path: str) -> None:
    import numpy as np
    import pandas as pd

    from metapb2_core.store import Catalog, Replace

    n = 20_000_000  # about two seconds of inserting: long enough to be killed inside
    big = pd.DataFrame({"k": np.ones(n, dtype=np.int64), "v": np.arange(n, dtype=np.int64)})
    Catalog(path).write([Replace("t", {"k": 1}, big)])


def test_a_writer_killed_inside_its_transaction_leaves_the_previous_rows(tmp_path):
    import fcntl

    import pandas as pd

    from metapb2_core.store import Catalog, Replace

    cat = Catalog(tmp_path / "c.duckdb")
    cat.write([Replace("t", {"k": 1}, pd.DataFrame({"k": [1], "v": [-1]}))])
    proc = mp.get_context("spawn").Process(target=_hold_and_write, args=(str(cat.path),))
    proc.start()
    fd = os.open(cat.lock_path, os.O_RDWR)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the child holds the write lock
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            time.sleep(0.02)
        except BlockingIOError:
            break
    os.close(fd)
    time.sleep(0.3)  # the frame is built before the lock: now it is deleting and inserting
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert cat.query("SELECT v FROM t")["v"].tolist() == [-1]
    cat.write([Replace("t", {"k": 2}, pd.DataFrame({"k": [2], "v": [1]}))])
    assert cat.count("t") == 2
