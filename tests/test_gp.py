"""The time-varying kernel and the GP fit (methods.md §2.6–2.7, §3.2), against independent formulas."""

import math

import GPy
import numpy as np
import pytest

from metapb2_core.gp.kernel import KernelSpec, TVSquaredExp, tv_se_cov
from metapb2_core.gp.model import fit_gp

RNG = np.random.default_rng(0)
X = RNG.random((15, 5))
Y = np.sin(3 * X[:, 1:2]) + 0.1 * RNG.standard_normal((15, 1))


def test_kernel_value_by_hand():
    a = np.array([[2.0, 0.1, 0.2, 0.3]])
    b = np.array([[5.0, 0.4, 0.0, 0.3]])
    var, ls, eps = 1.7, 0.3, 0.2
    d2 = 0.3**2 + 0.2**2 + 0.0  # squared distance over (reward, hyperparameters)
    expected = var * math.exp(-d2 / ls) * (1 - eps) ** (abs(2.0 - 5.0) / 2)
    assert tv_se_cov(a, b, var, ls, eps)[0, 0] == pytest.approx(expected, rel=1e-12)
    assert tv_se_cov(a, None, var, ls, eps)[0, 0] == pytest.approx(var)
    k = TVSquaredExp(4, KernelSpec(var, ls, eps, bounded=False))
    assert k.K(a, b)[0, 0] == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(k.Kdiag(np.vstack([a, b])), [var, var])


def _finite_difference_gradients(spec: KernelSpec, h: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """d(log marginal likelihood)/d(σ², ℓ, ε): the kernel's analytic values and central differences."""
    model = GPy.models.GPRegression(X, Y, TVSquaredExp(5, spec))
    kern = model.kern
    params = [kern.variance, kern.lengthscale, kern.epsilon]
    analytic = np.array([p.gradient.item() for p in params])
    numeric = []
    for p in params:
        v = p.item()
        p[:] = v + h
        up = model.log_likelihood()
        p[:] = v - h
        down = model.log_likelihood()
        p[:] = v
        numeric.append((up - down) / (2 * h))
    return analytic, np.array(numeric)


@pytest.mark.parametrize(
    "spec", [KernelSpec(1.3, 0.4, 0.2, bounded=False), KernelSpec(0.7, 0.8, 0.05, bounded=False)]
)
def test_gradients_match_finite_differences(spec):
    analytic, numeric = _finite_difference_gradients(spec)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-6)


def test_ray_gradients_are_reproduced_and_are_wrong():
    spec = KernelSpec(1.3, 0.4, 0.2, bounded=False, unconstrained=True, ray_gradients=True)
    analytic, numeric = _finite_difference_gradients(spec)
    assert not np.allclose(analytic, numeric, rtol=1e-2)


def test_bounded_kernel_starts_inside_and_fits_within_bounds():
    spec = KernelSpec()  # PB2*'s default: ℓ starts at 0.5, strictly inside (1e-5, 1)
    lo, hi = spec.LENGTHSCALE_BOUNDS
    assert lo < spec.lengthscale < hi
    assert spec.EPSILON_BOUNDS[0] < spec.epsilon < spec.EPSILON_BOUNDS[1]
    fit = fit_gp(X, Y, spec)
    assert 0.01 <= fit.variance <= 100 and lo <= fit.lengthscale <= hi and 0 <= fit.epsilon <= 0.5
    assert fit.fallback is None
    assert abs(fit.lengthscale - 0.5) > 1e-3  # it moved


def test_lengthscale_starting_at_its_bound_stays_frozen_quirk_q1():
    fit = fit_gp(X, Y, KernelSpec(lengthscale=1.0))
    assert fit.lengthscale == pytest.approx(1.0, abs=1e-6)


def test_ray_style_lengthscale_clip_after_fit():
    fit = fit_gp(X, Y, KernelSpec(1.0, 1.0, 0.1, bounded=False), clip_lengthscale=(1e-5, 0.05))
    assert fit.lengthscale <= 0.05


def test_fast_predictor_matches_gpy():
    spec = KernelSpec()
    fit = fit_gp(X, Y, spec)
    model = GPy.models.GPRegression(X, Y, TVSquaredExp(5, spec))
    model.kern.variance[:] = fit.variance
    model.kern.lengthscale[:] = fit.lengthscale
    model.kern.epsilon[:] = fit.epsilon
    model.likelihood.variance[:] = fit.noise
    Xs = RNG.random((7, 5))
    mean, var = model.predict(Xs)  # GPy's variance includes the noise (Q7)
    our_mean, our_var = fit.predict(Xs)
    np.testing.assert_allclose(our_mean[:, 0], mean[:, 0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(our_var, var[:, 0], rtol=1e-8)
    assert fit.log_likelihood == pytest.approx(model.log_likelihood(), rel=1e-8)


def test_failed_fit_falls_back_explicitly_never_nan():
    y = np.full((15, 1), 1e200)
    y[::2] = -1e200
    fit = fit_gp(X, y, KernelSpec())
    assert fit.fallback is not None and "unoptimised" in fit.fallback
    mean, var = fit.predict(RNG.random((3, 5)))
    assert np.isfinite(mean).all() and np.isfinite(var).all()


def test_non_finite_data_is_rejected_with_a_clear_error():
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fit_gp(bad, Y, KernelSpec())
