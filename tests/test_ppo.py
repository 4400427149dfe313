"""PPO pieces against hand-computed expectations (RLlib 2.8.1 semantics, protocol.md §2.2)."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from metapb2_core.ppo import distributions as D
from metapb2_core.ppo.losses import (
    clipped_surrogate,
    clipped_value_loss,
    gae,
    standardize,
    update_kl_coeff,
)

GAMMA, LAM = 0.99, 0.95


def rllib_segment_advantages(rewards, values, last_r):
    """RLlib's compute_advantages for one episode segment: deltas then a discounted cumsum."""
    v = list(values) + [last_r]
    deltas = [rewards[t] + GAMMA * v[t + 1] - v[t] for t in range(len(rewards))]
    adv, acc = [], 0.0
    for d in reversed(deltas):
        acc = d + GAMMA * LAM * acc
        adv.append(acc)
    return adv[::-1]


def run_gae(rewards, values, bootstrap, terminated, truncated):
    as_col = lambda x: jnp.asarray(x, jnp.float32)[:, None]  # noqa: E731 one environment, time-major
    done = np.logical_or(terminated, truncated).astype(np.float32)
    adv, targets = gae(
        as_col(rewards),
        as_col(values),
        as_col(bootstrap),
        as_col(np.asarray(terminated, np.float32)),
        as_col(done),
        GAMMA,
        jnp.float32(LAM),
    )
    return np.asarray(adv[:, 0]), np.asarray(targets[:, 0])


def test_gae_terminated_episode_then_fragment_end():
    rewards = [1.0, 0.5, 2.0, 1.0]
    values = [0.5, 0.4, 0.3, 0.2]
    # Steps 0-2 form an episode that terminates at step 2 (no bootstrap: the 99.0 must be ignored);
    # step 3 starts a new episode that the fragment cuts off, bootstrapping from V(next obs) = 0.7.
    bootstrap = [0.4, 0.3, 99.0, 0.7]
    adv, targets = run_gae(rewards, values, bootstrap, [0, 0, 1, 0], [0, 0, 0, 1])
    expected = rllib_segment_advantages(rewards[:3], values[:3], 0.0) + rllib_segment_advantages(
        rewards[3:], values[3:], 0.7
    )
    np.testing.assert_allclose(adv, expected, rtol=1e-6)
    np.testing.assert_allclose(targets, np.add(expected, values), rtol=1e-6)
    # One value checked by hand: the last step is r + γ·0.7 − 0.2.
    assert adv[3] == pytest.approx(1.0 + 0.99 * 0.7 - 0.2)


def test_gae_time_limit_bootstraps_from_final_observation():
    rewards = [1.0, 1.0, 1.0]
    values = [2.0, 3.0, 4.0]
    # Step 1 hits the time limit: truncated, bootstrap from V(final obs) = 5.0, and the recursion
    # must not leak the next episode's advantage into step 1.
    bootstrap = [3.0, 5.0, 6.0]
    adv, _ = run_gae(rewards, values, bootstrap, [0, 0, 0], [0, 1, 1])
    expected = rllib_segment_advantages(rewards[:2], values[:2], 5.0) + rllib_segment_advantages(
        rewards[2:], values[2:], 6.0
    )
    np.testing.assert_allclose(adv, expected, rtol=1e-6)


def test_standardize_zero_mean_unit_std_and_constant_input():
    x = jnp.asarray([1.0, 2.0, 3.0, 10.0])
    z = np.asarray(standardize(x))
    assert z.mean() == pytest.approx(0.0, abs=1e-6)
    assert z.std() == pytest.approx(1.0, rel=1e-5)
    # RLlib divides by max(1e-4, std): a constant batch maps to zeros, not NaN.
    np.testing.assert_array_equal(np.asarray(standardize(jnp.ones(5))), np.zeros(5))


@pytest.mark.parametrize(
    ("kl", "expected"),
    [(0.05, 0.3), (0.0201, 0.3), (0.02, 0.2), (0.01, 0.2), (0.005, 0.2), (0.0049, 0.1), (0.0, 0.1)],
)
def test_kl_coefficient_update(kl, expected):
    assert float(update_kl_coeff(jnp.float32(0.2), jnp.float32(kl), 0.01)) == pytest.approx(expected)


def test_clipped_surrogate_takes_the_pessimistic_term():
    ratio = jnp.asarray([1.5, 0.5, 1.0, 1.5, 0.5])
    adv = jnp.asarray([2.0, -1.0, 3.0, -1.0, 2.0])
    out = np.asarray(clipped_surrogate(ratio, adv, jnp.float32(0.2)))
    # min(r·A, clip(r, 0.8, 1.2)·A) by hand
    np.testing.assert_allclose(out, [2.4, -0.8, 3.0, -1.5, 1.0], rtol=1e-6)


def test_clipped_value_loss_clamps_the_squared_error():
    values = jnp.asarray([0.0, 1.0, 5.0])
    targets = jnp.asarray([4.0, 3.0, 5.0])
    np.testing.assert_allclose(np.asarray(clipped_value_loss(values, targets, 10.0)), [10.0, 4.0, 0.0])


def test_categorical_log_prob_and_kl():
    old = jnp.asarray([[0.0, 1.0, 2.0]])
    new = jnp.asarray([[1.0, 0.0, 0.5]])
    p = np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()
    q = np.exp([1.0, 0.0, 0.5]) / np.exp([1.0, 0.0, 0.5]).sum()
    assert float(D.log_prob(old, jnp.asarray([2]), True)[0]) == pytest.approx(math.log(p[2]), rel=1e-6)
    assert float(D.kl(old, new, True)[0]) == pytest.approx(float(np.sum(p * np.log(p / q))), rel=1e-5)
    assert float(D.entropy(old, True)[0]) == pytest.approx(float(-np.sum(p * np.log(p))), rel=1e-5)


def test_gaussian_log_prob_and_kl():
    # mean 0.5, log-std log(2) in one dimension; new: mean -1, log-std 0
    old = jnp.asarray([[0.5, math.log(2.0)]])
    new = jnp.asarray([[-1.0, 0.0]])
    a = jnp.asarray([[1.5]])
    expected_logp = -0.5 * ((1.5 - 0.5) / 2.0) ** 2 - math.log(2.0) - 0.5 * math.log(2 * math.pi)
    assert float(D.log_prob(old, a, False)[0]) == pytest.approx(expected_logp, rel=1e-6)
    # KL(N(0.5, 2²) ‖ N(-1, 1²)) = ln(1/2) + (4 + 1.5²)/2 − 1/2
    assert float(D.kl(old, new, False)[0]) == pytest.approx(math.log(0.5) + (4 + 2.25) / 2 - 0.5, rel=1e-6)


def test_gaussian_samples_match_mean_and_std():
    import jax

    dist = jnp.tile(jnp.asarray([[0.5, math.log(2.0)]]), (20000, 1))
    x = np.asarray(D.sample(jax.random.PRNGKey(0), dist, False))[:, 0]
    assert x.mean() == pytest.approx(0.5, abs=0.05)
    assert x.std() == pytest.approx(2.0, rel=0.03)


@pytest.mark.parametrize("outputs", [1, 2, 6, 12])
def test_heads_narrow_or_wide_compute_x_at_w_plus_b_and_its_gradient(outputs):
    import jax

    from metapb2_core.ppo.networks import NARROW, _apply_mlp

    rng = np.random.default_rng(outputs)
    layers = [
        (jnp.asarray(rng.normal(size=(4, 256)), jnp.float32), jnp.asarray(rng.normal(size=256), jnp.float32)),
        (
            jnp.asarray(rng.normal(size=(256, outputs)), jnp.float32),
            jnp.asarray(rng.normal(size=outputs), jnp.float32),
        ),
    ]
    x = jnp.asarray(rng.normal(size=(128, 4)), jnp.float32)

    def reference(layers, x):
        (w0, b0), (w1, b1) = layers
        return jnp.tanh(x @ w0 + b0) @ w1 + b1

    np.testing.assert_allclose(_apply_mlp(layers, x), reference(layers, x), rtol=1e-5, atol=1e-4)
    g = jax.grad(lambda ls: jnp.sum(_apply_mlp(ls, x) ** 2))(layers)
    g_ref = jax.grad(lambda ls: jnp.sum(reference(ls, x) ** 2))(layers)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)
    assert (outputs <= NARROW) == (outputs in (1, 2, 6))


def _xla_flags_of_a_fresh_process(env_flags: str | None) -> tuple[str, str]:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "METAPB2_HOST_DEVICES")}
    if env_flags is not None:
        env["XLA_FLAGS"] = env_flags
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    code = (
        "import os, metapb2_core\n"
        "print(os.environ['XLA_FLAGS'])\n"
        "print(os.environ['JAX_COMPILATION_CACHE_DIR'])"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    flags, cache = out.stdout.strip().splitlines()
    return flags, cache


def test_xla_flags_split_the_cores_and_use_wide_vectors_where_the_cpu_has_them():
    import os
    from pathlib import Path

    flags, cache = _xla_flags_of_a_fresh_process(None)
    assert f"--xla_force_host_platform_device_count={len(os.sched_getaffinity(0))}" in flags
    avx512 = " avx512f " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
    assert ("--xla_cpu_prefer_vector_width=512" in flags) == avx512
    # what the user set wins
    mine, _ = _xla_flags_of_a_fresh_process("--xla_cpu_prefer_vector_width=256")
    assert "--xla_cpu_prefer_vector_width=256" in mine and "=512" not in mine
    # compiled programs are cached per CPU type: another model or feature set, another folder
    from metapb2_core import xla_setup

    assert cache == str(xla_setup.default_cache_dir())
    assert Path(cache).parent == Path.home() / ".cache" / "metapb2" / "jax"
    real = xla_setup._cpu_description
    try:
        xla_setup._cpu_description = lambda: "model name\t: AMD EPYC\nflags\t\t: fpu avx2"
        other = xla_setup.default_cache_dir()
        xla_setup._cpu_description = lambda: "model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f"
        assert xla_setup._has_avx512() and xla_setup.default_cache_dir() != other
        assert other.name.startswith("AMD-EPYC-")
    finally:
        xla_setup._cpu_description = real
