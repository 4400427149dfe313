"""The smallest Ray Tune run with a MetaPB2 scheduler: a toy function trainable whose reward rate
peaks at a known learning rate, tuned by any registered method. The tests and the Tune benchmark
use it; run it to see a method move the population toward the peak.

    python examples/toy_tune.py --method pb2_star --seed 0
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

import ray
from ray import tune

from metapb2_core.tune_scheduler import MethodScheduler

SPACE = {"lr": (1e-5, 1e-1, "log")}


def rate(lr: float, peak: float) -> float:
    """Reward gained per iteration: 1 at lr = 10**peak, falling off quadratically in log10(lr)."""
    return 1.0 - (math.log10(lr) - peak) ** 2


def toy_trainable(config: dict) -> None:
    """Accumulates rate(lr) every iteration; its checkpoint is its state, so a clone continues it.
    It checkpoints at the perturbation points (every ``checkpoint_every`` iterations), where the
    scheduler needs one."""
    state = {"score": 0.0, "iteration": 0}
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = json.loads((Path(d) / "state.json").read_text())
    while True:
        state["score"] += rate(config["lr"], config.get("peak", -3.0))
        state["iteration"] += 1
        if state["iteration"] % config.get("checkpoint_every", 1):
            tune.report({"score": state["score"]})
            continue
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "state.json").write_text(json.dumps(state))
            tune.report({"score": state["score"]}, checkpoint=tune.Checkpoint.from_directory(d))


def run(
    method: str,
    seed: int,
    *,
    task: str = "toy",
    peak: float = -3.0,
    iterations: int = 12,
    interval: int = 2,
    records: str | Path | None = None,
    meta: str | Path | None = None,
    storage: str | Path | None = None,
    trainable=toy_trainable,
) -> MethodScheduler:
    """One experiment of 4 trials; returns the scheduler (its population and record)."""
    scheduler = MethodScheduler.create(
        method,
        SPACE,
        4,
        seed,
        metric="score",
        perturbation_interval=interval,
        task=task,
        records=records,
        meta=meta,
    )
    storage = Path(storage or tempfile.mkdtemp(prefix="metapb2-tune-")).resolve()
    module = sys.modules[trainable.__module__]
    if module.__name__ != "__main__":  # the workers need not find examples/ (or tests/) on their path
        ray.cloudpickle.register_pickle_by_value(module)
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 0.25}),
        param_space={"peak": peak, "checkpoint_every": interval},
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=4, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{method}-{task}-s{seed}",
            stop={"training_iteration": iterations},
            storage_path=str(storage),
            verbose=0,
        ),
    ).fit()
    return scheduler


def distance_to_peak(scheduler: MethodScheduler, peak: float = -3.0) -> float:
    """Mean |log10(lr) − peak| of the population's final configurations."""
    configs = scheduler.population.ask()
    return sum(abs(math.log10(c["lr"]) - peak) for c in configs) / len(configs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="pb2_star")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--records", default=None, help="write the run record here (metapb2 report reads it)")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    t0 = time.perf_counter()
    s = run(args.method, args.seed, iterations=args.iterations, records=args.records)
    print(
        f"{args.method}: {s.population.rounds} rounds in {time.perf_counter() - t0:.1f} s; final log10(lr): "
        + ", ".join(f"{math.log10(c['lr']):.2f}" for c in s.population.ask())
        + f" (peak -3.00; mean distance {distance_to_peak(s):.2f})"
    )


if __name__ == "__main__":
    main()
