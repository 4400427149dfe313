"""Maximum-likelihood fit of the LCM of ``lcm`` in numpy: the same model, parametrisation and
optimiser settings as GPy (logistic transforms for bounded parameters, softplus for positive ones,
one L-BFGS-B run with paramz's defaults), without paramz's per-evaluation bookkeeping, which costs
~10 ms per likelihood evaluation on these small problems (methods.md §7 step 6).

The negative log likelihood and its gradient are checked against GPy's in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack
from scipy.optimize import minimize

from metapb2_core.gp.kernel import KernelSpec, _cov, _split
from metapb2_core.gp.model import cholesky_posterior

_LIM = 36.0  # paramz's Logexp switch to the identity


def _softplus(x):
    return np.where(x > _LIM, x, np.log1p(np.exp(np.clip(x, -700, _LIM))))


def _softplus_inv(f):
    return np.where(f > _LIM, f, np.log(np.expm1(f)))


def _logistic(x, lo, hi):
    return lo + (hi - lo) / (1.0 + np.exp(-np.maximum(x, -300.0)))


def _logistic_inv(f, lo, hi):
    return np.log(np.clip(f - lo, 1e-10, np.inf) / np.clip(hi - f, 1e-10, np.inf))


@dataclass
class LCMParams:
    kernels: np.ndarray  # Q × 3: σ², ℓ, ε
    W: np.ndarray  # Q × Q (kernel q, task a): rank-1 column of B_q
    kappa: np.ndarray  # Q × Q
    noise: np.ndarray  # Q

    @property
    def B(self) -> list[np.ndarray]:
        return [np.outer(w, w) + np.diag(k) for w, k in zip(self.W, self.kappa, strict=True)]


class LCMObjective:
    """−log p(y | θ) over the unconstrained vector θ = (kernel params, W, κ, noise) and its gradient."""

    def __init__(self, X: np.ndarray, y: np.ndarray, task: np.ndarray, Q: int, spec: KernelSpec):
        self.y, self.task, self.Q = y, task, Q
        self.n, self.d2 = _split(X, None)  # fixed across evaluations
        if np.any(np.diff(task) < 0) or len(np.unique(task)) != Q:
            raise ValueError("rows must be grouped by task, every task present, in order 0..Q-1")
        self.starts = np.searchsorted(task, np.arange(Q))
        self.bounds = np.array([spec.VARIANCE_BOUNDS, spec.LENGTHSCALE_BOUNDS, spec.EPSILON_BOUNDS])

    def unpack(self, theta: np.ndarray) -> LCMParams:
        Q = self.Q
        k = theta[: 3 * Q].reshape(Q, 3)
        kernels = _logistic(k, self.bounds[:, 0], self.bounds[:, 1])
        W = theta[3 * Q : 3 * Q + Q * Q].reshape(Q, Q)
        kappa = _softplus(theta[3 * Q + Q * Q : 3 * Q + 2 * Q * Q]).reshape(Q, Q)
        noise = _softplus(theta[3 * Q + 2 * Q * Q :])
        return LCMParams(kernels, W, kappa, noise)

    def pack(self, p: LCMParams) -> np.ndarray:
        k = _logistic_inv(p.kernels, self.bounds[:, 0], self.bounds[:, 1])
        return np.concatenate(
            [k.ravel(), p.W.ravel(), _softplus_inv(p.kappa).ravel(), _softplus_inv(p.noise)]
        )

    def _blocks(self, M: np.ndarray) -> np.ndarray:
        """Sums of M over every (task a, task b) block: rows of one task are contiguous."""
        return np.add.reduceat(np.add.reduceat(M, self.starts, axis=0), self.starts, axis=1)

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        p = self.unpack(theta)
        t, Bs = self.task, p.B
        ks = []
        K = np.diag(p.noise[t] + 1e-8)
        for (var, ls, eps), B in zip(p.kernels, Bs, strict=True):
            k = _cov(self.n, self.d2, var, ls, eps)
            ks.append(k)
            K += B[t][:, t] * k
        L, alpha, ll = cholesky_posterior(K, self.y)
        kinv, _ = lapack.dpotri(L, lower=1)
        kinv = np.tril(kinv) + np.tril(kinv, -1).T
        G = 0.5 * (alpha @ alpha.T - kinv)  # dℓ/dK
        g_k = np.zeros((self.Q, 3))
        g_W, g_kappa = np.zeros_like(p.W), np.zeros_like(p.kappa)
        for q, ((var, ls, eps), B, k) in enumerate(zip(p.kernels, Bs, ks, strict=True)):
            Gk = G * k
            S = self._blocks(Gk)  # dℓ/dB_q
            # Σ_ij G_ij B[t_i, t_j] k_ij (·d², ·n) = Σ_ab B_ab · (block sums)
            g_k[q] = [
                (B * S).sum() / var,
                (B * self._blocks(Gk * self.d2)).sum() / ls**2,
                -(B * self._blocks(Gk * self.n)).sum() / (1.0 - eps),
            ]
            g_W[q] = (S + S.T) @ p.W[q]
            g_kappa[q] = np.diag(S)
        g_noise = np.add.reduceat(np.diag(G), self.starts)
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        grad = np.concatenate(
            [
                (g_k * (p.kernels - lo) * (hi - p.kernels) / (hi - lo)).ravel(),
                g_W.ravel(),
                (g_kappa * -np.expm1(-p.kappa)).ravel(),
                g_noise * -np.expm1(-p.noise),
            ]
        )
        return -ll, -grad


def optimise_lcm(objective: LCMObjective, start: LCMParams, max_iters: int = 1000) -> tuple[LCMParams, str]:
    """One L-BFGS-B run with paramz's settings (factr 1e7, pgtol 1e-5); returns the scipy message."""
    res = minimize(
        objective,
        objective.pack(start),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iters, "maxfun": max_iters, "ftol": 1e7 * np.finfo(float).eps, "gtol": 1e-5},
    )
    return objective.unpack(res.x), str(res.message)
