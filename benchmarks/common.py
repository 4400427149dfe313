"""What the benchmarks share: one timed population run, a method whose suggestions are timed, and
running a measurement in a child process (the XLA device count and the compilation cache are fixed
when JAX starts)."""

from __future__ import annotations

import json
import subprocess
import sys
import time


def timed_pbt_run(task: str, budget: str = "paper") -> dict:
    """Wall seconds and headline figures of one complete PBT run of ``task``, in this process."""
    from metapb2_core.run import RunRequest, execute_run

    t0 = time.perf_counter()
    rec = execute_run(RunRequest(task, "pbt", 0, budget).resolve())
    return {
        "task": task,
        "wall_s": time.perf_counter() - t0,
        "first_interval_s_incl_compile": rec.meta["compile_seconds"],
        "env_steps_per_s": rec.meta["env_steps_per_second"],
        "best_final_eval_return": rec.meta["best_final_eval_return"],
    }


def run_child(script: str, args: list[str], env: dict) -> dict:
    """``python script --child ARGS`` with ``env`` (XLA_FLAGS removed); its last stdout line, as JSON."""
    env = {k: v for k, v in env.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, script, "--child", *args], env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark child {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Timed:
    """A method whose ``suggest`` calls are timed (round, seconds)."""

    def __init__(self, method, times: list):
        self.method, self.times = method, times

    def suggest(self, ctx):
        t0 = time.perf_counter()
        s = self.method.suggest(ctx)
        self.times.append((ctx.round, time.perf_counter() - t0))
        return s
