"""Pendulum-v1 (gymnasium) in JAX, with gravity as the context and CARL's reset."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metapb2_core.envs.base import EnvSpec
from metapb2_core.quirks import Quirks

MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05
MASS = 1.0
LENGTH = 1.0


class PendulumParams(NamedTuple):
    g: jax.Array


class PendulumState(NamedTuple):
    theta: jax.Array
    theta_dot: jax.Array
    t: jax.Array


def angle_normalize(x: jax.Array) -> jax.Array:
    return ((x + jnp.pi) % (2 * jnp.pi)) - jnp.pi


class Pendulum:
    spec = EnvSpec("pendulum", 3, False, 1, -MAX_TORQUE, MAX_TORQUE, 200)

    def params(self, g_factor: float, quirks: Quirks = Quirks()) -> PendulumParams:
        # The quirk reproduces the original, where the context never reached the dynamics.
        g = 10.0 if quirks.pendulum_gravity_noop else 10.0 * g_factor
        return PendulumParams(g=jnp.float32(g))

    def reset(self, key: jax.Array, params: PendulumParams) -> PendulumState:
        theta_key, dot_key = jax.random.split(key)
        theta = jax.random.uniform(theta_key, (), jnp.float32, 0.0, jnp.pi)
        theta_dot = jax.random.uniform(dot_key, (), jnp.float32, 0.0, 1.0)
        return PendulumState(theta, theta_dot, jnp.int32(0))

    def observe(self, state: PendulumState, params: PendulumParams) -> jax.Array:
        th = state.theta
        return jnp.stack([jnp.cos(th), jnp.sin(th), state.theta_dot]).astype(jnp.float32)

    def step(
        self, key: jax.Array, state: PendulumState, action: jax.Array, params: PendulumParams
    ) -> tuple[PendulumState, jax.Array, jax.Array]:
        th, thdot = state.theta, state.theta_dot
        u = jnp.clip(jnp.reshape(action, (-1,))[0], -MAX_TORQUE, MAX_TORQUE).astype(jnp.float32)
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * u**2
        new_thdot = thdot + (3 * params.g / (2 * LENGTH) * jnp.sin(th) + 3.0 / (MASS * LENGTH**2) * u) * DT
        new_thdot = jnp.clip(new_thdot, -MAX_SPEED, MAX_SPEED)
        new_th = th + new_thdot * DT
        nxt = PendulumState(new_th, new_thdot, state.t + 1)
        return nxt, (-costs).astype(jnp.float32), jnp.bool_(False)
