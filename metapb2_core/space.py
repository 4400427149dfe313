"""The hyperparameter search space, declared once (protocol.md §2.3).

Everything that needs the tuned hyperparameters derives from a ``SearchSpace``: the names and order of
the columns of run tables, the bounds a method may suggest in, the prior the initial population is
drawn from, and the unit-cube transform the GP methods model in. The paper's space (``SEARCH_SPACE``)
is three floats; a space may also hold integers (``IntParam``: linear or log, with a step) and
categorical choices (``ChoiceParam``), after Optuna's ``IntDistribution``/``CategoricalDistribution``
and Ray Tune's ``randint``/``qrandint``/``lograndint``/``choice``. A configuration holds a float, an
int or one of the choices per parameter, never anything else (``SearchSpace.validate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from metapb2_core.domains import Domain
from metapb2_core.errors import MetaPB2Error
from metapb2_core.ppo.settings import TUNABLES


def known_domain(name: str) -> Domain:
    """The domain of a PPO setting a space may tune (``ppo.settings.TUNABLES``); the whole real
    line for any other name, unless its parameter declares one."""
    return TUNABLES[name].domain if name in TUNABLES else Domain()


@dataclass(frozen=True)
class Param:
    """One tuned hyperparameter: a float in [low, high] inside its domain, sampled log-uniformly
    when ``log``. The domain defaults to the known one of its name (``known_domain``)."""

    name: str
    low: float
    high: float
    log: bool = False
    domain: Domain | None = None
    kind: ClassVar[str] = "float"

    def __post_init__(self) -> None:
        for end in (self.low, self.high):
            if isinstance(end, bool) or not isinstance(end, int | float | np.integer | np.floating):
                raise MetaPB2Error(
                    f"hyperparameter {self.name!r}: bounds must be numbers, got [{self.low!r}, {self.high!r}]"
                )
        if self.domain is None:
            object.__setattr__(self, "domain", known_domain(self.name))
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

    def coerce(self, value: Any) -> float:
        """``value`` as this parameter's float, or one line naming it (not a number, outside)."""
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise MetaPB2Error(f"hyperparameter {self.name!r} = {value!r} is not a number")
        v = float(value)
        if not math.isfinite(v) or not (self.low <= v <= self.high):
            raise MetaPB2Error(f"hyperparameter {self.name!r} = {v} lies outside [{self.low}, {self.high}]")
        return v

    def declaration(self) -> list:
        """The record's form (meta ``bounds``), which ``SearchSpace.from_dict`` reads back."""
        return [self.low, self.high, self.log]

    def allowed(self, values: Any) -> np.ndarray:
        """Which of ``values`` (a column) this parameter takes: numbers within its bounds (NaN,
        None and words are not). The one test the record checks and the meta methods apply."""
        v = _numbers(values)
        return (v >= self.low) & (v <= self.high)

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


def _numbers(values: Any) -> np.ndarray:
    """A column as float64, with NaN for what is not a number (None, words, truth values)."""
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    if arr.dtype.kind in "fiu":
        return arr.astype(np.float64)
    if arr.dtype.kind == "b":
        return np.full(arr.shape, np.nan)
    obj = pd.Series(arr.ravel(), dtype=object).map(lambda v: np.nan if isinstance(v, bool) else v)
    return pd.to_numeric(obj, errors="coerce").to_numpy(dtype=np.float64)


def _integer(name: str, what: str, value: Any) -> int:
    """``value`` as an int if it is an integer (an integral float too), else one line naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise MetaPB2Error(f"hyperparameter {name!r}: {what} must be an integer, got {value!r}")
    if isinstance(value, float | np.floating) and not (math.isfinite(value) and float(value).is_integer()):
        raise MetaPB2Error(f"hyperparameter {name!r}: {what} must be an integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class IntParam:
    """An integer hyperparameter in [low, high] on the grid low, low + step, …, high; sampled
    uniformly over the grid, or log-uniformly (``log``, step 1, low ≥ 1) as Optuna's
    ``IntDistribution(log=True)`` and Tune's ``lograndint`` do. The GP methods model it on the
    continuous range and round their suggestion to the grid (PB2-Mix, Parker-Holder et al. 2021)."""

    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1
    domain: Domain | None = None
    kind: ClassVar[str] = "int"

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", _integer(self.name, "the low bound", self.low))
        object.__setattr__(self, "high", _integer(self.name, "the high bound", self.high))
        object.__setattr__(self, "step", _integer(self.name, "the step", self.step))
        if self.domain is None:
            object.__setattr__(self, "domain", known_domain(self.name))
        lo, hi, step = self.low, self.high, self.step
        if lo > hi:
            raise MetaPB2Error(f"hyperparameter {self.name!r}: bounds are reversed, low {lo} > high {hi}")
        if lo == hi:
            raise MetaPB2Error(f"hyperparameter {self.name!r}: bounds are equal ({lo}); the range is empty")
        if step < 1:
            raise MetaPB2Error(f"hyperparameter {self.name!r}: the step must be at least 1, got {step}")
        if (hi - lo) % step:
            raise MetaPB2Error(
                f"hyperparameter {self.name!r}: the step {step} does not divide the range {lo}..{hi} "
                f"({hi - lo})"
            )
        if self.log and step != 1:
            raise MetaPB2Error(f"hyperparameter {self.name!r}: a log-scaled integer takes step 1, got {step}")
        if self.log and lo < 1:
            raise MetaPB2Error(
                f"hyperparameter {self.name!r}: a log-scaled integer needs low >= 1, got [{lo}, {hi}]"
            )
        if not (self.domain.contains(lo) and self.domain.contains(hi)):
            raise MetaPB2Error(
                f"hyperparameter {self.name!r}: bounds [{lo}, {hi}] leave its domain {self.domain}"
            )

    @property
    def values(self) -> range:
        return range(self.low, self.high + 1, self.step)

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:  # log-uniform on [low − ½, high + ½], rounded: every integer has its share
            v = math.exp(rng.uniform(math.log(self.low - 0.5 + 1e-12), math.log(self.high + 0.5)))
            return self.clip(v)
        return self.low + self.step * int(rng.integers(len(self.values)))

    def clip(self, value: float) -> int:
        """The nearest grid value within the bounds (a method's continuous suggestion, rounded)."""
        k = round((min(max(float(value), self.low), self.high) - self.low) / self.step)
        return int(self.low + self.step * k)

    def coerce(self, value: Any) -> int:
        v = _integer(self.name, "the value", value)
        if not self.low <= v <= self.high:
            raise MetaPB2Error(f"hyperparameter {self.name!r} = {v} lies outside [{self.low}, {self.high}]")
        if (v - self.low) % self.step:
            raise MetaPB2Error(
                f"hyperparameter {self.name!r} = {v} is off its grid {self.low}, {self.low + self.step}, …"
            )
        return v

    def allowed(self, values: Any) -> np.ndarray:
        """Which of ``values`` are integers on this parameter's grid within its bounds."""
        v = _numbers(values)
        with np.errstate(invalid="ignore"):
            on_grid = np.isfinite(v) & (np.mod(v - self.low, self.step) == 0)
        return on_grid & (v >= self.low) & (v <= self.high)

    def declaration(self) -> dict:
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log, "step": self.step}


_CHOICE_TYPES = (bool, int, float, str)


def _choice_type(value: Any) -> type | None:
    for t in _CHOICE_TYPES:  # bool before int: True is an int to Python, not to JSON
        if isinstance(value, t):
            return t
    return None


@dataclass(frozen=True)
class ChoiceParam:
    """A categorical hyperparameter: one of ``choices``, JSON scalars of one type (strings, ints,
    floats or booleans), unordered. PB2 and PB2* choose it with a time-varying EXP3 bandit and fit
    their GP on its one-hot columns, as PB2-Mix does (Parker-Holder et al., NeurIPS 2021); PBT
    resamples it or moves it to a neighbouring choice, as Tune's PBT does with a list of values."""

    name: str
    choices: tuple
    kind: ClassVar[str] = "choice"

    def __post_init__(self) -> None:
        if isinstance(self.choices, str | bytes) or not isinstance(self.choices, tuple | list):
            raise MetaPB2Error(f"hyperparameter {self.name!r}: choices must be a list, got {self.choices!r}")
        choices = tuple(c.item() if isinstance(c, np.generic) else c for c in self.choices)
        if len(choices) < 2:
            raise MetaPB2Error(
                f"hyperparameter {self.name!r}: a choice needs at least two values, got {list(choices)}"
            )
        types = {_choice_type(c) for c in choices}
        if types == {int, float}:  # [0.5, 1]: numbers, all floats
            choices, types = tuple(float(c) for c in choices), {float}
        if None in types:
            bad = next(c for c in choices if _choice_type(c) is None)
            raise MetaPB2Error(
                f"hyperparameter {self.name!r}: choice {bad!r} is not a string, number or boolean"
            )
        if len(types) > 1:
            mixed = ", ".join(sorted(t.__name__ for t in types))
            raise MetaPB2Error(f"hyperparameter {self.name!r}: choices mix types ({mixed}); use one type")
        if float in types and not all(math.isfinite(c) for c in choices):
            raise MetaPB2Error(f"hyperparameter {self.name!r}: choices must be finite, got {list(choices)}")
        dupes = sorted({repr(c) for c in choices if choices.count(c) > 1})
        if dupes:
            raise MetaPB2Error(f"hyperparameter {self.name!r}: duplicate choices {', '.join(dupes)}")
        object.__setattr__(self, "choices", choices)

    @property
    def type(self) -> type:
        return _choice_type(self.choices[0])

    def index(self, value: Any) -> int:
        v = value.item() if isinstance(value, np.generic) else value
        for i, c in enumerate(self.choices):
            if _choice_type(v) is _choice_type(c) and v == c:
                return i
        raise MetaPB2Error(f"hyperparameter {self.name!r} = {value!r} is not one of {list(self.choices)}")

    def sample(self, rng: np.random.Generator) -> Any:
        return self.choices[int(rng.integers(len(self.choices)))]

    def clip(self, value: Any) -> Any:
        return self.choices[self.index(value)]

    def coerce(self, value: Any) -> Any:
        return self.choices[self.index(value)]

    def allowed(self, values: Any) -> np.ndarray:
        """Which of ``values`` are one of the choices (by value and type, as ``index`` reads them)."""

        def one(v: Any) -> bool:
            try:
                self.index(v)
            except MetaPB2Error:
                return False
            return True

        return np.array([one(v) for v in values], dtype=bool)

    def declaration(self) -> dict:
        return {"type": "choice", "choices": list(self.choices)}


AnyParam = Param | IntParam | ChoiceParam

Config = dict[str, Any]  # a float, an int or one of the choices per parameter


class SearchSpace:
    """An ordered set of parameters (``Param``, ``IntParam``, ``ChoiceParam``); configurations are
    ``{name: value}`` dicts in this order."""

    def __init__(self, params: list[AnyParam]):
        names = [p.name for p in params]
        if len(set(names)) != len(names):
            raise MetaPB2Error(f"search space has duplicate hyperparameter names: {names}")
        if not params:
            raise MetaPB2Error("search space is empty")
        self.params = tuple(params)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def all_float(self) -> bool:
        """Floats only, as the paper's space: every method takes its original path, bit for bit."""
        return all(p.kind == "float" for p in self.params)

    def __getitem__(self, name: str) -> AnyParam:
        for p in self.params:
            if p.name == name:
                return p
        raise MetaPB2Error(f"unknown hyperparameter {name!r}; the space has {', '.join(self.names)}")

    def __len__(self) -> int:
        return len(self.params)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.params == other.params

    def __hash__(self) -> int:
        return hash(self.params)

    def __repr__(self) -> str:
        return f"SearchSpace({self.declaration()})"

    def sample(self, rng: np.random.Generator) -> Config:
        return {p.name: p.sample(rng) for p in self.params}

    def clip(self, config: Config) -> Config:
        return {p.name: p.clip(config[p.name]) for p in self.params}

    def validate(self, config: Config) -> Config:
        """Check a configuration has exactly this space's names, each value of its parameter's kind
        (a finite float in bounds, an integer on its grid, one of the choices); returns it typed."""
        missing = [n for n in self.names if n not in config]
        extra = [n for n in config if n not in self.names]
        if missing or extra:
            raise MetaPB2Error(
                f"configuration {config} has missing {missing} / unknown {extra} hyperparameters"
            )
        return {p.name: p.coerce(config[p.name]) for p in self.params}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> SearchSpace:
        """A space from ``{name: declaration}``, in that order. A declaration is a parameter object,
        ``(low, high)`` or ``(low, high, "log")`` for a float, ``("int", low, high)`` (also with
        ``"log"`` or a step: ``("int", 16, 64, 16)``) for an integer, ``("choice", [values])`` for a
        categorical one, or the record's form (``declaration()``), e.g.
        ``{"lr": (1e-5, 1e-3, "log"), "epochs": ("int", 1, 30), "norm_adv": ("choice", [True, False])}``."""
        if not isinstance(spec, dict):
            raise MetaPB2Error(f"a search space is a mapping of names to declarations, got {spec!r}")
        return cls([parse_declaration(str(name), d) for name, d in spec.items()])

    def declaration(self) -> dict[str, Any]:
        """``{name: declaration}``, what records keep as ``bounds`` and ``from_dict`` reads back."""
        return {p.name: p.declaration() for p in self.params}

    def describe(self) -> list[list]:
        """[name, low, high, log] per float, [name, declaration] otherwise, in order: plain data for
        records and identities (the paper's space describes as it always has)."""
        return [
            [p.name, p.low, p.high, p.log] if p.kind == "float" else [p.name, p.declaration()]
            for p in self.params
        ]

    def column_dtypes(self) -> dict[str, str]:
        """The pandas type of each parameter's column in records: float64, int64, or the choices'
        type (bool, int64, float64, or str)."""
        choice = {bool: "bool", int: "int64", float: "float64", str: "str"}
        return {
            p.name: "float64" if p.kind == "float" else "int64" if p.kind == "int" else choice[p.type]
            for p in self.params
        }

    def to_array(self, config: Config) -> np.ndarray:
        return np.array([config[n] for n in self.names], dtype=np.float64)

    def from_array(self, values: np.ndarray) -> Config:
        return {n: float(v) for n, v in zip(self.names, values, strict=True)}

    def with_bounds(self, bounds: dict[str, Any], add: bool = False) -> SearchSpace:
        """A copy with some parameters redeclared: ``(low, high)`` keeps a parameter's kind and
        scale, any other declaration (``from_dict``'s) replaces it; with ``add``, names the space
        lacks are appended (``metapb2 run --bounds gamma=0.9:0.999``); errors name the parameter."""
        unknown = [n for n in bounds if n not in self.names]
        if unknown and not add:
            raise MetaPB2Error(f"unknown hyperparameter(s) {unknown}; the space has {', '.join(self.names)}")
        extra = [parse_declaration(n, bounds[n]) for n in unknown]
        params = []
        for p in self.params:
            if p.name not in bounds:
                params.append(p)
                continue
            new = bounds[p.name]
            if (
                isinstance(new, tuple | list)
                and len(new) == 2
                and not isinstance(new[0], str)
                and p.kind != "choice"
            ):
                if p.kind == "int":
                    params.append(IntParam(p.name, new[0], new[1], p.log, 1, p.domain))
                else:
                    params.append(Param(p.name, new[0], new[1], p.log, p.domain))
            else:
                params.append(parse_declaration(p.name, new))
        return SearchSpace(params + extra)


def _scale(name: str, scale: Any) -> bool:
    if isinstance(scale, bool):  # the record's form: [low, high, log]
        return scale
    if scale in ("log", "linear"):
        return scale == "log"
    raise MetaPB2Error(
        f"hyperparameter {name!r}: the scale must be 'log' or 'linear', got {scale!r}"
        + (
            "; for a list of values write ('choice', [...])"
            if isinstance(scale, int | float) and not isinstance(scale, bool)
            else ""
        )
    )


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_declaration(name: str, d: Any) -> AnyParam:
    """One parameter from a declaration (see ``SearchSpace.from_dict``), or one line naming it."""
    if isinstance(d, Param | IntParam | ChoiceParam):
        if d.name != name:
            raise MetaPB2Error(f"hyperparameter {name!r} is declared by a parameter named {d.name!r}")
        return d
    if isinstance(d, dict):
        kind = d.get("type", "float")
        known = {"float": {"type", "low", "high", "log"}, "int": {"type", "low", "high", "log", "step"},
                 "choice": {"type", "choices"}}  # fmt: skip
        if kind not in known:
            raise MetaPB2Error(f"hyperparameter {name!r}: type must be float, int or choice, got {kind!r}")
        extra = sorted(set(d) - known[kind])
        if extra:
            raise MetaPB2Error(f"hyperparameter {name!r}: a {kind} declaration takes no {extra}")
        if kind == "choice":
            if "choices" not in d:
                raise MetaPB2Error(f"hyperparameter {name!r}: a choice declaration needs 'choices'")
            return ChoiceParam(name, d["choices"])
        if "low" not in d or "high" not in d:
            raise MetaPB2Error(f"hyperparameter {name!r}: a {kind} declaration needs 'low' and 'high'")
        log = _scale(name, d.get("log", False))
        if kind == "int":
            return IntParam(name, d["low"], d["high"], log, d.get("step", 1))
        return Param(name, d["low"], d["high"], log)
    if type(d).__module__.startswith("ray.tune"):
        raise MetaPB2Error(
            f"hyperparameter {name!r}: a Ray Tune domain; MethodScheduler takes those, elsewhere convert "
            "the space with metapb2_core.tune_space.space_from_spec"
        )
    if not isinstance(d, tuple | list) or not d:
        raise MetaPB2Error(
            f"hyperparameter {name!r}: expected (low, high), (low, high, 'log'), ('int', low, high) or "
            f"('choice', [values]), got {d!r}"
        )
    head, rest = d[0], list(d[1:])
    if head == "choice":
        if len(rest) != 1:
            raise MetaPB2Error(f"hyperparameter {name!r}: expected ('choice', [values]), got {d!r}")
        return ChoiceParam(name, rest[0])
    if head == "int":
        if len(rest) not in (2, 3):
            raise MetaPB2Error(
                f"hyperparameter {name!r}: expected ('int', low, high[, 'log' or step]), got {d!r}"
            )
        if len(rest) == 3 and rest[2] in ("log", "linear"):
            return IntParam(name, rest[0], rest[1], log=rest[2] == "log")
        return IntParam(name, rest[0], rest[1], step=rest[2] if len(rest) == 3 else 1)
    if isinstance(head, str) and len(d) in (2, 3) and _looks_numeric(head):
        raise MetaPB2Error(f"hyperparameter {name!r}: bounds must be numbers, got {d!r} (strings)")
    if isinstance(head, str):
        raise MetaPB2Error(
            f"hyperparameter {name!r}: unknown declaration {head!r}; expected 'int', 'choice' or numbers"
        )
    if len(d) not in (2, 3):
        raise MetaPB2Error(
            f"hyperparameter {name!r}: expected (low, high) or (low, high, 'log'), got {d!r}"
            + ("; for a list of values write ('choice', [...])" if len(d) > 3 else "")
        )
    return Param(name, d[0], d[1], log=len(d) == 3 and _scale(name, d[2]))


# protocol.md §2.3. Key order is the order of the columns everywhere.
SEARCH_SPACE = SearchSpace(
    [
        Param("lr", 1e-5, 1e-3, log=True),
        Param("lambda", 0.9, 0.99),
        Param("clip_param", 0.1, 0.5),
    ]
)


def _cli_value(text: str) -> Any:
    """A choice on the command line: true/false, a number, else the text itself."""
    low = text.strip()
    if low.lower() in ("true", "false"):
        return low.lower() == "true"
    for cast in (int, float):
        try:
            return cast(low)
        except ValueError:
            pass
    return low


def _cli_number(spec: str, text: str, kind: type) -> float | int:
    try:
        return kind(text.strip())
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise MetaPB2Error(f"bad bounds {spec!r}: LOW and HIGH must be {what}") from None


def parse_bounds(specs: list[str]) -> dict[str, Any]:
    """Parse ``--bounds`` flags: ``NAME=LOW:HIGH`` (a float's or an integer's new bounds),
    ``NAME=int:LOW:HIGH[:log]`` (an integer), ``NAME=choice:A,B,C`` (a categorical one). Specs
    of several flags merge; a name given twice is refused (which one should win is not obvious)."""
    out: dict[str, Any] = {}
    for spec in specs:
        name, sep, rng = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise MetaPB2Error(f"bad bounds {spec!r}: expected NAME=LOW:HIGH, e.g. lr=1e-5:1e-3")
        if name in out:
            raise MetaPB2Error(f"bounds of {name!r} given twice ({spec!r}); give each name once")
        kind, _, body = rng.strip().partition(":")
        if kind == "choice":
            values = [_cli_value(v) for v in body.split(",") if v.strip()]
            out[name] = ("choice", values)
        elif kind == "int":
            parts = body.split(":")
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
                raise MetaPB2Error(
                    f"bad bounds {spec!r}: expected NAME=int:LOW:HIGH or NAME=int:LOW:HIGH:log"
                )
            lo, hi = (_cli_number(spec, v, int) for v in parts[:2])
            out[name] = ("int", lo, hi, "log") if len(parts) == 3 else ("int", lo, hi)
        else:
            lo, sep2, hi = rng.partition(":")
            if not sep2:
                raise MetaPB2Error(f"bad bounds {spec!r}: expected NAME=LOW:HIGH, e.g. lr=1e-5:1e-3")
            out[name] = (_cli_number(spec, lo, float), _cli_number(spec, hi, float))
    return out
