"""Task registry: family × environment × context, keyed like ``cart_pole-earth``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from metapb2_core.envs.acrobot import Acrobot
from metapb2_core.envs.base import EnvParams, EnvSpec, JaxEnv, Transition, step_autoreset
from metapb2_core.envs.brax_envs import BRAX_ENVS
from metapb2_core.envs.cart_pole import CartPole
from metapb2_core.envs.contexts import PLANET_GRAVITY, g_factor
from metapb2_core.envs.mountain_car import MountainCar
from metapb2_core.envs.pendulum import Pendulum
from metapb2_core.errors import UnknownNameError
from metapb2_core.quirks import Quirks

# Family -> environment name -> constructor. Order matters (protocol.md §1.1: run ids).
ENV_FAMILIES: dict[str, dict[str, Callable[[], JaxEnv]]] = {
    "classic": {
        "mountain_car": MountainCar,
        "cart_pole": CartPole,
        "pendulum": Pendulum,
        "acrobot": Acrobot,
    },
    "brax": BRAX_ENVS,
}


@dataclass(frozen=True)
class Task:
    family: str
    env_name: str
    context: str

    @property
    def key(self) -> str:
        return f"{self.env_name}-{self.context}"

    def make_env(self) -> JaxEnv:
        return ENV_FAMILIES[self.family][self.env_name]()

    def env_params(self, quirks: Quirks = Quirks()) -> EnvParams:
        return self.make_env().params(g_factor(self.context), quirks)


TASKS: dict[str, Task] = {
    t.key: t
    for family, envs in ENV_FAMILIES.items()
    for env_name in envs
    for t in (Task(family, env_name, ctx) for ctx in PLANET_GRAVITY)
}


def make_env(env_name: str) -> JaxEnv:
    for envs in ENV_FAMILIES.values():
        if env_name in envs:
            return envs[env_name]()
    raise UnknownNameError("environment", env_name, [e for envs in ENV_FAMILIES.values() for e in envs])


def get_task(key: str) -> Task:
    try:
        return TASKS[key]
    except KeyError:
        raise UnknownNameError("task", key, list(TASKS)) from None


__all__ = [
    "ENV_FAMILIES",
    "TASKS",
    "EnvParams",
    "EnvSpec",
    "JaxEnv",
    "Task",
    "Transition",
    "get_task",
    "make_env",
    "step_autoreset",
]
