"""The PB2 bandit step and the pb2 / pb2_star methods (methods.md §2–3), with independent expectations."""

import math

import numpy as np
import pandas as pd
import pytest
import simulation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metapb2_core import bandit
from metapb2_core.gp.kernel import KernelSpec
from metapb2_core.gp.model import fit_gp
from metapb2_core.methods import ExploreContext, get_method
from metapb2_core.quirks import Quirks
from metapb2_core.rounds import perturbation_round
from metapb2_core.space import SEARCH_SPACE

NAMES = SEARCH_SPACE.names
A = {"lr": 1e-4, "lambda": 0.95, "clip_param": 0.2}
B = {"lr": 5e-4, "lambda": 0.91, "clip_param": 0.3}


def test_norm_and_stdz_by_hand():
    v = np.array([2.0, 4.0, 6.0])
    np.testing.assert_allclose(bandit.norm(v, 2.0, 6.0), [0.0, 0.5, 4.0 / (4.0 + 1e-8)])
    y = np.array([1.0] * 9 + [100.0])
    mean = 10.9
    std = math.sqrt((9 * 9.9**2 + 89.1**2) / 10)  # population std (ddof 0) = 29.7
    np.testing.assert_allclose(bandit.stdz(y)[0], (1.0 - mean) / (std + 1e-8))
    assert (100.0 - mean) / std == pytest.approx(3.0) and bandit.stdz(y)[-1] == 2.0  # clipped at +2


def hand_table() -> pd.DataFrame:
    # member 0: A throughout (rewards 10 → 30 → 70); member 1: B, then exploited at t=2 (explore row
    # at t=2 with A and the clone's reward 30), then records 50 at t=3.
    rows = [
        (0, 1, A, 10.0, False, 0),
        (1, 1, B, 5.0, False, 0),
        (0, 2, A, 30.0, False, 0),
        (1, 2, B, 6.0, False, 0),
        (1, 2, A, 30.0, True, 1),
        (0, 3, A, 70.0, False, 0),
        (1, 3, A, 50.0, False, 1),
    ]
    return pd.DataFrame(
        [{"member": m, "time": t, **c, "reward": r, "explore": e, "segment": s} for m, t, c, r, e, s in rows]
    )


def test_transitions_from_a_hand_written_table():
    tr = bandit.transitions(hand_table(), NAMES, by_values=False)
    got = {(int(r.member), int(r.time)): (r.r_before, r.y) for r in tr.itertuples()}
    assert got == {
        (0, 2): (10.0, 20.0),  # (30 − 10) / (2 − 1)
        (1, 2): (5.0, 1.0),
        (0, 3): (30.0, 40.0),
        (1, 3): (30.0, 20.0),  # from the explore row: (50 − 30) / (3 − 2)
    }
    assert list(tr["time"]) == sorted(tr["time"])


def test_transitions_never_cross_an_exploit_unless_the_quirk_is_on():
    # Member 1 runs B, is exploited at t=2 into A, then at t=3 handed back B (Q39).
    rows = [
        (1, 1, B, 5.0, 0),
        (1, 2, B, 6.0, 0),
        (1, 2, A, 30.0, 1),  # explore row of the first exploit
        (1, 3, A, 50.0, 1),
        (1, 3, B, 70.0, 2),  # explore row of the second exploit: B again
        (1, 4, B, 90.0, 2),
    ]
    t = pd.DataFrame([{"member": m, "time": tt, **c, "reward": r, "segment": sg} for m, tt, c, r, sg in rows])
    by_segment = bandit.transitions(t, NAMES, by_values=False)
    by_values = bandit.transitions(t, NAMES, by_values=True)
    as_set = lambda tr: {(int(r.time), r.r_before, r.y) for r in tr.itertuples()}  # noqa: E731
    assert as_set(by_segment) == {(2, 5.0, 1.0), (3, 30.0, 20.0), (4, 70.0, 20.0)}
    # grouping by values joins the pre-exploit record (6.0 at t=2) to the explore row at t=3
    assert as_set(by_values) == as_set(by_segment) | {(3, 6.0, 64.0)}


def test_window_is_everything_below_200_rows():
    tr = pd.DataFrame({"time": np.arange(50.0), "r_before": np.arange(50.0), "y": np.ones(50), **A})
    scaling = bandit.Scaling(SEARCH_SPACE, True, True)
    assert bandit.select_length(tr, NAMES, (50.0, 49.0), scaling, KernelSpec()) == 50


def test_window_search_from_200_rows_in_steps_of_10():
    rng = np.random.default_rng(0)
    n = 215
    tr = pd.DataFrame(
        {
            "time": np.repeat(np.arange(n // 5 + 1.0), 5)[:n],
            "r_before": rng.random(n),
            "y": rng.standard_normal(n),
            "lr": 10 ** rng.uniform(-5, -3, n),
            "lambda": rng.uniform(0.9, 0.99, n),
            "clip_param": rng.uniform(0.1, 0.5, n),
        }
    )
    scaling = bandit.Scaling(SEARCH_SPACE, False, False)
    assert bandit.select_length(tr, NAMES, (43.0, 0.5), scaling, KernelSpec(bounded=False)) in (200, 210)


def test_back_transform_including_the_log_scale():
    log = bandit.Scaling(SEARCH_SPACE, log_scale=True, clip=True)
    lin = bandit.Scaling(SEARCH_SPACE, log_scale=False, clip=False)
    half = np.array([0.5, 0.5, 0.5])
    np.testing.assert_allclose(log.from_unit(half), [1e-4, 0.945, 0.3], rtol=1e-6)  # √(1e-5·1e-3) = 1e-4
    np.testing.assert_allclose(lin.from_unit(half), [5.05e-4, 0.945, 0.3], rtol=1e-6)
    assert (
        log.from_unit(half).dtype == np.float64
        and float(np.float32(log.from_unit(half)[0])) == log.from_unit(half)[0]
    )  # float32 values (Q13)
    # forward and back agree; only PB2* clips outside the bounds
    np.testing.assert_allclose(
        log.from_unit(log.to_unit(np.array(list(B.values())))), list(B.values()), rtol=1e-6
    )
    outside = np.array([2e-3, 0.95, 0.2])
    assert log.to_unit(outside)[0] == 1.0 and lin.to_unit(outside)[0] > 1.0


def test_beta_and_ucb_by_hand():
    rng = np.random.default_rng(1)
    X = rng.random((10, 5))
    y = rng.standard_normal((10, 1))
    fit = fit_gp(X, y, KernelSpec())
    fixed = np.array([0.9, 0.4])
    kappa_expected = math.sqrt(0.2 + math.log(0.4 * 10))
    u = np.array([0.1, 0.5, 0.9])
    mean, var = (a.item() for a in fit.predict(np.concatenate([fixed, u])[None, :]))
    acq_std, kappa = bandit.ucb(fit, fit, fixed, 0.2, use_std=True)
    acq_var, _ = bandit.ucb(fit, fit, fixed, 0.2, use_std=False)
    assert kappa == pytest.approx(kappa_expected)
    assert acq_std(u) == pytest.approx(mean + kappa_expected * math.sqrt(var))
    assert acq_var(u) == pytest.approx(mean + kappa_expected * var)
    # β's log term is floored at 0 for tiny tables: N = 2 gives ln(0.8) < 0
    small = fit_gp(X[:2], y[:2], KernelSpec())
    assert bandit.ucb(small, small, fixed, 0.2, True)[1] == pytest.approx(math.sqrt(0.2))


@pytest.mark.parametrize("use_std", [True, False])
def test_acquisition_gradient_matches_finite_differences(use_std):
    rng = np.random.default_rng(2)
    X, y = rng.random((12, 5)), rng.standard_normal((12, 1))
    fit = fit_gp(X, y, KernelSpec())
    pending = fit_gp(np.vstack([X, [[0.9, 0.4, 0.3, 0.3, 0.3]]]), np.vstack([y, [[0.0]]]), KernelSpec())
    acq, _ = bandit.ucb(fit, pending, np.array([0.9, 0.4]), 0.2, use_std)
    u, h = np.array([0.25, 0.6, 0.8]), 1e-6
    numeric = [(acq(u + h * e) - acq(u - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(acq.value_and_grad(u)[1], numeric, rtol=1e-5, atol=1e-7)


def test_acquisition_optimum_found_inside_the_box():
    target = np.array([0.2, 0.7, 0.55])
    u, v = bandit.maximise(lambda u: -float(np.sum((u - target) ** 2)), 3, np.random.default_rng(0))
    np.testing.assert_allclose(u, target, atol=1e-3)
    u, _ = bandit.maximise(lambda u: float(np.sum(u)), 3, np.random.default_rng(0))  # optimum on a corner
    assert ((u >= 0) & (u <= 1)).all() and u.sum() == pytest.approx(3.0)


def simulate(method_name, seed, rounds, n=4, quirks=Quirks(), objective=None, noise=0.5):
    method = get_method(method_name)(SEARCH_SPACE, np.random.default_rng([seed, 2]), quirks)
    configs, suggestions, _ = simulation.simulate(method, seed, rounds, objective, n, noise)
    return configs, suggestions


@pytest.mark.parametrize("name", ["pb2", "pb2_star"])
def test_methods_record_gp_diagnostics_and_stay_in_bounds(name):
    _, suggestions = simulate(name, 0, rounds=5)
    first, later = suggestions[0], suggestions[1:]
    assert first.diagnostics["mode"] == ("prior_draw" if name == "pb2_star" else "copy_clone")
    for s in later:
        d = s.diagnostics
        assert d["mode"] == "gp_ucb" and d["fallback"] is None
        assert {"variance", "lengthscale", "epsilon", "noise", "log_likelihood", "n_rows"} <= set(d)
        assert SEARCH_SPACE.validate(s.config)
    # PB2* adds an explore row every round, so round r has 4·(r−1) transitions (methods.md §3.5).
    if name == "pb2_star":
        assert [s.diagnostics["n_rows"] for s in later] == [4, 8, 12]


def test_pending_rows_change_the_second_suggestion_of_a_round():
    method_a = get_method("pb2_star")(SEARCH_SPACE, np.random.default_rng(5))
    method_b = get_method("pb2_star")(SEARCH_SPACE, np.random.default_rng(5))
    table = pd.DataFrame(
        [
            {"member": m, "time": t * 1000, **A, "lr": 1e-5 * (1 + m + t), "reward": float(m * t)}
            for t in (1, 2, 3)
            for m in range(8)
        ]
    )
    ctx = ExploreContext(0, 7, dict(A), 3, 3000, table, [])
    without = method_a.suggest(ctx)
    with_pending = method_b.suggest(ExploreContext(0, 7, dict(A), 3, 3000, table, [without.config]))
    assert with_pending.diagnostics["pending_rows"] == 1
    assert with_pending.config != without.config


def test_pb2_star_moves_the_population_toward_the_best_lr_faster_than_random_search():
    def distance(configs):
        return float(np.mean([abs(math.log10(c["lr"]) + 3.5) for c in configs]))

    seeds = range(4)
    pb2_star = np.mean([distance(simulate("pb2_star", s, rounds=10)[0]) for s in seeds])
    random = np.mean([distance(simulate("random_search", s, rounds=10)[0]) for s in seeds])
    assert pb2_star < 0.75 * random, (pb2_star, random)


def test_faithful_quirks_switch_pb2_star_to_the_original():
    m = get_method("pb2_star")(SEARCH_SPACE, np.random.default_rng(0), Quirks.faithful())
    assert m.variant.kernel.lengthscale == 1.0 and not m.variant.scaling_log
    d = get_method("pb2_star")(SEARCH_SPACE, np.random.default_rng(0))
    assert d.variant.kernel.lengthscale < 1.0 and d.variant.scaling_log
    assert get_method("pb2")(
        SEARCH_SPACE, np.random.default_rng(0), Quirks.faithful()
    ).variant.kernel.ray_gradients


finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["pb2", "pb2_star"]),
    n=st.integers(2, 8),
    rounds=st.integers(2, 5),
    rewards=st.lists(finite, min_size=40, max_size=40),
    seed=st.integers(0, 2**16),
)
def test_property_suggestions_are_finite_and_inside_the_bounds(name, n, rounds, rewards, seed):
    rng = np.random.default_rng(seed)
    method = get_method(name)(SEARCH_SPACE, np.random.default_rng(seed))
    configs = method.initial_configs(n)
    rows, it = [], iter(rewards * 2)
    for r in range(1, rounds + 1):
        scores = np.array([next(it) for _ in range(n)])
        rows += [{"member": i, "time": r * 10, **configs[i], "reward": scores[i]} for i in range(n)]
        # perturbation_round validates every suggestion: it raises outside the bounds
        for p in perturbation_round(
            method, SEARCH_SPACE, scores, configs, r, r * 10, pd.DataFrame(rows), rng
        ):
            assert all(math.isfinite(v) for v in p.new_config.values())
            configs[p.member] = p.new_config


def explore_rows_of(method_name, quirks, seeds=range(12), rounds=8):
    """(round time, explore row time, its reward, the clone's reward at that time) of every
    explore row PB2 wrote over simulated runs."""
    out = []
    for seed in seeds:
        method = get_method(method_name)(SEARCH_SPACE, np.random.default_rng(seed), quirks)
        rng, f = np.random.default_rng(seed), simulation.lr_objective()
        configs, reward, rows = method.initial_configs(4), np.zeros(4), []
        for r in range(1, rounds):
            reward += np.array([f(c) for c in configs]) + rng.normal(0, 0.5, 4)
            rows += [{"member": i, "time": r * 10, **configs[i], "reward": reward[i]} for i in range(4)]
            table = pd.DataFrame(rows)
            for p in perturbation_round(method, SEARCH_SPACE, reward.copy(), configs, r, r * 10, table, rng):
                configs[p.member], reward[p.member] = p.new_config, reward[p.cloned_from]
                if np.isfinite(p.explore_time):
                    at = table[(table["member"] == p.cloned_from) & (table["time"] == p.explore_time)]
                    out.append((p.time, int(p.explore_time), p.explore_reward, float(at["reward"].iloc[-1])))
    return out


def test_faithful_pb2_puts_the_explore_row_at_the_clones_last_transition():
    """methods.md §2.1/§2.3 step 5: Ray's PB2 writes the explore row at the time and reward of the
    clone's last transition; they lie an interval back when the clone was copy-exploited the round
    before. By default the row starts at the current time, with the clone's current reward."""
    faithful = explore_rows_of("pb2", Quirks(pb2_explore_row_at_clone_transition=True))
    assert all(reward == at for _, _, reward, at in faithful)  # the clone's reward at that time
    assert any(t_row < t for t, t_row, _, _ in faithful)  # the case exists in these runs, and is kept
    default = explore_rows_of("pb2", Quirks())
    assert all(t_row == t for t, t_row, _, _ in default) and all(r == at for _, _, r, at in default)
    assert Quirks.faithful().pb2_explore_row_at_clone_transition


def test_faithful_pending_rows_log_the_float32_values():
    log_space = bandit.Scaling(SEARCH_SPACE, log_scale=True, clip=True)
    values = np.array([[1.2345678e-4, 0.95, 0.2]])
    exact, f32 = log_space.to_unit(values), log_space.to_unit(values, float32=True)
    assert f32[0, 0] != exact[0, 0] and abs(f32[0, 0] - exact[0, 0]) < 1e-6  # float32 rounding of ln
    assert f32[0, 0] == pytest.approx(
        (np.log(np.float32(1.2345678e-4)) - np.log(1e-5)) / (np.log(1e-3) - np.log(1e-5) + 1e-8), abs=0
    )
    assert (f32[0, 1:] == exact[0, 1:]).all()  # linear columns untouched
    linear = bandit.Scaling(SEARCH_SPACE, log_scale=False, clip=False)  # the faithful switch's L = ∅
    assert (linear.to_unit(values, float32=True) == linear.to_unit(values)).all()
    assert Quirks.faithful().pending_log_float32


@pytest.mark.parametrize("name", ["pb2", "pb2_star"])
def test_transitions_dropped_for_non_finite_rewards_are_counted_in_the_diagnostics(name):
    """Member 1 diverged at t=2000 (NaN) and recovered at t=3000: its two steps touching the NaN
    are left out of the GP's data, and the suggestion says so; the configuration is the one the
    GP-UCB selection gives on the transitions without them."""
    rewards = {0: [1.0, 3.0, 6.0], 1: [2.0, math.nan, 4.0], 2: [0.5, 1.0, 1.5], 3: [3.0, 5.0, 9.0]}
    configs = [dict(A), dict(B), {**A, "lr": 2e-4}, {**B, "lr": 7e-4}]
    table = pd.DataFrame(
        [
            {"member": m, "time": t * 1000, **configs[m], "reward": rewards[m][t - 1]}
            for t in (1, 2, 3)
            for m in range(4)
        ]
    )
    ctx = ExploreContext(2, 3, dict(configs[3]), 3, 3000, table, [])
    got = get_method(name)(SEARCH_SPACE, np.random.default_rng(9)).suggest(ctx)
    d = got.diagnostics
    assert d["dropped_nonfinite"] == 2 and d["mode"] == "gp_ucb" and d["fallback"] is None
    assert d["n_rows"] == 6  # 4 members × 2 steps, less the two of member 1
    # the same selection, by hand, on the finite transitions: the count changes nothing
    ref = get_method(name)(SEARCH_SPACE, np.random.default_rng(9))
    ref.exploit_times[2] = [3000]
    trans = bandit.transitions(ref.data_table(table), NAMES, by_values=False)
    assert len(trans) == 6 and not trans["member"].eq(1).any()
    last = trans[trans["member"] == 3].iloc[-1]
    config, diagnostics = ref._select(trans, (float(last["time"]), float(last["r_before"])), [], table)
    assert got.config == config and {k: v for k, v in d.items() if k != "dropped_nonfinite"} == diagnostics
    # every reward finite: nothing dropped, no key (the records of such runs are as they were)
    finite = table.assign(reward=table["reward"].fillna(3.5))
    plain = get_method(name)(SEARCH_SPACE, np.random.default_rng(9))
    assert (
        "dropped_nonfinite"
        not in plain.suggest(ExploreContext(2, 3, dict(configs[3]), 3, 3000, finite, [])).diagnostics
    )
