"""Where partitions compute: an existing Ray cluster (an address), or a local one started on demand.

The local cluster is a Ray head shared by every process of the instance (each partition of a
backfill runs in its own process), started once under a file lock and reused while it lives; its
address is kept in ``<state_dir>/ray_address``. It is sized to the machine, and every task asks for
the CPUs it will use, so parallel partitions queue in Ray instead of oversubscribing the cores.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import ray

from metapb2_core.errors import MetaPB2Error


class RayConfigError(MetaPB2Error):
    pass


def worker_env(threads: int) -> dict[str, str]:
    """Environment of the Ray workers: ``threads`` single-threaded XLA host devices each, over which
    a population's members are split (XLA has no flag that sizes its intra-op thread pool, so a
    multi-threaded device would spread over every core of the machine)."""
    return {
        "METAPB2_HOST_DEVICES": str(threads),
        "METAPB2_BLAS_THREADS": "1",
        "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
        "RAY_AUTH_MODE": "disabled",
    }


def check_reachable(address: str, setting: str, timeout: float = 5.0) -> None:
    """Fail fast with the setting's name instead of waiting for Ray's own connection timeout."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayConfigError(f"{setting} = {address!r} is not an address of the form [ray://]HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise RayConfigError(
            f"{setting} = {address!r}: no Ray cluster answers there ({e.strerror or e}); "
            "leave it empty for a local Ray, or start the cluster first"
        ) from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def running_head(state_dir: Path) -> str | None:
    file = state_dir / "ray_address"
    address = file.read_text().strip() if file.exists() else ""
    return address if address and _alive(address) else None


def local_head(state_dir: Path, num_cpus: int) -> str:
    """The address of this instance's local Ray head, starting one if none is alive."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "ray.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; released when this block ends
        running = running_head(state_dir)
        if running:
            return running
        port = _free_port()
        cmd = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            f"--port={port}",
            f"--num-cpus={num_cpus}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={_temp_dir(state_dir)}",
        ]
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RayConfigError(f"could not start a local Ray head: {done.stderr.strip()[-800:]}")
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _alive(address):
            if time.monotonic() > deadline:
                raise RayConfigError(f"the local Ray head at {address} did not come up within 60 s")
            time.sleep(0.2)
        (state_dir / "ray_address").write_text(address)
        return address


def _temp_dir(state_dir: Path) -> str:
    # Ray's socket paths must stay short, so not under state_dir; one folder per head tells its
    # processes apart from any other Ray on the machine.
    return f"/tmp/metapb2-ray-{hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:10]}"


def stop_local_head(state_dir: Path) -> None:
    """Stop this instance's local head (only its processes: another Ray on the machine lives on)."""
    import psutil

    if ray.is_initialized():
        ray.shutdown()
    mark = _temp_dir(state_dir)
    address = running_head(state_dir) or ""
    port = address.rpartition(":")[2]

    def ours(args: list[str]) -> bool:  # the head's processes, and agents that name its GCS port
        return any(mark in a or (port and "address" in a and a.endswith(f":{port}")) for a in args)

    procs = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if ours(p.info["cmdline"] or []):
                procs[p.pid] = p
                procs.update({c.pid: c for c in p.children(recursive=True)})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    procs = list(procs.values())
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    (state_dir / "ray_address").unlink(missing_ok=True)


def connect(address: str, threads: int) -> None:
    if ray.is_initialized():
        if ray.get_runtime_context().gcs_address.removeprefix("ray://") == address.removeprefix("ray://"):
            return
        ray.shutdown()  # this process was attached to another cluster
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        address=address,
        runtime_env={"env_vars": worker_env(threads)},
        namespace="metapb2",
        log_to_driver=False,
        logging_level="WARNING",
    )
