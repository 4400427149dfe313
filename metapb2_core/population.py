"""The synchronous population loop (methods.md §1).

Every interval: train all members (one jitted program), evaluate, record, and unless it is the
last interval run a perturbation round: rank by evaluation return, each member of the lower
quantile clones a member of the upper quantile drawn uniformly (weights, optimiser state, KL
coefficient) and receives a new configuration from the method.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import numpy as np
import pandas as pd

from metapb2_core.budgets import Budget
from metapb2_core.envs import Task
from metapb2_core.methods import ExploreContext, Method
from metapb2_core.ppo.trainer import get_trainer, hparams_from_configs
from metapb2_core.space import Config, SearchSpace

QUANTILE_FRACTION = 0.25


def quantiles(scores: np.ndarray, fraction: float = QUANTILE_FRACTION) -> tuple[list[int], list[int]]:
    """(lower, upper) member indices as Ray's PBT forms them: ascending stable sort by score,
    q = ceil(n·fraction) capped at floor(n/2); NaN scores rank lowest."""
    n = len(scores)
    if n <= 1:
        return [], []
    order = np.argsort(np.where(np.isnan(scores), -np.inf, scores), kind="stable")
    q = math.ceil(n * fraction)
    if q > n / 2:
        q = n // 2
    return [int(i) for i in order[:q]], [int(i) for i in order[n - q :]]


@dataclass
class Perturbation:
    round: int
    time: int
    member: int
    cloned_from: int
    member_score: float
    clone_score: float
    old_config: Config
    new_config: Config
    diagnostics: dict


@dataclass
class PopulationResult:
    points: pd.DataFrame  # one row per member and training iteration
    perturbations: list[Perturbation]
    wall_seconds: float
    compile_seconds: float
    train_env_steps: int  # env steps of all members' training rollouts (evaluation not counted)
    final_configs: list[Config] = field(default_factory=list)


ProgressFn = Callable[[int, int, int, np.ndarray, float], None]  # round, rounds, time, eval returns, seconds


def run_population(
    task: Task,
    method: Method,
    budget: Budget,
    seed: int,
    space: SearchSpace,
    env_params,
    progress: ProgressFn | None = None,
) -> PopulationResult:
    n = budget.population_size
    trainer = get_trainer(task.env_name, budget)
    clone_rng = np.random.default_rng([seed, 1])
    configs = [space.validate(c) for c in method.initial_configs(n)]
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)

    start = time.perf_counter()
    pop = trainer.init(jax.random.split(k_init, n), env_params)
    rows: list[dict] = []
    table_rows: list[dict] = []
    perturbations: list[Perturbation] = []
    compile_seconds = 0.0
    ipi = budget.iterations_per_interval
    for r in range(1, budget.num_intervals + 1):
        key, k_eval = jax.random.split(key)
        t0 = time.perf_counter()
        pop, metrics, eval_return = trainer.run_interval(
            pop, hparams_from_configs(configs), env_params, jax.random.split(k_eval, n)
        )
        metrics, eval_return = jax.device_get((metrics, eval_return))
        if r == 1:  # the first call includes compilation; later calls hit the cache
            compile_seconds = time.perf_counter() - t0
        elapsed = time.perf_counter() - start
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
                        "eval_return": float(scores[m]) if i == ipi - 1 else math.nan,
                        "eval_is_fresh": i == ipi - 1,
                        "wall_seconds": elapsed,
                    }
                )
        table_rows += [{"member": m, "time": now, **configs[m], "reward": float(scores[m])} for m in range(n)]
        if progress:
            progress(r, budget.num_intervals, now, scores, elapsed)
        if r == budget.num_intervals or not method.perturbs:
            continue
        source = np.arange(n)
        lower, upper = quantiles(scores)
        table = pd.DataFrame(table_rows)
        pending: list[Config] = []
        for m in lower:
            clone = int(clone_rng.choice(upper))
            ctx = ExploreContext(m, clone, dict(configs[clone]), r, now, table, list(pending))
            suggestion = method.suggest(ctx)
            new = space.validate(suggestion.config)
            perturbations.append(
                Perturbation(
                    r, now, m, clone, scores[m], scores[clone], configs[m], new, suggestion.diagnostics
                )
            )
            configs[m], source[m] = new, clone
            pending.append(new)
        pop = trainer.exploit(pop, jax.numpy.asarray(source))

    wall = time.perf_counter() - start
    points = pd.DataFrame(rows)
    points["total_run_time"] = wall
    return PopulationResult(
        points=points,
        perturbations=perturbations,
        wall_seconds=wall,
        compile_seconds=compile_seconds,
        train_env_steps=budget.total_steps * n,
        final_configs=configs,
    )
