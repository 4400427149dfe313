"""A user's own training loop tuned by MetaPB2 through the ask/tell population: no Ray, no Tune, no
PPO of ours. The agent (examples/cartpole_agent.py) is a numpy REINFORCE policy on gymnasium's
CartPole; a task is CartPole under a gravity.

1. "Earlier runs": PB2 tunes the loop on the moon and on Mars; each run is written as a run record.
2. Those records become meta-data (what `metapb2 meta` does).
3. On Earth, PB2* tunes the loop, and MultiTaskPB2 tunes it with the meta-data of 1.

    python examples/ask_tell_loop.py --out /tmp/ask_tell
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cartpole_agent import GRAVITY, SPACE, Agent  # noqa: E402

from metapb2_core.ask_tell import AskTellPopulation  # noqa: E402
from metapb2_core.meta.tables import build_meta_dir  # noqa: E402
from metapb2_core.space import SearchSpace  # noqa: E402
from metapb2_core.store import write_record  # noqa: E402


def tune_loop(method: str, planet: str, seed: int, intervals: int, episodes: int, meta=None, records=None):
    """One population of 4 agents on CartPole-``planet``, ``intervals`` rounds of ``episodes``
    REINFORCE updates each; returns the population and each member's last evaluation."""
    task = f"cartpole-{planet}"
    pop = AskTellPopulation.create(method, SPACE, size=4, seed=seed, task=task, meta=meta)
    agents = [Agent(seed * 100 + m, GRAVITY[planet]) for m in range(4)]
    scores = []
    for k in range(1, intervals + 1):
        scores = []
        for member, config in enumerate(pop.ask()):
            agents[member].train(config, episodes)
            scores.append(agents[member].evaluate())
            pop.tell(member, k * episodes, scores[-1])
        if k < intervals:
            for p in pop.perturb():  # the lower quantile clones an upper member, with a new configuration
                agents[p.member].load(agents[p.cloned_from].state())
    if records is not None:
        write_record(pop.to_record(task, seed), records)
    return pop, scores


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("ask_tell_runs"))
    p.add_argument("--intervals", type=int, default=6)
    p.add_argument("--episodes", type=int, default=4)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    past = args.out / "past"
    for planet in ("moon", "mars"):
        tune_loop("pb2", planet, 0, args.intervals, args.episodes, records=past)
    meta = args.out / "meta"
    build_meta_dir(past, meta, SearchSpace.from_dict(SPACE))
    summary = {}
    for method in ("pb2_star", "multitask"):
        pop, scores = tune_loop(
            method, "earth", 1, args.intervals, args.episodes, meta=meta, records=args.out / "earth"
        )
        fitted = sum(p.diagnostics.get("surrogate") == "lcm" for p in pop.perturbations)
        summary[method] = {"best_return": max(scores), "lcm_fits": fitted, "rounds": pop.rounds}
        print(
            f"{method}: best evaluation return on cartpole-earth {max(scores):.0f}"
            + (
                f"; the multi-task model was fitted in {fitted} of {pop.rounds} rounds"
                if method == "multitask"
                else ""
            )
        )
    earth = args.out / "earth"
    print(f"records in {earth} ('metapb2 report {earth}' ranks them); {time.perf_counter() - t0:.0f} s")
    (args.out / "summary.json").write_text(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
