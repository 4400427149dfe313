"""A mixed search space (a log-scaled float, an integer, a categorical choice) tuned in Ray Tune
by any registered method, declared with Tune's own domains. A toy trainable stands in for RL: its
score grows each iteration at a rate that peaks at lr = 1e-3, batch_size = 64 and optimizer "adam".

    python examples/mixed_space.py --method pb2 --seed 0

The same space in our own declarations, for the ask/tell population or ``metapb2 run --bounds``:
``{"lr": (1e-5, 1e-1, "log"), "batch_size": ("int", 16, 256, 16), "optimizer": ("choice", [...])}``.
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

SPACE = {
    "lr": tune.loguniform(1e-5, 1e-1),
    "batch_size": tune.qrandint(16, 256, 16),  # 16, 32, …, 256 (qrandint's upper bound is inclusive)
    "optimizer": tune.choice(["sgd", "adam", "rmsprop"]),
}
OPTIMIZER_BONUS = {"sgd": 0.0, "adam": 0.5, "rmsprop": 0.25}


def rate(config: dict) -> float:
    lr, batch, opt = config["lr"], config["batch_size"], config["optimizer"]
    return 1.0 - (math.log10(lr) + 3.0) ** 2 - (math.log2(batch) - 6.0) ** 2 / 4 + OPTIMIZER_BONUS[opt]


def mixed_trainable(config: dict) -> None:
    """Accumulates ``rate(config)`` each iteration, checkpointing at every one (a clone continues)."""
    if not isinstance(config["batch_size"], int) or config["optimizer"] not in OPTIMIZER_BONUS:
        raise TypeError(f"the scheduler handed out {config['batch_size']!r}, {config['optimizer']!r}")
    state = {"score": 0.0, "iteration": 0}
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = json.loads((Path(d) / "state.json").read_text())
    while True:
        state["score"] += rate(config)
        state["iteration"] += 1
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "state.json").write_text(json.dumps(state))
            tune.report({"score": state["score"]}, checkpoint=tune.Checkpoint.from_directory(d))


def run(
    method: str,
    seed: int,
    *,
    task: str = "mixed-toy",
    iterations: int = 8,
    interval: int = 2,
    param_space: dict | None = None,
    records: str | Path | None = None,
    meta: str | Path | None = None,
    portfolio: list | None = None,
    storage: str | Path | None = None,
) -> MethodScheduler:
    """One experiment of 4 trials; returns the scheduler (its population and record)."""
    scheduler = MethodScheduler.create(
        method, SPACE, 4, seed, metric="score", perturbation_interval=interval, task=task,
        records=records, meta=meta, portfolio=portfolio,
    )  # fmt: skip
    storage = Path(storage or tempfile.mkdtemp(prefix="metapb2-tune-")).resolve()
    if __name__ != "__main__":  # the workers need not find examples/ on their path
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    tune.Tuner(
        tune.with_resources(mixed_trainable, {"cpu": 0.25}),
        param_space=param_space or {},
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=4, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{method}-{task}-s{seed}",
            stop={"training_iteration": iterations},
            storage_path=str(storage),
            verbose=0,
        ),
    ).fit()
    return scheduler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="pb2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=16)
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    t0 = time.perf_counter()
    s = run(args.method, args.seed, iterations=args.iterations)
    print(
        f"{args.method}: {s.population.rounds} rounds in {time.perf_counter() - t0:.1f} s; "
        "final configurations:"
    )
    for c in s.population.ask():
        print(
            f"  lr {c['lr']:.2e}  batch_size {c['batch_size']:3d}  optimizer {c['optimizer']:8s} "
            f"rate {rate(c):+.2f}"
        )


if __name__ == "__main__":
    main()
