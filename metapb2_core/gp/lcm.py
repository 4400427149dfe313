"""The multi-task GP of MultiTaskPB2 (methods.md §7): a linear coregionalisation model on GPy.

cov((x, a), (x', b)) = Σ_q B_q[a, b] · k_q(x, x'), with one time-varying kernel k_q and one rank-1
coregionalisation matrix B_q = W_q W_qᵀ + diag(κ_q) per task, and one noise variance per task.
The model is GPy's ``GPCoregionalizedRegression`` with an ``LCM`` kernel; by default the same
likelihood is maximised in numpy (``lcm_fit``), ~20× faster; predictions for task 0 (the target)
come from a numpy posterior, as in ``model``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import GPy
import numpy as np
from scipy.linalg import cho_solve

from metapb2_core.gp.kernel import KernelSpec, TVSquaredExp, _cov, _split
from metapb2_core.gp.lcm_fit import LCMObjective, LCMParams, optimise_lcm
from metapb2_core.gp.model import _FIT_ERRORS, cholesky_posterior

log = logging.getLogger(__name__)


@dataclass
class LCMFit:
    X: np.ndarray  # all tasks' inputs stacked, N × D
    task: np.ndarray  # task index per row
    kernels: list[tuple[float, float, float]]  # (σ², ℓ, ε) per latent kernel
    B: list[np.ndarray]  # coregionalisation matrices
    noise: np.ndarray  # per task
    log_likelihood: float
    fallback: str | None
    chol: np.ndarray
    alpha: np.ndarray
    params: LCMParams | None = None  # the fitted parameters, to warm-start the next fit
    evaluations: int | None = None  # likelihood evaluations of the numpy fit
    converged: bool | None = None  # False: the evaluation budget ended the fit first

    @property
    def n_rows(self) -> int:
        return len(self.X)  # all rows, meta rows included (Q12)

    def _cross(self, Xs: np.ndarray) -> np.ndarray:
        n, d2 = _split(Xs, self.X)  # once, not once per latent kernel
        return sum(
            B[0, self.task][None, :] * _cov(n, d2, *k) for k, B in zip(self.kernels, self.B, strict=True)
        )

    def _prior_var(self) -> float:
        return float(sum(B[0, 0] * k[0] for k, B in zip(self.kernels, self.B, strict=True)))

    def predict(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Target-task mean and variance (with the target's noise) at the rows of ``Xs``."""
        ks = self._cross(np.atleast_2d(Xs))
        v = cho_solve((self.chol, True), ks.T)
        var = self._prior_var() - np.sum(ks.T * v, axis=0) + self.noise[0]
        return ks @ self.alpha, var

    def predict_with_gradient(self, x: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64).reshape(1, -1)
        n, d2 = _split(x, self.X)
        ks, slope = np.zeros(len(self.X)), np.zeros(len(self.X))  # k(x, X) and Σ_q k_q · (−2/ℓ_q)
        for (var, ls, eps), B in zip(self.kernels, self.B, strict=True):
            kq = B[0, self.task] * _cov(n[0], d2[0], var, ls, eps)
            ks += kq
            slope += kq * (-2.0 / ls)
        dks = np.zeros((len(self.X), x.shape[1]))  # ∂k/∂x; the time column is fixed
        dks[:, 1:] = slope[:, None] * (x[:, 1:] - self.X[:, 1:])
        kinv_ks = cho_solve((self.chol, True), ks)
        mean = float(ks @ self.alpha[:, 0])
        var = self._prior_var() - float(ks @ kinv_ks) + float(self.noise[0])
        return mean, var, dks.T @ self.alpha[:, 0], -2.0 * dks.T @ kinv_ks

    def diagnostics(self) -> dict:
        return {
            "lcm_kernels": [list(k) for k in self.kernels],
            "lcm_B_target_row": [B[0].tolist() for B in self.B],
            "noise": self.noise.tolist(),
            "log_likelihood": self.log_likelihood,
            "n_rows": self.n_rows,
            "fallback": self.fallback,
            "lcm_evaluations": self.evaluations,
            "lcm_converged": self.converged,
        }


def fit_lcm(
    X_list: list[np.ndarray],
    y_list: list[np.ndarray],
    spec: KernelSpec,
    rng: np.random.Generator,
    engine: str = "numpy",
    start: LCMParams | None = None,
    max_evals: int = 1000,
    names: tuple[str, ...] | None = None,
) -> LCMFit:
    """One L-BFGS-B run over all parameters; W_q start at 0.5·N(0, 1) drawn from ``rng``, κ_q at 0.5,
    the noise variances at 1, unless ``start`` gives other values (a warm start; with ``names`` it
    is the fit over ``start.names`` and is matched to these tasks by name). ``engine`` "numpy"
    (default, ``lcm_fit``, at most ``max_evals`` likelihood evaluations) or "gpy" (paramz's loop)."""
    Q = len(X_list)
    default = LCMParams(
        np.tile([spec.variance, spec.lengthscale, spec.epsilon], (Q, 1)),
        np.vstack([0.5 * rng.standard_normal(Q) for _ in range(Q)]),
        np.full((Q, Q), 0.5),
        np.ones(Q),
    )
    if start is None:
        start = default
    elif names is not None and start.names is not None:
        start = start.remapped(start.names, names, default)
    fallback, evaluations, converged = None, None, None
    try:
        with np.errstate(all="ignore"):
            if engine == "gpy":
                p = _fit_gpy(X_list, y_list, spec, start)
            else:
                X, y, task = _stack(X_list, y_list)
                p, message, evaluations = optimise_lcm(LCMObjective(X, y, task, Q, spec), start, max_evals)
                converged = "CONVERGENCE" in message
        if not all(np.isfinite(a).all() for a in (p.kernels, p.W, p.kappa, p.noise)):
            raise FloatingPointError("non-finite multi-task fit")
    except _FIT_ERRORS as e:
        fallback = f"unoptimised starting values ({type(e).__name__}: {e})"
        log.warning("multi-task GP fit failed on %d rows; using %s", sum(map(len, X_list)), fallback)
        p = start
    p = dataclasses.replace(p, names=names)
    kernels = [tuple(map(float, k)) for k in p.kernels]
    fit = lcm_posterior(X_list, y_list, kernels, p.B, p.noise, fallback)
    fit.params, fit.evaluations, fit.converged = p, evaluations, converged
    return fit


def _stack(X_list, y_list):
    X = np.vstack(X_list)
    y = np.vstack([np.asarray(v, dtype=np.float64).reshape(-1, 1) for v in y_list])
    task = np.concatenate([np.full(len(x), i) for i, x in enumerate(X_list)])
    return X, y, task


def _fit_gpy(X_list, y_list, spec: KernelSpec, start: LCMParams) -> LCMParams:
    Q, D = len(X_list), X_list[0].shape[1]
    kern = GPy.util.multioutput.LCM(D, Q, [TVSquaredExp(D, spec, name=f"tv{q}") for q in range(Q)], W_rank=1)
    icms = kern.parts if Q > 1 else [kern]
    for icm, w in zip(icms, start.W, strict=True):
        icm.parts[1].W[:] = w.reshape(-1, 1)
    ys = [np.asarray(v, dtype=np.float64).reshape(-1, 1) for v in y_list]
    model = GPy.models.GPCoregionalizedRegression(list(X_list), ys, kernel=kern)
    model.optimize(max_iters=1000)
    return LCMParams(
        np.array([icm.parts[0].values() for icm in icms]),
        np.array([icm.parts[1].W.values[:, 0] for icm in icms]),
        np.array([icm.parts[1].kappa.values for icm in icms]),
        np.array([lik.variance.item() for lik in model.likelihood.likelihoods_list]),
    )


def lcm_posterior(
    X_list: list[np.ndarray],
    y_list: list[np.ndarray],
    kernels: list[tuple[float, float, float]],
    Bs: list[np.ndarray],
    noise: np.ndarray,
    fallback: str | None = None,
) -> LCMFit:
    """The numpy posterior of an LCM with the given parameters (GPy's 1e-8 jitter included)."""
    X, y, task = _stack(X_list, y_list)
    noise = np.asarray(noise, dtype=np.float64)
    n, d2 = _split(X, None)
    K = sum(B[task][:, task] * _cov(n, d2, *k) for k, B in zip(kernels, Bs, strict=True))
    L, alpha, ll = cholesky_posterior(K + np.diag(noise[task] + 1e-8), y)
    return LCMFit(X, task, [tuple(map(float, k)) for k in kernels], Bs, noise, ll, fallback, L, alpha)
