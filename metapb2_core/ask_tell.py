"""The ask/tell population: a method's side of a synchronous population, without any trainer.

It hands out the members' configurations (``ask``), takes their rewards at each perturbation point
(``tell``), and at a perturbation point (``perturb``) says, for each exploiting member, the member
whose weights it clones and its new configuration. Training, evaluation and copying weights stay
with the caller: our PPO loop (``metapb2_core.population``), a Ray Tune scheduler or a user's own
loop. Its whole state is plain data (``state_dict`` / ``load_state_dict``), so a loop can resume.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from metapb2_core.errors import MetaPB2Error
from metapb2_core.methods import Method
from metapb2_core.rounds import Perturbation, perturbation_round
from metapb2_core.space import Config


class AskTellPopulation:
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

    def ask(self) -> list[Config]:
        """Every member's current configuration, in member order."""
        return [dict(c) for c in self.configs]

    def tell(self, member: int, time: int, reward: float) -> None:
        """Member ``member``'s reward after ``time`` env steps, at a perturbation point."""
        if not 0 <= member < self.size:
            raise MetaPB2Error(f"member {member} is not in a population of {self.size}")
        self._reported[member] = (int(time), float(reward))
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
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()`` of a population built with the same method and inputs."""
        if state["size"] != self.size:
            raise MetaPB2Error(f"saved population has {state['size']} members, this one {self.size}")
        self.configs = copy.deepcopy(state["configs"])
        self.rows = copy.deepcopy(state["rows"])
        self.perturbations = [Perturbation(**p) for p in state["perturbations"]]
        self.rounds = int(state["rounds"])
        self._reported = {int(m): tuple(v) for m, v in state["reported"].items()}
        self.clone_rng.bit_generator.state = state["clone_rng"]
        self.method.load_state_dict(state["method"])
