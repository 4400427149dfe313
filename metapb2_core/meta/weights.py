"""Task weights by ranking loss over bootstrap samples (methods.md §5.6, RGPE-style).

Each model (meta task, optionally the target) predicts the window's targets; on each of S bootstrap
samples the model with the fewest mis-ranked pairs wins a vote (ties share it); weight = votes / S.
"""

from __future__ import annotations

import numpy as np

from metapb2_core.gp.kernel import KernelSpec
from metapb2_core.gp.model import GPFit, fit_gp

SAMPLES = 100


def _discordant(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per bootstrap sample (rows of p and y, S × N): ordered pairs (a, c) with
    [p_a < p_c] ≠ [y_a < y_c]. Pairs a = c never count."""
    return ((p[:, :, None] < p[:, None, :]) != (y[:, :, None] < y[:, None, :])).sum(axis=(1, 2))


def _target_discordant(loo: np.ndarray, y: np.ndarray, include_self: bool) -> np.ndarray:
    """The target's loss: pairs with [loo_a < y_c] ≠ [y_a < y_c] (the leave-one-out prediction at a
    is compared with the observation at c). The a = c terms count positions predicted below their
    own value; standard RGPE leaves them out, the original adds them (shift 0, Q24)."""
    wrong = (loo[:, :, None] < y[:, None, :]) != (y[:, :, None] < y[:, None, :])
    if not include_self:
        n = y.shape[1]
        wrong &= ~np.eye(n, dtype=bool)[None]
    return wrong.sum(axis=(1, 2))


def bootstrap_indices(n: int, rng: np.random.Generator, samples: int = SAMPLES) -> np.ndarray:
    return rng.integers(0, n, size=(samples, n))


def rank_weights(
    preds: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    loo: np.ndarray | None = None,
    shift0: bool = False,
    samples: int = SAMPLES,
) -> np.ndarray:
    """Weights of the M meta models (rows of ``preds``, M × N) and, with ``loo``, of the target
    (last entry). Deterministic for a given ``rng`` state; they sum to one."""
    y = np.asarray(y, dtype=np.float64).ravel()
    n = len(y)
    boot = bootstrap_indices(n, rng, samples)
    ys = y[boot]
    losses = [_discordant(p[boot], ys) for p in np.atleast_2d(preds)]
    if loo is not None:
        losses.append(_target_discordant(np.asarray(loo, dtype=np.float64).ravel()[boot], ys, shift0))
    losses = np.array(losses, dtype=np.float64)  # models × samples
    winners = losses == losses.min(axis=0, keepdims=True)
    return (winners / winners.sum(axis=0, keepdims=True)).sum(axis=1) / samples


def loo_means(fit: GPFit, y: np.ndarray) -> np.ndarray:
    """Leave-one-out posterior means with the fitted hyperparameters, in closed form:
    μ₋ₐ = yₐ − [K⁻¹y]ₐ / [K⁻¹]ₐₐ (Rasmussen & Williams eq. 5.12)."""
    kinv = np.linalg.inv(fit.chol @ fit.chol.T)
    y = np.asarray(y, dtype=np.float64).ravel()
    return y - (kinv @ y) / np.diag(kinv)


def loo_means_refit(X: np.ndarray, y: np.ndarray, spec: KernelSpec) -> np.ndarray:
    """The original's leave-one-out: N GP fits, one without each row (Q25)."""
    y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    out = np.empty(len(X))
    for a in range(len(X)):
        keep = np.arange(len(X)) != a
        out[a] = fit_gp(X[keep], y[keep], spec).predict(X[a : a + 1])[0].item()
    return out
