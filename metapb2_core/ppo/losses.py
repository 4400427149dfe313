"""PPO's numerical pieces, each as RLlib 2.8.1 computes it (protocol.md §2.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(
    rewards: jax.Array,
    values: jax.Array,
    bootstrap_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: float,
    lam: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation over a time-major fragment ``[T, ...]``.

    ``bootstrap_values[t]`` is V of the observation reached by step t before any reset: a truncated
    episode (time limit or fragment end) bootstraps from it, a terminated one does not. ``done``
    (terminated or truncated) stops the recursion at episode boundaries inside the fragment.
    Returns (advantages, value targets = advantages + values).
    """
    deltas = rewards + gamma * (1.0 - terminated) * bootstrap_values - values
    decay = gamma * lam * (1.0 - done)

    def back(carry: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        delta, d = xs
        carry = delta + d * carry
        return carry, carry

    _, adv = jax.lax.scan(back, jnp.zeros_like(deltas[0]), (deltas, decay), reverse=True)
    return adv, adv + values


def standardize(x: jax.Array) -> jax.Array:
    # RLlib's standardize_fields: population std, +1e-4 in the denominator.
    return (x - x.mean()) / jnp.maximum(1e-4, x.std())


def clipped_surrogate(ratio: jax.Array, advantages: jax.Array, clip_param: jax.Array) -> jax.Array:
    """Per-sample min(r·A, clip(r, 1±ε)·A), to be maximised."""
    return jnp.minimum(advantages * ratio, advantages * jnp.clip(ratio, 1.0 - clip_param, 1.0 + clip_param))


def clipped_value_loss(values: jax.Array, targets: jax.Array, vf_clip_param: float) -> jax.Array:
    """Per-sample squared error clamped at ``vf_clip_param`` (RLlib's clamp, not PPO2's value clip)."""
    return jnp.clip((values - targets) ** 2, 0.0, vf_clip_param)


def update_kl_coeff(kl_coeff: jax.Array, sampled_kl: jax.Array, kl_target: float) -> jax.Array:
    """×1.5 when the KL overshoots twice the target, ×0.5 when under half of it, else unchanged."""
    return jnp.where(
        sampled_kl > 2.0 * kl_target,
        kl_coeff * 1.5,
        jnp.where(sampled_kl < 0.5 * kl_target, kl_coeff * 0.5, kl_coeff),
    )
