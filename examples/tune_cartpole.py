"""Ray Tune with a MetaPB2 method as its scheduler, around a user's own agent: a numpy REINFORCE
policy on gymnasium's CartPole (examples/cartpole_agent.py) in a function trainable that reports its
evaluation return and checkpoints its weights. PB2* by default; any registered method with
``--method`` (meta methods need ``--meta``, see examples/tune_meta_from_past_runs.py).

    python examples/tune_cartpole.py --method pb2_star --records /tmp/tune_runs
    metapb2 report /tmp/tune_runs
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import ray
from ray import tune

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cartpole_agent  # noqa: E402

from metapb2_core.tune_scheduler import MethodScheduler  # noqa: E402


def trainable(config: dict) -> None:
    agent = cartpole_agent.Agent(seed=int(config["agent_seed"]), gravity=config["gravity"])
    checkpoint = tune.get_checkpoint()
    if checkpoint:  # a new trial, or a member that just cloned another: continue from its weights
        with checkpoint.as_directory() as d:
            agent.load(pickle.loads((Path(d) / "agent.pkl").read_bytes()))
    iteration = 0
    while True:
        agent.train(config, episodes=config["episodes"])
        iteration += 1
        metrics = {"return": agent.evaluate()}
        if iteration % config["interval"]:
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "agent.pkl").write_bytes(pickle.dumps(agent.state()))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def run(
    method: str,
    planet: str = "earth",
    seed: int = 0,
    *,
    iterations: int = 12,
    interval: int = 2,
    episodes: int = 3,
    meta: str | Path | None = None,
    records: str | Path | None = None,
) -> MethodScheduler:
    """4 trials on CartPole-``planet``, a perturbation round every ``interval`` iterations."""
    for module in (sys.modules[__name__], cartpole_agent):  # the workers need not find examples/
        if module.__name__ != "__main__":
            ray.cloudpickle.register_pickle_by_value(module)
    scheduler = MethodScheduler.create(
        method,
        cartpole_agent.SPACE,
        population_size=4,
        seed=seed,
        metric="return",
        perturbation_interval=interval,
        task=f"cartpole-{planet}",
        meta=meta,
        records=records,
    )
    tune.Tuner(
        tune.with_resources(trainable, {"cpu": 0.5}),
        param_space={
            "gravity": cartpole_agent.GRAVITY[planet],
            "episodes": episodes,
            "interval": interval,
            "agent_seed": tune.grid_search([100 * seed + m for m in range(4)]),
        },
        tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{method}-cartpole-{planet}-s{seed}",
            stop={"training_iteration": iterations},
            storage_path=tempfile.mkdtemp(prefix="metapb2-tune-"),
            verbose=0,
        ),
    ).fit()
    return scheduler


def main(argv: list[str] | None = None) -> MethodScheduler:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="pb2_star")
    p.add_argument("--planet", default="earth", choices=sorted(cartpole_agent.GRAVITY))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--meta", help="meta-data for meta methods (a folder built by 'metapb2 meta')")
    p.add_argument("--records", help="write the experiment's run record into this folder")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    t0 = time.perf_counter()
    s = run(
        args.method, args.planet, args.seed, iterations=args.iterations, meta=args.meta, records=args.records
    )
    r = s.record
    print(
        f"{r.run_id}: {s.population.rounds} perturbation rounds, best final evaluation return "
        f"{r.meta['best_final_eval_return']:.0f}, checks {r.meta['status']}, {time.perf_counter() - t0:.0f} s"
    )
    return s


if __name__ == "__main__":
    main()
