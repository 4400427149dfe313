"""The synchronous population loop (methods.md §1).

Every interval: train all members (one jitted program), evaluate, record, and unless it is the
last interval run a perturbation round (``metapb2_core.rounds``, through the ask/tell population):
the lower quantile clone members of the upper quantile (weights, optimiser state, KL coefficient)
and receive new configurations from the method.

With a checkpoint path the loop saves its whole state after every completed interval (members,
optimiser states, RNG keys, configurations, the method's state and table, the rows so far) and a
later call with the same path continues from the last one: the finished run equals an
uninterrupted one with the same seed, wall times aside.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from metapb2_core.ask_tell import AskTellPopulation
from metapb2_core.budgets import Budget
from metapb2_core.envs import Task
from metapb2_core.methods import Method
from metapb2_core.ppo.trainer import get_trainer, hparams_from_configs
from metapb2_core.rounds import Perturbation
from metapb2_core.space import Config, SearchSpace
from metapb2_core.store.checkpoints import CheckpointError, load_checkpoint, save_checkpoint


@dataclass
class PopulationResult:
    points: pd.DataFrame  # one row per member and training iteration
    perturbations: list[Perturbation]
    wall_seconds: float
    compile_seconds: float
    train_env_steps: int  # env steps of all members' training rollouts (evaluation not counted)
    final_configs: list[Config] = field(default_factory=list)
    resumed_from: int = 0  # intervals already done in the checkpoint this run continued from
    # timing of this process: seconds spent saving checkpoints
    checkpoint_seconds: float = 0.0


ProgressFn = Callable[[int, int, int, np.ndarray, float], None]  # round, rounds, time, eval returns, seconds


def run_population(
    task: Task,
    method: Method,
    budget: Budget,
    seed: int,
    space: SearchSpace,
    env_params,
    progress: ProgressFn | None = None,
    checkpoint: Path | None = None,
    identity: dict | None = None,
    say: Callable[[str], None] | None = None,
) -> PopulationResult:
    """``checkpoint``: where to save after each interval and resume from; ``identity``: what the
    checkpoint must have been made for (a checkpoint of anything else is ignored); ``say``: one
    line when the run resumes or ignores a checkpoint."""
    n = budget.population_size
    trainer = get_trainer(task.env_name, budget)
    tuner = AskTellPopulation(method, n, seed)
    hparams_from_configs(tuner.ask())  # a space the trainer cannot tune fails before any compilation
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    identity = {**(identity or {}), "seed": seed, "budget": budget.to_dict(), "space": space.describe()}

    start = time.perf_counter()
    rows: list[dict] = []
    compile_seconds, done, offset, saving = 0.0, 0, 0.0, 0.0
    saved = load_checkpoint(checkpoint) if checkpoint else None
    if saved is not None and saved.get("identity") != identity:
        if say:
            say(f"checkpoint {checkpoint} was made for another request; starting afresh")
        saved = None
    if saved is not None:
        pop = trainer.restore(saved["population"], env_params)
        key = jax.numpy.asarray(saved["key"])
        tuner.load_state_dict(saved["tuner"])
        rows, compile_seconds = saved["rows"], saved["compile_seconds"]
        done, offset = saved["intervals_done"], saved["elapsed"]
        if say:
            say(
                f"resuming from {checkpoint.name}: {done} of {budget.num_intervals} intervals done, "
                f"continuing at interval {done + 1}"
            )
    else:
        pop = trainer.init(jax.random.split(k_init, n), env_params)
    ipi = budget.iterations_per_interval
    for r in range(done + 1, budget.num_intervals + 1):
        key, k_eval = jax.random.split(key)
        t0 = time.perf_counter()
        configs = tuner.ask()
        pop, metrics, eval_return = trainer.run_interval(
            pop, hparams_from_configs(configs), env_params, jax.random.split(k_eval, n)
        )
        metrics, eval_return = jax.device_get((metrics, eval_return))
        if r == 1:  # the first call includes compilation; later calls hit the cache
            compile_seconds = time.perf_counter() - t0
        elapsed = offset + time.perf_counter() - start
        now = r * budget.interval
        scores = np.asarray(eval_return, dtype=np.float64)
        for i in range(ipi):
            it = (r - 1) * ipi + i + 1
            for m in range(n):
                rows.append(
                    {
                        "member": m,
                        "training_iteration": it,
                        "round": r,
                        "timesteps": it * budget.train_batch_size,
                        **configs[m],
                        **{f: float(getattr(metrics, f)[i, m]) for f in metrics._fields},
                        "eval_return": float(scores[m]) if i == ipi - 1 else np.nan,
                        "eval_is_fresh": i == ipi - 1,
                        "wall_seconds": elapsed,
                    }
                )
        tuner.tell_all(now, scores)
        if progress:
            progress(r, budget.num_intervals, now, scores, elapsed)
        if r == budget.num_intervals:
            break
        source = np.arange(n)
        for p in tuner.perturb():
            source[p.member] = p.cloned_from
        if (source != np.arange(n)).any():
            pop = trainer.exploit(pop, jax.numpy.asarray(source))
        if checkpoint:
            t_save = time.perf_counter()
            host_pop, host_key = jax.device_get((pop, key))
            state = {
                "identity": identity,
                "intervals_done": r,
                "population": [np.asarray(x) for x in jax.tree_util.tree_leaves(host_pop)],
                "key": np.asarray(host_key),
                "tuner": tuner.state_dict(),
                "rows": rows,
                "compile_seconds": compile_seconds,
                "elapsed": offset + time.perf_counter() - start,
            }
            try:
                save_checkpoint(checkpoint, state)
            except CheckpointError as e:  # stop now: a record could not be saved there either
                then = (
                    f"the one after interval {r - 1} is kept: free space or fix the folder, then run "
                    "again to continue from it"
                    if r > 1
                    else "there is no earlier one: free space or fix the folder, then run again"
                )
                raise CheckpointError(
                    f"interval {r} of {budget.num_intervals} done, but {e}; {then}"
                ) from None
            saving += time.perf_counter() - t_save

    wall = offset + time.perf_counter() - start
    points = pd.DataFrame(rows)
    points["total_run_time"] = wall
    return PopulationResult(
        points=points,
        perturbations=list(tuner.perturbations),
        wall_seconds=wall,
        compile_seconds=compile_seconds,
        train_env_steps=budget.total_steps * n,
        final_configs=tuner.ask(),
        resumed_from=done,
        checkpoint_seconds=saving,
    )
