"""The synchronous population loop: who exploits, what is copied, and how training continues."""

import jax
import numpy as np
import pandas as pd
import pytest

from metapb2_core.budgets import get_budget
from metapb2_core.envs import get_task
from metapb2_core.errors import MetaPB2Error
from metapb2_core.methods import ExploreContext, Method, Suggestion, get_method
from metapb2_core.population import run_population
from metapb2_core.ppo.trainer import get_trainer, hparams_from_configs
from metapb2_core.rounds import perturbation_round, quantiles
from metapb2_core.space import SEARCH_SPACE, Param, SearchSpace

TASK = get_task("cart_pole-earth")
SMOKE = get_budget("smoke")
CONFIG = {"lr": 3e-4, "lambda": 0.95, "clip_param": 0.2}


def leaves(tree, member):
    return [np.asarray(x[member]) for x in jax.tree_util.tree_leaves(tree)]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("scores", "lower", "upper"),
    [
        ([3.0, 1.0, 4.0, 2.0], [1], [2]),  # population 4: q = ceil(4 · 0.25) = 1
        ([5, 1, 7, 3, 8, 2, 6, 4], [1, 5], [2, 4]),  # population 8: q = 2, ascending order
        ([1.0, np.nan, 2.0, 3.0], [1], [3]),  # a NaN score ranks lowest
        ([2.0, 2.0, 2.0, 2.0], [0], [3]),  # ties keep member order (stable sort)
        ([1.0, 2.0], [0], [1]),  # q = 1 ≤ n/2
        ([1.0], [], []),  # a single member never exploits
    ],
)
def test_quantiles(scores, lower, upper):
    assert quantiles(np.asarray(scores, dtype=float)) == (lower, upper)


def test_quantile_count_for_paper_population_sizes():
    for n, q in [(4, 1), (8, 2), (12, 3)]:
        lower, upper = quantiles(np.arange(n, dtype=float))
        assert (len(lower), len(upper)) == (q, q)


@pytest.fixture(scope="module")
def trained_population():
    trainer = get_trainer("cart_pole", SMOKE)
    env_params = TASK.env_params()
    pop = trainer.init(jax.random.split(jax.random.PRNGKey(0), 4), env_params)
    hp = hparams_from_configs([CONFIG] * 4)
    pop, _ = trainer.iterate(pop, hp, env_params)  # non-trivial optimiser state and KL coefficient
    pop, _ = trainer.iterate(pop, hp, env_params)
    return trainer, env_params, hp, pop


def test_exploit_copies_weights_optimiser_state_and_kl_coefficient(trained_population):
    trainer, _, _, pop = trained_population
    assert not same(leaves(pop.params, 0), leaves(pop.params, 2))
    copied = trainer.exploit(pop, jax.numpy.asarray([0, 1, 0, 3]))
    for part in ("params", "opt_state", "kl_coeff"):
        assert same(leaves(getattr(copied, part), 2), leaves(getattr(pop, part), 0)), part
        for m in (0, 1, 3):  # everyone else is untouched
            assert same(leaves(getattr(copied, part), m), leaves(getattr(pop, part), m)), part
    # Each member keeps its own environments and random stream.
    for part in ("env_state", "obs", "key"):
        assert same(leaves(getattr(copied, part), 2), leaves(getattr(pop, part), 2)), part


def test_copied_member_continues_from_the_copied_training_state(trained_population):
    trainer, env_params, hp, pop = trained_population
    copied = trainer.exploit(pop, jax.numpy.asarray([0, 1, 0, 3]))
    # Give member 2 member 0's environments and random stream too: from then on their training
    # must be identical, which holds only if the whole training state was copied.
    twin = copied._replace(
        env_state=jax.tree_util.tree_map(lambda x: x.at[2].set(x[0]), copied.env_state),
        obs=copied.obs.at[2].set(copied.obs[0]),
        ep_return=copied.ep_return.at[2].set(copied.ep_return[0]),
        key=copied.key.at[2].set(copied.key[0]),
    )
    after, _ = trainer.iterate(twin, hp, env_params)
    assert same(leaves(after.params, 2), leaves(after.params, 0))
    assert not same(leaves(after.params, 0), leaves(twin.params, 0))  # it did train

    # Control: copying the weights but not the optimiser state changes the continuation.
    params_only = twin._replace(opt_state=pop.opt_state)
    after_params_only, _ = trainer.iterate(params_only, hp, env_params)
    assert not same(leaves(after_params_only.params, 2), leaves(after_params_only.params, 0))


class RecordingMethod(Method):
    """A deterministic method that records what the loop shows it."""

    name = "recording"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[ExploreContext] = []

    def suggest(self, ctx: ExploreContext) -> Suggestion:
        self.calls.append(ctx)
        config = {"lr": 1e-4 + 1e-5 * len(self.calls), "lambda": 0.91, "clip_param": 0.11}
        return Suggestion(config, {"call": len(self.calls)})


def test_loop_exploits_lowest_with_a_top_member_and_applies_the_suggestion():
    method = RecordingMethod(SEARCH_SPACE, np.random.default_rng(0))
    result = run_population(TASK, method, SMOKE, 0, SEARCH_SPACE, TASK.env_params())
    points = result.points
    assert len(method.calls) == SMOKE.num_intervals - 1  # no perturbation at the final budget
    for ctx, pert in zip(method.calls, result.perturbations, strict=True):
        at = points[(points.timesteps == ctx.time) & points.eval_is_fresh].set_index("member")
        scores = at["eval_return"]
        assert ctx.member == pert.member == quantiles(scores.to_numpy())[0][0]
        assert ctx.clone == pert.cloned_from == quantiles(scores.to_numpy())[1][0]
        assert ctx.clone_config == {k: at.loc[ctx.clone, k] for k in SEARCH_SPACE.names}
        # The table shows every member's record rows up to this round.
        assert len(ctx.table) == 4 * ctx.round and ctx.table["time"].max() == ctx.time
        # From the next iteration on, the member trains with the suggested configuration.
        nxt = points[(points.member == ctx.member) & (points.timesteps == ctx.time + SMOKE.train_batch_size)]
        assert nxt[SEARCH_SPACE.names].iloc[0].to_dict() == pytest.approx(pert.new_config, rel=1e-6)
    # Members never exploited keep their initial configuration throughout.
    exploited = {p.member for p in result.perturbations}
    for m in set(range(4)) - exploited:
        assert points[points.member == m]["lr"].nunique() == 1


# ---- the search space drives the trainer's traced hyperparameters ------------------------------------

FOUR = SearchSpace([*SEARCH_SPACE.params, Param("entropy_coeff", 0.0, 0.05)])


def test_a_fourth_parameter_reaches_the_trainer():
    trainer = get_trainer("cart_pole", SMOKE)
    env_params = TASK.env_params()
    pop = trainer.init(jax.random.split(jax.random.PRNGKey(0), 4), env_params)

    def entropy_after(coeffs):
        hp = hparams_from_configs([{**CONFIG, "entropy_coeff": c} for c in coeffs])
        _, metrics = trainer.iterate(pop, hp, env_params)
        return np.asarray(metrics.entropy)

    default = np.asarray(trainer.iterate(pop, hparams_from_configs([CONFIG] * 4), env_params)[1].entropy)
    assert np.array_equal(entropy_after([0.0] * 4), default)  # a traced 0 is the constant 0
    bonus = entropy_after([0.0, 0.0, 5.0, 5.0])  # per member: only members 2 and 3 get the bonus
    assert np.array_equal(bonus[:2], default[:2]) and (bonus[2:] > default[2:]).all()

    # through the loop: the column, the configurations and the perturbations carry it
    result = run_population(
        TASK, get_method("pbt")(FOUR, np.random.default_rng(0)), SMOKE, 0, FOUR, env_params
    )
    assert result.points["entropy_coeff"].between(0.0, 0.05).all()
    assert all("entropy_coeff" in p.new_config for p in result.perturbations)
    assert any(p.new_config["entropy_coeff"] != p.old_config["entropy_coeff"] for p in result.perturbations)


def test_a_parameter_the_trainer_cannot_tune_is_a_clear_error_before_compiling():
    space = SearchSpace([*SEARCH_SPACE.params, Param("hidden_units", 16.0, 256.0)])
    method = get_method("random_search")(space, np.random.default_rng(0))
    with pytest.raises(
        MetaPB2Error, match="'hidden_units' of the search space are not PPO settings .*tunable: lr"
    ):
        run_population(TASK, method, SMOKE, 0, space, TASK.env_params())


def reference_loop(task, method, budget, seed, space):
    """The population loop as it was before the ask/tell population (commit adc29cb), rounds
    through perturbation_round directly: the decisions and rewards it produces, per interval."""
    n, trainer, env_params = budget.population_size, get_trainer(task.env_name, budget), task.env_params()
    clone_rng = np.random.default_rng([seed, 1])
    configs = [space.validate(c) for c in method.initial_configs(n)]
    key, k_init = jax.random.split(jax.random.PRNGKey(seed))
    pop = trainer.init(jax.random.split(k_init, n), env_params)
    table_rows, out = [], []
    for r in range(1, budget.num_intervals + 1):
        key, k_eval = jax.random.split(key)
        pop, _, eval_return = trainer.run_interval(
            pop, hparams_from_configs(configs), env_params, jax.random.split(k_eval, n)
        )
        scores = np.asarray(jax.device_get(eval_return), dtype=np.float64)
        now = r * budget.interval
        table_rows += [{"member": m, "time": now, **configs[m], "reward": float(scores[m])} for m in range(n)]
        out.append((r, scores.tolist(), [dict(c) for c in configs]))
        if r == budget.num_intervals:
            break
        source = np.arange(n)
        for p in perturbation_round(
            method, space, scores, configs, r, now, pd.DataFrame(table_rows), clone_rng
        ):
            configs[p.member], source[p.member] = p.new_config, p.cloned_from
        pop = trainer.exploit(pop, jax.numpy.asarray(source))
    return out


@pytest.mark.parametrize("name", ["pbt", "pb2_star"])
def test_the_loop_through_the_ask_tell_population_equals_the_loop_before_it(name):
    got = run_population(
        TASK,
        get_method(name)(SEARCH_SPACE, np.random.default_rng([4, 2])),
        SMOKE,
        4,
        SEARCH_SPACE,
        TASK.env_params(),
    )
    want = reference_loop(
        TASK, get_method(name)(SEARCH_SPACE, np.random.default_rng([4, 2])), SMOKE, 4, SEARCH_SPACE
    )
    fresh = got.points[got.points["eval_is_fresh"]].sort_values(["round", "member"])
    for r, scores, configs in want:
        rows = fresh[fresh["round"] == r]
        assert rows["eval_return"].tolist() == scores
        assert rows[SEARCH_SPACE.names].to_dict("records") == configs
