"""MetaPriorPB2 (methods.md §6): PB2* on the residual around a ranking-weighted meta prior."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from metapb2_core import bandit
from metapb2_core.gp.model import GPFit
from metapb2_core.meta.models import WeightedPrior
from metapb2_core.methods.base import register_method
from metapb2_core.methods.meta_base import MetaPB2Base, MetaView
from metapb2_core.methods.pb2 import fit_diagnostics


@dataclass
class ResidualGP:
    """mean(x) = μ(x)·s + m + prior(x), var(x) = σ²(x)·s², for a GP fitted on standardised residuals."""

    inner: GPFit
    prior: WeightedPrior
    scale: float
    offset: float

    @property
    def n_rows(self) -> int:
        return self.inner.n_rows

    def predict_with_gradient(self, x: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
        mean, var, d_mean, d_var = self.inner.predict_with_gradient(x)
        p, d_p = self.prior.mean_with_gradient(x)
        s = self.scale
        return mean * s + self.offset + p, var * s * s, d_mean * s + d_p, d_var * s * s


@register_method
class MetaPriorPB2(MetaPB2Base):
    name = "metaprior"

    def meta_acquisition(
        self, window: bandit.Window, window_rows: pd.DataFrame, pending_u: np.ndarray, view: MetaView
    ):
        w = self.weights(view, window.y)
        keep = w > 0
        prior = WeightedPrior(
            [t for t, k in zip(view.tasks, keep, strict=True) if k],
            [a for a, k in zip(view.alignments, keep, strict=True) if k],
            w[keep],
        )
        r = window.y[:, 0] - w[keep] @ view.preds[keep]
        offset, scale = float(r.mean()), float(r.std() + 1e-8)
        y_res = ((r - offset) / scale).reshape(-1, 1)  # not clipped (Q30)
        m, m1 = bandit.fit_with_pending(window.X, y_res, window.fixed, pending_u, self.variant.kernel)
        acq, kappa = self.ucb(
            ResidualGP(m, prior, scale, offset), ResidualGP(m1, prior, scale, offset), window.fixed
        )
        return acq, {**fit_diagnostics(m, m1, kappa), **self.lineage(view, w, None)}
