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


def _best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_peak() -> float:
    import jax
    import jax.numpy as jnp

    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    mm = jax.jit(lambda x: x @ x)
    mm(a).block_until_ready()
    return 2 * n**3 / _best_time(lambda: mm(a).block_until_ready(), 10) / 1e9


def measure_iterations(members: int, env_name: str, iterations: int, budget_name: str = "paper") -> dict:
    """In this process: time collect (rollouts + GAE) and learn (the update) of ``members`` at the
    classic ``budget_name`` sizes separately; the fastest of ``iterations`` after the compiled one."""
    import dataclasses

    from metapb2_core.xla_setup import configure_host_devices

    configure_host_devices()  # before JAX starts, which fixes the host device count

    import jax

    from metapb2_core.budgets import get_budget
    from metapb2_core.envs import TASKS
    from metapb2_core.ppo.trainer import PopulationTrainer, hparams_from_configs

    budget = dataclasses.replace(get_budget(budget_name), population_size=members)
    task = next(t for t in TASKS.values() if t.env_name == env_name and t.context == "earth")
    env_params = task.env_params()
    trainer = PopulationTrainer(env_name, budget)
    hp = hparams_from_configs([{"lr": 3e-4, "lambda": 0.95, "clip_param": 0.2}] * members)
    pop = trainer.init(jax.random.split(jax.random.PRNGKey(0), members), env_params)

    t0 = time.perf_counter()
    pop, batch = jax.block_until_ready(trainer.collect(pop, hp, env_params))
    jax.block_until_ready(trainer.learn(pop, batch, hp))
    compile_s = time.perf_counter() - t0

    collect_s, learn_s = [], []
    for _ in range(iterations):
        t0 = time.perf_counter()
        pop, batch = jax.block_until_ready(trainer.collect(pop, hp, env_params))
        t1 = time.perf_counter()
        pop, _ = jax.block_until_ready(trainer.learn(pop, batch, hp))
        collect_s.append(t1 - t0)
        learn_s.append(time.perf_counter() - t1)
    collect, learn = min(collect_s), min(learn_s)
    flops = members * trainer.update_flops_per_iteration()
    return {
        "members": members,
        "devices": len(trainer.mesh.devices.flat),
        "first_iteration_with_compile_s": compile_s,
        "collect_s": collect,
        "update_s": learn,
        "iteration_s": collect + learn,
        "rollout_env_steps_per_s": members * budget.train_batch_size / collect,
        "update_tflop": flops / 1e12,
        "update_gflop_per_s": flops / learn / 1e9,
        "matmul_peak_gflop_per_s": matmul_peak(),
    }
