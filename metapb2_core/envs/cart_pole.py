"""CartPole-v1 (gymnasium) in JAX, with gravity as the context and CARL's ±0.1 reset."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metapb2_core.envs.base import EnvSpec
from metapb2_core.quirks import Quirks

MASS_CART = 1.0
MASS_POLE = 0.1
TOTAL_MASS = MASS_POLE + MASS_CART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASS_POLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
RESET_BOUND = 0.1  # CARL's override of gymnasium's 0.05


class CartPoleParams(NamedTuple):
    gravity: jax.Array


class CartPoleState(NamedTuple):
    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    t: jax.Array


class CartPole:
    spec = EnvSpec("cart_pole", 4, True, 2, 0.0, 0.0, 500)

    def params(self, g_factor: float, quirks: Quirks = Quirks()) -> CartPoleParams:
        return CartPoleParams(gravity=jnp.float32(9.8 * g_factor))

    def reset(self, key: jax.Array, params: CartPoleParams) -> CartPoleState:
        s = jax.random.uniform(key, (4,), jnp.float32, -RESET_BOUND, RESET_BOUND)
        return CartPoleState(s[0], s[1], s[2], s[3], jnp.int32(0))

    def observe(self, state: CartPoleState, params: CartPoleParams) -> jax.Array:
        return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot]).astype(jnp.float32)

    def step(
        self, key: jax.Array, state: CartPoleState, action: jax.Array, params: CartPoleParams
    ) -> tuple[CartPoleState, jax.Array, jax.Array]:
        x, x_dot, theta, theta_dot = state.x, state.x_dot, state.theta, state.theta_dot
        force = jnp.where(action == 1, FORCE_MAG, -FORCE_MAG)
        cos, sin = jnp.cos(theta), jnp.sin(theta)
        temp = (force + POLEMASS_LENGTH * theta_dot**2 * sin) / TOTAL_MASS
        thetaacc = (params.gravity * sin - cos * temp) / (
            LENGTH * (4.0 / 3.0 - MASS_POLE * cos**2 / TOTAL_MASS)
        )
        xacc = temp - POLEMASS_LENGTH * thetaacc * cos / TOTAL_MASS
        # Explicit Euler, gymnasium's default integrator.
        nxt = CartPoleState(
            x + TAU * x_dot,
            x_dot + TAU * xacc,
            theta + TAU * theta_dot,
            theta_dot + TAU * thetaacc,
            state.t + 1,
        )
        terminated = (jnp.abs(nxt.x) > X_THRESHOLD) | (jnp.abs(nxt.theta) > THETA_THRESHOLD)
        return nxt, jnp.float32(1.0), terminated
