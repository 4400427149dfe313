"""The ask/tell population: a method's side of a synchronous population, without any trainer.

It hands out the members' configurations (``ask``), takes their rewards at each perturbation point
(``tell``), and at a perturbation point (``perturb``) says, for each exploiting member, the member
whose weights it clones and its new configuration, with the diagnostics our runs record. Training,
evaluation and copying weights stay with the caller: our PPO loop (``metapb2_core.population``), a
Ray Tune scheduler (``metapb2_core.tune_scheduler``) or a user's own loop. Its whole state is plain
data (``state_dict`` / ``load_state_dict``, ``save`` / ``load``), so a loop can resume::

    pop = AskTellPopulation.create("pb2_star", {"lr": (1e-5, 1e-2, "log")}, size=4, seed=0)
    for interval in range(1, 11):
        for member, config in enumerate(pop.ask()):
            reward = train_and_evaluate(member, config)      # the user's own code
            pop.tell(member, interval * steps, reward)
        if interval < 10:
            for p in pop.perturb():
                copy_weights(src=p.cloned_from, dst=p.member)  # p.new_config is in pop.ask() now
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metapb2_core.budgets import Budget
from metapb2_core.checks import run_checks, verdict
from metapb2_core.errors import MetaPB2Error
from metapb2_core.manifest import build_record
from metapb2_core.method_inputs import method_inputs
from metapb2_core.methods import Method, get_method
from metapb2_core.provenance import run_code_digest
from metapb2_core.quirks import Quirks
from metapb2_core.rounds import Perturbation, perturbation_round
from metapb2_core.run_ids import run_id as make_run_id
from metapb2_core.space import Config, SearchSpace
from metapb2_core.state_file import read_state, write_state
from metapb2_core.store import RunRecord

SEED_LIMIT = 2**32  # numpy's and JAX's seeds are 32-bit
STATE_FORMAT = "metapb2-ask-tell-state"
STATE_VERSION = 1


def check_seed(seed: int) -> None:
    if not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise MetaPB2Error(f"seed must be an integer in [0, 2^32), got {seed!r}")


def build_method(
    name: str, space: SearchSpace, seed: int, quirks: Quirks, inputs: dict[str, Any], **options: Any
) -> Method:
    """The registered method ``name`` on its own random stream of ``seed``: `metapb2 run`, the
    ask/tell population and the Tune schedulers draw the same configurations from the same seed."""
    return get_method(name)(space, np.random.default_rng([seed, 2]), quirks, **inputs, **options)


class AskTellPopulation:
    @classmethod
    def create(
        cls,
        method: str,
        space: SearchSpace | dict,
        size: int,
        seed: int,
        *,
        task: str = "task",
        meta: str | Path | None = None,
        portfolio: str | Path | list[Config] | None = None,
        faithful: bool = False,
        **options: Any,
    ) -> AskTellPopulation:
        """A population of ``size`` members tuned by the registered ``method`` over ``space`` (a
        ``SearchSpace`` or ``{name: (low, high[, "log"])}``). Meta methods read ``meta`` (a
        directory from ``metapb2 meta`` or a catalog query), leaving out ``task``'s own data; the
        warm start reads ``portfolio`` (a directory, a JSON file or a list of configurations)."""
        space = space if isinstance(space, SearchSpace) else SearchSpace.from_dict(space)
        check_seed(seed)
        quirks = Quirks.from_flag(faithful)
        inputs = method_inputs(method, task, space, meta, portfolio, quirks)
        built = build_method(method, space, seed, quirks, inputs, **options)
        return cls(built, size, seed)

    def __init__(self, method: Method, size: int, seed: int):
        if size < 1:
            raise MetaPB2Error(f"population size must be positive, got {size}")
        self.method, self.size, self.space = method, size, method.space
        self.clone_rng = np.random.default_rng([seed, 1])
        self.configs: list[Config] = [self.space.validate(c) for c in method.initial_configs(size)]
        self.rows: list[dict] = []  # the method's record rows: member, time, hyperparameters, reward
        self.perturbations: list[Perturbation] = []
        self.rounds = 0  # perturbation rounds done
        self._reported: dict[int, tuple[int, float]] = {}  # member → (time, reward) since the last round
        self.started_from: dict[int, list[str]] = {}  # member → parameters the caller set (start_from)
        self._last_time: dict[int, int] = {}  # member → its time at the last round it was told in

    def start_from(self, member: int, values: dict) -> Config:
        """Member ``member`` starts from ``values`` (some or all of its parameters; the rest keep the
        method's draw) instead of the method's initial configuration: what a user put in a Tune
        ``param_space``. Only before anything was told, only for methods that start from prior
        draws; values are checked against the space. Returns the member's configuration."""
        if not 0 <= member < self.size:
            raise MetaPB2Error(f"member {member} is not in a population of {self.size}")
        if self.rows or self.rounds:
            raise MetaPB2Error("initial configurations can only be set before the first tell")
        if not self.method.initial_from_prior:
            raise MetaPB2Error(
                f"{self.method.name} starts from its own configurations ({self.method.initial_source}); "
                f"remove {sorted(values)} from the param_space or use another method"
            )
        unknown = sorted(set(values) - set(self.space.names))
        if unknown:
            has = ", ".join(self.space.names)
            raise MetaPB2Error(f"unknown hyperparameter(s) {unknown}; the space has {has}")
        self.configs[member] = self.space.validate({**self.configs[member], **values})
        self.started_from[member] = sorted(values)
        return dict(self.configs[member])

    def ask(self) -> list[Config]:
        """Every member's current configuration, in member order."""
        return [dict(c) for c in self.configs]

    def tell(self, member: int, time: int, reward: float) -> None:
        """Member ``member``'s reward after ``time`` env steps, at a perturbation point."""
        if not 0 <= member < self.size:
            raise MetaPB2Error(f"member {member} is not in a population of {self.size}")
        time, reward = int(time), float(reward)
        if member in self._reported:
            t0, r0 = self._reported[member]
            raise MetaPB2Error(
                f"member {member} was already told time {t0} (reward {r0}) this round; a second tell "
                f"(time {time}, reward {reward}) before perturb() is refused"
            )
        previous = self._last_time.get(member)
        if previous is not None and time <= previous:
            raise MetaPB2Error(
                f"member {member} told time {time}, but its previous round was at time {previous}: "
                "times must increase from round to round"
            )
        self._reported[member] = (time, reward)
        self.rows.append(
            {"member": member, "time": int(time), **self.configs[member], "reward": float(reward)}
        )

    def tell_all(self, time: int, rewards: np.ndarray) -> None:
        for m, r in enumerate(np.asarray(rewards, dtype=np.float64)):
            self.tell(m, time, float(r))

    def perturb(self) -> list[Perturbation]:
        """One perturbation round over the rewards told since the last one (every member, one time).
        Each returned perturbation is applied here already (``ask`` gives the new configurations);
        the caller copies the weights of ``p.cloned_from`` into ``p.member``."""
        missing = [m for m in range(self.size) if m not in self._reported]
        if missing:
            raise MetaPB2Error(f"perturbation round before members {missing} reported a reward")
        times = {t for t, _ in self._reported.values()}
        if len(times) != 1:
            raise MetaPB2Error(
                f"a synchronous round needs every member at one time, got times {sorted(times)}"
            )
        self.rounds += 1
        scores = np.array([self._reported[m][1] for m in range(self.size)])
        self._last_time.update({m: t for m, (t, _) in self._reported.items()})
        self._reported.clear()
        if not self.method.perturbs:
            return []
        done = perturbation_round(
            self.method,
            self.space,
            scores,
            self.configs,
            self.rounds,
            times.pop(),
            pd.DataFrame(self.rows),
            self.clone_rng,
        )
        for p in done:
            self.configs[p.member] = dict(p.new_config)
        self.perturbations += done
        return done

    def state_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "configs": copy.deepcopy(self.configs),
            "rows": copy.deepcopy(self.rows),
            "perturbations": [asdict(p) for p in self.perturbations],
            "rounds": self.rounds,
            "reported": dict(self._reported),
            "clone_rng": self.clone_rng.bit_generator.state,
            "method": self.method.state_dict(),
            "started_from": {str(m): v for m, v in self.started_from.items()},
        }

    def to_record(
        self,
        task: str,
        seed: int,
        *,
        budget: str = "ask_tell",
        points: pd.DataFrame | None = None,
        extra: dict | None = None,
    ) -> RunRecord:
        """The run so far as one of our run records (checked), so ``metapb2 report`` ranks it and
        ``metapb2 meta`` makes meta-data of it. ``points``: one row per member and report (member,
        training_iteration, timesteps, the hyperparameters, eval_return, eval_is_fresh); by default
        the rewards told, one row each."""
        if points is None:
            points = pd.DataFrame(self.rows).rename(columns={"time": "timesteps", "reward": "eval_return"})
            if points.empty:
                raise MetaPB2Error("nothing was told yet: a record needs rewards")
            points["training_iteration"] = points["timesteps"].rank(method="dense").astype(int)
            points["eval_is_fresh"] = True
            points["wall_seconds"] = np.nan
        name = self.method.name
        run_id = make_run_id(name, task, budget, seed)
        ident = {"run_id": run_id, "task": task, "env": task, "context": "", "method": name, "seed": seed,
                 "budget": budget}  # fmt: skip
        times = sorted(points.loc[points["eval_is_fresh"].astype(bool), "timesteps"].unique())
        interval = int(times[0]) if times else 1
        record = build_record(
            ident,
            points,
            self.perturbations,
            self.space,
            faithful=any(vars(self.method.quirks).values()),
            tag="",
            budget_sizes={
                "population_size": self.size,
                "interval": interval,
                "total_steps": int(max(times or [0])),
            },
            final_configs=self.ask(),
            meta_tasks={t.name: t.run_ids for t in getattr(self.method, "meta_tasks", [])},
            portfolio=getattr(self.method, "entries", None),
            code_version=run_code_digest(type(self.method).__module__),
            role="evaluation",
            **({"started_from": {str(m): v for m, v in sorted(self.started_from.items())}}
               if self.started_from else {}),
            **(extra or {}),
        )  # fmt: skip
        sizes = Budget(budget, self.size, 1, 1, 1, 1, interval, interval * (self.rounds + 1), 1)
        checked = run_checks(record.points, record.perturbations, record.meta, sizes, self.space)
        record.meta.update(verdict(checked))
        return record

    def save(self, path: str | Path) -> None:
        """Write the whole state to ``path`` as JSON (atomically; ``metapb2_core.state_file`` says
        how NaN, arrays and RNG states are written), to ``load`` it into a population built the same
        way: the method, the size and the space are saved with it and checked on loading."""
        write_state(
            path,
            {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "method": self.method.name,
                "size": self.size,
                "space": self.space.declaration(),
                "ask_tell": self.state_dict(),
            },
        )

    def load(self, path: str | Path) -> None:
        """Continue from the state ``save`` wrote to ``path``; a state of another method, size or
        space is refused, naming what differs."""
        document = read_state(path, "ask/tell population")
        if document is None or document.get("format") != STATE_FORMAT or "ask_tell" not in document:
            raise MetaPB2Error(f"{path} holds no saved ask/tell population")
        if document.get("version") != STATE_VERSION:
            raise MetaPB2Error(
                f"{path} is an ask/tell state of version {document.get('version')!r}; "
                f"this code reads version {STATE_VERSION}"
            )
        differences = self._differences(document)
        if differences:
            raise MetaPB2Error(f"{path} was saved by another population: {'; '.join(differences)}")
        self.load_state_dict(document["ask_tell"])

    def _differences(self, document: dict[str, Any]) -> list[str]:
        """What a saved population was built with that this one is not: method, size, space."""
        out = []
        if document["method"] != self.method.name:
            out.append(f"method {document['method']!r} there, {self.method.name!r} here")
        if document["size"] != self.size:
            out.append(f"{document['size']} members there, {self.size} here")
        saved, here = document["space"], self.space.declaration()
        if list(saved) != list(here):
            out.append(f"parameters {list(saved)} there, {list(here)} here")
        else:
            out += [
                f"{n!r} bounds {_bounds(saved[n])} there, {_bounds(here[n])} here"
                for n in here
                if saved[n] != here[n]
            ]
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()`` of a population built with the same method and inputs."""
        if state["size"] != self.size:
            raise MetaPB2Error(f"saved population has {state['size']} members, this one {self.size}")
        self.configs = copy.deepcopy(state["configs"])
        self.rows = copy.deepcopy(state["rows"])
        self.perturbations = [Perturbation(**p) for p in state["perturbations"]]
        self.rounds = int(state["rounds"])
        self._reported = {int(m): tuple(v) for m, v in state["reported"].items()}
        self._last_time = _last_round_times(self.rows, self._reported)
        self.clone_rng.bit_generator.state = state["clone_rng"]
        self.method.load_state_dict(state["method"])
        self.started_from = {int(m): list(v) for m, v in state.get("started_from", {}).items()}


def _bounds(declared: list | dict) -> str:
    """A parameter's declaration as a person reads it: ``[low, high] log`` for a float."""
    if isinstance(declared, list):
        low, high, log = declared
        return f"[{low!r}, {high!r}]" + (" log" if log else "")
    return ", ".join(f"{k} {v!r}" for k, v in declared.items())


def _last_round_times(rows: list[dict], reported: dict[int, tuple[int, float]]) -> dict[int, int]:
    """Each member's time at the last round it was told in before the current one (the rows hold
    every tell in order; a member told this round has its newest row in the current round)."""
    times: dict[int, list[int]] = {}
    for row in rows:
        times.setdefault(int(row["member"]), []).append(int(row["time"]))
    return {m: t[-2] if m in reported else t[-1] for m, t in times.items() if len(t) > (m in reported)}
