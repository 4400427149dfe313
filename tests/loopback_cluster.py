"""A multi-node Ray cluster on this machine, as a KubeRay cluster is one across machines: a head and
worker nodes, each started by its own `ray start` process, every port bound to loopback, the
worker nodes offering a custom resource that keeps the platform's runs on them. A node is lost
the way a machine is: SIGKILL of its raylet and everything the raylet started."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

LOOPBACK = "127.0.0.1"
RUNS = "metapb2_runs"  # the custom resource of the worker nodes (KubeRay: rayStartParams.resources)

# Ray turns 127.0.0.1 into the machine's outward address when a node joins a cluster, and its
# single-machine mode (which keeps 127.0.0.1) refuses a second node; this is `ray start` keeping
# the address it is given, so every node's ports stay on loopback.
RAY_START = """
import sys
from ray._private import services
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.argv = ["ray", "start", *sys.argv[1:]]
main()
"""

# A lost node is noticed within about 2 s instead of Ray's default 30 s (3 missed checks of 0.5 s).
HEALTH_CHECKS = {"health_check_period_ms": 500, "health_check_failure_threshold": 3}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class LoopbackCluster:
    def __init__(self, temp: Path):
        self.temp = temp  # short: Ray's socket paths live under it
        self.address = f"{LOOPBACK}:{_free_port()}"

    def _ray_start(self, *args: str) -> None:
        cmd = [
            sys.executable,
            "-c",
            RAY_START,
            f"--node-ip-address={LOOPBACK}",
            "--disable-usage-stats",
            f"--temp-dir={self.temp}",
            *args,
        ]
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed: {done.stderr[-2000:]}")

    def start_head(self, num_cpus: int) -> None:
        port = self.address.rpartition(":")[2]
        self._ray_start(
            "--head",
            f"--port={port}",
            f"--num-cpus={num_cpus}",
            "--include-dashboard=false",
            f"--system-config={json.dumps(HEALTH_CHECKS)}",
        )

    def add_worker(self, num_cpus: int, resources: dict[str, float]) -> None:
        self._ray_start(
            f"--address={self.address}", f"--num-cpus={num_cpus}", f"--resources={json.dumps(resources)}"
        )

    def _own(self) -> list[psutil.Process]:
        """Processes naming the cluster's temp folder (GCS, raylets, monitors)."""
        found = []
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if str(self.temp) in " ".join(p.info["cmdline"] or []):
                    found.append(p)
        return found

    def raylets(self) -> list[psutil.Process]:
        return [p for p in self._own() if _name(p) == "raylet"]

    def processes(self) -> list[psutil.Process]:
        """Every process of the cluster: its own and what its raylets started (agents and workers
        rename themselves ``ray::…``, so only their parent tells whose they are)."""
        procs = {p.pid: p for p in self._own()}
        for raylet in self.raylets():
            with contextlib.suppress(psutil.Error):
                procs.update({c.pid: c for c in raylet.children(recursive=True)})
        return list(procs.values())

    def task_worker(self, function: str) -> psutil.Process | None:
        """The worker process running ``function`` (Ray titles it ``ray::<function>``)."""
        for raylet in self.raylets():
            with contextlib.suppress(psutil.Error):
                for child in raylet.children():
                    if " ".join(child.cmdline()).startswith(f"ray::{function}"):
                        return child
        return None

    def kill_node(self, raylet: psutil.Process) -> None:
        """SIGKILL a node: its raylet and everything under it, at once."""
        tree = [raylet, *raylet.children(recursive=True)]
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(tree, timeout=10)

    def stop(self, timeout: float = 15) -> list[str]:
        """Stop every process of the cluster; what is still running afterwards, described."""
        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(procs, timeout=timeout)
        time.sleep(0.5)
        left = [p for p in self.processes() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        return [f"{p.pid} {' '.join(p.cmdline())[:80]}" for p in left]


def _name(p: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return p.name()
    return ""
