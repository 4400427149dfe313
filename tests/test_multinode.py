"""A study's run survives losing the machine it runs on: on a real multi-node Ray cluster (a head
and two worker nodes, separate `ray start` processes on loopback), the platform connects through
``METAPB2_RAY_ADDRESS`` as on KubeRay, the worker node running a partition is SIGKILLed mid-run,
Ray runs the task again on the other worker node (``max_retries``), and the run resumes from its
checkpoint on the study root and ends with the record an undisturbed run of the same request makes.

Why Ray's task retries and not a Dagster retry policy: a lost node is a system failure Ray sees
first and handles within the same Dagster step (the step's process, the driver, is alive), so the
step neither fails nor is re-launched; a Dagster retry would start a new run of the whole step for
what Ray already recovers. A run's own error is not retried (``retry_exceptions=False``): it would
fail the same way again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import pbt_run_id
from loopback_cluster import RUNS, LoopbackCluster
from test_ray_local import listening, loopback
from test_resume import assert_same_run, tail

from metapb2_core.store import checkpoint_path, load_checkpoint, read_record

pytestmark = pytest.mark.cluster  # .ci/run runs these after the default suite (pytest -m cluster)

MATERIALISE = """
import sys, dagster as dg
from metapb2_assets.definitions import build_definitions
from metapb2_assets.resources import RayResource, resources_from_env
ray, store = resources_from_env()  # METAPB2_RAY_ADDRESS, METAPB2_RAY_TASK_RESOURCES, as a deployment
# two CPUs per run: two XLA devices, as the reference `metapb2 run` has on this machine
ray = RayResource(address=ray.address, resources=ray.resources, max_retries=ray.max_retries, cpus_per_task=2)
defs = build_definitions(ray, store)
result = dg.materialize(
    list(defs.assets), instance=dg.DagsterInstance.get(), partition_key={pk!r},
    resources=defs.resources, selection=[dg.AssetKey(["classic", "evaluation_pbt"])],
    run_config={{"ops": {{"classic__evaluation_pbt": {{"config": {{"budget": "demo"}}}}}}}},
)
sys.exit(0 if result.success else 1)
"""


@pytest.fixture
def cluster():
    c = LoopbackCluster(Path(tempfile.mkdtemp(prefix="mpn-", dir="/tmp")))
    try:
        c.start_head(num_cpus=1)  # the drivers' node; it lacks RUNS, so no run lands there
        c.add_worker(num_cpus=2, resources={RUNS: 1})
        c.add_worker(num_cpus=2, resources={RUNS: 1})
        yield c
    finally:
        left = c.stop()
    assert not left, f"Ray processes left behind: {left}"


def test_a_run_whose_node_is_killed_is_retried_on_the_other_node_and_ends_as_an_undisturbed_run(
    cluster, pbt_record, tmp_path
):
    import dagster as dg

    from metapb2_assets.family import partition_key

    assert len(cluster.raylets()) == 3
    ips = {ip for p in cluster.processes() for ip in listening(p)}
    assert ips and all(loopback(ip) for ip in ips), f"listening beyond loopback: {ips}"

    reference, rid, kill_at, total = pbt_record("demo"), pbt_run_id("demo"), 2, 5
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "METAPB2_RAY_ADDRESS": cluster.address,
        "METAPB2_RAY_TASK_RESOURCES": json.dumps({RUNS: 1}),
        "RAY_AUTH_MODE": "disabled",
    }
    script = MATERIALISE.format(pk=str(partition_key("cart_pole-earth", 0)))
    ckpt = checkpoint_path(home / "runs", rid)
    log = tmp_path / "materialise.log"
    with log.open("w") as f:
        step = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=f, stderr=subprocess.STDOUT)

    # the node running the partition, once a checkpoint after `kill_at` intervals is on the study root
    deadline = time.monotonic() + 600
    while True:
        state = load_checkpoint(ckpt) if ckpt.exists() else None
        worker = cluster.task_worker("execute_run") if state and state["intervals_done"] >= kill_at else None
        if worker:
            break
        assert step.poll() is None, f"the step ended before interval {kill_at}:\n{tail(log)}"
        assert time.monotonic() < deadline, f"no checkpoint after interval {kill_at}:\n{tail(log)}"
        time.sleep(0.02)
    worker.send_signal(signal.SIGSTOP)  # it cannot move on while its node is killed
    done = load_checkpoint(ckpt)["intervals_done"]
    lost = worker.parent()
    cluster.kill_node(lost)
    assert kill_at <= done < total

    hosts = set()  # the raylets that ran the task after the loss
    while step.poll() is None:
        again = cluster.task_worker("execute_run")
        if again:
            hosts.add(again.ppid())
        assert time.monotonic() < deadline, f"the step did not end:\n{tail(log)}"
        time.sleep(0.5)
    assert step.returncode == 0, tail(log)
    # on the other worker node: the head lacks the runs' resource
    assert len(hosts) == 1 and lost.pid not in hosts and hosts <= {p.pid for p in cluster.raylets()}, hosts
    assert len(cluster.raylets()) == 2  # the head and the surviving worker

    instance = dg.DagsterInstance.from_config(str(home))
    event = instance.get_latest_materialization_event(dg.AssetKey(["classic", "evaluation_pbt"]))
    assert event.asset_materialization.metadata["resumed_from_interval"].value == done
    record = read_record(home / "runs", rid)
    assert record.meta["resumed_from_interval"] == done
    assert_same_run(record, reference)
    assert not ckpt.exists()
    assert sorted(p.name for p in (home / "runs").glob("*.json")) == [f"{rid}.json"]  # one record
