"""What the meta methods share: PB2* plus meta-models of other tasks and their ranking weights.

A meta method is built with ``meta_tables`` (task → pooled transitions, see ``metapb2_core.meta``)
and the ``target_task``; it refuses tables that contain the target (leave-one-task-out). Every
suggestion records which meta tasks informed it, with their weights and source runs (lineage), and
any fallback taken.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from metapb2_core import bandit
from metapb2_core.errors import MetaPB2Error
from metapb2_core.meta.models import Alignment, MetaTask, fit_meta_task
from metapb2_core.meta.tables import check_no_leak
from metapb2_core.meta.weights import rank_weights
from metapb2_core.methods.pb2 import PB2Star
from metapb2_core.quirks import Quirks
from metapb2_core.space import SearchSpace

log = logging.getLogger(__name__)
MIN_ROWS = 4


@dataclass
class MetaView:
    """The meta tasks usable for one target window, with their alignments and predictions."""

    tasks: list[MetaTask]
    alignments: list[Alignment]
    preds: np.ndarray  # usable tasks × window rows, window-standardised units
    skipped: list[str] = field(default_factory=list)  # no meta rows in the window's time range


class MetaPB2Base(PB2Star):
    requires: ClassVar[tuple[str, ...]] = ("meta_tables", "target_task")

    def __init__(
        self,
        space: SearchSpace,
        rng: np.random.Generator,
        quirks: Quirks = Quirks(),
        *,
        meta_tables: dict[str, pd.DataFrame],
        target_task: str,
        **options: Any,
    ):
        super().__init__(space, rng, quirks, **options)
        check_no_leak(meta_tables, target_task)
        self.target_task = target_task
        self.meta_warnings: dict[str, str] = {}
        tables = {name: self._fit_for_space(name, meta_tables[name]) for name in sorted(meta_tables)}
        self.meta_tasks = [
            fit_meta_task(name, table, space.names, self.scaling, self.variant.kernel)
            for name, table in tables.items()
            if len(table) or not len(meta_tables[name])  # all rows dropped: no model (warned)
        ]

    def _fit_for_space(self, task: str, table: pd.DataFrame) -> pd.DataFrame:
        """``table`` checked against the target's space: a hyperparameter it lacks is one line
        naming both; rows the space cannot encode (a choice it does not have) are dropped, and
        rows outside its bounds kept, each counted in ``meta_warnings`` (recorded with every
        suggestion). The paper's meta-data on the paper's space pass unchanged."""
        missing = [n for n in self.space.names if n not in table.columns]
        if missing:
            raise MetaPB2Error(
                f"meta-data of task {task!r} lack hyperparameter(s) {missing} of the target's space "
                f"({', '.join(self.space.names)}); build meta-data from runs of the same space"
            )
        notes, keep = [], np.ones(len(table), dtype=bool)
        for p in self.space.params:
            allowed = p.allowed(table[p.name])
            if p.kind == "choice":  # a choice the space lacks cannot be encoded
                if (~allowed).any():
                    notes.append(
                        f"{int((~allowed).sum())} rows with {p.name} not one of {list(p.choices)} dropped"
                    )
                keep &= allowed
            elif (~allowed).any():  # kept: the GP reads a number outside the target's bounds fine
                grid = f" step {p.step}" if p.kind == "int" else ""
                notes.append(f"{int((~allowed).sum())} rows with {p.name} outside [{p.low}, {p.high}]{grid}")
        if notes:
            self.meta_warnings[task] = "; ".join(notes)
            log.warning("%s: meta-data of %s: %s", self.name, task, self.meta_warnings[task])
        return table if keep.all() else table[keep].reset_index(drop=True)

    def acquisition(self, window: bandit.Window, window_rows: pd.DataFrame, pending_u: np.ndarray):
        reason = self.not_ready(window, window_rows)
        if reason:
            return self.no_meta(window, window_rows, pending_u, reason)
        view = self.meta_view(window, window_rows)
        if not view.tasks:
            return self.no_meta(
                window, window_rows, pending_u, "no meta rows in the window's time range", view
            )
        return self.meta_acquisition(window, window_rows, pending_u, view)

    def not_ready(self, window: bandit.Window, window_rows: pd.DataFrame) -> str | None:
        """Why this window cannot use meta-data yet (Q26), or None. MetaPrior and TAF need > 3 rows."""
        n = len(window.X)
        return f"{n} window rows (< {MIN_ROWS})" if n < MIN_ROWS else None

    def meta_acquisition(
        self, window: bandit.Window, window_rows: pd.DataFrame, pending_u: np.ndarray, view: MetaView
    ):
        raise NotImplementedError

    def meta_view(self, window: bandit.Window, window_rows: pd.DataFrame) -> MetaView:
        t_min, t_max = float(window_rows["time"].min()), float(window_rows["time"].max())
        tasks, aligns, preds, skipped = [], [], [], []
        for task in self.meta_tasks:
            al = task.align(t_min, t_max)
            if al is None:  # Q28: the original crashes here
                skipped.append(task.name)
                continue
            tasks.append(task)
            aligns.append(al)
            preds.append(task.predict_mean(window.X, al))
        return MetaView(tasks, aligns, np.array(preds).reshape(len(tasks), len(window.X)), skipped)

    def weights(self, view: MetaView, y: np.ndarray, loo: np.ndarray | None = None) -> np.ndarray:
        return rank_weights(view.preds, y, self.rng, loo=loo, shift0=self.quirks.ranking_loss_shift0)

    def lineage(self, view: MetaView, weights: np.ndarray, fallback: str | None) -> dict[str, Any]:
        used = {t.name: float(w) for t, w in zip(view.tasks, weights, strict=False) if w > 0}
        return {
            "meta_weights": used,
            "meta_runs": {t.name: t.run_ids for t in view.tasks if t.name in used},
            "meta_skipped": view.skipped,
            "meta_fallback": fallback,
            **({"meta_warnings": self.meta_warnings} if self.meta_warnings else {}),
        }

    def no_meta(self, window, window_rows, pending_u, reason: str, view: MetaView | None = None):
        """Plain PB2* for this suggestion, saying why."""
        log.info("%s: %s; using PB2* for this suggestion", self.name, reason)
        acq, diag = super().acquisition(window, window_rows, pending_u)
        skipped = view.skipped if view is not None else []
        return acq, {
            **diag,
            "surrogate": "gp",  # PB2*'s target GP alone
            "meta_weights": {},
            "meta_runs": {},
            "meta_skipped": skipped,
            "meta_fallback": reason,
            **({"meta_warnings": self.meta_warnings} if self.meta_warnings else {}),
        }
