"""PB2* warm (methods.md §9.4): PB2* whose initial population and first-round configurations are
the entries of a portfolio, in selection order."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from metapb2_core.errors import MetaPB2Error
from metapb2_core.methods.base import register_method
from metapb2_core.methods.pb2 import PB2Star
from metapb2_core.quirks import Quirks
from metapb2_core.rounds import exploits_per_round
from metapb2_core.space import Config, SearchSpace


@register_method
class PB2StarWarm(PB2Star):
    name = "pb2_star_warm"
    requires: ClassVar[tuple[str, ...]] = ("portfolio",)
    state_attributes: ClassVar[tuple[str, ...]] = (*PB2Star.state_attributes, "_next")
    initial_from_prior: ClassVar[bool] = False
    initial_source: ClassVar[str] = "its portfolio's entries"

    def __init__(
        self,
        space: SearchSpace,
        rng: np.random.Generator,
        quirks: Quirks = Quirks(),
        *,
        portfolio: list[Config],
        **options: Any,
    ):
        super().__init__(space, rng, quirks, **options)
        self.entries = [dict(c) for c in portfolio]  # with their lineage (candidate, source task)
        self.portfolio = [space.validate({n: c[n] for n in space.names if n in c}) for c in portfolio]
        self._next = 0

    def initial_configs(self, n: int) -> list[Config]:
        need = n + exploits_per_round(n)
        if len(self.portfolio) < need:
            raise MetaPB2Error(
                f"portfolio has {len(self.portfolio)} entries but {need} are needed ({n} members + "
                f"{need - n} first-round exploits); {need - len(self.portfolio)} missing"
            )
        self._next = n
        return [dict(c) for c in self.portfolio[:n]]

    def initializer(self) -> tuple[Config, dict[str, Any]]:
        """The next portfolio entry, in selection order."""
        k = self._next
        self._next += 1
        return dict(self.portfolio[k]), {
            "mode": "portfolio_entry",
            "portfolio_position": k,
            "candidate": self.entries[k].get("candidate"),
        }
