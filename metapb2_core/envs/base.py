"""The functional JAX environment interface shared by all task families.

An environment is a set of pure functions over an explicit state and a parameter pytree. The
context (gravity) lives in the parameters, which are traced arrays: changing the task's context
never recompiles. Auto-reset and episode limits are applied by ``step_autoreset`` so every
environment only implements its dynamics.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from metapb2_core.quirks import Quirks

EnvParams = Any  # a pytree of float32 arrays (a NamedTuple per environment)
EnvState = Any  # a pytree of arrays; every state has an int32 field ``t`` (steps taken)


class EnvSpec(NamedTuple):
    name: str
    obs_dim: int
    discrete: bool
    num_actions: int  # discrete: number of actions; continuous: action dimension
    action_low: float  # continuous only: the policy's [-1, 1] is mapped linearly onto [low, high]
    action_high: float
    max_steps: int  # episode limit (truncation)


class JaxEnv(Protocol):
    spec: EnvSpec

    def params(self, g_factor: float, quirks: Quirks = Quirks()) -> EnvParams:
        """Parameters for a context given as a gravity factor relative to earth."""

    def reset(self, key: jax.Array, params: EnvParams) -> EnvState: ...

    def observe(self, state: EnvState, params: EnvParams) -> jax.Array: ...

    def step(
        self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[EnvState, jax.Array, jax.Array]:
        """One transition: (next state with t+1, reward float32, terminated bool)."""


class Transition(NamedTuple):
    next_state: EnvState  # after auto-reset where the episode ended
    final_obs: jax.Array  # observation reached by this step, before any reset (for bootstrapping)
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array


def step_autoreset(
    env: JaxEnv, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams
) -> Transition:
    """Step, apply the episode limit as truncation, and reset ended episodes."""
    step_key, reset_key = jax.random.split(key)
    nxt, reward, terminated = env.step(step_key, state, action, params)
    truncated = jnp.logical_and(nxt.t >= env.spec.max_steps, jnp.logical_not(terminated))
    final_obs = env.observe(nxt, params)
    done = jnp.logical_or(terminated, truncated)
    fresh = env.reset(reset_key, params)
    nxt = jax.tree_util.tree_map(lambda a, b: jnp.where(done, a, b), fresh, nxt)
    return Transition(nxt, final_obs, reward.astype(jnp.float32), terminated, truncated)
