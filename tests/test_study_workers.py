"""A killed ``metapb2-study`` takes its step workers with it: none keeps running its step, and none
starts a new Ray head for a study nobody runs any more."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

POOL = """
import concurrent.futures as cf, multiprocessing as mp, os, sys, time
from metapb2_assets.child_processes import die_with_parent

if __name__ == "__main__":
    spawn = mp.get_context("spawn")
    pool = cf.ProcessPoolExecutor(2, mp_context=spawn, initializer=die_with_parent, initargs=(os.getpid(),))
    for f in [pool.submit(time.sleep, 0.5) for _ in range(2)]:
        f.result()
    print(*sorted(pool._processes), flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("sigterm", ["default", "ignored"])
def test_step_workers_die_when_the_study_process_is_killed(tmp_path, sigterm):
    """Also when the study was started with SIGTERM ignored (its workers inherit that)."""
    out = tmp_path / "pids.txt"
    ignore = (lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)) if sigterm == "ignored" else None
    with open(out, "w") as f:
        parent = subprocess.Popen(
            [sys.executable, "-c", POOL], stdout=f, stderr=subprocess.DEVNULL, preexec_fn=ignore
        )
    try:
        deadline = time.monotonic() + 120
        while not out.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p) for p in out.read_text().split()]
        assert len(workers) == 2 and all(_alive(p) for p in workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers), workers
    finally:
        parent.kill()
