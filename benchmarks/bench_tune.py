"""What running a method as a Ray Tune scheduler costs, on the toy experiment of
examples/toy_tune.py (4 trials, a perturbation round every 2 iterations, 20 iterations: 9 rounds).

In one run, on one local Ray:
- our PB2 as a Tune scheduler (MethodScheduler): wall seconds per round of the whole experiment,
  and the scheduler's own decision time per round (tell, rank, clone draw, GP suggestion);
- Ray Tune's own PB2 (ray.tune.schedulers.PB2, synchronous, the same bounds and interval): wall
  seconds per round (needs scikit-learn: pip install -e '.[bench]');
- the CLI loop's suggestion time for PB2 at the same population and round count, from the same
  code outside Tune (benchmarks/bench_suggest.py's timed run);
- how close each population ends to the peak (mean |log10 lr + 3| of its final configurations).
Prints and writes JSON (default benchmarks/results/tune.json).
Usage: python benchmarks/bench_tune.py [--iterations 20] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "examples"))

import numpy as np  # noqa: E402
import ray  # noqa: E402
import toy_tune  # noqa: E402
from bench_suggest import timed_run  # noqa: E402
from ray import tune  # noqa: E402


def ray_pb2(iterations: int, interval: int, seed: int) -> dict:
    from ray.tune.schedulers.pb2 import PB2

    scheduler = PB2(
        time_attr="training_iteration",
        metric="score",
        mode="max",
        perturbation_interval=interval,
        hyperparam_bounds={"lr": [1e-5, 1e-1]},
        synch=True,
        log_config=False,
    )
    import random

    random.seed(seed)
    np.random.seed(seed)
    t0 = time.perf_counter()
    grid = tune.Tuner(
        tune.with_resources(toy_tune.toy_trainable, {"cpu": 0.25}),
        param_space={"peak": -3.0, "checkpoint_every": interval, "lr": tune.loguniform(1e-5, 1e-1)},
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=4, reuse_actors=True),
        run_config=tune.RunConfig(
            stop={"training_iteration": iterations}, storage_path=tempfile.mkdtemp(), verbose=0
        ),
    ).fit()
    wall = time.perf_counter() - t0
    lrs = [r.config["lr"] for r in grid]
    return {"wall_s": wall, "final_distance_to_peak": float(np.mean([abs(math.log10(x) + 3) for x in lrs]))}


def ours(iterations: int, interval: int, seed: int) -> dict:
    t0 = time.perf_counter()
    s = toy_tune.run("pb2", seed, iterations=iterations, interval=interval)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "rounds": s.population.rounds,
        "scheduler_decision_s_per_round_median": float(np.median(s.round_seconds)),
        "final_distance_to_peak": toy_tune.distance_to_peak(s),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--interval", type=int, default=2)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tune.json")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    rounds = args.iterations // args.interval - 1
    results: dict = {"experiment": f"4 trials, {args.iterations} iterations, a round every {args.interval}"}
    for name, fn in (("ours_pb2", ours), ("ray_tune_pb2", ray_pb2)):
        runs = [fn(args.iterations, args.interval, s) for s in range(args.seeds)]
        results[name] = {
            "wall_s_per_round": float(np.median([r["wall_s"] / rounds for r in runs])),
            "final_distance_to_peak": [round(r["final_distance_to_peak"], 3) for r in runs],
            **(
                {
                    "scheduler_decision_s_per_round": float(
                        np.median([r["scheduler_decision_s_per_round_median"] for r in runs])
                    )
                }
                if name == "ours_pb2"
                else {}
            ),
        }
    cli = [sec for s in range(3) for r, sec in timed_run("pb2", s, rounds=rounds + 1) if r > 1]
    results["cli_pb2_suggestion_s_median"] = float(np.median(cli))
    o, t = results["ours_pb2"], results["ray_tune_pb2"]
    print(
        f"per perturbation round: ours {o['wall_s_per_round']:.2f} s of wall time "
        f"({o['scheduler_decision_s_per_round'] * 1000:.0f} ms deciding), "
        f"Ray Tune's PB2 {t['wall_s_per_round']:.2f} s; "
        f"the CLI loop's PB2 suggestion {results['cli_pb2_suggestion_s_median'] * 1000:.0f} ms; "
        f"final distance to the peak: ours {o['final_distance_to_peak']}, Ray's {t['final_distance_to_peak']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
