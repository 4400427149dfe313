"""MultiTaskPB2 (methods.md §7): a multi-output GP over the target window and time-local slices
of the highest-weighted meta tasks; UCB on the target output."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from metapb2_core import bandit
from metapb2_core.errors import MetaPB2Error
from metapb2_core.gp.kernel import KernelSpec
from metapb2_core.gp.lcm import fit_lcm
from metapb2_core.gp.lcm_fit import LCMParams
from metapb2_core.methods.base import register_method
from metapb2_core.methods.meta_base import MetaPB2Base, MetaView
from metapb2_core.methods.pb2 import fit_diagnostics

TOP_K = 4
SLICE_ROWS = 100
# Likelihood evaluations per LCM fit on the default path. Measured (benchmarks/bench_meta_suggest.py
# and a synthetic study): from the previous fit, 30 evaluations leave the target's UCB surface
# correlated ≥ 0.98 with a fit to convergence from the same start, and populations end as close to
# the optimum as with 1000; each evaluation costs ~8-10 ms on ~450 rows (2-core machine).
LCM_EVALS = 30


@register_method
class MultiTaskPB2(MetaPB2Base):
    name = "multitask"
    state_attributes: ClassVar[tuple[str, ...]] = (*MetaPB2Base.state_attributes, "_last_fit")

    def __init__(self, *args: Any, lcm_evals: int = LCM_EVALS, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if int(lcm_evals) != lcm_evals or lcm_evals < 1:
            raise MetaPB2Error(f"lcm_evals must be a positive integer, got {lcm_evals!r}")
        self.lcm_evals = int(lcm_evals)  # likelihood evaluations per LCM fit (default path)
        self._last_fit: LCMParams | None = None

    def _fit(self, X_list, y_list, start: LCMParams | None, names: tuple[str, ...] | None = None):
        if self.quirks.lcm_cold_start:  # the original: GPy afresh, to convergence
            return fit_lcm(X_list, y_list, self.lcm_kernel(), self.rng, "gpy")
        return fit_lcm(
            X_list, y_list, self.lcm_kernel(), self.rng, start=start, max_evals=self.lcm_evals, names=names
        )

    def lcm_kernel(self) -> KernelSpec:
        # The latent kernels start at ε = 0, their lower bound, in the original (Q2), so they never
        # decay in time; by default ε starts at 0.1 as in every other kernel.
        eps = 0.0 if self.quirks.multitask_epsilon_at_bound else 0.1
        return KernelSpec(1.0, self.variant.kernel.lengthscale, eps, bounded=True)

    def not_ready(self, window: bandit.Window, window_rows: pd.DataFrame) -> str | None:
        times = window_rows["time"]  # round 2: one time only (Q26)
        return "all window rows share one time" if times.min() == times.max() else None

    def meta_acquisition(
        self, window: bandit.Window, window_rows: pd.DataFrame, pending_u: np.ndarray, view: MetaView
    ):
        times = window_rows["time"]
        w = self.weights(view, window.y)
        order = np.argsort(w, kind="stable")[-TOP_K:]  # ascending weight, as the original
        chosen = [int(i) for i in order if w[i] > 0]
        now = float(times.max())
        X_list, y_list, slice_times = [window.X], [window.y], {}
        for i in chosen:
            task, al = view.tasks[i], view.alignments[i]
            Xi, yi, used = task.data_slice(now, SLICE_ROWS)
            X_list.append(al.to_target(Xi))
            y_list.append(al.scale_mean(yi))
            slice_times[task.name] = used
        # By default each fit continues from the last one, its tasks matched by name, for at most
        # lcm_evals likelihood evaluations: the surrogate changes little from one suggestion to the
        # next, so the optimisation carries on across suggestions instead of restarting each time.
        names = ("target", *(view.tasks[i].name for i in chosen))
        m = m1 = self._fit(X_list, y_list, self._last_fit, names)
        if len(pending_u):
            X0, y0 = bandit.with_pending_rows(window.X, window.y, window.fixed, pending_u)
            m1 = self._fit([X0, *X_list[1:]], [y0, *y_list[1:]], m.params)
        if m.fallback is None:
            self._last_fit = m.params
        acq, kappa = self.ucb(m, m1, window.fixed)
        diag: dict[str, Any] = {
            **fit_diagnostics(m, m1, kappa),
            "surrogate": "lcm",  # the multi-task model was fitted (not PB2*'s GP)
            "meta_slice_times": slice_times,
        }
        weights = np.zeros_like(w)
        weights[chosen] = w[chosen]
        fallback = (
            None if slice_times and all(t == now for t in slice_times.values()) else "nearest-time slice"
        )
        return acq, {**diag, **self.lineage(view, weights, fallback if chosen else "no task with weight > 0")}
