"""The JAX classic-control environments against gymnasium's own, plus context, jit and vmap checks."""

from __future__ import annotations

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metapb2_core.envs import step_autoreset
from metapb2_core.envs.acrobot import Acrobot
from metapb2_core.envs.cart_pole import CartPole
from metapb2_core.envs.contexts import g_factor
from metapb2_core.envs.mountain_car import MountainCar
from metapb2_core.envs.pendulum import Pendulum
from metapb2_core.quirks import Quirks

ENVS = {"cart_pole": CartPole, "mountain_car": MountainCar, "pendulum": Pendulum, "acrobot": Acrobot}
GYM_IDS = {
    "cart_pole": "CartPole-v1",
    "mountain_car": "MountainCar-v0",
    "pendulum": "Pendulum-v1",
    "acrobot": "Acrobot-v1",
}
NAMES = list(ENVS)
TOL = 1e-5


def _random_actions(env, rng: np.random.Generator, n: int) -> np.ndarray:
    if env.spec.discrete:
        return rng.integers(env.spec.num_actions, size=n).astype(np.int32)
    # Beyond the torque bounds on purpose, so the env's clipping is exercised.
    return rng.uniform(-2.5, 2.5, size=(n, 1)).astype(np.float32)


def _gym_state(state) -> np.ndarray:
    # Every state lists gymnasium's state variables in gymnasium's order, then ``t``.
    return np.array([float(getattr(state, f)) for f in state._fields if f != "t"], dtype=np.float64)


def _rollout(env, params, state, actions: np.ndarray) -> np.ndarray:
    def body(s, a):
        s, _, _ = env.step(jax.random.key(0), s, a, params)
        return s, env.observe(s, params)

    return np.asarray(jax.lax.scan(body, state, jnp.asarray(actions))[1])


def test_specs_match_gymnasium():
    for name in NAMES:
        spec, gym_env = ENVS[name].spec, gymnasium.make(GYM_IDS[name]).unwrapped
        assert spec.name == name
        assert spec.obs_dim == gym_env.observation_space.shape[0]
        if spec.discrete:
            assert spec.num_actions == gym_env.action_space.n
        else:
            assert spec.num_actions == gym_env.action_space.shape[0]
            assert (spec.action_low, spec.action_high) == (-2.0, 2.0)
        gym_env.close()


@pytest.mark.parametrize("name", NAMES)
def test_matches_gymnasium(name):
    env = ENVS[name]()
    params = env.params(g_factor("earth"))
    gym_env = gymnasium.make(GYM_IDS[name]).unwrapped
    gym_env.reset(seed=0)
    step, reset, observe = jax.jit(env.step), jax.jit(env.reset), jax.jit(env.observe)
    rng = np.random.default_rng(0)
    key, sub = jax.random.split(jax.random.key(0))
    state = reset(sub, params)
    terminations, episode_t = 0, 0
    for i, action in enumerate(_random_actions(env, rng, 300)):
        # Re-sync every step: left to run free, our float32 drifts from gymnasium's float64 in the chaotic
        # pendulum and acrobot (pendulum: 2.6e-4 by step 196), and the test would stop checking the dynamics.
        gym_env.state = _gym_state(state)
        key, sub = jax.random.split(key)
        state, reward, terminated = step(sub, state, jnp.asarray(action), params)
        gym_obs, gym_reward, gym_terminated, _, _ = gym_env.step(int(action) if env.spec.discrete else action)
        obs = observe(state, params)
        episode_t += 1
        assert obs.dtype == jnp.float32 and reward.dtype == jnp.float32 and terminated.dtype == jnp.bool_
        assert int(state.t) == episode_t
        np.testing.assert_allclose(np.asarray(obs), gym_obs, rtol=TOL, atol=TOL, err_msg=f"step {i}")
        np.testing.assert_allclose(float(reward), gym_reward, rtol=TOL, atol=TOL, err_msg=f"step {i}")
        assert bool(terminated) == gym_terminated, f"step {i}"
        if gym_terminated:
            terminations, episode_t = terminations + 1, 0
            key, sub = jax.random.split(key)
            state = reset(sub, params)
            gym_env.reset()  # clears cart pole's steps_beyond_terminated
    if name == "cart_pole":
        assert terminations > 5  # the termination rule was exercised
    gym_env.close()


# name -> hand-picked (state, action) pairs for the rules random play rarely reaches.
EDGE_CASES = {
    "cart_pole": [((2.39, 1.0, 0.0, 0.0), 1), ((0.0, 0.0, 0.2, 1.0), 0), ((-2.39, -1.0, -0.2, -1.0), 0)],
    "mountain_car": [((-1.19, -0.06), 0), ((0.49, 0.06), 2), ((0.499, -0.001), 2), ((0.3, 0.07), 2)],
    "pendulum": [((10.0, 7.9), (2.0,)), ((-7.0, -7.9), (-5.0,)), ((np.pi, 0.0), (0.5,))],
    "acrobot": [
        ((np.pi - 0.05, 0.0, 0.0, 0.0), 1),
        ((3.1, 3.1, 12.0, 30.0), 2),
        ((-3.1, -3.1, -12.0, -30.0), 0),
        ((2.0, 1.0, 5.0, -5.0), 1),
    ],
}


@pytest.mark.parametrize("name", NAMES)
def test_edge_cases_match_gymnasium(name):
    env = ENVS[name]()
    params = env.params(g_factor("earth"))
    gym_env = gymnasium.make(GYM_IDS[name]).unwrapped
    step = jax.jit(env.step)
    saw_termination = False
    for values, action in EDGE_CASES[name]:
        state = env.reset(jax.random.key(0), params)._make([*(jnp.float32(v) for v in values), jnp.int32(0)])
        gym_env.reset(seed=0)
        gym_env.state = _gym_state(state)
        action = np.asarray(action, dtype=np.int32 if env.spec.discrete else np.float32)
        nxt, reward, terminated = step(jax.random.key(0), state, jnp.asarray(action), params)
        gym_obs, gym_reward, gym_terminated, _, _ = gym_env.step(int(action) if env.spec.discrete else action)
        np.testing.assert_allclose(np.asarray(env.observe(nxt, params)), gym_obs, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(float(reward), gym_reward, rtol=TOL, atol=TOL)
        assert bool(terminated) == gym_terminated
        saw_termination |= gym_terminated
    assert saw_termination or name == "pendulum"
    gym_env.close()


@pytest.mark.parametrize("name", NAMES)
def test_context_changes_dynamics(name):
    env = ENVS[name]()
    actions = _random_actions(env, np.random.default_rng(1), 50)
    start = env.reset(jax.random.key(1), env.params(1.0))
    neptune = _rollout(env, env.params(g_factor("neptune")), start, actions)
    uranus = _rollout(env, env.params(g_factor("uranus")), start, actions)
    assert np.abs(neptune - uranus).max() > 1e-3


def test_pendulum_gravity_noop_quirk():
    env, quirks = Pendulum(), Quirks(pendulum_gravity_noop=True)
    actions = _random_actions(env, np.random.default_rng(2), 50)
    start = env.reset(jax.random.key(2), env.params(1.0))
    neptune = _rollout(env, env.params(g_factor("neptune"), quirks), start, actions)
    uranus = _rollout(env, env.params(g_factor("uranus"), quirks), start, actions)
    np.testing.assert_array_equal(neptune, uranus)
    assert float(env.params(g_factor("neptune"), quirks).g) == 10.0
    assert float(env.params(g_factor("neptune")).g) == pytest.approx(10.0 * 11.0 / 9.81)


@pytest.mark.parametrize("name", NAMES)
def test_changing_context_does_not_recompile(name):
    env = ENVS[name]()
    f = jax.jit(env.step)
    earth, neptune = env.params(g_factor("earth")), env.params(g_factor("neptune"))
    state = env.reset(jax.random.key(0), earth)
    action = jnp.asarray(_random_actions(env, np.random.default_rng(0), 1)[0])
    out_earth = f(jax.random.key(0), state, action, earth)
    out_neptune = f(jax.random.key(0), state, action, neptune)
    if name == "pendulum":
        f(jax.random.key(0), state, action, env.params(g_factor("neptune"), Quirks.faithful()))
    assert f._cache_size() == 1
    assert not np.allclose(np.asarray(env.observe(out_earth[0], earth)), env.observe(out_neptune[0], neptune))


# name -> (low, high) per state field, with CARL's reset overrides.
RESET_RANGES = {
    "cart_pole": [(-0.1, 0.1)] * 4,
    "mountain_car": [(-0.6, -0.4), (0.0, 0.0)],
    "pendulum": [(0.0, np.pi), (0.0, 1.0)],
    "acrobot": [(-0.1, 0.1)] * 4,
}


@pytest.mark.parametrize("name", NAMES)
def test_reset_distribution(name):
    env = ENVS[name]()
    params = env.params(1.0)
    states = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(3), 1000), params)
    assert np.all(np.asarray(states.t) == 0) and states.t.dtype == jnp.int32
    fields = [np.asarray(getattr(states, f)) for f in states._fields if f != "t"]
    for x, (low, high) in zip(fields, RESET_RANGES[name], strict=True):
        assert x.dtype == np.float32
        assert low <= x.min() and x.max() <= high
        span = high - low
        assert x.min() < low + 0.05 * span + 1e-9 and x.max() > high - 0.05 * span - 1e-9
    if name == "pendulum":  # [0, pi) and [0, 1): the upper bounds are open
        assert fields[0].max() < np.float32(np.pi) and fields[1].max() < 1.0


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_batch(name):
    env, batch = ENVS[name](), 8
    params = env.params(g_factor("saturn"))
    keys = jax.random.split(jax.random.key(4), batch)
    states = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    actions = jnp.asarray(_random_actions(env, np.random.default_rng(4), batch))
    nxt, reward, terminated = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, states, actions, params)
    obs = jax.vmap(env.observe, in_axes=(0, None))(nxt, params)
    assert (
        obs.shape == (batch, env.spec.obs_dim) and reward.shape == (batch,) and terminated.shape == (batch,)
    )
    assert np.all(np.asarray(nxt.t) == 1)
    # Batched and single transitions agree.
    first = jax.tree_util.tree_map(lambda a: a[0], states)
    single_next, single_reward, _ = env.step(keys[0], first, actions[0], params)
    np.testing.assert_allclose(obs[0], env.observe(single_next, params), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(reward[0], single_reward, rtol=1e-6)
    # And the auto-resetting step the trainers use vmaps too.
    tr = jax.jit(jax.vmap(lambda k, s, a: step_autoreset(env, k, s, a, params)))(keys, states, actions)
    assert tr.final_obs.shape == (batch, env.spec.obs_dim) and tr.truncated.shape == (batch,)
