"""Adam as torch.optim.Adam computes it (β = 0.9, 0.999; ε = 1e-8 outside the square root).

The same arithmetic as ``optax.scale_by_adam`` followed by ``p - lr · u``, laid out for XLA:CPU:
each leaf keeps its first and second moments interleaved in one ``[*shape, 2]`` array, so one
elementwise loop reads the gradient once and updates both moments in place, and the parameter
update follows in a second. With separate moment leaves XLA ran three loops per leaf and read the
gradient twice. (Stacked as ``[2, *shape]`` the moments are a concatenation, which XLA will not
update in place: it copied every moment array once per step.)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

B1, B2, EPS = 0.9, 0.999, 1e-8


class AdamState(NamedTuple):
    count: jax.Array  # steps taken (int32)
    moments: Any  # per parameter leaf: [*leaf.shape, 2], first and second moment


def init(params: Any) -> AdamState:
    return AdamState(
        count=jnp.zeros([], jnp.int32),
        moments=jax.tree_util.tree_map(lambda p: jnp.zeros((*p.shape, 2), p.dtype), params),
    )


def step(params: Any, grads: Any, state: AdamState, lr: jax.Array) -> tuple[Any, AdamState]:
    """One Adam step: the new parameters and optimiser state."""
    count = state.count + 1
    t = count.astype(jnp.float32)
    correction1, correction2 = 1.0 - B1**t, 1.0 - B2**t

    def leaf(p: jax.Array, g: jax.Array, mv: jax.Array) -> tuple[jax.Array, jax.Array]:
        first = jax.lax.broadcasted_iota(jnp.int32, mv.shape, mv.ndim - 1) == 0
        g = g[..., None]
        mv = jnp.where(first, B1 * mv + (1.0 - B1) * g, B2 * mv + (1.0 - B2) * g * g)
        update = (mv[..., 0] / correction1) / (jnp.sqrt(mv[..., 1] / correction2) + EPS)
        return p - lr * update, mv

    flat_p, treedef = jax.tree_util.tree_flatten(params)
    flat_g, flat_mv = treedef.flatten_up_to(grads), treedef.flatten_up_to(state.moments)
    pairs = [leaf(p, g, mv) for p, g, mv in zip(flat_p, flat_g, flat_mv, strict=True)]
    new_params = treedef.unflatten([p for p, _ in pairs])
    moments = treedef.unflatten([mv for _, mv in pairs])
    return new_params, AdamState(count, moments)
