"""The method interface: a population-based method sees the data table and returns configurations.

The population loop (``metapb2_core.population``) owns training, ranking and cloning (methods.md §1);
a method decides only (a) the initial configurations and (b) the configuration of a member that has
just cloned a better one. Methods that learn from the run (the PB2 family) read ``ExploreContext.table``
and may keep their own state between calls.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from metapb2_core.errors import MetaPB2Error, UnknownNameError
from metapb2_core.quirks import Quirks
from metapb2_core.rounds import ExploreContext, Suggestion
from metapb2_core.space import Config, SearchSpace

__all__ = ["METHODS", "ExploreContext", "Method", "Suggestion", "get_method", "register_method"]


class Method(ABC):
    name: ClassVar[str]
    perturbs: ClassVar[bool] = True  # False: members train independently (no exploit/explore)
    # keyword inputs the run must supply: "meta_tables" + "target_task" (meta methods), "portfolio"
    requires: ClassVar[tuple[str, ...]] = ()
    # attributes that change while a run goes on; with the RNG they are the method's whole state,
    # which a checkpoint saves and a resumed run restores (everything else is rebuilt from the inputs)
    state_attributes: ClassVar[tuple[str, ...]] = ()
    # the initial population is drawn from the prior, so a caller's own draws may replace it
    initial_from_prior: ClassVar[bool] = True
    initial_source: ClassVar[str] = "prior draws"

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

    def state_dict(self) -> dict[str, Any]:
        """What changed since construction: the RNG state and ``state_attributes`` (plain data)."""
        return {
            "method": self.name,
            "rng": self.rng.bit_generator.state,
            **{a: copy.deepcopy(getattr(self, a)) for a in self.state_attributes},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()`` of a method built with the same inputs."""
        if state.get("method") != self.name:
            raise MetaPB2Error(f"state of method {state.get('method')!r} cannot be loaded into {self.name!r}")
        self.rng.bit_generator.state = state["rng"]
        for a in self.state_attributes:
            setattr(self, a, copy.deepcopy(state[a]))


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
