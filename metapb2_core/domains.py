"""Where a hyperparameter makes sense at all, whatever bounds a user picks (below the search space
and the PPO settings, which both use it)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Domain:
    """Where a hyperparameter makes sense at all, whatever bounds a user picks: from ``low`` to
    ``high``, each end open or closed (λ in [0, 1], the clip range in (0, ∞), lr in (0, 1))."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = True
    high_open: bool = True

    def contains(self, v: float) -> bool:
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return above and below

    def __str__(self) -> str:
        num = lambda v: "∞" if v == math.inf else "-∞" if v == -math.inf else f"{v:g}"  # noqa: E731
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"{left}{num(self.low)}, {num(self.high)}{right}"
