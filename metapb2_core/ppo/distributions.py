"""Action distributions: categorical (discrete) and diagonal Gaussian (continuous).

``dist`` is the raw actor output; every function takes the discrete flag as a static Python bool.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _gaussian(dist: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean, log_std = jnp.split(dist, 2, axis=-1)
    return mean, log_std


def sample(key: jax.Array, dist: jax.Array, discrete: bool) -> jax.Array:
    if discrete:
        return jax.random.categorical(key, dist, axis=-1)
    mean, log_std = _gaussian(dist)
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


def log_prob(dist: jax.Array, action: jax.Array, discrete: bool) -> jax.Array:
    if discrete:
        logp = jax.nn.log_softmax(dist, axis=-1)
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
    mean, log_std = _gaussian(dist)
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z * z - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def kl(old: jax.Array, new: jax.Array, discrete: bool) -> jax.Array:
    """KL(old ‖ new), the direction RLlib's PPO penalty uses."""
    if discrete:
        lp_old = jax.nn.log_softmax(old, axis=-1)
        lp_new = jax.nn.log_softmax(new, axis=-1)
        return jnp.sum(jnp.exp(lp_old) * (lp_old - lp_new), axis=-1)
    m0, s0 = _gaussian(old)
    m1, s1 = _gaussian(new)
    return jnp.sum(s1 - s0 + (jnp.exp(2 * s0) + (m0 - m1) ** 2) / (2 * jnp.exp(2 * s1)) - 0.5, axis=-1)


def entropy(dist: jax.Array, discrete: bool) -> jax.Array:
    if discrete:
        logp = jax.nn.log_softmax(dist, axis=-1)
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    _, log_std = _gaussian(dist)
    return jnp.sum(log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e), axis=-1)
