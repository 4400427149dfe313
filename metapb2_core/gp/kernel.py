"""The time-varying squared-exponential kernel of PB2 (methods.md §2.6, §3.2) as a GPy kernel.

With x = (t, z), z = (reward, hyperparameters), d² = ‖z − z'‖², n = |t − t'| / 2:

    k(x, x') = σ² · exp(−d² / ℓ) · (1 − ε)^n,   k(x, x) = σ².

ℓ divides the squared distance directly (no factor 2, not squared), as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import GPy
import numpy as np
from paramz.transformations import Logexp


@dataclass(frozen=True)
class KernelSpec:
    """How the kernel's parameters start and are constrained.

    ``bounded`` is PB2*'s Fixed_TV_SquaredExp: σ² ∈ [0.01, 100], ℓ ∈ [1e-5, 1], ε ∈ [0, 0.5]; else the
    parameters are positive (``unconstrained=False``) or free, as Ray's kernel (quirks Q3, Q40).
    ``ray_gradients`` feeds Ray 2.8.1's wrong partial derivatives to the optimiser (quirk Q3).
    """

    variance: float = 1.0
    lengthscale: float = 0.5
    epsilon: float = 0.1
    bounded: bool = True
    unconstrained: bool = False
    ray_gradients: bool = False

    VARIANCE_BOUNDS = (0.01, 100.0)
    LENGTHSCALE_BOUNDS = (1e-5, 1.0)
    EPSILON_BOUNDS = (0.0, 0.5)


def _split(X: np.ndarray, X2: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """n = |t − t'| / 2 and d² = ‖z − z'‖² for all pairs of rows."""
    X2 = X if X2 is None else X2
    t = np.abs(X[:, :1] - X2[:, :1].T) / 2.0
    z, z2 = X[:, 1:], X2[:, 1:]
    d2 = (z * z).sum(1)[:, None] + (z2 * z2).sum(1)[None, :] - 2.0 * z @ z2.T
    return t, np.maximum(d2, 0.0)


class _PairCache:
    """The last input pair's (n, d²): GPy evaluates K and its gradients many times on the same
    training inputs during one fit, and the pairwise terms are a large part of the cost."""

    def __init__(self) -> None:
        self.inputs: tuple[np.ndarray, np.ndarray | None] | None = None
        self.value: tuple[np.ndarray, np.ndarray] | None = None

    def __call__(self, X: np.ndarray, X2: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        same = (
            self.inputs is not None
            and np.array_equal(self.inputs[0], X)
            and (
                (X2 is None and self.inputs[1] is None)
                or (X2 is not None and np.array_equal(self.inputs[1], X2))
            )
        )
        if not same:
            self.inputs = (np.array(X, copy=True), None if X2 is None else np.array(X2, copy=True))
            self.value = _split(X, X2)
        return self.value


def tv_se_cov(
    X: np.ndarray, X2: np.ndarray | None, variance: float, lengthscale: float, epsilon: float
) -> np.ndarray:
    n, d2 = _split(X, X2)
    return _cov(n, d2, variance, lengthscale, epsilon)


def _cov(n: np.ndarray, d2: np.ndarray, variance: float, lengthscale: float, epsilon: float) -> np.ndarray:
    # one exp instead of exp and pow: (1 − ε)^n = exp(n·ln(1 − ε))
    return variance * np.exp(-d2 / lengthscale + n * np.log1p(-epsilon))


class TVSquaredExp(GPy.kern.Kern):
    def __init__(self, input_dim: int, spec: KernelSpec = KernelSpec(), name: str = "tv_se"):
        super().__init__(input_dim, None, name)
        self.spec = spec
        positive = None if spec.unconstrained or spec.bounded else Logexp()
        self.variance = GPy.core.parameterization.Param("variance", spec.variance, positive)
        self.lengthscale = GPy.core.parameterization.Param("lengthscale", spec.lengthscale, positive)
        self.epsilon = GPy.core.parameterization.Param("epsilon", spec.epsilon, positive)
        self.link_parameters(self.variance, self.lengthscale, self.epsilon)
        self._pairs = _PairCache()
        if spec.bounded:
            self.variance.constrain_bounded(*spec.VARIANCE_BOUNDS, warning=False)
            self.lengthscale.constrain_bounded(*spec.LENGTHSCALE_BOUNDS, warning=False)
            self.epsilon.constrain_bounded(*spec.EPSILON_BOUNDS, warning=False)

    def values(self) -> tuple[float, float, float]:
        """(σ², ℓ, ε) as used in the covariance; Ray's kernel caps ε at 0.5 when computing it."""
        eps = self.epsilon.item()
        if not self.spec.bounded:
            eps = min(eps, 0.5)
        return self.variance.item(), self.lengthscale.item(), eps

    def K(self, X: np.ndarray, X2: np.ndarray | None = None) -> np.ndarray:
        return _cov(*self._pairs(X, X2), *self.values())

    def Kdiag(self, X: np.ndarray) -> np.ndarray:
        return np.full(X.shape[0], self.variance.item())

    def update_gradients_full(self, dL_dK: np.ndarray, X: np.ndarray, X2: np.ndarray | None = None) -> None:
        var, ls, eps = self.values()
        n, d2 = self._pairs(X, X2)
        if self.spec.ray_gradients:  # Ray 2.8.1's partials, wrong on purpose (methods.md §2.6)
            e = np.exp(-d2 / ls)
            dtau = -n * (1.0 - eps) ** (n - 1.0)
            self.variance.gradient = np.sum(dL_dK * np.exp(-d2 / ls**2))
            self.lengthscale.gradient = np.sum(dL_dK * (-2.0 * d2 * var * e / ls**2))
            self.epsilon.gradient = np.sum(dL_dK * dtau)
            return
        gk = dL_dK * _cov(n, d2, 1.0, ls, eps)  # dL/dK ∘ e·τ
        self.variance.gradient = np.sum(gk)
        self.lengthscale.gradient = var * np.sum(gk * d2) / ls**2
        self.epsilon.gradient = -var * np.sum(gk * n) / (1.0 - eps)

    def update_gradients_diag(self, dL_dKdiag: np.ndarray, X: np.ndarray) -> None:
        self.variance.gradient = np.sum(dL_dKdiag)
        self.lengthscale.gradient = 0.0
        self.epsilon.gradient = 0.0
