"""TAF-PB2 (methods.md §8): a transfer acquisition function, the ranking-weighted mix of the target's
expected improvement and each meta model's predicted improvement over its incumbent."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm as gaussian

from metapb2_core import bandit
from metapb2_core.gp.model import GPFit
from metapb2_core.meta.models import StackedMeans
from metapb2_core.meta.weights import loo_means, loo_means_refit
from metapb2_core.methods.base import register_method
from metapb2_core.methods.meta_base import MetaPB2Base, MetaView
from metapb2_core.methods.pb2 import fit_diagnostics


@dataclass
class TAF:
    model: GPFit
    pending_model: GPFit
    fixed: np.ndarray
    target_weight: float
    incumbent: float  # best standardised target of the model
    meta: StackedMeans | None  # the meta tasks with weight > 0
    meta_weights: np.ndarray
    meta_incumbents: np.ndarray  # y*_i: best meta mean over the target's inputs
    eta: float = 0.0

    def __call__(self, u: np.ndarray) -> float:
        return self.value_and_grad(u)[0]

    def value_and_grad(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        x, f = np.concatenate([self.fixed, np.asarray(u, dtype=np.float64)]), len(self.fixed)
        mu, _, d_mu, _ = self.model.predict_with_gradient(x)
        _, var, _, d_var = self.pending_model.predict_with_gradient(x)
        s = math.sqrt(max(var, 0.0))
        if s > 0:
            z = (mu - self.incumbent - self.eta) / s
            ei = s * (z * gaussian.cdf(z) + gaussian.pdf(z))
            d_ei = gaussian.cdf(z) * d_mu + gaussian.pdf(z) * d_var / (2.0 * s)
        else:  # EI's limit; the original returns NaN here (Q11)
            ei = max(mu - self.incumbent - self.eta, 0.0)
            d_ei = d_mu if ei > 0 else np.zeros_like(d_mu)
        value, grad = self.target_weight * max(ei, 0.0), self.target_weight * d_ei
        if self.meta is not None:
            means, d_means = self.meta(x)
            better = means > self.meta_incumbents
            w = self.meta_weights * better
            value += float(w @ (means - self.meta_incumbents))
            grad = grad + w @ d_means
        if not math.isfinite(value):
            return -9999.0, np.zeros(len(x) - f)
        return value, grad[f:]


@register_method
class TAFPB2(MetaPB2Base):
    name = "taf"

    def meta_acquisition(
        self, window: bandit.Window, window_rows: pd.DataFrame, pending_u: np.ndarray, view: MetaView
    ):
        m, m1 = bandit.fit_with_pending(window.X, window.y, window.fixed, pending_u, self.variant.kernel)
        if self.quirks.loo_refit:  # N GP fits per suggestion (Q25)
            loo = loo_means_refit(window.X, window.y, self.variant.kernel)
        else:
            loo = loo_means(m, window.y)
        w = self.weights(view, window.y, loo=loo)
        w_meta, w_target = w[:-1], float(w[-1])
        # Incumbents over the target's real rows; the original also counts pending rows (Q11).
        x_train = m1.X if self.quirks.taf_incumbent_with_pending else m.X
        used = [i for i, wi in enumerate(w_meta) if wi > 0]
        tasks, aligns = [view.tasks[i] for i in used], [view.alignments[i] for i in used]
        best = np.array([t.predict_mean(x_train, a).max() for t, a in zip(tasks, aligns, strict=True)])
        meta = StackedMeans(tasks, aligns) if used else None
        acq = TAF(m, m1, window.fixed, w_target, float(window.y.max()), meta, w_meta[used], best)
        return acq, {**fit_diagnostics(m, m1), "target_weight": w_target, **self.lineage(view, w_meta, None)}
