"""The search space: the declared bounds, Param validation, sampling, the unit transform, bounds parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metapb2_core.errors import MetaPB2Error
from metapb2_core.space import SEARCH_SPACE, Param, SearchSpace, parse_bounds

GOOD = {"lr": 1e-4, "lambda": 0.95, "clip_param": 0.2}


# ---- the declared space (protocol.md §2.3) ------------------------------------------------------------


def test_default_space_names_bounds_and_order():
    assert SEARCH_SPACE.names == ["lr", "lambda", "clip_param"]
    assert len(SEARCH_SPACE) == 3
    got = [(p.name, p.low, p.high, p.log) for p in SEARCH_SPACE.params]
    assert got == [
        ("lr", 1e-5, 1e-3, True),
        ("lambda", 0.9, 0.99, False),
        ("clip_param", 0.1, 0.5, False),
    ]
    assert SEARCH_SPACE["lambda"] == Param("lambda", 0.9, 0.99)
    with pytest.raises(MetaPB2Error, match="'gamma'"):
        SEARCH_SPACE["gamma"]


# ---- Param validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "log", "why"),
    [
        (0.5, 0.1, False, "reversed"),
        (1e-3, 1e-5, True, "reversed"),
        (0.3, 0.3, False, "equal"),
        (0.0, math.inf, False, "finite"),
        (-math.inf, 1.0, False, "finite"),
        (math.nan, 1.0, False, "finite"),
        (0.0, math.nan, False, "finite"),
        (0.0, 1e-3, True, "positive"),
        (-1e-3, 1e-3, True, "positive"),
    ],
)
def test_param_rejects_bad_bounds(low, high, log, why):
    with pytest.raises(MetaPB2Error, match=why) as info:
        Param("my_param", low, high, log=log)
    assert "'my_param'" in str(info.value)


def test_param_accepts_negative_bounds_on_linear_scale():
    p = Param("shift", -2.0, -1.0)
    assert (p.low, p.high, p.log) == (-2.0, -1.0, False)


def test_search_space_rejects_duplicates_and_empty():
    with pytest.raises(MetaPB2Error, match="duplicate"):
        SearchSpace([Param("a", 0.0, 1.0), Param("a", 1.0, 2.0)])
    with pytest.raises(MetaPB2Error, match="empty"):
        SearchSpace([])


# ---- sampling -----------------------------------------------------------------------------------------


def test_samples_stay_in_bounds():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        config = SEARCH_SPACE.sample(rng)
        assert list(config) == SEARCH_SPACE.names
        for p in SEARCH_SPACE.params:
            assert p.low <= config[p.name] <= p.high
            assert isinstance(config[p.name], float)


def test_lr_is_log_uniform_and_the_others_uniform():
    rng = np.random.default_rng(1)
    samples = [SEARCH_SPACE.sample(rng) for _ in range(20_000)]
    lr = np.array([s["lr"] for s in samples])
    lam = np.array([s["lambda"] for s in samples])
    clip = np.array([s["clip_param"] for s in samples])

    # Log-uniform on [1e-5, 1e-3]: P(lr < x) = log10(x / 1e-5) / log10(1e-3 / 1e-5).
    def log_cdf(x):
        return math.log10(x / 1e-5) / 2.0

    assert log_cdf(1e-4) == pytest.approx(0.5)
    assert np.mean(lr < 1e-4) == pytest.approx(log_cdf(1e-4), abs=0.02)
    assert np.mean(lr < 1e-3 / 10**0.5) == pytest.approx(log_cdf(1e-3 / 10**0.5), abs=0.02)  # 0.75
    # A uniform draw would put only ~9 % below 1e-4; log10(lr) is itself uniform on [-5, -3].
    assert np.mean(np.log10(lr)) == pytest.approx(-4.0, abs=0.02)

    # Uniform: mean at the midpoint, a quarter of the mass below the first quartile.
    assert np.mean(lam) == pytest.approx((0.9 + 0.99) / 2, abs=0.002)
    assert np.mean(lam < 0.9 + 0.25 * 0.09) == pytest.approx(0.25, abs=0.02)
    assert np.mean(clip) == pytest.approx(0.3, abs=0.005)
    assert np.mean(clip < 0.2) == pytest.approx(0.25, abs=0.02)


def test_sampling_is_determined_by_the_generator():
    a = [SEARCH_SPACE.sample(np.random.default_rng(7)) for _ in range(3)]
    b = SEARCH_SPACE.sample(np.random.default_rng(8))
    assert a[0] == a[1] == a[2]
    assert a[0] != b


def test_clip():
    clipped = SEARCH_SPACE.clip({"lr": 1.0, "lambda": 0.5, "clip_param": 0.3})
    assert clipped == {"lr": 1e-3, "lambda": 0.9, "clip_param": 0.3}


# ---- the unit-cube transform ---------------------------------------------------------------------------


def test_to_unit_known_values():
    lr = SEARCH_SPACE["lr"]
    assert float(lr.to_unit(1e-4)) == pytest.approx(0.5)  # log scale by default
    assert float(lr.to_unit(1e-5)) == pytest.approx(0.0)
    assert float(lr.to_unit(1e-3)) == pytest.approx(1.0)
    assert float(lr.to_unit(1e-4, log_scale=False)) == pytest.approx((1e-4 - 1e-5) / (1e-3 - 1e-5))
    lam = SEARCH_SPACE["lambda"]
    assert float(lam.to_unit(0.945)) == pytest.approx(0.5)
    assert float(lam.to_unit(0.9, log_scale=True)) == pytest.approx(0.0)
    assert float(lam.to_unit(math.sqrt(0.9 * 0.99), log_scale=True)) == pytest.approx(0.5)
    assert float(SEARCH_SPACE["clip_param"].from_unit(0.25)) == pytest.approx(0.2)
    assert float(lr.from_unit(0.5)) == pytest.approx(1e-4)
    assert float(lr.from_unit(0.5, log_scale=False)) == pytest.approx((1e-5 + 1e-3) / 2)


@pytest.mark.parametrize("name", ["lr", "lambda", "clip_param"])
@pytest.mark.parametrize("log_scale", [None, True, False])
def test_unit_round_trip(name, log_scale):
    p = SEARCH_SPACE[name]
    rng = np.random.default_rng(3)
    values = np.array([p.low, p.high] + [p.sample(rng) for _ in range(200)])
    unit = p.to_unit(values, log_scale=log_scale)
    assert unit.shape == values.shape
    assert np.all(unit >= -1e-12) and np.all(unit <= 1 + 1e-12)
    np.testing.assert_allclose(p.from_unit(unit, log_scale=log_scale), values, rtol=1e-12)
    grid = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(p.to_unit(p.from_unit(grid, log_scale), log_scale), grid, atol=1e-12)


def test_to_from_array():
    arr = SEARCH_SPACE.to_array({"clip_param": 0.2, "lr": 1e-4, "lambda": 0.95})
    np.testing.assert_array_equal(arr, [1e-4, 0.95, 0.2])
    assert SEARCH_SPACE.from_array(arr) == GOOD


# ---- validate ------------------------------------------------------------------------------------------


def test_validate_accepts_and_orders():
    out = SEARCH_SPACE.validate({"clip_param": 0.2, "lambda": 0.95, "lr": 1e-4})
    assert out == GOOD and list(out) == SEARCH_SPACE.names
    edges = {"lr": 1e-5, "lambda": 0.99, "clip_param": 0.1}  # bounds are inclusive
    assert SEARCH_SPACE.validate(edges) == edges


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"lr": 2e-3}, "lr"),
        ({"lr": 9e-6}, "lr"),
        ({"lambda": 0.999}, "lambda"),
        ({"clip_param": 0.05}, "clip_param"),
        ({"clip_param": math.nan}, "clip_param"),
        ({"lr": math.inf}, "lr"),
    ],
)
def test_validate_rejects_out_of_bounds(change, name):
    with pytest.raises(MetaPB2Error, match=f"'{name}'.*outside"):
        SEARCH_SPACE.validate({**GOOD, **change})


def test_validate_rejects_missing_and_unknown_keys():
    with pytest.raises(MetaPB2Error, match=r"missing \['lambda'\]"):
        SEARCH_SPACE.validate({"lr": 1e-4, "clip_param": 0.2})
    with pytest.raises(MetaPB2Error, match=r"unknown \['gamma'\]"):
        SEARCH_SPACE.validate({**GOOD, "gamma": 0.99})


# ---- with_bounds / parse_bounds ------------------------------------------------------------------------


def test_with_bounds_replaces_only_the_named_bounds():
    space = SEARCH_SPACE.with_bounds({"lr": (1e-4, 1e-2), "clip_param": (0.2, 0.3)})
    got = [(p.name, p.low, p.high, p.log) for p in space.params]
    assert got == [("lr", 1e-4, 1e-2, True), ("lambda", 0.9, 0.99, False), ("clip_param", 0.2, 0.3, False)]
    assert SEARCH_SPACE["lr"].high == 1e-3  # the original is unchanged
    with pytest.raises(MetaPB2Error, match="'clip_param'"):
        space.validate({**GOOD, "clip_param": 0.1})


@pytest.mark.parametrize(
    ("bounds", "match"),
    [
        ({"lr": (1e-3, 1e-5)}, "'lr'.*reversed"),
        ({"lr": (0.0, 1e-3)}, "'lr'.*positive"),
        ({"lambda": (0.95, 0.95)}, "'lambda'.*equal"),
        ({"gamma": (0.9, 0.99)}, "'gamma'"),
    ],
)
def test_with_bounds_rejects(bounds, match):
    with pytest.raises(MetaPB2Error, match=match):
        SEARCH_SPACE.with_bounds(bounds)


def test_parse_bounds_good():
    specs = ["lr=1e-4:1e-2", " clip_param = 0.2 : 0.3", "lambda=-1:2"]
    assert parse_bounds(specs) == {"lr": (1e-4, 1e-2), "clip_param": (0.2, 0.3), "lambda": (-1.0, 2.0)}
    assert parse_bounds([]) == {}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("lr1e-5:1e-3", "NAME=LOW:HIGH"),  # no '='
        ("lr=1e-5-1e-3", "NAME=LOW:HIGH"),  # no ':'
        ("lr", "NAME=LOW:HIGH"),
        ("lr=a:1e-3", "must be numbers"),
        ("lr=1e-5:b", "must be numbers"),
        ("lr=1e-5:", "must be numbers"),
        ("lr=1e-5:1e-3:1", "must be numbers"),
    ],
)
def test_parse_bounds_malformed(spec, match):
    with pytest.raises(MetaPB2Error, match=match) as info:
        parse_bounds(["lambda=0.9:0.99", spec])
    assert repr(spec) in str(info.value)


def test_one_allowed_test_per_parameter_kind_serves_the_checks_and_the_meta_methods():
    import pandas as pd

    space = SearchSpace.from_dict(
        {"lr": (1e-4, 1e-1, "log"), "k": ("int", 16, 64, 16), "opt": ("choice", ["a", "b"])}
    )
    assert space["lr"].allowed(pd.Series([1e-3, np.nan, 1.0, None, "x", True])).tolist() == [
        True, False, False, False, False, False,
    ]  # fmt: skip
    assert space["k"].allowed(np.array([16, 32, 40, 64, 80, 48.0])).tolist() == [
        True, True, False, True, False, True,
    ]  # fmt: skip
    assert space["opt"].allowed(["a", "c", None, np.str_("b")]).tolist() == [True, False, False, True]


def test_every_tunable_is_declared_once_with_the_setting_it_replaces_and_its_domain():
    from metapb2_core.ppo.settings import TUNABLES, PPOSettings
    from metapb2_core.space import known_domain

    assert set(t.setting for t in TUNABLES.values()) <= set(PPOSettings._fields) - {"kl_coeff_init"}
    assert TUNABLES["lambda"].setting == "lam"
    for name, tunable in TUNABLES.items():
        assert known_domain(name) is tunable.domain
        assert Param(name, 0.1, 0.2).domain is tunable.domain
    assert str(known_domain("lambda")) == "[0, 1]" and str(known_domain("anything")) == "(-∞, ∞)"
