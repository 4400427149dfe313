"""Given configurations, never perturbed: the portfolio pipeline's re-runs (not a registered method)."""

from __future__ import annotations

from typing import Any

import numpy as np

from metapb2_core.errors import MetaPB2Error
from metapb2_core.methods.base import ExploreContext, Method, Suggestion
from metapb2_core.quirks import Quirks
from metapb2_core.space import Config, SearchSpace


class FixedConfigs(Method):
    name = "fixed"
    perturbs = False

    def __init__(
        self,
        space: SearchSpace,
        rng: np.random.Generator,
        quirks: Quirks = Quirks(),
        *,
        configs: list[Config],
        **options: Any,
    ):
        super().__init__(space, rng, quirks, **options)
        self.configs = [space.validate(c) for c in configs]

    def initial_configs(self, n: int) -> list[Config]:
        if n != len(self.configs):
            raise MetaPB2Error(f"population of {n} for {len(self.configs)} fixed configurations")
        return [dict(c) for c in self.configs]

    def suggest(self, ctx: ExploreContext) -> Suggestion:  # never called: perturbs is False
        raise RuntimeError("fixed configurations are never perturbed")
