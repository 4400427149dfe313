"""A declared study: the tasks, seeds, budget, quirk mode and methods of one comparison, written once
(``study.yaml`` in the study root) and read by everything that partitions, plans, runs or ranks it,
so that "done" means done relative to what was planned."""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

from metapb2_core.ask_tell import SEED_LIMIT
from metapb2_core.budgets import get_budget
from metapb2_core.envs import ENV_FAMILIES, TASKS, get_task
from metapb2_core.errors import MetaPB2Error
from metapb2_core.methods import METHODS, get_method
from metapb2_core.portfolio import CANDIDATE_CONFIGS

STUDY_FILE = "study.yaml"
OPEN_SEEDS = tuple(range(10))  # an undeclared study root offers every task of a family × these seeds


class StudySpecError(MetaPB2Error):
    pass


@dataclass(frozen=True)
class StudySpec:
    name: str
    family: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    budget: str
    faithful: bool = False
    methods: tuple[str, ...] = tuple(sorted(METHODS))
    candidate_configs: int = CANDIDATE_CONFIGS  # random configurations drawn per task and seed
    candidate_best: int = 3  # of which the best are kept as portfolio candidates
    declared: bool = field(default=True, compare=False)  # False: the open layout of an undeclared root

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        object.__setattr__(self, "methods", tuple(self.methods))
        where = f"study {self.name!r}"
        _check_types(self, where)
        if not isinstance(self.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", self.name):
            raise StudySpecError(f"study name {self.name!r}: letters, digits, '_', '-', '.' (at most 63)")
        if self.family not in ENV_FAMILIES:
            raise StudySpecError(f"{where}: unknown family {self.family!r}; known: {', '.join(ENV_FAMILIES)}")
        if not self.tasks:
            raise StudySpecError(f"{where}: no tasks")
        for t in self.tasks:
            if t not in TASKS:
                get_task(t)  # the registry's error, with the names it knows
            if get_task(t).family != self.family:
                raise StudySpecError(f"{where}: task {t!r} is not of the {self.family!r} family")
        if not self.seeds:
            raise StudySpecError(f"{where}: no seeds")
        for s in self.seeds:
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < SEED_LIMIT:
                raise StudySpecError(f"{where}: seed {s!r} is not an integer in [0, 2^32)")
        for what, values in (("task", self.tasks), ("seed", self.seeds), ("method", self.methods)):
            if len(set(values)) != len(values):
                raise StudySpecError(f"{where}: a {what} is listed twice: {list(values)}")
        get_budget(self.budget, self.family)
        if not self.methods:
            raise StudySpecError(f"{where}: no methods")
        for m in self.methods:
            get_method(m)
        if self.needs_portfolio and len({get_task(t).env_name for t in self.tasks}) < 2:
            raise StudySpecError(
                f"{where}: a portfolio (pb2_star_warm) needs tasks of at least two environments "
                "(leave-one-environment-out)"
            )
        if not 1 <= self.candidate_best <= self.candidate_configs:
            raise StudySpecError(
                f"{where}: candidate_best must be in [1, candidate_configs = {self.candidate_configs}], "
                f"got {self.candidate_best}"
            )

    @property
    def needs_meta(self) -> bool:
        return any("meta_tables" in get_method(m).requires for m in self.methods)

    @property
    def needs_portfolio(self) -> bool:
        return any("portfolio" in get_method(m).requires for m in self.methods)

    @property
    def cells(self) -> int:
        """Planned (task, seed) partitions."""
        return len(self.tasks) * len(self.seeds)

    def describe(self) -> str:
        mode = "faithful" if self.faithful else "fixed"
        return (
            f"study {self.name!r}: {self.family}, {len(self.tasks)} tasks × {len(self.seeds)} "
            f"seed{'s' * (len(self.seeds) != 1)} × "
            f"{len(self.methods)} methods, budget {self.budget}, {mode}"
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["declared"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: object, source: str = "study") -> StudySpec:
        if not isinstance(data, dict):
            raise StudySpecError(f"{source}: expected a mapping of study settings, got {type(data).__name__}")
        known = {f.name for f in fields(cls)} - {"declared"}
        unknown = sorted(set(data) - known)
        if unknown:
            near = {u: difflib.get_close_matches(str(u), known, 1) for u in unknown}
            hints = "".join(f" ({u!r}: did you mean {m[0]!r}?)" for u, m in near.items() if m)
            raise StudySpecError(f"{source}: unknown setting(s) {unknown}{hints}; known: {sorted(known)}")
        missing = sorted({"name", "family", "tasks", "seeds", "budget"} - set(data))
        if missing:
            raise StudySpecError(f"{source}: missing setting(s) {missing}")
        for key in ("tasks", "seeds", "methods"):
            if key in data and not isinstance(data[key], list | tuple):
                raise StudySpecError(f"{source}: {key} must be a list, got {data[key]!r}")
        try:
            return cls(**data)
        except MetaPB2Error as e:  # the registries' errors too (an unknown task, method, budget)
            raise StudySpecError(f"{source}: {e}") from None

    @classmethod
    def open_layout(cls, family: str) -> StudySpec:
        """What an undeclared study root offers: every task of the family × ``OPEN_SEEDS``."""
        tasks = [k for k, t in TASKS.items() if t.family == family]
        return cls(family, family, tasks, OPEN_SEEDS, "smoke", declared=False)

    def with_changes(self, **changes) -> StudySpec:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_TYPES = {"name": str, "family": str, "budget": str, "faithful": bool, "candidate_configs": int,
          "candidate_best": int}  # fmt: skip
_ITEM_TYPES = {"tasks": str, "methods": str}  # seeds: checked with their range below


def _check_types(spec: StudySpec, where: str) -> None:
    """One line per wrong type, naming the field: YAML reads 'false' in quotes as a string, 2.5 as
    a float, [[a]] as a list in a list."""
    for name, kind in _TYPES.items():
        value = getattr(spec, name)
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise StudySpecError(f"{where}: {name} must be {_WORDS[kind]}, got {value!r}")
    for name, kind in _ITEM_TYPES.items():
        for value in getattr(spec, name):
            if isinstance(value, bool) or not isinstance(value, kind):
                raise StudySpecError(f"{where}: each of {name} must be {_WORDS[kind]}, got {value!r}")


_WORDS = {str: "a string", bool: "true or false (unquoted)", int: "an integer"}


DEMO = StudySpec("demo", "classic", ("cart_pole-earth", "acrobot-earth", "pendulum-earth"), (0,), "demo")


def study_file(root: Path | str) -> Path:
    return Path(root) / STUDY_FILE


def load_study(path: Path | str) -> StudySpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise StudySpecError(f"{path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise StudySpecError(f"{path}: not valid YAML{at}: {what}") from None
    return StudySpec.from_dict(data, str(path))


def declared_study(root: Path | str) -> StudySpec | None:
    """The study declared in ``root``, or None when there is no ``study.yaml``."""
    path = study_file(root)
    return load_study(path) if path.exists() else None


def write_study(spec: StudySpec, path: Path | str) -> Path:
    """Write ``spec`` as YAML, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# the study of this root: partitions, completeness and ranks are relative to it\n"
    text += yaml.safe_dump(spec.to_dict(), sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".study-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
