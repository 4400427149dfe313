"""What a classic study costs: measured at the `short` budget, projected to the paper's scale.

Reads the committed run records of a study root (default results/classic-short): the wall seconds
per population interval of its finished runs, on the machine that ran them. Measures, in this run
and on one core each (what a Ray worker holds), a PPO iteration of a 4-member population at the
`short` and at the `paper` sizes; their ratio scales the measured short runs to paper runs (both
budgets have two PPO iterations per interval and 15 intervals per run; the evaluation per interval
does not grow with the budget, so the ratio of iterations slightly overstates a paper run).

Counts per seed of a declared study (study.yaml): candidate searches (``candidate_configs``
fixed-configuration members per task, in populations of 4, over 4 intervals), the performance
matrix (every candidate on every task, 4 intervals), meta runs and evaluation runs (15 intervals).
Prints the projected core-hours of the study at its budget and at `paper` with 10 seeds, and the
wall time on a cluster of N worker CPUs (one population per CPU). Writes JSON (default
benchmarks/results/study_cost.json).

Usage: python benchmarks/bench_study_cost.py [--root results/classic-short] [--cpus 32 128]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import measure_iterations, run_child  # noqa: E402

from metapb2_core.budgets import get_budget  # noqa: E402
from metapb2_core.portfolio import CANDIDATE_INTERVALS  # noqa: E402
from metapb2_core.xla_setup import host_cpu, machine_label  # noqa: E402


def measured_runs(root: Path, machine: str | None = None) -> dict[str, dict]:
    """Per role of the committed records (those whose ``machine_label`` is ``machine`` when given):
    runs, median wall seconds per run and per interval."""
    by_role: dict[str, list[dict]] = {}
    for path in sorted((root / "runs").glob("*.json")):
        meta = json.loads(path.read_text())
        if meta.get("status") == "passed" and machine in (None, machine_label(meta.get("machine"))):
            by_role.setdefault(meta["role"], []).append(meta)
    out = {}
    for role, metas in by_role.items():
        intervals = [m["budget_sizes"]["total_steps"] / m["budget_sizes"]["interval"] for m in metas]
        out[role] = {
            "runs": len(metas),
            "median_wall_s": statistics.median(m["wall_seconds"] for m in metas),
            "median_wall_s_per_interval": statistics.median(
                m["wall_seconds"] / n for m, n in zip(metas, intervals, strict=True)
            ),
            "machines": sorted({json.dumps(m.get("machine", "not recorded")) for m in metas}),
        }
    return out


def populations_per_seed(study: dict) -> dict[str, tuple[int, int]]:
    """Stage -> (populations per seed, intervals per population)."""
    tasks, methods = len(study["tasks"]), len(study["methods"])
    budget = get_budget(study["budget"], study["family"])
    size, intervals = budget.population_size, budget.total_steps // budget.interval
    candidates = tasks * study["candidate_best"]
    return {
        "candidate searches": (tasks * math.ceil(study["candidate_configs"] / size), CANDIDATE_INTERVALS),
        "performance matrix": (tasks * math.ceil(candidates / size), CANDIDATE_INTERVALS),
        "meta runs": (tasks, intervals),
        "evaluation runs": (tasks * methods, intervals),
    }


def _one_core_child(budget: str, env: str, iterations: int) -> dict:
    env_vars = {**os.environ, "METAPB2_HOST_DEVICES": "1"}
    return run_child(__file__, [budget, env, str(iterations)], env_vars)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=ROOT / "results" / "classic-short")
    p.add_argument("--env", default="pendulum")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--cpus", type=int, nargs="+", default=[32, 128], help="cluster sizes to project for")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "study_cost.json")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        budget, env, iterations = args.child
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as a Ray worker holds
        print(json.dumps(measure_iterations(4, env, int(iterations), budget)))
        return

    import yaml

    study = yaml.safe_load((args.root / "study.yaml").read_text())
    # seconds compare only within one machine: scale the records of the machine this run measures
    # its paper/short ratio on, when the study has any
    cpu = host_cpu()
    here = machine_label({**cpu, "backend": "cpu"})  # the iterations below run on the CPU
    runs = measured_runs(args.root, here)
    if runs:
        print(f"records of this machine only: {here}")
    else:
        runs = measured_runs(args.root)
        print(f"no record ran on this machine ({here}): wall times of all machines, ratio of this one")
    if not runs:
        raise SystemExit(f"{args.root}: no passed run records to measure")
    per_interval = statistics.median(r["median_wall_s_per_interval"] for r in runs.values())
    for role, r in runs.items():
        print(
            f"measured {role:>10}: {r['runs']} runs, median {r['median_wall_s']:.0f} s per run, "
            f"{r['median_wall_s_per_interval']:.1f} s per interval; machine {', '.join(r['machines'])}"
        )
    iters = {b: _one_core_child(b, args.env, args.iterations) for b in ("short", "paper")}
    ratio = iters["paper"]["iteration_s"] / iters["short"]["iteration_s"]
    for b, r in iters.items():
        print(
            f"one core, {b:>5} iteration of 4 members on {args.env}: {r['iteration_s']:.2f} s "
            f"(update {r['update_gflop_per_s']:.0f} GFLOP/s)"
        )
    print(f"paper / short iteration: {ratio:.2f}× (this run)")

    stages = populations_per_seed(study)
    rows, seed_core_h = [], {"short": 0.0, "paper": 0.0}
    for stage, (pops, intervals) in stages.items():
        short_h = pops * intervals * per_interval / 3600
        rows.append({"stage": stage, "populations": pops, "intervals": intervals, "short_core_h": short_h})
        seed_core_h["short"] += short_h
        seed_core_h["paper"] += short_h * ratio
        print(
            f"{stage:>20}: {pops:4d} populations × {intervals:2d} intervals per seed: "
            f"{short_h:5.1f} core-h at short, {short_h * ratio:6.1f} at paper"
        )
    seeds = len(study["seeds"])
    paper_total = 10 * seed_core_h["paper"]
    print(
        f"per seed: {seed_core_h['short']:.1f} core-h at short "
        f"({seed_core_h['short'] / 2:.1f} h on 2 cores), "
        f"{seed_core_h['paper']:.0f} core-h at paper; the declared {seeds} seed(s) at short: "
        f"{seeds * seed_core_h['short']:.1f} core-h"
    )
    cluster = {n: paper_total / n for n in args.cpus}
    print(
        f"paper scale, 10 seeds: {paper_total:.0f} core-h; "
        + ", ".join(f"{h:.1f} h on {n} worker CPUs" for n, h in cluster.items())
    )
    result = {
        "study": study["name"],
        "this_machine": cpu,
        "measured": runs,
        "short_wall_s_per_population_interval": per_interval,
        "one_core_iterations": iters,
        "paper_over_short_iteration": ratio,
        "stages_per_seed": rows,
        "core_hours_per_seed": seed_core_h,
        "paper_10_seeds_core_hours": paper_total,
        "paper_10_seeds_wall_hours_on_cpus": {str(n): h for n, h in cluster.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
