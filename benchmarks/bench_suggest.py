"""Seconds per suggestion of the model-based methods at the paper's sizes.

A population of 4 runs 15 rounds on a synthetic objective (no PPO: each interval a member gains
f(config) + noise), so the data tables grow exactly as in a paper run (4 record rows a round and
one exploit per round). Prints and writes (JSON, default benchmarks/results/suggest.json) the
median and 95th percentile of the wall seconds of ``Method.suggest`` per method.
Usage: python benchmarks/bench_suggest.py [--seeds 5] [--methods pb2 pb2_star] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from common import Timed  # benchmarks/ is the script's folder

from metapb2_core.methods import get_method
from metapb2_core.rounds import perturbation_round
from metapb2_core.space import SEARCH_SPACE

ROOT = Path(__file__).resolve().parent.parent


def timed_run(name: str, seed: int, rounds: int = 15, n: int = 4) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    method = get_method(name)(SEARCH_SPACE, np.random.default_rng([seed, 2]))
    configs = method.initial_configs(n)
    reward, rows, out = np.zeros(n), [], []
    timed = Timed(method, out)
    for r in range(1, rounds):  # no perturbation at the final budget
        reward += [10 * (1 - (math.log10(c["lr"]) + 3.5) ** 2) for c in configs] + rng.normal(0, 0.5, n)
        rows += [{"member": i, "time": r * 40_000, **configs[i], "reward": reward[i]} for i in range(n)]
        table = pd.DataFrame(rows)
        for p in perturbation_round(timed, SEARCH_SPACE, reward.copy(), configs, r, r * 40_000, table, rng):
            configs[p.member], reward[p.member] = p.new_config, reward[p.cloned_from]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--methods", nargs="+", default=["pb2", "pb2_star"])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "suggest.json")
    args = p.parse_args()
    results = {}
    for name in args.methods:
        samples = [x for seed in range(args.seeds) for x in timed_run(name, seed)]
        secs = np.array([s for _, s in samples])
        gp = np.array([s for r, s in samples if r > 1])  # round 1 has no data: no model is fitted
        results[name] = {
            "suggestions": len(secs),
            "median_s": float(np.median(secs)),
            "p95_s": float(np.percentile(secs, 95)),
            "median_s_rounds_2_to_14": float(np.median(gp)),
            "p95_s_rounds_2_to_14": float(np.percentile(gp, 95)),
            "max_s": float(secs.max()),
        }
        r = results[name]
        print(
            f"{name:>10}: median {r['median_s']:.3f} s, p95 {r['p95_s']:.3f} s "
            f"over {r['suggestions']} suggestions (rounds with a GP: median "
            f"{r['median_s_rounds_2_to_14']:.3f} s, p95 {r['p95_s_rounds_2_to_14']:.3f} s)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"population": 4, "rounds": 15, "seeds": args.seeds, "methods": results}, indent=2)
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
