"""Fit a GP with the time-varying kernel on GPy, then predict with a small numpy posterior.

The fit is GPy's: zero mean, Gaussian likelihood with noise variance starting at 1.0, one L-BFGS-B
run from the starting values (methods.md §0). A fit that raises or ends non-finite falls back to
the unoptimised starting values, and says so in ``GPFit.fallback``; a fit is never silently NaN.
Predictions (mean, variance including the noise, as GPy's ``predict``) come from a Cholesky
factor computed once, so the acquisition optimiser's thousands of calls cost microseconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import GPy
import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular

from metapb2_core.gp.kernel import KernelSpec, TVSquaredExp, tv_se_cov

log = logging.getLogger(__name__)
_FIT_ERRORS = (np.linalg.LinAlgError, ValueError, FloatingPointError, ZeroDivisionError, OverflowError)


@dataclass
class GPFit:
    X: np.ndarray
    variance: float
    lengthscale: float
    epsilon: float
    noise: float
    log_likelihood: float
    fallback: str | None  # None when the optimised fit was used, else what happened
    chol: np.ndarray
    alpha: np.ndarray

    @property
    def n_rows(self) -> int:
        return self.X.shape[0]

    def predict(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance (including the noise variance) at the rows of ``Xs``."""
        ks = tv_se_cov(np.atleast_2d(Xs), self.X, self.variance, self.lengthscale, self.epsilon)
        mean = ks @ self.alpha
        v = solve_triangular(self.chol, ks.T, lower=True)
        var = self.variance - np.sum(v * v, axis=0) + self.noise
        return mean, var

    def predict_mean(self, Xs: np.ndarray) -> np.ndarray:
        """Posterior mean only, without the O(N²) variance."""
        return (
            tv_se_cov(np.atleast_2d(Xs), self.X, self.variance, self.lengthscale, self.epsilon)
            @ self.alpha[:, 0]
        )

    def mean_with_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Posterior mean and its gradient at one row, without the O(N²) variance."""
        x = np.asarray(x, dtype=np.float64).reshape(1, -1)
        ks = tv_se_cov(x, self.X, self.variance, self.lengthscale, self.epsilon)[0]
        w = ks * self.alpha[:, 0]
        grad = np.zeros(x.shape[1])
        grad[1:] = (-2.0 / self.lengthscale) * (w @ (x[0, 1:] - self.X[:, 1:]))
        return float(w.sum()), grad

    def predict_with_gradient(self, x: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
        """Mean, variance (with noise) and their gradients with respect to one input row ``x``.

        Only the non-time coordinates get a gradient (∂k/∂z = −2k(z − z')/ℓ); the time column's
        entry is 0, as the acquisition never moves it.
        """
        x = np.asarray(x, dtype=np.float64).reshape(1, -1)
        ks = tv_se_cov(x, self.X, self.variance, self.lengthscale, self.epsilon)[0]  # N
        dks = np.zeros((len(ks), x.shape[1]))
        dks[:, 1:] = ks[:, None] * (-2.0 / self.lengthscale) * (x[:, 1:] - self.X[:, 1:])
        kinv_ks = cho_solve((self.chol, True), ks)
        mean = float(ks @ self.alpha[:, 0])
        var = float(self.variance - ks @ kinv_ks + self.noise)
        return mean, var, dks.T @ self.alpha[:, 0], -2.0 * dks.T @ kinv_ks

    def diagnostics(self) -> dict:
        return {
            "variance": self.variance,
            "lengthscale": self.lengthscale,
            "epsilon": self.epsilon,
            "noise": self.noise,
            "log_likelihood": self.log_likelihood,
            "n_rows": self.n_rows,
            "fallback": self.fallback,
        }


def _posterior(X, y, var, ls, eps, noise) -> tuple[np.ndarray, np.ndarray, float]:
    # GPy's exact inference adds a fixed 1e-8 to the noise on the diagonal; so do we, to match it
    return cholesky_posterior(tv_se_cov(X, None, var, ls, eps) + (noise + 1e-8) * np.eye(len(X)), y)


def cholesky_posterior(K: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Cholesky factor, K⁻¹y and log marginal likelihood; jitter escalates as GPy's jitchol."""
    jitter = 0.0
    for _ in range(6):
        try:
            L = cholesky(K + jitter * np.eye(len(K)), lower=True)
            break
        except np.linalg.LinAlgError:
            jitter = max(jitter * 10.0, 1e-6 * float(np.mean(np.diag(K))))
    else:
        raise np.linalg.LinAlgError("covariance is not positive definite even with jitter")
    alpha = cho_solve((L, True), y)
    ll = float(-0.5 * (y.T @ alpha).item() - np.log(np.diag(L)).sum() - 0.5 * len(K) * np.log(2 * np.pi))
    return L, alpha, ll


def fit_gp(
    X: np.ndarray, y: np.ndarray, spec: KernelSpec, clip_lengthscale: tuple[float, float] | None = None
) -> GPFit:
    """Fit on rows ``X`` (t, reward, hyperparameters) and targets ``y`` (N × 1).

    ``clip_lengthscale``: Ray PB2 clips ℓ into these bounds after the fit and keeps it there.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("GP data must be finite")
    fallback = None
    kern = TVSquaredExp(X.shape[1], spec)
    try:
        model = GPy.models.GPRegression(X, y, kern)
        with np.errstate(all="ignore"):
            model.optimize(max_iters=1000)
        params = (*kern.values(), model.likelihood.variance.item())
        if not np.isfinite(params).all() or not np.isfinite(model.log_likelihood()):
            raise FloatingPointError(f"non-finite fit {params}")
    except _FIT_ERRORS as e:
        fallback = f"unoptimised starting values ({type(e).__name__}: {e})"
        log.warning("GP fit failed on %d rows; using %s", len(X), fallback)
        params = (spec.variance, spec.lengthscale, min(spec.epsilon, 0.5), 1.0)
    var, ls, eps, noise = params
    if clip_lengthscale is not None:
        ls = float(np.clip(ls, *clip_lengthscale))
    L, alpha, ll = _posterior(X, y, var, ls, eps, noise)
    return GPFit(X, var, ls, eps, noise, ll, fallback, L, alpha)
