"""The hyperparameter search space, declared once (protocol.md §2.3).

Everything that needs the tuned hyperparameters derives from ``SEARCH_SPACE``: the names and order of
the columns of run tables, the bounds a method may suggest in, the prior the initial population is
drawn from, and the unit-cube transform the GP methods model in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from metapb2_core.errors import MetaPB2Error


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


# The domains of the hyperparameters the platform knows (the PPO settings a space may tune); a Param
# of another name has the whole real line unless it declares one.
KNOWN_DOMAINS: dict[str, Domain] = {
    "lr": Domain(0.0, 1.0),
    "lambda": Domain(0.0, 1.0, low_open=False, high_open=False),
    "clip_param": Domain(0.0),
    "gamma": Domain(0.0, 1.0, low_open=False, high_open=False),
    "entropy_coeff": Domain(0.0, low_open=False),
    "vf_loss_coeff": Domain(0.0, low_open=False),
    "vf_clip_param": Domain(0.0),
    "kl_target": Domain(0.0),
}


@dataclass(frozen=True)
class Param:
    """One tuned hyperparameter: a float in [low, high] inside its domain, sampled log-uniformly
    when ``log``. The domain defaults to the known one of its name (``KNOWN_DOMAINS``)."""

    name: str
    low: float
    high: float
    log: bool = False
    domain: Domain | None = None

    def __post_init__(self) -> None:
        if self.domain is None:
            object.__setattr__(self, "domain", KNOWN_DOMAINS.get(self.name, Domain()))
        lo, hi = self.low, self.high
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise MetaPB2Error(f"hyperparameter {self.name!r}: bounds must be finite, got [{lo}, {hi}]")
        if lo > hi:
            raise MetaPB2Error(f"hyperparameter {self.name!r}: bounds are reversed, low {lo} > high {hi}")
        if lo == hi:
            raise MetaPB2Error(f"hyperparameter {self.name!r}: bounds are equal ({lo}); the range is empty")
        if self.log and lo <= 0:
            raise MetaPB2Error(
                f"hyperparameter {self.name!r}: log-scaled bounds must be positive, got [{lo}, {hi}]"
            )
        if not (self.domain.contains(lo) and self.domain.contains(hi)):
            raise MetaPB2Error(
                f"hyperparameter {self.name!r}: bounds [{lo:g}, {hi:g}] leave its domain {self.domain}"
            )

    def sample(self, rng: np.random.Generator) -> float:
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def clip(self, value: float) -> float:
        return float(min(max(value, self.low), self.high))

    def to_unit(self, value: float | np.ndarray, log_scale: bool | None = None) -> np.ndarray:
        """Map into [0, 1] by the bounds; on the log scale when ``log_scale`` (default: ``self.log``)."""
        use_log = self.log if log_scale is None else log_scale
        g = np.log if use_log else np.asarray
        lo, hi = g(self.low), g(self.high)
        return (g(np.asarray(value, dtype=np.float64)) - lo) / (hi - lo)

    def from_unit(self, unit: float | np.ndarray, log_scale: bool | None = None) -> np.ndarray:
        use_log = self.log if log_scale is None else log_scale
        if use_log:
            lo, hi = math.log(self.low), math.log(self.high)
            return np.exp(lo + np.asarray(unit, dtype=np.float64) * (hi - lo))
        return self.low + np.asarray(unit, dtype=np.float64) * (self.high - self.low)


Config = dict[str, float]


class SearchSpace:
    """An ordered set of ``Param``; configurations are ``{name: float}`` dicts in this order."""

    def __init__(self, params: list[Param]):
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise MetaPB2Error(f"search space has duplicate hyperparameter names: {names}")
        if not params:
            raise MetaPB2Error("search space is empty")
        self.params = tuple(params)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise MetaPB2Error(f"unknown hyperparameter {name!r}; the space has {', '.join(self.names)}")

    def __len__(self) -> int:
        return len(self.params)

    def sample(self, rng: np.random.Generator) -> Config:
        return {p.name: p.sample(rng) for p in self.params}

    def clip(self, config: Config) -> Config:
        return {p.name: p.clip(config[p.name]) for p in self.params}

    def validate(self, config: Config) -> Config:
        """Check a configuration has exactly this space's names and finite values within bounds."""
        missing = [n for n in self.names if n not in config]
        extra = [n for n in config if n not in self.names]
        if missing or extra:
            raise MetaPB2Error(
                f"configuration {config} has missing {missing} / unknown {extra} hyperparameters"
            )
        for p in self.params:
            v = float(config[p.name])
            if not math.isfinite(v) or not (p.low <= v <= p.high):
                raise MetaPB2Error(f"hyperparameter {p.name!r} = {v} lies outside [{p.low}, {p.high}]")
        return {p.name: float(config[p.name]) for p in self.params}

    @classmethod
    def from_dict(cls, spec: dict[str, tuple]) -> SearchSpace:
        """A space from ``{name: (low, high)}`` or ``{name: (low, high, "log")}``, in that order,
        e.g. ``{"lr": (1e-5, 1e-3, "log"), "entropy_coeff": (0.0, 0.01)}``."""
        params = []
        for name, bounds in spec.items():
            if isinstance(bounds, Param):
                params.append(bounds)
                continue
            if not isinstance(bounds, tuple | list) or len(bounds) not in (2, 3):
                raise MetaPB2Error(
                    f"hyperparameter {name!r}: expected (low, high) or (low, high, 'log'), got {bounds!r}"
                )
            if len(bounds) == 3 and bounds[2] not in ("log", "linear"):
                raise MetaPB2Error(
                    f"hyperparameter {name!r}: the scale must be 'log' or 'linear', got {bounds[2]!r}"
                )
            params.append(
                Param(name, float(bounds[0]), float(bounds[1]), log=len(bounds) == 3 and bounds[2] == "log")
            )
        return cls(params)

    def describe(self) -> list[list]:
        """[name, low, high, log] per parameter, in order: plain data for records and identities."""
        return [[p.name, p.low, p.high, p.log] for p in self.params]

    def to_array(self, config: Config) -> np.ndarray:
        return np.array([config[n] for n in self.names], dtype=np.float64)

    def from_array(self, values: np.ndarray) -> Config:
        return {n: float(v) for n, v in zip(self.names, values, strict=True)}

    def with_bounds(self, bounds: dict[str, tuple[float, float]]) -> SearchSpace:
        """A copy with some bounds replaced (validated: the error names the parameter)."""
        unknown = [n for n in bounds if n not in self.names]
        if unknown:
            raise MetaPB2Error(f"unknown hyperparameter(s) {unknown}; the space has {', '.join(self.names)}")
        return SearchSpace(
            [Param(p.name, *bounds.get(p.name, (p.low, p.high)), p.log, p.domain) for p in self.params]
        )


# protocol.md §2.3. Key order is the order of the columns everywhere.
SEARCH_SPACE = SearchSpace(
    [
        Param("lr", 1e-5, 1e-3, log=True),
        Param("lambda", 0.9, 0.99),
        Param("clip_param", 0.1, 0.5),
    ]
)


def parse_bounds(specs: list[str]) -> dict[str, tuple[float, float]]:
    """Parse ``name=low:high`` strings (CLI ``--bounds``)."""
    out: dict[str, tuple[float, float]] = {}
    for spec in specs:
        name, sep, rng = spec.partition("=")
        lo, sep2, hi = rng.partition(":")
        if not sep or not sep2:
            raise MetaPB2Error(f"bad bounds {spec!r}: expected NAME=LOW:HIGH, e.g. lr=1e-5:1e-3")
        try:
            out[name.strip()] = (float(lo), float(hi))
        except ValueError:
            raise MetaPB2Error(f"bad bounds {spec!r}: LOW and HIGH must be numbers") from None
    return out
