"""Speed of the PPO population on Brax tasks at the brax ``paper`` budget, on this machine.

Prints and writes (JSON, default benchmarks/results/brax.json), per environment (default hopper and
humanoid; context earth; 4 members split over one XLA device per core):
- env-steps/s of training rollouts (collect: 4 members × 25 000 steps with the policy, then GAE);
- seconds per PPO iteration (collect + update) and the update's achieved GFLOP/s;
- seconds of one evaluation round (10 episodes of 1000 steps per member);
- the compile times: population init, and the whole perturbation-interval program (trace + XLA),
  with the persistent compilation cache off;
- the projected wall time of a ``paper`` run: init + interval compile + 120 iterations + 15
  evaluation rounds (perturbation rounds and host work are not included; they take well under a
  second each).
With ``--paper-run TASK`` (e.g. inverted_pendulum-earth) it also measures one complete ``paper`` PBT
run of that task. Each measurement runs in its own process, as bench_population.py does.
Usage: python benchmarks/bench_brax.py [--envs hopper humanoid] [--iterations 2] [--paper-run TASK]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import run_child, timed_pbt_run  # noqa: E402


def measure_env(env_name: str, iterations: int) -> dict:
    """In this process: compile times, then collect, update and evaluation timed apart."""
    from metapb2_core.xla_setup import configure_host_devices

    configure_host_devices()  # before JAX starts, which fixes the host device count

    import jax

    from metapb2_core.budgets import get_budget
    from metapb2_core.envs import get_task
    from metapb2_core.ppo.trainer import PopulationTrainer, hparams_from_configs

    task = get_task(f"{env_name}-earth")
    budget = get_budget("paper", task.family)
    n = budget.population_size
    params = task.env_params()
    trainer = PopulationTrainer(env_name, budget)
    hp = hparams_from_configs([{"lr": 3e-4, "lambda": 0.95, "clip_param": 0.2}] * n)
    keys = jax.random.split(jax.random.PRNGKey(0), n)

    t0 = time.perf_counter()
    pop = jax.block_until_ready(trainer.init(keys, params))
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer.run_interval.lower(pop, hp, params, keys).compile()
    interval_compile_s = time.perf_counter() - t0

    pop, batch = jax.block_until_ready(trainer.collect(pop, hp, params))  # compiles collect
    pop, _ = jax.block_until_ready(trainer.learn(pop, batch, hp))  # compiles learn
    jax.block_until_ready(trainer.evaluate(pop.params, keys, params))  # compiles evaluate
    collect_s, learn_s, eval_s = [], [], []
    for _ in range(iterations):
        t0 = time.perf_counter()
        pop, batch = jax.block_until_ready(trainer.collect(pop, hp, params))
        t1 = time.perf_counter()
        pop, _ = jax.block_until_ready(trainer.learn(pop, batch, hp))
        t2 = time.perf_counter()
        jax.block_until_ready(trainer.evaluate(pop.params, keys, params))
        collect_s.append(t1 - t0)
        learn_s.append(t2 - t1)
        eval_s.append(time.perf_counter() - t2)
    collect, learn, evaluate = min(collect_s), min(learn_s), min(eval_s)
    flops = n * trainer.update_flops_per_iteration()
    iterations_total = budget.total_steps // budget.train_batch_size
    projected = (
        init_s + interval_compile_s + iterations_total * (collect + learn) + budget.num_intervals * evaluate
    )
    return {
        "env": env_name,
        "obs_dim": trainer.spec.obs_dim,
        "action_dim": trainer.spec.num_actions,
        "devices": len(trainer.mesh.devices.flat),
        "init_with_compile_s": init_s,
        "interval_program_compile_s": interval_compile_s,
        "collect_s": collect,
        "update_s": learn,
        "iteration_s": collect + learn,
        "evaluation_round_s": evaluate,
        "rollout_env_steps_per_s": n * budget.train_batch_size / collect,
        "update_tflop": flops / 1e12,
        "update_gflop_per_s": flops / learn / 1e9,
        "update_share_of_iteration": learn / (collect + learn),
        "paper_iterations": iterations_total,
        "paper_intervals": budget.num_intervals,
        "projected_paper_run_s": projected,
        "timings_s": {"collect": collect_s, "update": learn_s, "evaluation": eval_s},
    }


def _child(args: list[str]) -> dict:
    # Compile times are part of the figures: no persistent compilation cache in the children.
    return run_child(__file__, args, {**os.environ, "JAX_COMPILATION_CACHE_DIR": ""})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["hopper", "humanoid"])
    p.add_argument("--iterations", type=int, default=2, help="timed iterations per environment")
    p.add_argument("--paper-run", metavar="TASK", help="also time one complete paper PBT run of TASK")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "brax.json")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        kind, *rest = args.child
        res = measure_env(rest[0], int(rest[1])) if kind == "env" else timed_pbt_run(rest[0])
        print(json.dumps(res))
        return

    results: dict = {
        "machine": {
            "cores": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(),
        },
        "budget": "brax paper (4 members, batch 25000, 30 epochs × 195 minibatches of 128, 3M steps)",
        "backend": os.environ.get("METAPB2_BRAX_BACKEND", "spring"),
        "envs": {},
    }
    for env_name in args.envs:
        r = _child(["env", env_name, str(args.iterations)])
        results["envs"][env_name] = r
        print(
            f"{env_name:>10}: {r['iteration_s']:6.2f} s/iteration (update {r['update_s']:.2f} s at "
            f"{r['update_gflop_per_s']:.0f} GFLOP/s, rollouts {r['rollout_env_steps_per_s']:,.0f} "
            f"env-steps/s), evaluation {r['evaluation_round_s']:.2f} s, compile: init "
            f"{r['init_with_compile_s']:.1f} s + interval program {r['interval_program_compile_s']:.1f} s;"
            f" projected paper run {r['projected_paper_run_s'] / 60:.1f} min",
            flush=True,
        )
    if args.paper_run:
        r = _child(["full", args.paper_run])
        results["paper_pbt_run"] = r
        print(
            f"complete paper PBT run on {r['task']}: {r['wall_s']:.0f} s ({r['wall_s'] / 60:.1f} min), "
            f"best final eval return {r['best_final_eval_return']:.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
