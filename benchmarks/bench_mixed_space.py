"""Mixed search spaces on a synthetic problem with a known, time-varying optimum.

Each member carries a score that grows at a rate set by its configuration (as an RL return grows
with training): rate(c, t) = 1 − (x − 0.3)² − ((n − 12)/29)² − 0.1·(log10 lr + 2)² + 0.6·[opt is
best(t)] for x ∈ [0, 1] (float), n ∈ {1, …, 30} (integer), lr ∈ [1e-4, 1e-1] (log float) and
opt ∈ {a, b, c} (categorical) whose best value switches from "a" to "c" halfway through the run.
A member that exploits copies its clone's score (the weights) and takes the method's new
configuration. Regret of a member at a round: the best achievable rate minus its rate.

Methods: PBT, random search, PB2 and PB2* with the categories chosen by the EXP3 bandit of
PB2-Mix ("bandit") or by maximising the acquisition for each category ("enumerate", the default
for few categories), the GP on the numeric columns with opt's one-hot columns fixed and integers
rounded; and "pb2_round" (PB2 with the categorical modelled as one relaxed index column, rounded:
the naive baseline). Prints
and writes (JSON, default benchmarks/results/mixed_space.json), per method over ``--seeds`` seeds:
final regret (the population's best member, last round) and cumulative regret (population mean,
summed over rounds), mean ± standard error over seeds (seeds are the independent unit); the
share of rounds after the switch whose best member holds "c"; and seconds per suggestion (median,
p95) of PB2 with the bandit and with enumeration beside PB2 on a float-only space (x, lr and n as a
float, opt dropped).
Usage: python benchmarks/bench_mixed_space.py [--seeds 10] [--members 8] [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from metapb2_core.ask_tell import AskTellPopulation

ROOT = Path(__file__).resolve().parent.parent
MIXED = {"x": (0.0, 1.0), "n": ("int", 1, 30), "lr": (1e-4, 1e-1, "log"), "opt": ("choice", ["a", "b", "c"])}
FLOATS = {"x": (0.0, 1.0), "n": (1.0, 30.0), "lr": (1e-4, 1e-1, "log")}
METHODS = {  # label → (method, options)
    "pbt": ("pbt", {}),
    "random_search": ("random_search", {}),
    "pb2_bandit": ("pb2", {"categorical": "bandit"}),
    "pb2_star_bandit": ("pb2_star", {"categorical": "bandit"}),
    "pb2_enumerate": ("pb2", {"categorical": "enumerate"}),
    "pb2_star_enumerate": ("pb2_star", {"categorical": "enumerate"}),
    "pb2_round": ("pb2", {"categorical": "index"}),
}
BEST_RATE = 1.6  # x = 0.3, n = 12, lr = 0.01, the best opt
STEP = 1000  # time units per round


def best_choice(t: int, rounds: int) -> str:
    return "a" if t <= rounds * STEP // 2 else "c"


def rate(c: dict, t: int, rounds: int) -> float:
    r = 1.0 - (c["x"] - 0.3) ** 2 - ((c["n"] - 12) / 29) ** 2 - 0.1 * (math.log10(c["lr"]) + 2) ** 2
    return r + (0.6 if c.get("opt", best_choice(t, rounds)) == best_choice(t, rounds) else 0.0)


def run(method: str, options: dict, space: dict, seed: int, members: int, rounds: int) -> dict:
    pop = AskTellPopulation.create(method, space, size=members, seed=seed, **options)
    score = np.zeros(members)
    final, cumulative, holds_best, suggest_s = 0.0, 0.0, [], []
    for r in range(1, rounds + 1):
        t = r * STEP
        configs = pop.ask()
        rates = np.array([rate(c, t, rounds) for c in configs])
        score += rates * STEP / 1000
        cumulative += float(np.mean(BEST_RATE - rates))
        best = int(np.argmax(score))
        final = float(BEST_RATE - rates[best])
        if "opt" in configs[best] and t > rounds * STEP // 2:
            holds_best.append(configs[best]["opt"] == best_choice(t, rounds))
        for m in range(members):
            pop.tell(m, t, float(score[m]))
        if r < rounds:
            t0 = time.perf_counter()
            done = pop.perturb()
            if done:
                suggest_s.append((time.perf_counter() - t0) / len(done))
            for p in done:
                score[p.member] = score[p.cloned_from]
    return {
        "final": final,
        "cumulative": cumulative,
        "holds_best": float(np.mean(holds_best)) if holds_best else None,
        "suggest_s": suggest_s,
    }


def mean_se(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mixed_space.json")
    args = ap.parse_args()
    results: dict = {"seeds": args.seeds, "members": args.members, "rounds": args.rounds, "methods": {}}
    print(f"synthetic mixed problem: {args.members} members × {args.rounds} rounds, {args.seeds} seeds")
    print(f"{'method':19s} {'final regret':>16s} {'cumulative regret':>20s} {'best holds c':>13s}")
    for label, (method, options) in METHODS.items():
        runs = [run(method, options, MIXED, s, args.members, args.rounds) for s in range(args.seeds)]
        fm, fse = mean_se([x["final"] for x in runs])
        cm, cse = mean_se([x["cumulative"] for x in runs])
        holds = [x["holds_best"] for x in runs if x["holds_best"] is not None]
        hm = float(np.mean(holds)) if holds else float("nan")
        results["methods"][label] = {
            "final_regret_mean": fm, "final_regret_se": fse,
            "cumulative_regret_mean": cm, "cumulative_regret_se": cse,
            "best_member_holds_best_choice_after_switch": hm,
        }  # fmt: skip
        print(f"{label:19s} {fm:8.3f} ± {fse:5.3f}   {cm:10.2f} ± {cse:5.2f}   {hm:12.0%}")
    timing = {}
    timed = (
        ("pb2_bandit", MIXED, "bandit"),
        ("pb2_enumerate", MIXED, "enumerate"),
        ("pb2_floats", FLOATS, "auto"),
    )
    for label, space, mode in timed:
        times = [
            t
            for s in range(args.seeds)
            for t in run("pb2", {"categorical": mode}, space, s, args.members, args.rounds)["suggest_s"]
        ]
        timing[label] = {
            "median_ms": 1e3 * float(np.median(times)),
            "p95_ms": 1e3 * float(np.percentile(times, 95)),
            "n": len(times),
        }
    results["suggest_seconds"] = timing
    for label, t in timing.items():
        print(
            f"suggestion time {label:13s}: median {t['median_ms']:.1f} ms, "
            f"p95 {t['p95_ms']:.1f} ms (n = {t['n']})"
        )
    print(f"(per suggestion: a round's perturb() time over its exploits; units: seeds, n = {args.seeds})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
