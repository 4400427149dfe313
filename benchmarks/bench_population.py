"""Speed of the PPO population at the paper budget (classic control), on this machine.

Prints and writes (JSON, default benchmarks/results/population.json):
- the machine's fp32 matmul peak (2048² matmul, best of 10), measured in this run;
- env-steps/s of training rollouts (4 members × 20 000 steps per iteration);
- seconds per PPO iteration and achieved GFLOP/s of the update for one member, for 4 members on
  one XLA device, and for 4 members split over one device per core (the default);
- the wall time of one complete ``paper`` PBT run on cart_pole-earth (skip with --no-full-run).

Each configuration is measured in its own process, since the XLA device count is fixed at start-up.
Usage: python benchmarks/bench_population.py [--iterations 3] [--no-full-run] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import matmul_peak, measure_iterations, run_child, timed_pbt_run  # noqa: E402


def _child(args: list[str], devices: int) -> dict:
    return run_child(__file__, args, {**os.environ, "METAPB2_HOST_DEVICES": str(devices)})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=3, help="timed iterations per configuration")
    p.add_argument("--env", default="cart_pole")
    p.add_argument("--no-full-run", action="store_true", help="skip the complete paper PBT run")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "population.json")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.child:
        kind, *rest = args.child
        res = (
            measure_iterations(int(rest[0]), rest[1], int(rest[2]))
            if kind == "iter"
            else timed_pbt_run("cart_pole-earth")
        )
        print(json.dumps(res))
        return

    cores = len(os.sched_getaffinity(0))
    results: dict = {
        "machine": {"cores": cores, "processor": platform.processor() or platform.machine()},
        "budget": "paper (batch 20000, 30 epochs × 156 minibatches of 128, 2×256 tanh actor and critic)",
        "env": args.env,
        "configurations": {},
    }
    for name, members, devices in [
        ("1 member", 1, 1),
        ("4 members, 1 device", 4, 1),
        (f"4 members, {min(cores, 4)} devices (default)", 4, cores),
    ]:
        r = _child(["iter", str(members), args.env, str(args.iterations)], devices)
        results["configurations"][name] = r
        print(
            f"{name:>28}: {r['iteration_s']:6.2f} s/iteration (update {r['update_s']:.2f} s, "
            f"{r['update_gflop_per_s']:.0f} GFLOP/s; matmul peak in that process "
            f"{r['matmul_peak_gflop_per_s']:.0f}; rollouts {r['rollout_env_steps_per_s']:,.0f} env-steps/s)",
            flush=True,
        )
    # The peak is measured in every process; fractions use the highest, the conservative choice.
    peak = max([matmul_peak()] + [r["matmul_peak_gflop_per_s"] for r in results["configurations"].values()])
    results["matmul_peak_gflop_per_s"] = peak
    for name, r in results["configurations"].items():
        r["update_fraction_of_peak"] = r["update_gflop_per_s"] / peak
        print(
            f"{name:>28}: update at {100 * r['update_fraction_of_peak']:.0f}% of the run's highest peak "
            f"{peak:.0f} GFLOP/s"
        )
    default = results["configurations"][f"4 members, {min(cores, 4)} devices (default)"]
    one = results["configurations"]["1 member"]
    results["speedup_4_vectorised_vs_4_single"] = 4 * one["iteration_s"] / default["iteration_s"]
    print(f"4 members vectorised vs 4 × one member: {results['speedup_4_vectorised_vs_4_single']:.2f}×")
    if not args.no_full_run:
        r = _child(["full"], cores)
        results["paper_pbt_run_cart_pole_earth"] = r
        print(
            f"complete paper PBT run on cart_pole-earth: {r['wall_s']:.0f} s ({r['wall_s'] / 60:.1f} min), "
            f"best final eval return {r['best_final_eval_return']:.1f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
