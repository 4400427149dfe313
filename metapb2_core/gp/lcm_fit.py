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

from metapb2_core.gp.kernel import KernelSpec, _split

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
    names: tuple[str, ...] | None = None  # the tasks of W's and κ's columns, when known

    @property
    def B(self) -> list[np.ndarray]:
        return [np.outer(w, w) + np.diag(k) for w, k in zip(self.W, self.kappa, strict=True)]

    def remapped(self, names: tuple[str, ...], new_names: tuple[str, ...], default: LCMParams) -> LCMParams:
        """These parameters as the start of a fit over ``new_names``: a task seen before keeps its
        columns of W and κ and its noise (matched by name), latent kernel q keeps its (σ², ℓ, ε);
        anything new takes its value from ``default`` (the cold start over ``new_names``)."""
        Q, old = len(new_names), {name: a for a, name in enumerate(names)}
        q_kept = min(Q, len(names))
        kernels, W, kappa, noise = (
            np.array(x, copy=True) for x in (default.kernels, default.W, default.kappa, default.noise)
        )
        kernels[:q_kept] = self.kernels[:q_kept]
        for a, name in enumerate(new_names):
            if name in old:
                W[:q_kept, a] = self.W[:q_kept, old[name]]
                kappa[:q_kept, a] = self.kappa[:q_kept, old[name]]
                noise[a] = self.noise[old[name]]
        return LCMParams(kernels, W, kappa, noise, new_names)


class LCMObjective:
    """−log p(y | θ) over the unconstrained vector θ = (kernel params, W, κ, noise) and its gradient.

    One evaluation is a few dozen passes over N × N arrays plus a Cholesky factor and inverse; on
    ~450 rows the passes dominate, so they run in preallocated buffers: the Q kernel matrices from one
    matrix product and one exp, K and its per-kernel terms built in place, and the gradient from the
    lower triangle of G = ½(ααᵀ − K⁻¹) (LAPACK's inverse fills only that half).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, task: np.ndarray, Q: int, spec: KernelSpec):
        self.y, self.task, self.Q = y, task, Q
        self.n, self.d2 = _split(X, None)  # fixed across evaluations
        if np.any(np.diff(task) < 0) or len(np.unique(task)) != Q:
            raise ValueError("rows must be grouped by task, every task present, in order 0..Q-1")
        self.starts = np.searchsorted(task, np.arange(Q))
        self.bounds = np.array([spec.VARIANCE_BOUNDS, spec.LENGTHSCALE_BOUNDS, spec.EPSILON_BOUNDS])
        N = len(task)
        ends = [*self.starts[1:], N]
        self._blocks_of = [slice(a, b) for a, b in zip(self.starts, ends, strict=True)]
        # 2 × N²: the exponents of all Q kernels come from one (Q × 2) @ (2 × N²) product
        self._nd = np.stack([self.n.ravel(), self.d2.ravel()])
        self._e = np.empty((Q, N, N))  # exp(−d²/ℓ_q + n·ln(1 − ε_q))
        self._Kq = np.empty((Q, N, N))  # σ²_q · B_q[t, t'] ∘ e_q, the terms of K
        self._K, self._H, self._Gd, self._Gn = (np.empty((N, N)) for _ in range(4))
        # ½ · (1 below the diagonal, ½ on it): Σ_ij G_ij M_ij = 2 Σ_ij (mask ∘ G ∘ M)_ij for symmetric M
        self._mask = 0.5 * (np.tril(np.ones((N, N)), -1) + 0.5 * np.eye(N))

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

    def _build_K(self, p: LCMParams) -> np.ndarray:
        var, ls, eps = p.kernels.T
        e, Kq, K, t = self._e, self._Kq, self._K, self.task
        np.dot(np.stack([np.log1p(-eps), -1.0 / ls], axis=1), self._nd, out=e.reshape(self.Q, -1))
        np.exp(e, out=e)
        w = p.W[:, t] * np.sqrt(var)[:, None]  # σ_q · W_q[t_i]
        for q in range(self.Q):
            np.multiply(e[q], w[q][:, None], out=Kq[q])
            Kq[q] *= w[q][None, :]
            for a, rows in enumerate(self._blocks_of):  # + σ²_q κ_q[a] on the task's own block
                Kq[q][rows, rows] += (var[q] * p.kappa[q, a]) * e[q][rows, rows]
        np.sum(Kq, axis=0, out=K)
        K.flat[:: len(t) + 1] += p.noise[t] + 1e-8
        return K

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        p = self.unpack(theta)
        Q, yv = self.Q, self.y[:, 0]
        L, info = lapack.dpotrf(self._build_K(p), lower=1, overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"LCM covariance is not positive definite (dpotrf info {info})")
        alpha, _ = lapack.dpotrs(L, yv, lower=1)
        ll = -0.5 * yv @ alpha - np.log(np.diag(L)).sum() - 0.5 * len(yv) * np.log(2.0 * np.pi)
        if not np.isfinite(ll):  # as scipy's checked Cholesky did: the fit falls back, never NaN
            raise np.linalg.LinAlgError("non-finite LCM log likelihood")
        kinv, info = lapack.dpotri(L, lower=1, overwrite_c=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"LCM covariance could not be inverted (dpotri info {info})")
        G = kinv  # Gh = mask ∘ (ααᵀ − K⁻¹): ½ of G's lower triangle; the upper garbage is masked off
        np.subtract(np.multiply.outer(alpha, alpha), kinv, out=G)
        G *= self._mask
        np.multiply(G, self.d2, out=self._Gd)
        np.multiply(G, self.n, out=self._Gn)
        var, ls, eps = p.kernels.T
        g_k = np.zeros((Q, 3))
        g_W, g_kappa = np.zeros_like(p.W), np.zeros_like(p.kappa)
        for q in range(Q):
            Kq = self._Kq[q].ravel()
            g_k[q] = [
                2.0 * (G.ravel() @ Kq) / var[q],
                2.0 * (self._Gd.ravel() @ Kq) / ls[q] ** 2,
                -2.0 * (self._Gn.ravel() @ Kq) / (1.0 - eps[q]),
            ]
            # dℓ/dB_q = σ²_q (S + Sᵀ) with S the block sums of H = Gh ∘ e_q; B_q = w wᵀ + diag κ gives
            # dℓ/dw = 2 σ²_q (S + Sᵀ) w, two matrix-vector products, and dℓ/dκ_a = 2 σ²_q S_aa
            H = np.multiply(G, self._e[q], out=self._H)
            w = p.W[q][self.task]
            g_W[q] = 2.0 * var[q] * np.add.reduceat(H @ w + w @ H, self.starts)
            g_kappa[q] = [2.0 * var[q] * H[rows, rows].sum() for rows in self._blocks_of]
        g_noise = np.add.reduceat(2.0 * np.diag(G), self.starts)
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


def optimise_lcm(
    objective: LCMObjective, start: LCMParams, max_evals: int = 1000
) -> tuple[LCMParams, str, int]:
    """One L-BFGS-B run with paramz's settings (factr 1e7, pgtol 1e-5) and at most ``max_evals``
    likelihood evaluations (GPy's default: 1000); returns the scipy message and the evaluations."""
    res = minimize(
        objective,
        objective.pack(start),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_evals, "maxfun": max_evals, "ftol": 1e7 * np.finfo(float).eps, "gtol": 1e-5},
    )
    return objective.unpack(res.x), str(res.message), int(res.nfev)
