"""MountainCar-v0 (gymnasium, discrete) in JAX, with gravity as the context."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metapb2_core.envs.base import EnvSpec
from metapb2_core.quirks import Quirks

MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07
GOAL_POSITION = 0.5
GOAL_VELOCITY = 0.0
FORCE = 0.001


class MountainCarParams(NamedTuple):
    gravity: jax.Array


class MountainCarState(NamedTuple):
    position: jax.Array
    velocity: jax.Array
    t: jax.Array


class MountainCar:
    spec = EnvSpec("mountain_car", 2, True, 3, 0.0, 0.0, 200)

    def params(self, g_factor: float, quirks: Quirks = Quirks()) -> MountainCarParams:
        return MountainCarParams(gravity=jnp.float32(0.0025 * g_factor))

    def reset(self, key: jax.Array, params: MountainCarParams) -> MountainCarState:
        position = jax.random.uniform(key, (), jnp.float32, -0.6, -0.4)
        return MountainCarState(position, jnp.float32(0.0), jnp.int32(0))

    def observe(self, state: MountainCarState, params: MountainCarParams) -> jax.Array:
        return jnp.stack([state.position, state.velocity]).astype(jnp.float32)

    def step(
        self, key: jax.Array, state: MountainCarState, action: jax.Array, params: MountainCarParams
    ) -> tuple[MountainCarState, jax.Array, jax.Array]:
        velocity = state.velocity + (action - 1) * FORCE + jnp.cos(3 * state.position) * (-params.gravity)
        velocity = jnp.clip(velocity, -MAX_SPEED, MAX_SPEED)
        position = jnp.clip(state.position + velocity, MIN_POSITION, MAX_POSITION)
        # Inelastic left wall.
        velocity = jnp.where((position == jnp.float32(MIN_POSITION)) & (velocity < 0), 0.0, velocity)
        terminated = (position >= GOAL_POSITION) & (velocity >= GOAL_VELOCITY)
        nxt = MountainCarState(position.astype(jnp.float32), velocity.astype(jnp.float32), state.t + 1)
        return nxt, jnp.float32(-1.0), terminated
