"""Where partitions compute: an existing Ray cluster (an address), or a local one started on demand.

The local cluster is a Ray head shared by every process of the instance (each partition of a
backfill runs in its own process), started once under a file lock and reused while it lives; its
address is kept in ``<state_dir>/ray_address``. It is sized to the machine, and every task asks for
the CPUs it will use, so parallel partitions queue in Ray instead of oversubscribing the cores.

It listens on 127.0.0.1 only (GCS, raylet, object manager, workers, client server): Ray runs with
auth disabled, so a head reachable from the network would run anyone's code. Ray turns a given
127.0.0.1 into the machine's outward address unless it runs as a single-machine cluster
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read into ``ray_constants.ENABLE_RAY_CLUSTER``), so
the head starts that way and a driver of it connects that way.

Lifetime: every process using the head holds a lease (``<state_dir>/leases/<pid>``; under
``dagster dev`` the lease is the ``dagster dev`` process's, so the head serves all its runs). A
watchdog started with the head stops it, and removes its temp folder, once no lease holder is
alive or no run used it for ``idle_seconds``; a one-shot process (``dagster asset materialize``,
``metapb2-study``) that started the head stops it itself when it exits and no one else holds a
lease. ``python -m metapb2_assets.ray_cluster stop [STATE_DIR]`` stops one by hand.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import ray
from ray._private import ray_constants

from metapb2_assets.settings import default_home
from metapb2_core.errors import MetaPB2Error

LOOPBACK = "127.0.0.1"
SINGLE_MACHINE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray keeps 127.0.0.1 as the node address
IDLE_SECONDS = 1800.0  # a head no run used for this long stops (the next run starts another)
WATCH_EVERY = 1.0


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


# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, the Ray client
# server) answers with a SETTINGS frame of its own (frame type 4, the 4th byte of its 9-byte header).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_reachable(address: str, setting: str, timeout: float = 5.0) -> None:
    """Fail fast with the setting's name instead of waiting for Ray's own connection retries, which
    last minutes: nothing listens there, or something that is not a gRPC server (a wrong port: the
    dashboard's, an ssh server's) would hang ``ray.init``."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayConfigError(f"{setting} = {address!r} is not an address of the form [ray://]HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.sendall(_HTTP2_PREFACE)
            head = s.recv(9)
    except TimeoutError:
        head = b""  # listening, but silent: not a gRPC server
    except OSError as e:
        raise RayConfigError(
            f"{setting} = {address!r}: no Ray cluster answers there ({e.strerror or e}); "
            "leave it empty for a local Ray, or start the cluster first"
        ) from None
    if len(head) < 4 or head[3] != 4:
        raise RayConfigError(
            f"{setting} = {address!r}: something listens there but it is not a Ray cluster (no gRPC "
            "answer); give the head's GCS port (6379 by default) or ray://HOST:10001"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
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


def temp_dir(state_dir: Path) -> Path:
    # Ray's socket paths must stay short, so not under state_dir; one folder per head tells its
    # processes apart from any other Ray on the machine.
    return Path(f"/tmp/metapb2-ray-{hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:10]}")


def local_head(state_dir: Path, num_cpus: int, idle_seconds: float = IDLE_SECONDS) -> str:
    """The address of this instance's local Ray head, starting one (and its watchdog) if none is
    alive; this process then holds a lease on it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "ray.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time; released when this block ends
        address = running_head(state_dir)
        started = address is None
        if started:
            address = _start_head(state_dir, num_cpus)
            _start_watchdog(state_dir, idle_seconds)
        hold_lease(state_dir, stop_at_exit=started)
        return address


def _start_head(state_dir: Path, num_cpus: int) -> str:
    port = _free_port()
    shutil.rmtree(temp_dir(state_dir), ignore_errors=True)  # a head killed before it could clean up
    cmd = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        f"--node-ip-address={LOOPBACK}",
        f"--port={port}",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir(state_dir)}",
    ]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", **SINGLE_MACHINE}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    address = f"{LOOPBACK}:{port}"
    (state_dir / "ray_address").write_text(address)  # what stop_local_head needs to find its processes
    if done.returncode != 0:
        stop_local_head(state_dir)  # a half-started head (GCS, dashboard, monitors) left no process behind
        raise RayConfigError(
            f"could not start a local Ray head in {temp_dir(state_dir)} (a full or read-only /tmp?): "
            f"{_last_line(done.stderr) or f'ray start exited {done.returncode}'}"
        )
    deadline = time.monotonic() + 60
    while not _alive(address):
        if time.monotonic() > deadline:
            stop_local_head(state_dir)
            raise RayConfigError(f"the local Ray head at {address} did not come up within 60 s")
        time.sleep(0.2)
    return address


def _last_line(text: str) -> str:
    """The last line of a program's error output that says something (not a traceback's carets)."""
    lines = [line.strip() for line in text.splitlines() if line.strip().strip("^~ ")]
    return lines[-1] if lines else ""


def _start_watchdog(state_dir: Path, idle_seconds: float) -> None:
    subprocess.Popen(
        [sys.executable, "-m", "metapb2_assets.ray_cluster", "watch", str(state_dir), str(idle_seconds)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives this process's terminal and signals, not its lease
    )


# ---- leases ---------------------------------------------------------------------------------------


def lease_holder() -> psutil.Process:
    """The process whose life a lease follows: the ``dagster dev`` process when this one runs
    under it (its runs come and go, the instance stays), else this process."""
    me = psutil.Process()
    holder = me
    if os.environ.get("DAGSTER_IS_DEV_CLI"):
        for parent in me.parents():
            try:
                if parent.environ().get("DAGSTER_IS_DEV_CLI"):
                    holder = parent
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                break
    return holder


def _lease_path(state_dir: Path, proc: psutil.Process) -> Path:
    return state_dir / "leases" / f"{proc.pid}-{int(proc.create_time() * 1000)}"


def hold_lease(state_dir: Path, stop_at_exit: bool = False) -> None:
    """Mark the head as used now by this process's lease holder. With ``stop_at_exit`` (this
    process started the head and holds its own lease) the head stops when this process exits,
    unless another live lease holds it."""
    holder = lease_holder()
    path = _lease_path(state_dir, holder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    if stop_at_exit and holder.pid == os.getpid():
        atexit.register(release, state_dir)


def release(state_dir: Path) -> bool:
    """Drop this process's lease; stop the head if no other live process holds one. Returns
    whether it stopped."""
    me = psutil.Process()
    _lease_path(state_dir, me).unlink(missing_ok=True)
    if running_head(state_dir) is None or live_leases(state_dir):
        return False
    stop_local_head(state_dir)
    return True


def live_leases(state_dir: Path) -> list[Path]:
    """Leases whose holder still runs (a pid reused by another process does not count); the
    others are removed."""
    live = []
    for path in sorted((state_dir / "leases").glob("*-*")):
        pid, _, started = path.name.partition("-")
        try:
            proc = psutil.Process(int(pid))
            ok = int(proc.create_time() * 1000) == int(started) and proc.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, ValueError):
            ok = False
        if ok:
            live.append(path)
        else:
            path.unlink(missing_ok=True)
    return live


def watch(state_dir: Path, idle_seconds: float) -> None:
    """The watchdog: stop the head once no lease holder lives or it was idle for ``idle_seconds``."""
    while True:
        time.sleep(WATCH_EVERY)
        if running_head(state_dir) is None and not (state_dir / "ray_address").exists():
            return  # stopped by someone else
        if _unused(state_dir, idle_seconds):
            with open(state_dir / "ray.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # not while a run is starting to use it
                if _unused(state_dir, idle_seconds):
                    stop_local_head(state_dir)
                    return


def _unused(state_dir: Path, idle_seconds: float) -> bool:
    leases = live_leases(state_dir)
    last_use = max((p.stat().st_mtime for p in leases), default=0.0)
    return not leases or time.time() - last_use > idle_seconds


def head_processes(state_dir: Path) -> list[psutil.Process]:
    """The processes of this instance's local head (another Ray on the machine is not among them)."""
    mark = str(temp_dir(state_dir))
    address = (state_dir / "ray_address").read_text().strip() if (state_dir / "ray_address").exists() else ""
    port = address.rpartition(":")[2]

    def ours(args: list[str]) -> bool:  # the head's processes, and agents that name its GCS port
        return any(mark in a or (port and "address" in a and a.endswith(f":{port}")) for a in args)

    procs: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            if ours(p.info["cmdline"] or []) and "metapb2_assets.ray_cluster" not in " ".join(
                p.info["cmdline"]
            ):
                procs[p.pid] = p
                procs.update({c.pid: c for c in p.children(recursive=True)})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return list(procs.values())


def stop_local_head(state_dir: Path) -> None:
    """Stop this instance's local head (only its processes) and remove its temp folder."""
    if ray.is_initialized():
        ray.shutdown()
    procs = head_processes(state_dir)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    (state_dir / "ray_address").unlink(missing_ok=True)
    shutil.rmtree(state_dir / "leases", ignore_errors=True)
    shutil.rmtree(temp_dir(state_dir), ignore_errors=True)


def _loopback(address: str) -> bool:
    return address.removeprefix("ray://").rpartition(":")[0] in (LOOPBACK, "localhost", "::1")


def connect(address: str, threads: int) -> None:
    if ray.is_initialized():
        if ray.get_runtime_context().gcs_address.removeprefix("ray://") == address.removeprefix("ray://"):
            return
        ray.shutdown()  # this process was attached to another cluster
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # A driver of the loopback head must keep 127.0.0.1 as its own address too (see above); a driver
    # of a remote cluster needs its outward address.
    ray_constants.ENABLE_RAY_CLUSTER = not _loopback(address)
    env = {**worker_env(threads), **(SINGLE_MACHINE if _loopback(address) else {})}
    ray.init(
        address=address,
        runtime_env={"env_vars": env},
        namespace="metapb2",
        log_to_driver=False,
        logging_level="WARNING",
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["watch"] and len(args) == 3:
        watch(Path(args[1]), float(args[2]))
        return 0
    if args[:1] == ["stop"] and len(args) <= 2:
        state = Path(args[1]) if len(args) == 2 else default_home() / ".ray"
        had = running_head(state)
        stop_local_head(state)
        print(f"stopped the local Ray head at {had}" if had else f"no local Ray head was running for {state}")
        return 0
    print("usage: python -m metapb2_assets.ray_cluster stop [STATE_DIR]   (default $DAGSTER_HOME/.ray)")
    return 2


if __name__ == "__main__":
    sys.exit(main())
