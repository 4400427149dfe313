"""The update's optimiser and minibatch shuffle against their references."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metapb2_core.ppo import adam
from metapb2_core.ppo.shuffle import permutation, rounds_for


def test_adam_matches_optax_scale_by_adam_then_minus_lr_times_update():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), "b": [jnp.zeros(3), jnp.ones(())]}
    ref_opt = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)
    ref_p, ref_s = params, ref_opt.init(params)
    p, s = params, adam.init(params)
    lr = jnp.float32(3e-3)
    for _ in range(5):
        grads = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
        updates, ref_s = ref_opt.update(grads, ref_s, ref_p)
        ref_p = jax.tree_util.tree_map(lambda q, u: q - lr * u, ref_p, updates)
        p, s = jax.jit(adam.step)(p, grads, s, lr)
    for got, want in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(ref_p), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert int(s.count) == 5
    leaves = jax.tree_util.tree_leaves
    for mv, mu, nu in zip(leaves(s.moments), leaves(ref_s.mu), leaves(ref_s.nu), strict=True):
        np.testing.assert_allclose(mv[..., 0], mu, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(mv[..., 1], nu, rtol=1e-5, atol=1e-10)
    assert not np.allclose(jax.tree_util.tree_leaves(p)[-1], params["w"])  # it moved


@pytest.mark.parametrize("n", [1, 2, 7, 128, 20_000, 40_000])
def test_permutation_holds_every_index_once(n):
    perm = np.asarray(jax.jit(permutation, static_argnums=1)(jax.random.PRNGKey(n), n))
    assert perm.dtype == np.int32
    assert np.array_equal(np.sort(perm), np.arange(n))


def test_rounds_give_at_least_three_log2_n_key_bits():
    assert rounds_for(20_000) == 3  # 15 index bits, 17 key bits a round, 51 ≥ 3·log2(20000) = 42.9
    assert rounds_for(128) == 1
    for n in (5, 1000, 20_000, 1 << 20):
        index_bits = (n - 1).bit_length()
        assert rounds_for(n) * (32 - index_bits) >= 3 * np.log2(n)


@pytest.mark.parametrize("rounds", [1, 3])
def test_permutation_is_uniform(rounds):
    # All 24 orders of 4 items, 24 000 draws: a chi-square over 23 degrees of freedom; 49.7 is its
    # 0.999 quantile. Several rounds exercise the re-sorting of one round's order by the next.
    keys = jax.random.split(jax.random.PRNGKey(1), 24_000)
    draws = jax.jit(jax.vmap(lambda k: permutation(k, 4, rounds)))(keys)
    index = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    counts = np.bincount([index[tuple(row)] for row in np.asarray(draws)], minlength=24)
    chi2 = ((counts - 1000.0) ** 2 / 1000.0).sum()
    assert chi2 < 49.7, counts


def test_permutations_differ_by_key_and_move_most_items():
    a = np.asarray(permutation(jax.random.PRNGKey(0), 20_000))
    b = np.asarray(permutation(jax.random.PRNGKey(1), 20_000))
    assert not np.array_equal(a, b)
    assert (a == np.arange(20_000)).mean() < 0.01  # a uniform permutation fixes ~1 item
    # Where an item lands is uncorrelated with where it started.
    assert abs(np.corrcoef(a, np.arange(20_000))[0, 1]) < 0.05


def test_sgd_loop_updates_parameters_and_moments_in_place():
    """No copy inside the minibatch loop of the compiled update (see trainer.COMPILER_OPTIONS)."""
    import re

    from metapb2_core.budgets import get_budget
    from metapb2_core.envs import TASKS
    from metapb2_core.ppo.trainer import get_trainer, hparams_from_configs

    budget = get_budget("smoke")
    trainer = get_trainer("cart_pole", budget)
    env_params = TASKS["cart_pole-earth"].env_params()
    n = budget.population_size
    pop = trainer.init(jax.random.split(jax.random.PRNGKey(0), n), env_params)
    hp = hparams_from_configs([{"lr": 3e-4, "lambda": 0.95, "clip_param": 0.2}] * n)
    pop, batch = trainer.collect(pop, hp, env_params)
    hlo = trainer.learn.lower(pop, batch, hp).compile().as_text()
    lines = hlo.splitlines()
    bodies = []
    for name in re.findall(r"body=(%[\w.\-]+)", hlo):
        start = next(i for i, line in enumerate(lines) if line.startswith(name + " "))
        end = next(i for i in range(start, len(lines)) if lines[i].startswith("}"))
        bodies.append(lines[start:end])
    sgd = [b for b in bodies if sum(" dot(" in line for line in b) >= 6]  # the loop with the matmuls
    assert len(sgd) == 1
    copies = [line.split("=")[0].strip() for line in sgd[0] if re.search(r"\] copy\(|\} copy\(", line)]
    assert copies == [], copies


def test_whole_batch_and_per_minibatch_gathers_train_identically(monkeypatch):
    from metapb2_core.budgets import get_budget
    from metapb2_core.envs import TASKS
    from metapb2_core.ppo import trainer as T

    budget = get_budget("smoke")
    env_params = TASKS["cart_pole-earth"].env_params()
    n = budget.population_size
    hp = T.hparams_from_configs([{"lr": 3e-4, "lambda": 0.95, "clip_param": 0.2}] * n)
    results = []
    for limit in (1 << 40, 0):  # every batch gathered whole, then none
        monkeypatch.setattr(T, "PREGATHER_BYTES", limit)
        trainer = T.PopulationTrainer("cart_pole", budget)
        pop = trainer.init(jax.random.split(jax.random.PRNGKey(0), n), env_params)
        pop, batch = trainer.collect(pop, hp, env_params)
        results.append(trainer.learn(pop, batch, hp))
    (a, ma), (b, mb) = results
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ma.kl, mb.kl, rtol=1e-4)
    assert not np.allclose(jax.tree_util.tree_leaves(a.params)[0], jax.tree_util.tree_leaves(pop.params)[0])
