"""The nine Brax environments of the study behind the ``JaxEnv`` interface (protocol.md §1.2–1.3).

Gravity is the only context: it is a traced parameter (``BraxParams.gravity``) written into the
system inside the traced step, so every context shares one compiled program. Episodes last at
most 1000 steps and the limit is reported as a termination, as the original's CARL wrapper did
(no bootstrap at the time limit). The physics backend is ``spring`` as in the original;
``METAPB2_BRAX_BACKEND`` (generalized, positional, spring, mjx) selects another one.
"""

from __future__ import annotations

import copy
import functools
import os
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metapb2_core.envs.base import EnvSpec
from metapb2_core.envs.contexts import EARTH_GRAVITY
from metapb2_core.errors import MetaPB2Error
from metapb2_core.quirks import Quirks

EPISODE_STEPS = 1000
DEFAULT_BACKEND = "spring"
BACKENDS = ("spring", "generalized", "positional", "mjx")

# Our name -> Brax registry id, in the study's order (protocol.md §1.1: run ids).
BRAX_IDS: dict[str, str] = {
    "humanoid": "humanoid",
    "halfcheetah": "halfcheetah",
    "hopper": "hopper",
    "humanoid_standup": "humanoidstandup",
    "inverted_double_pendulum": "inverted_double_pendulum",
    "inverted_pendulum": "inverted_pendulum",
    "pusher": "pusher",
    "reacher": "reacher",
    "walker2d": "walker2d",
}


class BraxParams(NamedTuple):
    gravity: jax.Array  # (3,) float32, m/s²: (0, 0, -g)


class BraxState(NamedTuple):
    inner: Any  # brax.envs.State
    t: jax.Array


def selected_backend() -> str:
    backend = os.environ.get("METAPB2_BRAX_BACKEND", DEFAULT_BACKEND)
    if backend not in BACKENDS:
        raise MetaPB2Error(f"METAPB2_BRAX_BACKEND={backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend


@functools.cache
def _load(brax_id: str, backend: str):
    # Parsing the MJCF takes a while; the loaded environment is immutable and shared.
    from brax import envs

    with warnings.catch_warnings():
        # Brax warns on every load that it is no longer actively maintained.
        warnings.filterwarnings("ignore", "Brax System", UserWarning)
        return envs.get_environment(brax_id, backend=backend)


@functools.cache
def _obs_dim(brax_id: str, backend: str) -> int:
    return jax.eval_shape(_load(brax_id, backend).reset, jax.random.key(0)).obs.shape[-1]


class BraxEnv:
    """A Brax ``PipelineEnv`` whose gravity comes from the parameters at every call."""

    def __init__(self, name: str, backend: str | None = None):
        self.backend = backend or selected_backend()
        self._env = _load(BRAX_IDS[name], self.backend)
        obs_dim = _obs_dim(BRAX_IDS[name], self.backend)
        self.spec = EnvSpec(name, obs_dim, False, self._env.action_size, -1.0, 1.0, EPISODE_STEPS)

    def params(self, g_factor: float, quirks: Quirks = Quirks()) -> BraxParams:
        # The contexts are absolute gravities (protocol.md §1.1); the factor is relative to earth.
        return BraxParams(gravity=jnp.array([0.0, 0.0, -g_factor * EARTH_GRAVITY], jnp.float32))

    def with_gravity(self, params: BraxParams):
        """The Brax environment with ``params.gravity`` in its system (traced, no recompilation).

        ``gravity`` is read by the generalized, positional and spring pipelines, ``opt.gravity`` by
        mjx; both are set so that every backend sees the context."""
        env = copy.copy(self._env)
        g = jnp.asarray(params.gravity, jnp.float32)
        env.sys = env.sys.tree_replace({"gravity": g, "opt.gravity": g})
        return env

    def reset(self, key: jax.Array, params: BraxParams) -> BraxState:
        return BraxState(_float32(self.with_gravity(params).reset(key)), jnp.int32(0))

    def observe(self, state: BraxState, params: BraxParams) -> jax.Array:
        return state.inner.obs.astype(jnp.float32)

    def step(
        self, key: jax.Array, state: BraxState, action: jax.Array, params: BraxParams
    ) -> tuple[BraxState, jax.Array, jax.Array]:
        nxt = _float32(self.with_gravity(params).step(state.inner, action))
        t = state.t + 1
        terminated = jnp.logical_or(nxt.done > 0, t >= EPISODE_STEPS)
        return BraxState(nxt, t), nxt.reward, terminated


def _float32(tree: Any) -> Any:
    # Some environments return Python floats (inverted_pendulum's reward, constant done flags):
    # one dtype for every leaf keeps the state's type the same before and after a step.
    def cast(x):
        x = jnp.asarray(x)
        return x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree_util.tree_map(cast, tree)


def brax_env(name: str) -> BraxEnv:
    return BraxEnv(name)


BRAX_ENVS = {name: functools.partial(brax_env, name) for name in BRAX_IDS}
