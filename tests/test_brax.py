"""The Brax family: registry and budgets, gravity as a traced context that reaches the physics,
1000-step episodes ended as terminal, every task's smoke run, and PPO learning inverted_pendulum."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metapb2_core.budgets import BUDGET_NAMES, get_budget
from metapb2_core.envs import ENV_FAMILIES, TASKS, get_task, step_autoreset
from metapb2_core.envs.brax_envs import BRAX_IDS, EPISODE_STEPS, BraxEnv, selected_backend
from metapb2_core.envs.contexts import PLANET_GRAVITY, g_factor
from metapb2_core.errors import MetaPB2Error, UnknownNameError
from metapb2_core.run import RunRequest, execute_run

ENVS = list(BRAX_IDS)
# The cheapest to compile runs in the default test run (the context test reuses its programs); the
# others are marked slow, to keep the default run within CI's 15 minutes.
CHEAP: tuple[str, ...] = ()  # Brax smoke runs compile for ~40 s each: all in the slow set
# Observation and action sizes of Brax 0.14's environments under the spring backend.
SIZES = {
    "humanoid": (244, 17),
    "halfcheetah": (17, 6),
    "hopper": (11, 3),
    "humanoid_standup": (244, 17),
    "inverted_double_pendulum": (8, 1),
    "inverted_pendulum": (4, 1),
    "pusher": (23, 7),
    "reacher": (11, 2),
    "walker2d": (17, 6),
}


def test_registry_has_the_45_brax_tasks_in_the_study_order():
    assert ENVS == [
        "humanoid",
        "halfcheetah",
        "hopper",
        "humanoid_standup",
        "inverted_double_pendulum",
        "inverted_pendulum",
        "pusher",
        "reacher",
        "walker2d",
    ]
    assert list(ENV_FAMILIES["brax"]) == ENVS
    brax = [k for k, t in TASKS.items() if t.family == "brax"]
    assert brax == [f"{e}-{c}" for e in ENVS for c in PLANET_GRAVITY]
    task = get_task("hopper-neptune")
    assert (task.family, task.env_name, task.context) == ("brax", "hopper", "neptune")


def test_budgets_resolve_per_family():
    paper = get_budget("paper", "brax")
    # protocol.md §2.1/§2.2: batch 25k in fragments of 200, 30 epochs of 128, evaluation every 8
    # iterations = every 200k steps, 3M steps per member, 4 members, 10 evaluation episodes.
    assert (paper.population_size, paper.train_batch_size, paper.fragment_length) == (4, 25_000, 200)
    assert (paper.num_epochs, paper.minibatch_size, paper.eval_episodes) == (30, 128, 10)
    assert (paper.interval, paper.total_steps, paper.iterations_per_interval) == (200_000, 3_000_000, 8)
    assert get_budget("paper") == get_budget("paper", "classic")  # the old call keeps working
    assert get_budget("paper").train_batch_size == 20_000
    for name in BUDGET_NAMES:
        assert get_budget(name, "brax").name == name
    assert RunRequest("hopper-earth", "pbt", 0, "paper").resolve().budget == paper
    with pytest.raises(UnknownNameError, match="unknown budget 'huge'"):
        get_budget("huge", "brax")
    with pytest.raises(UnknownNameError, match="unknown task family 'atari'"):
        get_budget("paper", "atari")


@pytest.mark.parametrize("name", ENVS)
def test_specs(name):
    env = BraxEnv(name)
    assert env.backend == "spring"
    assert (env.spec.obs_dim, env.spec.num_actions) == SIZES[name]
    assert not env.spec.discrete and (env.spec.action_low, env.spec.action_high) == (-1.0, 1.0)
    assert env.spec.max_steps == EPISODE_STEPS == 1000


def test_context_is_absolute_gravity_on_z():
    env = BraxEnv("inverted_pendulum")
    for context, g in PLANET_GRAVITY.items():
        gravity = env.params(g_factor(context)).gravity
        assert gravity.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(gravity), np.float32([0.0, 0.0, -g]))


def _torso_heights(env: BraxEnv, steps: int):
    """Height of the first body after each of ``steps`` zero-action steps, from one start state."""

    @jax.jit
    def run(params):
        state = env.reset(jax.random.key(0), params)

        def body(s, _):
            s, _, _ = env.step(jax.random.key(0), s, jnp.zeros(env.spec.num_actions), params)
            return s, s.inner.pipeline_state.x.pos[0, 2]

        return state.inner.pipeline_state.x.pos[0, 2], jax.lax.scan(body, state, None, length=steps)[1]

    return run


@pytest.mark.slow  # Brax: compiles hopper (9 s); the CI budget
def test_gravity_reaches_the_physics_and_changing_it_does_not_recompile():
    env, steps = BraxEnv("hopper"), 10
    run = _torso_heights(env, steps)
    drops = {}
    for context in ("uranus", "earth", "neptune"):
        z0, z = run(env.params(g_factor(context)))
        drops[context] = float(z0 - z[-1])
    # The hopper starts in the air: a free fall, whose drop scales with gravity.
    assert drops["neptune"] > drops["earth"] > drops["uranus"] > 0
    assert drops["neptune"] / drops["uranus"] == pytest.approx(11.0 / 8.7, rel=0.02)
    t = steps * float(env._env.dt)
    assert drops["earth"] == pytest.approx(0.5 * 9.81 * t**2, rel=0.1)
    assert run._cache_size() == 1  # three contexts, one compiled program


def test_step_traces_once_across_contexts():
    env = BraxEnv("inverted_pendulum")
    traces = []

    def step(key, state, action, params):
        traces.append(1)  # runs only while tracing
        return env.step(key, state, action, params)

    f = jax.jit(step)
    state = env.reset(jax.random.key(0), env.params(1.0))
    outs = [f(jax.random.key(0), state, jnp.ones(1), env.params(g_factor(c))) for c in PLANET_GRAVITY]
    assert len(traces) == 1 and f._cache_size() == 1
    spins = [float(s.inner.pipeline_state.qd[1]) for s, _, _ in outs]
    assert len(set(spins)) == len(spins)  # yet every context moved the pole differently


def test_backend_is_selectable(monkeypatch):
    assert selected_backend() == "spring"
    monkeypatch.setenv("METAPB2_BRAX_BACKEND", "generalized")
    env = BraxEnv("inverted_pendulum")
    assert env.backend == "generalized" and env._env.backend == "generalized"
    assert BraxEnv("inverted_pendulum", backend="positional").backend == "positional"
    monkeypatch.setenv("METAPB2_BRAX_BACKEND", "bullet")
    with pytest.raises(MetaPB2Error, match="METAPB2_BRAX_BACKEND='bullet'"):
        BraxEnv("inverted_pendulum")


def test_episode_limit_is_a_termination():
    env = BraxEnv("inverted_pendulum")
    params = env.params(1.0)
    step = jax.jit(lambda key, s, a: step_autoreset(env, key, s, a, params))
    state = env.reset(jax.random.key(0), params)
    action = jnp.zeros(env.spec.num_actions)
    # Near upright, the pole does not fall within two steps: only the 1000-step limit can end these.
    before = step(jax.random.key(1), state._replace(t=jnp.int32(EPISODE_STEPS - 2)), action)
    assert not bool(before.terminated) and int(before.next_state.t) == EPISODE_STEPS - 1
    last = step(jax.random.key(1), before.next_state, action)
    # Terminated, not truncated: PPO does not bootstrap at the limit (protocol.md §1.3).
    assert bool(last.terminated) and not bool(last.truncated)
    assert int(last.next_state.t) == 0 and float(last.next_state.inner.done) == 0.0  # reset


def _check_smoke(rec, env_name: str) -> None:
    budget = get_budget("smoke", "brax")
    pts = rec.points
    assert len(pts) == budget.population_size * budget.total_steps // budget.train_batch_size
    ev = pts.loc[pts["eval_is_fresh"], "eval_return"].to_numpy(dtype=float)
    assert len(ev) == budget.population_size * budget.num_intervals and np.isfinite(ev).all()
    assert np.isfinite(pts["kl"]).all() and np.isfinite(pts["vf_loss"]).all()
    assert len(rec.perturbations) == budget.num_intervals - 1
    if env_name == "inverted_pendulum":  # +1 per step alive, at most 1000 steps
        assert ((ev >= 1.0) & (ev <= 1000.0)).all(), ev


@pytest.mark.parametrize("name", [n if n in CHEAP else pytest.param(n, marks=pytest.mark.slow) for n in ENVS])
def test_smoke_run(name):
    _check_smoke(execute_run(RunRequest(f"{name}-earth", "pbt", 0, "smoke")), name)


def test_changing_the_context_reuses_the_compiled_programs():
    execute_run(RunRequest("inverted_pendulum-earth", "pbt", 0, "smoke"))  # compiled here if not yet
    compiles = []

    def listen(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        rec = execute_run(RunRequest("inverted_pendulum-neptune", "pbt", 1, "smoke"))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiles == []
    _check_smoke(rec, "inverted_pendulum")


def _random_policy_return(episodes: int = 10) -> float:
    env = BraxEnv("inverted_pendulum")
    params = env.params(1.0)

    @jax.jit
    def run(key):
        k_reset, k_run = jax.random.split(key)
        state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), params)

        def body(carry, k):
            s, ret, alive = carry
            a = jax.random.uniform(k, (episodes, 1), minval=-1.0, maxval=1.0)
            s, r, term = jax.vmap(env.step, in_axes=(None, 0, 0, None))(k, s, a, params)
            return (s, ret + jnp.where(alive, r, 0.0), alive & ~term), None

        init = (state, jnp.zeros(episodes), jnp.ones(episodes, bool))
        return jax.lax.scan(body, init, jax.random.split(k_run, 200))[0][1].mean()

    return float(run(jax.random.key(0)))


@pytest.mark.slow
def test_ppo_learns_inverted_pendulum_within_the_short_budget():
    random_return = _random_policy_return()
    assert random_return < 30.0
    rec = execute_run(RunRequest("inverted_pendulum-earth", "pbt", 0, "short"))
    evals = rec.points[rec.points.eval_is_fresh]
    best = evals.groupby("timesteps")["eval_return"].max()
    assert np.isfinite(evals["eval_return"]).all()
    assert rec.best_final_eval >= max(200.0, 10 * random_return), (random_return, best.to_dict())
    assert math.isfinite(rec.meta["best_final_eval_return"])
