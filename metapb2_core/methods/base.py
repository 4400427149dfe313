"""The method interface: a population-based method sees the data table and returns configurations.

The population loop (``metapb2_core.population``) owns training, ranking and cloning (methods.md §1);
a method decides only (a) the initial configurations and (b) the configuration of a member that has
just cloned a better one. Methods that learn from the run (the PB2 family) read ``ExploreContext.table``
and may keep their own state between calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from metapb2_core.errors import UnknownNameError
from metapb2_core.quirks import Quirks
from metapb2_core.space import Config, SearchSpace


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


class Method(ABC):
    name: ClassVar[str]
    perturbs: ClassVar[bool] = True  # False: members train independently (no exploit/explore)
    # keyword inputs the run must supply: "meta_tables" + "target_task" (meta methods), "portfolio"
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self, space: SearchSpace, rng: np.random.Generator, quirks: Quirks = Quirks(), **options: Any
    ):
        if options:
            raise TypeError(f"method {self.name!r} takes no options {sorted(options)}")
        self.space, self.rng, self.quirks = space, rng, quirks

    def initial_configs(self, n: int) -> list[Config]:
        """The initial population: draws from the prior (protocol.md §2.3)."""
        return [self.space.sample(self.rng) for _ in range(n)]

    @abstractmethod
    def suggest(self, ctx: ExploreContext) -> Suggestion:
        """The new configuration of ``ctx.member``, which now carries ``ctx.clone``'s weights."""


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownNameError("method", name, list(METHODS)) from None


MethodFactory = Callable[..., Method]
