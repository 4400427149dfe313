"""The local Ray head: it listens on loopback only (read from the OS), a one-shot command that
started it leaves none of its processes nor its temp folder behind, and a killed owner's head is
stopped by the watchdog."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from metapb2_assets import ray_cluster

HOLDER = """
import os, sys, psutil, ray
from pathlib import Path
from metapb2_assets import ray_cluster
state = Path(sys.argv[1])
address = ray_cluster.local_head(state, 1)
ray_cluster.connect(address, 1)

@ray.remote(num_cpus=1)
def worker_pid():
    return os.getpid()

print(ray.get(worker_pid.remote()), flush=True)
sys.stdin.readline()  # hold the head until told to exit
"""


def listening(proc: psutil.Process) -> list[str]:
    try:
        return [c.laddr.ip for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def described(proc: psutil.Process) -> str | None:
    """``pid command`` of a process still running; None for one that ended since it was listed."""
    try:
        return f"{proc.pid} {' '.join(proc.cmdline()[:2])[-60:]}"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def loopback(ip: str) -> bool:
    return ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def wait_gone(state: Path, timeout: float) -> list[psutil.Process]:
    """The head's processes still running after ``timeout`` (and its temp folder's removal)."""
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in ray_cluster.head_processes(state) if p.is_running()]
        if (not left and not ray_cluster.temp_dir(state).exists()) or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


@pytest.fixture
def holder(tmp_path):
    state = tmp_path / ".ray"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    worker = int(proc.stdout.readline())
    yield state, proc, worker
    if proc.poll() is None:
        proc.kill()
    ray_cluster.stop_local_head(state)


def test_the_local_head_listens_on_loopback_only_and_stops_when_its_starter_exits(holder):
    state, proc, worker = holder
    procs = [*ray_cluster.head_processes(state), psutil.Process(proc.pid), psutil.Process(worker)]
    sockets = {d: listening(p) for p in procs if (d := described(p))}  # a process may end meanwhile
    ips = [ip for found in sockets.values() for ip in found]
    assert len(ips) >= 5, sockets  # GCS, raylet (node and object manager), client server, worker, driver
    assert all(loopback(ip) for ip in ips), sockets
    assert ray_cluster.temp_dir(state).is_dir()

    proc.communicate("\n", timeout=60)
    assert proc.returncode == 0
    assert wait_gone(state, 1.0) == []  # gone when the command ends (not a watchdog tick later)
    assert not ray_cluster.temp_dir(state).exists() and not (state / "ray_address").exists()


def test_a_killed_owners_head_is_stopped_by_the_watchdog(holder):
    state, proc, _ = holder
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert ray_cluster.head_processes(state)  # the owner died without cleaning up ...
    assert wait_gone(state, 15.0) == []  # ... and the watchdog stopped the head
    assert not ray_cluster.temp_dir(state).exists()


@pytest.mark.slow  # ~40 s: a whole `dagster asset materialize` process; run with -m slow
def test_a_one_shot_dagster_asset_materialize_leaves_no_ray_process_behind(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    dagster = str(Path(sys.executable).with_name("dagster"))
    cmd = [dagster, "asset", "materialize", "-m", "metapb2_assets.definitions"]
    cmd += ["--select", "classic/meta_runs", "--partition", "0|cart_pole-earth"]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = home / ".ray"
    assert (home / "runs").is_dir() and any((home / "runs").glob("*.json"))  # it did run on Ray
    assert wait_gone(state, 1.0) == []
    assert not ray_cluster.temp_dir(state).exists()


@pytest.mark.slow  # waits out a head that cannot start (40 s)
def test_a_local_head_that_cannot_start_says_why_in_one_line_and_leaves_no_process(tmp_path):
    """Under a file-size limit (``ulimit -f``) Ray's own files cannot grow and ``ray start`` fails
    half-way, its GCS, dashboard and monitors already running: they are stopped."""
    state = tmp_path / ".ray"
    script = "import sys; from pathlib import Path; from metapb2_assets import ray_cluster; "
    script += "ray_cluster.local_head(Path(sys.argv[1]), 1)"
    cmd = f"ulimit -f 300; exec {sys.executable} -c {shlex.quote(script)} {shlex.quote(str(state))}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=600)
    last = done.stderr.strip().splitlines()[-1]
    said = f"RayConfigError: could not start a local Ray head in {ray_cluster.temp_dir(state)}"
    assert done.returncode == 1 and last.startswith(f"metapb2_assets.ray_cluster.{said}"), done.stderr[-3000:]
    assert wait_gone(state, 10.0) == []
