"""Meta-learning: ranking weights, leave-one-task-out, meta methods, multi-task GP (methods.md §5–8)."""

import math

import GPy
import numpy as np
import pandas as pd
import pytest
import simulation
from simulation import lr_objective

from metapb2_core import bandit
from metapb2_core.gp.kernel import KernelSpec, TVSquaredExp
from metapb2_core.gp.lcm import fit_lcm, lcm_posterior
from metapb2_core.gp.model import fit_gp
from metapb2_core.meta import weights as W
from metapb2_core.meta.models import fit_meta_task
from metapb2_core.meta.tables import MetaLeakError, load_meta_tables, write_meta_table
from metapb2_core.methods import get_method
from metapb2_core.quirks import Quirks
from metapb2_core.space import SEARCH_SPACE

NAMES = SEARCH_SPACE.names
META_METHODS = ["metaprior", "multitask", "taf"]


# ---- ranking weights ---------------------------------------------------------------------------
def test_discordant_pairs_by_hand():
    p = np.array([[1.0, 2.0, 3.0]])
    y = np.array([[1.0, 3.0, 2.0]])
    assert W._discordant(p, y)[0] == 2  # the pair (b, c) is mis-ranked, counted once per order
    assert W._discordant(y, y)[0] == 0
    tied = np.array([[1.0, 1.0, 3.0]])
    # the tie (a, b) counts once (y_a < y_b only), the swapped pair (b, c) twice
    assert W._discordant(tied, y)[0] == 3


def test_target_loss_shift0_adds_positions_predicted_below_themselves():
    y = np.array([[1.0, 2.0, 3.0]])
    loo = np.array([[0.5, 2.5, 2.0]])

    def by_loops(include_self):
        n = 3
        return sum(
            (loo[0, a] < y[0, c]) != (y[0, a] < y[0, c])
            for a in range(n)
            for c in range(n)
            if include_self or a != c
        )

    assert W._target_discordant(loo, y, False)[0] == by_loops(False)
    assert W._target_discordant(loo, y, True)[0] == by_loops(True)
    assert by_loops(True) - by_loops(False) == 2  # positions 0 and 2 lie below their own value


def test_weights_sum_to_one_favour_a_copy_of_the_target_and_are_deterministic():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(30)
    preds = np.vstack(
        [rng.standard_normal(30), y * 2.0 + 1.0, rng.standard_normal(30)]
    )  # row 1: same ranking
    w = W.rank_weights(preds, y, np.random.default_rng(7))
    assert w.sum() == pytest.approx(1.0) and w[1] > 0.9
    np.testing.assert_array_equal(w, W.rank_weights(preds, y, np.random.default_rng(7)))
    with_target = W.rank_weights(preds, y, np.random.default_rng(7), loo=rng.standard_normal(30))
    assert len(with_target) == 4 and with_target.sum() == pytest.approx(1.0)


def test_closed_form_loo_equals_refitting_the_posterior_without_each_row():
    rng = np.random.default_rng(3)
    X, y = rng.random((9, 5)), rng.standard_normal((9, 1))
    fit = fit_gp(X, y, KernelSpec())
    expected = []
    for a in range(9):
        keep = np.arange(9) != a
        sub = fit_gp(X[keep], y[keep], KernelSpec())  # refitted, then forced to the full fit's parameters
        from metapb2_core.gp.model import GPFit, _posterior

        L, alpha, ll = _posterior(X[keep], y[keep], fit.variance, fit.lengthscale, fit.epsilon, fit.noise)
        same = GPFit(X[keep], fit.variance, fit.lengthscale, fit.epsilon, fit.noise, ll, None, L, alpha)
        expected.append(same.predict(X[a : a + 1])[0].item())
        assert sub.n_rows == 8
    np.testing.assert_allclose(W.loo_means(fit, y), expected, rtol=1e-6, atol=1e-8)


# ---- synthetic meta-data -----------------------------------------------------------------------
def simulate(method, seed, rounds, shift=3.5):
    return simulation.simulate(method, seed, rounds, lr_objective(shift))


def meta_table(task, shift, seed, rounds=8):
    method = get_method("pb2")(SEARCH_SPACE, np.random.default_rng([seed, 2]))
    _, _, rows = simulate(method, seed, rounds, shift)
    trans = bandit.transitions(method.data_table(rows), NAMES, False, None)
    ident = {
        "run_id": f"pb2-{task}-sim-s{seed}",
        "task": task,
        "method": "pb2",
        "seed": seed,
        "budget": "sim",
    }
    return trans.assign(**ident)


@pytest.fixture(scope="module")
def meta_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("meta")
    for task, shift in [("near-a", 3.4), ("near-b", 3.6), ("far-c", 4.6), ("target-t", 3.5)]:
        for seed in (0, 1):
            write_meta_table(root, meta_table(task, shift, seed))
    return root


def test_leave_one_task_out_never_leaks(meta_dir):
    tables = load_meta_tables(meta_dir, "target-t")
    assert list(tables) == ["far-c", "near-a", "near-b"]  # deterministic order
    assert all((t["task"] != "target-t").all() for t in tables.values())
    assert set(tables["near-a"]["seed"]) == {0, 1}  # pooled over seeds
    assert list(tables["near-a"]["time"]) == sorted(tables["near-a"]["time"])
    leaky = {**tables, "target-t": meta_table("target-t", 3.5, 0)}
    for name in META_METHODS:
        with pytest.raises(MetaLeakError, match="target-t"):
            get_method(name)(
                SEARCH_SPACE, np.random.default_rng(0), meta_tables=leaky, target_task="target-t"
            )
    disguised = {"near-a": pd.concat([tables["near-a"], meta_table("target-t", 3.5, 0)])}
    with pytest.raises(MetaLeakError):
        get_method("taf")(
            SEARCH_SPACE, np.random.default_rng(0), meta_tables=disguised, target_task="target-t"
        )
    with pytest.raises(Exception, match="no meta-data"):
        load_meta_tables(meta_dir, "target-t", method="pbt")


def test_alignment_maps_are_inverse(meta_dir):
    tables = load_meta_tables(meta_dir, "target-t")
    scaling = bandit.Scaling(SEARCH_SPACE, True, True)
    task = fit_meta_task("near-a", tables["near-a"], NAMES, scaling, KernelSpec())
    al = task.align(2000.0, 5000.0)
    X = np.random.default_rng(0).random((6, 5))
    np.testing.assert_allclose(al.to_target(al.to_meta(X)), X, atol=1e-9)
    np.testing.assert_allclose(al.to_meta(X)[:, 2:], X[:, 2:])  # hyperparameters untouched
    assert task.align(10**9, 2 * 10**9) is None  # no meta rows in that time range


@pytest.mark.parametrize("name", META_METHODS)
def test_meta_methods_stay_in_bounds_and_record_lineage(meta_dir, name):
    tables = load_meta_tables(meta_dir, "target-t")
    method = get_method(name)(
        SEARCH_SPACE, np.random.default_rng(1), meta_tables=tables, target_task="target-t"
    )
    _, suggestions, _ = simulate(method, 3, rounds=6)
    used_meta = 0
    for s in suggestions:
        SEARCH_SPACE.validate(s.config)
        d = s.diagnostics
        if d["mode"] != "gp_ucb":
            continue
        assert set(d["meta_weights"]) <= set(tables)
        assert sum(d["meta_weights"].values()) <= 1.0 + 1e-9
        for task, runs in d["meta_runs"].items():
            assert runs == sorted(set(tables[task]["run_id"]))
        used_meta += bool(d["meta_weights"])
        if not d["meta_weights"]:
            assert d["meta_fallback"]  # a suggestion without meta-data says why
    assert used_meta >= 2


def test_meta_prior_moves_toward_the_best_lr_from_the_first_gp_round(meta_dir):
    """With meta tasks whose optimum is near the target's, MetaPrior's round-2 suggestions sit
    closer to the best lr than PB2*'s."""
    tables = load_meta_tables(meta_dir, "target-t")

    def first_gp_distance(make):
        d = []
        for seed in range(4):
            _, sug, _ = simulate(make(seed), seed, rounds=3)
            d += [abs(math.log10(s.config["lr"]) + 3.5) for s in sug if s.diagnostics["mode"] == "gp_ucb"]
        return float(np.mean(d))

    meta = first_gp_distance(
        lambda s: get_method("metaprior")(
            SEARCH_SPACE, np.random.default_rng(s), meta_tables=tables, target_task="target-t"
        )
    )
    plain = first_gp_distance(lambda s: get_method("pb2_star")(SEARCH_SPACE, np.random.default_rng(s)))
    assert meta < plain, (meta, plain)


def test_meta_prior_records_how_much_its_prior_acts_and_a_flat_prior_changes_nothing(meta_dir):
    """Informative meta-data: the prior varies over the window and holds a share of the mean at
    the suggestion. A flat prior (a constant meta response) is removed by the residual's
    standardisation: the suggestions are PB2*'s, and the diagnostics say the prior could not act."""
    tables = load_meta_tables(meta_dir, "target-t")
    method = get_method("metaprior")(
        SEARCH_SPACE, np.random.default_rng(0), meta_tables=tables, target_task="target-t"
    )
    _, sug, _ = simulate(method, 0, rounds=4)
    gp = [s.diagnostics for s in sug if s.diagnostics["mode"] == "gp_ucb" and "prior_share" in s.diagnostics]
    assert gp and all(d["prior_spread"] > 0.05 and 0 < d["prior_share"] <= 1 for d in gp), gp

    flat = {t: df.assign(y=0.25) for t, df in tables.items()}  # the same rows, a constant response
    flat_method = get_method("metaprior")(
        SEARCH_SPACE, np.random.default_rng(0), meta_tables=flat, target_task="target-t"
    )
    _, flat_sug, _ = simulate(flat_method, 0, rounds=4)
    star = get_method("pb2_star")(SEARCH_SPACE, np.random.default_rng(0))
    _, star_sug, _ = simulate(star, 0, rounds=4)
    flat_gp = [s for s in flat_sug if "prior_spread" in s.diagnostics]
    assert flat_gp and all(s.diagnostics["prior_spread"] < 1e-6 for s in flat_gp)
    for a, b in zip(flat_sug, star_sug, strict=True):
        for n in NAMES:
            assert a.config[n] == pytest.approx(b.config[n], rel=1e-5), (n, a.diagnostics, b.diagnostics)


# ---- the multi-task GP -------------------------------------------------------------------------
def _task_data(rng, n, f, noise=0.05):
    X = rng.random((n, 3))
    X[:, 0] = 0.5
    return X, (f(X) + noise * rng.standard_normal(n)).reshape(-1, 1)


def test_multitask_gp_predicts_the_target_better_with_a_correlated_meta_task():
    rng = np.random.default_rng(0)
    f = lambda X: np.sin(6 * X[:, 2]) + 0.5 * X[:, 1]  # noqa: E731
    Xt, yt = _task_data(rng, 5, f)
    Xm, ym = _task_data(rng, 60, lambda X: 1.5 * f(X) + 0.3)  # correlated meta task
    Xs = rng.random((200, 3))
    Xs[:, 0] = 0.5
    spec = KernelSpec(1.0, 0.5, 0.1)
    alone = fit_gp(Xt, yt, spec).predict(Xs)[0][:, 0]
    joint = fit_lcm([Xt, Xm], [yt, ym], spec, np.random.default_rng(0)).predict(Xs)[0][:, 0]
    mse = lambda p: float(np.mean((p - f(Xs)) ** 2))  # noqa: E731
    assert mse(joint) < 0.5 * mse(alone), (mse(joint), mse(alone))


def test_lcm_predictor_matches_gpy():
    rng = np.random.default_rng(1)
    X0, y0 = _task_data(rng, 6, lambda X: X[:, 2])
    X1, y1 = _task_data(rng, 9, lambda X: 2 * X[:, 2])
    kern = GPy.util.multioutput.LCM(
        3, 2, [TVSquaredExp(3, KernelSpec(1.0, 0.5, 0.1)) for _ in range(2)], W_rank=1
    )
    kernels = [(1.3, 0.4, 0.2), (0.7, 0.8, 0.05)]
    for icm, (var, ls, eps) in zip(kern.parts, kernels, strict=True):
        icm.parts[0].variance[:], icm.parts[0].lengthscale[:], icm.parts[0].epsilon[:] = var, ls, eps
        icm.parts[1].W[:] = rng.standard_normal((2, 1))
        icm.parts[1].kappa[:] = rng.random(2) + 0.1
    # GPy's kernel caches go stale on direct assignment; build the model after setting them
    model = GPy.models.GPCoregionalizedRegression([X0, X1], [y0, y1], kernel=kern)
    noise = np.array([0.05, 0.2])
    for lik, nv in zip(model.likelihood.likelihoods_list, noise, strict=True):
        lik.variance[:] = nv
    ours = lcm_posterior([X0, X1], [y0, y1], kernels, [icm.parts[1].B.copy() for icm in kern.parts], noise)
    Xs = rng.random((5, 3))
    mean, var = model.predict(
        np.hstack([Xs, np.zeros((5, 1))]), Y_metadata={"output_index": np.zeros((5, 1), int)}
    )
    ours_mean, ours_var = ours.predict(Xs)
    np.testing.assert_allclose(ours_mean[:, 0], mean[:, 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours_var, var[:, 0], rtol=1e-6, atol=1e-9)
    assert ours.log_likelihood == pytest.approx(model.log_likelihood(), rel=1e-6)


def test_lcm_fits_keep_to_their_evaluation_budget_and_warm_start_by_task_name():
    rng = np.random.default_rng(6)
    f = lambda X: np.sin(6 * X[:, 2]) + 0.5 * X[:, 1]  # noqa: E731
    data = [
        _task_data(rng, 8, f),
        _task_data(rng, 30, lambda X: 1.5 * f(X)),
        _task_data(rng, 30, lambda X: np.cos(3 * X[:, 2])),
    ]
    Xs, ys = [d[0] for d in data], [d[1] for d in data]
    spec = KernelSpec(1.0, 0.5, 0.1)
    names = ("target", "a", "b")
    full = fit_lcm(Xs, ys, spec, np.random.default_rng(0), names=names)
    assert full.converged and full.evaluations < 1000 and full.params.names == names
    capped = fit_lcm(Xs, ys, spec, np.random.default_rng(0), max_evals=5, names=names)
    assert not capped.converged and capped.evaluations < 15
    assert capped.log_likelihood < full.log_likelihood
    # a warm start at the optimum converges at once, to the same likelihood
    again = fit_lcm(Xs, ys, spec, np.random.default_rng(0), start=full.params, names=names)
    assert again.evaluations < 0.2 * full.evaluations
    assert again.log_likelihood == pytest.approx(full.log_likelihood, abs=1e-3)
    # tasks are matched by name: "b" keeps its columns and noise, "c" is new and starts cold
    default = fit_lcm(Xs, ys, spec, np.random.default_rng(1), max_evals=1).params
    p = full.params.remapped(names, ("target", "b", "c"), default)
    np.testing.assert_array_equal(p.W[:, 0], full.params.W[:, 0])
    np.testing.assert_array_equal(p.W[:, 1], full.params.W[:, 2])
    np.testing.assert_array_equal(p.kappa[:, 1], full.params.kappa[:, 2])
    assert p.noise[1] == full.params.noise[2] and p.noise[2] == default.noise[2]
    np.testing.assert_array_equal(p.W[:, 2], default.W[:, 2])
    np.testing.assert_array_equal(p.kernels, full.params.kernels)
    default2 = fit_lcm(Xs[:2], ys[:2], spec, np.random.default_rng(1), max_evals=1).params
    fewer = full.params.remapped(names, ("target", "b"), default2)  # two tasks: two latent kernels
    assert fewer.W.shape == (2, 2) and fewer.W[1, 1] == full.params.W[1, 2]


def test_multitask_fits_continue_from_the_last_within_their_budget(meta_dir):
    tables = load_meta_tables(meta_dir, "target-t")
    with pytest.raises(Exception, match="lcm_evals must be a positive integer"):
        get_method("multitask")(
            SEARCH_SPACE, np.random.default_rng(1), meta_tables=tables, target_task="target-t", lcm_evals=0
        )
    method = get_method("multitask")(
        SEARCH_SPACE, np.random.default_rng(1), meta_tables=tables, target_task="target-t", lcm_evals=12
    )
    _, suggestions, _ = simulate(method, 3, rounds=7)
    fits = [s.diagnostics for s in suggestions if "lcm_evaluations" in s.diagnostics]
    assert len(fits) >= 3
    assert all(d["lcm_evaluations"] <= 12 + 10 for d in fits)  # L-BFGS-B may finish its line search
    assert method._last_fit.names[0] == "target" and set(method._last_fit.names[1:]) <= set(tables)


@pytest.mark.parametrize("name", ["multitask", "metaprior", "taf"])
def test_meta_acquisition_gradients_match_finite_differences(meta_dir, name):
    tables = load_meta_tables(meta_dir, "target-t")
    method = get_method(name)(
        SEARCH_SPACE, np.random.default_rng(1), meta_tables=tables, target_task="target-t"
    )
    captured = {}
    original = bandit.maximise

    def spy(acq, k, rng):
        captured.setdefault("acq", acq)
        return original(acq, k, rng)

    bandit.maximise = spy
    try:
        simulate(method, 3, rounds=4)
    finally:
        bandit.maximise = original
    acq = captured["acq"]
    for u in (np.array([0.3, 0.6, 0.4]), np.array([0.8, 0.2, 0.7])):
        h = 1e-6
        numeric = [(acq(u + h * e) - acq(u - h * e)) / (2 * h) for e in np.eye(3)]
        np.testing.assert_allclose(acq.value_and_grad(u)[1], numeric, rtol=1e-4, atol=1e-6)


# ---- warm start --------------------------------------------------------------------------------
def test_warm_start_uses_the_portfolio_in_order_and_says_how_many_entries_are_missing():
    entries = [SEARCH_SPACE.sample(np.random.default_rng(i)) for i in range(5)]
    warm = get_method("pb2_star_warm")(SEARCH_SPACE, np.random.default_rng(0), portfolio=entries)
    configs, suggestions, _ = simulate(warm, 0, rounds=3)
    first_round = [s for s in suggestions if s.diagnostics["mode"] == "portfolio_entry"]
    assert [s.config for s in first_round] == [entries[4]]  # labelled by what it is, not a prior draw
    assert first_round[0].diagnostics["portfolio_position"] == 4
    assert not [s for s in suggestions if s.diagnostics["mode"] == "prior_draw"]
    short = get_method("pb2_star_warm")(SEARCH_SPACE, np.random.default_rng(0), portfolio=entries[:3])
    with pytest.raises(Exception, match="3 entries but 5 are needed.*2 missing"):
        short.initial_configs(4)
    warm2 = get_method("pb2_star_warm")(SEARCH_SPACE, np.random.default_rng(0), portfolio=entries)
    assert warm2.initial_configs(4) == entries[:4]


def test_faithful_switch_reaches_the_meta_quirks():
    q = Quirks.faithful()
    assert q.ranking_loss_shift0 and q.loo_refit and q.multitask_epsilon_at_bound and q.portfolio_row_sums
    assert not any(
        getattr(Quirks(), f) for f in ("ranking_loss_shift0", "loo_refit", "multitask_epsilon_at_bound")
    )


def test_numpy_lcm_likelihood_equals_gpy_and_its_gradient_is_exact():
    from metapb2_core.gp.lcm_fit import LCMObjective, LCMParams

    rng = np.random.default_rng(4)
    Xs = [rng.random((5, 3)), rng.random((8, 3)), rng.random((6, 3))]
    ys = [rng.standard_normal((len(x), 1)) for x in Xs]
    spec = KernelSpec(1.0, 0.5, 0.1)
    p = LCMParams(
        np.array([[1.3, 0.4, 0.2], [0.7, 0.8, 0.05], [2.0, 0.3, 0.3]]),
        rng.standard_normal((3, 3)),
        rng.random((3, 3)) + 0.1,
        np.array([0.05, 0.2, 0.5]),
    )
    X, y = np.vstack(Xs), np.vstack(ys)
    task = np.repeat([0, 1, 2], [5, 8, 6])
    obj = LCMObjective(X, y, task, 3, spec)
    theta = obj.pack(p)
    nll, grad = obj(theta)
    ours = lcm_posterior(Xs, ys, [tuple(k) for k in p.kernels], p.B, p.noise)
    assert nll == pytest.approx(-ours.log_likelihood, rel=1e-10)
    kern = GPy.util.multioutput.LCM(3, 3, [TVSquaredExp(3, spec) for _ in range(3)], W_rank=1)
    for icm, k, w, kap in zip(kern.parts, p.kernels, p.W, p.kappa, strict=True):
        icm.parts[0].variance[:], icm.parts[0].lengthscale[:], icm.parts[0].epsilon[:] = k
        icm.parts[1].W[:] = w.reshape(-1, 1)
        icm.parts[1].kappa[:] = kap
    model = GPy.models.GPCoregionalizedRegression(Xs, ys, kernel=kern)
    for lik, nv in zip(model.likelihood.likelihoods_list, p.noise, strict=True):
        lik.variance[:] = nv
    assert nll == pytest.approx(-model.log_likelihood(), rel=1e-9)
    h = 1e-6
    numeric = [(obj(theta + h * e)[0] - obj(theta - h * e)[0]) / (2 * h) for e in np.eye(len(theta))]
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_numpy_lcm_fit_is_as_good_as_gpys():
    rng = np.random.default_rng(5)
    f = lambda X: np.sin(6 * X[:, 2]) + 0.5 * X[:, 1]  # noqa: E731
    Xt, yt = _task_data(rng, 8, f)
    Xm, ym = _task_data(rng, 40, lambda X: 1.5 * f(X) + 0.3)
    spec = KernelSpec(1.0, 0.5, 0.1)
    fast = fit_lcm([Xt, Xm], [yt, ym], spec, np.random.default_rng(0))
    ref = fit_lcm([Xt, Xm], [yt, ym], spec, np.random.default_rng(0), engine="gpy")
    assert fast.fallback is None and ref.fallback is None
    assert fast.log_likelihood == pytest.approx(ref.log_likelihood, abs=0.05 * abs(ref.log_likelihood) + 0.5)
