"""MetaPriorPB2 (methods.md §6): PB2* on the residual around a ranking-weighted meta prior.

Each suggestion records the prior's part of the model mean at the suggested point
(``prior_mean``, ``model_mean`` and ``prior_share`` = |prior| / (|prior| + |residual part|)) and how
much the prior varies over the window relative to the data (``prior_spread``: its standard
deviation over the window's inputs over the window's; 0 when it cannot move a suggestion), so a
prior that does not act is visible. It can legitimately not act: the residual is standardised, so a
prior that is constant over the window (a flat meta model, e.g. a meta GP of a few transitions
whose signal variance sits at its lower bound) shifts every residual alike and is removed by the
standardisation; the suggestion is then PB2*'s. A new user's case that matched PB2* to 7 digits was
of that kind (one meta run of 7 transitions, weight 1.0: σ² at its 0.01 bound, noise 0.92).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        # how much the prior varies over the window, relative to the data: 0 means it cannot act
        on_window = np.array([prior.mean_with_gradient(x)[0] for x in window.X])
        spread = float(on_window.std() / (window.y[:, 0].std() + 1e-12))
        diagnostics = {**fit_diagnostics(m, m1, kappa), **self.lineage(view, w, None), "prior_spread": spread}
        return acq, diagnostics

    def point_diagnostics(self, acq: bandit.UCB, u: np.ndarray) -> dict[str, Any]:
        model = acq.model
        if not isinstance(model, ResidualGP):  # the meta-free fallback (PB2*)
            return {}
        x = np.concatenate([acq.fixed, np.asarray(u, dtype=np.float64)])
        prior = model.prior.mean_with_gradient(x)[0]
        total = model.predict_with_gradient(x)[0]
        residual = total - prior
        share = abs(prior) / (abs(prior) + abs(residual)) if prior or residual else 0.0
        return {"prior_mean": prior, "model_mean": total, "prior_share": share}
