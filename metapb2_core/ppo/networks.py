"""Separate actor and critic MLPs: 2 × 256 tanh encoders, linear heads (protocol.md §2.2)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from metapb2_core.envs.base import EnvSpec

HIDDEN = (256, 256)
Layers = list[tuple[jax.Array, jax.Array]]


def _init_mlp(key: jax.Array, sizes: list[int]) -> Layers:
    # torch.nn.Linear's default init, which RLlib 2.8's TorchMLP keeps: U(±1/sqrt(fan_in)).
    layers = []
    shapes = list(zip(sizes[:-1], sizes[1:], strict=True))
    for layer_key, (fan_in, fan_out) in zip(jax.random.split(key, len(shapes)), shapes, strict=True):
        kw, kb = jax.random.split(layer_key)
        bound = 1.0 / math.sqrt(fan_in)
        layers.append(
            (
                jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound),
                jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound),
            )
        )
    return layers


# Heads at most this wide run as one matrix-vector product per output (see _apply_mlp).
NARROW = 8


def _apply_mlp(layers: Layers, x: jax.Array) -> jax.Array:
    for w, b in layers[:-1]:
        x = jnp.tanh(x @ w + b)
    w, b = layers[-1]
    if w.shape[1] <= NARROW:
        # XLA:CPU runs a thin dot such as 128x256 @ 256x2 and its gradients far below its matmul
        # rate; matrix-vector products are fast. Forward + backward of such a head, one core:
        # 172 -> 16 us per minibatch at 2 outputs, 100 -> 58 us at 6; from ~12 the dot wins.
        return jnp.stack([x @ w[:, j] for j in range(w.shape[1])], axis=-1) + b
    return x @ w + b


def policy_outputs(spec: EnvSpec) -> int:
    """Logits for discrete actions; mean and state-dependent log-std for continuous ones."""
    return spec.num_actions if spec.discrete else 2 * spec.num_actions


def init_params(key: jax.Array, spec: EnvSpec) -> dict[str, Layers]:
    ka, kc = jax.random.split(key)
    return {
        "actor": _init_mlp(ka, [spec.obs_dim, *HIDDEN, policy_outputs(spec)]),
        "critic": _init_mlp(kc, [spec.obs_dim, *HIDDEN, 1]),
    }


def actor(params: dict, obs: jax.Array) -> jax.Array:
    return _apply_mlp(params["actor"], obs)


def critic(params: dict, obs: jax.Array) -> jax.Array:
    return _apply_mlp(params["critic"], obs)[..., 0]


def forward_flops_per_sample(spec: EnvSpec) -> int:
    """Multiply-add FLOPs (×2) of one actor and one critic forward pass for one observation."""
    total = 0
    for out in (policy_outputs(spec), 1):
        sizes = [spec.obs_dim, *HIDDEN, out]
        total += sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return total
