"""Seconds per suggestion of the meta methods at the paper's sizes.

Meta-data: 19 synthetic tasks (the classic-control leave-one-task-out count), each pooled from
``--meta-seeds`` runs of 4 members over 15 intervals of 40k steps, as a paper pb2 run produces.
Target: a population of 4 over 15 rounds (14 perturbation rounds) on a synthetic objective, no PPO.
Prints and writes (JSON, default benchmarks/results/meta_suggest.json), per method: the one-off
construction time (fitting the 19 meta-models), median and 95th percentile of ``suggest`` seconds,
and the projected share of a paper run (construction + all suggestions over the run's wall time).
Construction is reported cold (first run: 19 meta-model fits) and warm (later runs in the same
process reuse the fitted meta-models, as a study's runs do).
Usage: python benchmarks/bench_meta_suggest.py [--seeds 3] [--meta-seeds 10] [--paper-run-s S]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import Timed  # benchmarks/ is the script's folder

from metapb2_core import bandit
from metapb2_core.meta import models
from metapb2_core.methods import Suggestion, get_method
from metapb2_core.rounds import perturbation_round
from metapb2_core.space import SEARCH_SPACE

ROOT = Path(__file__).resolve().parent.parent
INTERVAL, ROUNDS, MEMBERS = 40_000, 15, 4


def population(method, seed: int, shift: float, suggest_times: list | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    configs = method.initial_configs(MEMBERS)
    reward, rows = np.zeros(MEMBERS), []
    for r in range(1, ROUNDS + 1):
        gain = [10 * (1 - (math.log10(c["lr"]) + shift) ** 2) for c in configs]
        reward += np.array(gain) + rng.normal(0, 0.5, MEMBERS)
        rows += [
            {"member": i, "time": r * INTERVAL, **configs[i], "reward": reward[i]} for i in range(MEMBERS)
        ]
        if r == ROUNDS:
            break
        asked = method if suggest_times is None else Timed(method, suggest_times)
        table = pd.DataFrame(rows)
        for p in perturbation_round(asked, SEARCH_SPACE, reward.copy(), configs, r, r * INTERVAL, table, rng):
            configs[p.member], reward[p.member] = p.new_config, reward[p.cloned_from]
    return pd.DataFrame(rows), method


def meta_tables(n_tasks: int, seeds: int) -> dict[str, pd.DataFrame]:
    tables = {}
    for k in range(n_tasks):
        parts = []
        for s in range(seeds):
            method = get_method("pb2_star")(SEARCH_SPACE, np.random.default_rng([k, s]))
            method.suggest = _cheap_suggest(method)  # meta-data shape without paying for GP fits
            rows, method = population(method, 100 * k + s, 3.0 + k / n_tasks)
            trans = bandit.transitions(method.data_table(rows), SEARCH_SPACE.names, False, None)
            parts.append(
                trans.assign(run_id=f"pb2-task{k}-paper-s{s}", task=f"task{k}", method="pb2", seed=s)
            )
        tables[f"task{k:02d}"] = pd.concat(parts).sort_values("time", kind="stable").reset_index(drop=True)
    return tables


def _cheap_suggest(method):
    """PB2*'s bookkeeping (explore rows, segments) with a prior draw instead of the GP step."""

    def suggest(ctx):
        config = SEARCH_SPACE.sample(method.rng)
        method.exploit_times.setdefault(ctx.member, []).append(ctx.time)
        reward = float(ctx.table.query("member == @ctx.clone and time == @ctx.time")["reward"].iloc[-1])
        return Suggestion(config, {}, method._add_explore_row(ctx.member, ctx.time, config, reward))

    return suggest


def _measured_paper_run_s() -> float:
    """The complete paper PBT run of the last population benchmark on this machine, else 540 s."""
    try:
        pop = json.loads((ROOT / "benchmarks" / "results" / "population.json").read_text())
        return float(pop["paper_pbt_run_cart_pole_earth"]["wall_s"])
    except (OSError, KeyError, ValueError):
        return 540.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3, help="target runs per method")
    p.add_argument("--meta-seeds", type=int, default=10, help="runs pooled per meta task")
    p.add_argument("--methods", nargs="+", default=["pb2_star", "metaprior", "taf", "multitask"])
    p.add_argument(
        "--paper-run-s",
        type=float,
        default=_measured_paper_run_s(),
        help="wall seconds of a paper run, for the share (default: bench_population.py's last measurement)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "meta_suggest.json")
    args = p.parse_args()
    tables = meta_tables(19, args.meta_seeds)
    rows_per_task = int(np.median([len(t) for t in tables.values()]))
    print(f"meta-data: {len(tables)} tasks, median {rows_per_task} transitions each")
    results = {}
    for name in args.methods:
        models._MODELS.clear()  # every method's first construction is cold
        build, samples = [], []
        for seed in range(args.seeds):
            extra = {} if name == "pb2_star" else {"meta_tables": tables, "target_task": "target"}
            t0 = time.perf_counter()
            method = get_method(name)(SEARCH_SPACE, np.random.default_rng(seed), **extra)
            build.append(time.perf_counter() - t0)
            population(method, seed, 3.5, samples)
        secs = np.array([s for _, s in samples])
        warm_build = float(np.mean(build[1:])) if len(build) > 1 else build[0]
        per_run = build[0] + float(secs.sum()) / args.seeds
        results[name] = {
            "construction_cold_s": build[0],
            "construction_warm_s": warm_build,
            "suggestions": len(secs),
            "median_s": float(np.median(secs)),
            "p95_s": float(np.percentile(secs, 95)),
            "max_s": float(secs.max()),
            "seconds_per_run": per_run,
            "share_of_paper_run_cold_build": per_run / args.paper_run_s,
        }
        r = results[name]
        print(
            f"{name:>10}: build {r['construction_cold_s']:.2f} s cold / {warm_build:.2f} s warm, "
            f"suggestion median {r['median_s']:.3f} s, p95 {r['p95_s']:.3f} s, max {r['max_s']:.3f} s; "
            f"{per_run:.1f} s per run = {100 * r['share_of_paper_run_cold_build']:.1f}% of a "
            f"{args.paper_run_s:.0f} s paper run"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "population": MEMBERS,
                "rounds": ROUNDS,
                "meta_tasks": len(tables),
                "meta_rows_per_task": rows_per_task,
                "meta_seeds": args.meta_seeds,
                "paper_run_s": args.paper_run_s,
                "methods": results,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
