"""Acrobot-v1 (gymnasium, "book" dynamics) in JAX, with both link masses as the context."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metapb2_core.envs.base import EnvSpec
from metapb2_core.quirks import Quirks

DT = 0.2
LINK_LENGTH_1 = 1.0
LINK_COM_POS_1 = 0.5
LINK_COM_POS_2 = 0.5
LINK_MOI = 1.0
MAX_VEL_1 = 4 * jnp.pi
MAX_VEL_2 = 9 * jnp.pi
GRAVITY = 9.8


class AcrobotParams(NamedTuple):
    link_mass_1: jax.Array
    link_mass_2: jax.Array


class AcrobotState(NamedTuple):
    theta1: jax.Array
    theta2: jax.Array
    dtheta1: jax.Array
    dtheta2: jax.Array
    t: jax.Array


def _dsdt(s: jax.Array, torque: jax.Array, params: AcrobotParams) -> jax.Array:
    m1, m2 = params.link_mass_1, params.link_mass_2
    l1, lc1, lc2, i1, i2, g = LINK_LENGTH_1, LINK_COM_POS_1, LINK_COM_POS_2, LINK_MOI, LINK_MOI, GRAVITY
    theta1, theta2, dtheta1, dtheta2 = s[0], s[1], s[2], s[3]
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(theta2)) + i1 + i2
    d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(theta2)) + i2
    phi2 = m2 * lc2 * g * jnp.cos(theta1 + theta2 - jnp.pi / 2.0)
    phi1 = (
        -m2 * l1 * lc2 * dtheta2**2 * jnp.sin(theta2)
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
        + (m1 * lc1 + m2 * l1) * g * jnp.cos(theta1 - jnp.pi / 2)
        + phi2
    )
    ddtheta2 = (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * jnp.sin(theta2) - phi2) / (
        m2 * lc2**2 + i2 - d2**2 / d1
    )
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])


def _wrap(x: jax.Array, lo: float, hi: float) -> jax.Array:
    # Closed form of gymnasium's while loops: shift by whole periods only when outside [lo, hi].
    diff = hi - lo
    x = jnp.where(x > hi, x - diff * jnp.ceil((x - hi) / diff), x)
    return jnp.where(x < lo, x + diff * jnp.ceil((lo - x) / diff), x)


class Acrobot:
    spec = EnvSpec("acrobot", 6, True, 3, 0.0, 0.0, 500)

    def params(self, g_factor: float, quirks: Quirks = Quirks()) -> AcrobotParams:
        mass = jnp.float32(1.0 * g_factor)
        return AcrobotParams(link_mass_1=mass, link_mass_2=mass)

    def reset(self, key: jax.Array, params: AcrobotParams) -> AcrobotState:
        s = jax.random.uniform(key, (4,), jnp.float32, -0.1, 0.1)
        return AcrobotState(s[0], s[1], s[2], s[3], jnp.int32(0))

    def observe(self, state: AcrobotState, params: AcrobotParams) -> jax.Array:
        th1, th2 = state.theta1, state.theta2
        obs = [jnp.cos(th1), jnp.sin(th1), jnp.cos(th2), jnp.sin(th2), state.dtheta1, state.dtheta2]
        return jnp.stack(obs).astype(jnp.float32)

    def step(
        self, key: jax.Array, state: AcrobotState, action: jax.Array, params: AcrobotParams
    ) -> tuple[AcrobotState, jax.Array, jax.Array]:
        # AVAIL_TORQUE = [-1, 0, +1]; torque noise is 0.
        torque = (jnp.asarray(action) - 1).astype(jnp.float32)
        y0 = jnp.stack([state.theta1, state.theta2, state.dtheta1, state.dtheta2])
        # One classical RK4 step over [0, DT], as gymnasium's rk4 with t = [0, dt].
        k1 = _dsdt(y0, torque, params)
        k2 = _dsdt(y0 + DT / 2 * k1, torque, params)
        k3 = _dsdt(y0 + DT / 2 * k2, torque, params)
        k4 = _dsdt(y0 + DT * k3, torque, params)
        ns = y0 + DT / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        th1 = _wrap(ns[0], -jnp.pi, jnp.pi)
        th2 = _wrap(ns[1], -jnp.pi, jnp.pi)
        dth1 = jnp.clip(ns[2], -MAX_VEL_1, MAX_VEL_1)
        dth2 = jnp.clip(ns[3], -MAX_VEL_2, MAX_VEL_2)
        nxt = AcrobotState(th1, th2, dth1, dth2, state.t + 1)
        terminated = -jnp.cos(th1) - jnp.cos(th2 + th1) > 1.0
        reward = jnp.where(terminated, 0.0, -1.0).astype(jnp.float32)
        return nxt, reward, terminated
