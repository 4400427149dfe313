"""One perturbation round of a synchronous population (methods.md §1 step 3), and what it records.

Rank the members by score; each member of the lower quantile draws a clone uniformly from the upper
quantile and asks the method for its new configuration, seeing the configurations already handed
out this round (the pending list). The population loop, the ask/tell population, the method tests'
simulation and the suggestion benchmarks all run their rounds through ``perturbation_round``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from metapb2_core.space import Config, SearchSpace

QUANTILE_FRACTION = 0.25


def quantiles(scores: np.ndarray, fraction: float = QUANTILE_FRACTION) -> tuple[list[int], list[int]]:
    """(lower, upper) member indices as Ray's PBT forms them: ascending stable sort by score,
    q = ceil(n·fraction) capped at floor(n/2); NaN scores rank lowest."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n <= 1:
        return [], []
    order = np.argsort(np.where(np.isnan(scores), -np.inf, scores), kind="stable")
    q = math.ceil(n * fraction)
    if q > n / 2:
        q = n // 2
    return [int(i) for i in order[:q]], [int(i) for i in order[n - q :]]


def exploits_per_round(population_size: int) -> int:
    """How many members clone another in each perturbation round (P = 4 → 1, 8 → 2, 12 → 3)."""
    return len(quantiles(np.zeros(population_size))[0])


@dataclass(frozen=True)
class ExploreContext:
    member: int  # the member that exploits (lower quantile)
    clone: int  # the member it copied weights from (upper quantile)
    clone_config: Config
    round: int  # perturbation round, 1-based
    time: int  # env steps per member at this round
    table: pd.DataFrame  # record rows so far: member, time, one column per hyperparameter, reward
    pending: list[Config] = field(default_factory=list)  # configurations handed out earlier this round


@dataclass
class Suggestion:
    config: Config
    diagnostics: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable, stored per perturbation
    # The row the method added to its own data table for this member's new start (PB2 family):
    # (time, reward); None when it added none. Recorded, so the table can be rebuilt from a record.
    explore_row: tuple[int, float] | None = None


class Suggests(Protocol):
    def suggest(self, ctx: ExploreContext) -> Suggestion: ...


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
    explore_time: float = math.nan  # the explore row the method added (NaN: none)
    explore_reward: float = math.nan


def perturbation_round(
    method: Suggests,
    space: SearchSpace,
    scores: np.ndarray,
    configs: list[Config],
    round: int,
    time: int,
    table: pd.DataFrame,
    clone_rng: np.random.Generator,
) -> list[Perturbation]:
    """The exploits of one round, in the order they were made. The caller applies them: member
    ``p.member`` takes the weights of ``p.cloned_from`` and trains on with ``p.new_config``."""
    lower, upper = quantiles(scores)
    done: list[Perturbation] = []
    pending: list[Config] = []
    for m in lower:
        clone = int(clone_rng.choice(upper))
        ctx = ExploreContext(m, clone, dict(configs[clone]), round, time, table, list(pending))
        suggestion = method.suggest(ctx)
        new = space.validate(suggestion.config)
        explore = suggestion.explore_row or (math.nan, math.nan)
        done.append(
            Perturbation(
                round,
                time,
                m,
                clone,
                float(scores[m]),
                float(scores[clone]),
                dict(configs[m]),
                new,
                suggestion.diagnostics,
                float(explore[0]),
                float(explore[1]),
            )
        )
        pending.append(new)
    return done
