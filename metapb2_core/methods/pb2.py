"""PB2 (Ray Tune 2.8.1, methods.md §2) and PB2* (LogPB2, §3): the time-varying GP bandit.

Both keep their own data table: the loop's record rows plus the explore rows they add when a
member starts under a new configuration, so that its next record row yields a transition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from itertools import product
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from metapb2_core import bandit, choice_bandit
from metapb2_core.errors import MetaPB2Error
from metapb2_core.gp.kernel import KernelSpec
from metapb2_core.gp.model import GPFit
from metapb2_core.methods.base import ExploreContext, Method, Suggestion, register_method
from metapb2_core.quirks import Quirks
from metapb2_core.space import Config, SearchSpace

# how a mixed space's categories are chosen; "auto": enumerate up to MAX_COMBINATIONS, else the bandit
# (benchmarks/bench_mixed_space.py: enumeration had the lowest regret with 3 categories)
CATEGORICAL_MODES = ("auto", "enumerate", "bandit", "index")
MAX_COMBINATIONS = 64


@dataclass(frozen=True)
class Variant:
    kernel: KernelSpec
    clip_lengthscale: tuple[float, float] | None  # Ray clips ℓ after the fit and freezes it
    scaling_log: bool  # log-scale the log parameters (lr) in the GP
    clip_unit: bool  # clip normalised hyperparameters into [0, 1]
    ucb_std: bool  # κ·σ (PB2*) or κ·σ² (Ray, Q9)
    fresh_draw_without_data: bool  # round 1: a prior draw instead of the clone's values (Q36)
    explore_row_always: bool  # also after a round-1 exploit (Q15)
    explore_row_at_clone_transition: bool = False  # at the clone's last transition (Ray, §2.1)
    exploration: float = 0.2


def pb2_variant(quirks: Quirks) -> Variant:
    # Ray's kernel starts at σ² = 1, ℓ = 1, ε = 0.1. By default its parameters are kept positive and
    # its gradients are correct; the faithful switch restores the free parameters and Ray's partials.
    kernel = KernelSpec(
        1.0, 1.0, 0.1, bounded=False, unconstrained=quirks.ray_kernel, ray_gradients=quirks.ray_kernel
    )
    return Variant(
        kernel, (1e-5, 1.0), False, False, False, False, False, quirks.pb2_explore_row_at_clone_transition
    )


def pb2_star_variant(quirks: Quirks) -> Variant:
    kernel = KernelSpec(1.0, 1.0 if quirks.lengthscale_starts_at_bound else 0.5, 0.1, bounded=True)
    return Variant(kernel, None, not quirks.pb2_star_linear_lr, True, True, True, True)


class _PB2Base(Method):
    variant_for: Any = None
    state_attributes: ClassVar[tuple[str, ...]] = ("explore_rows", "exploit_times")

    def __init__(
        self, space: SearchSpace, rng: np.random.Generator, quirks: Quirks = Quirks(), **options: Any
    ):
        exploration = options.pop("exploration", None)
        self.categorical = options.pop("categorical", "auto")
        if self.categorical not in CATEGORICAL_MODES:
            raise MetaPB2Error(
                f"categorical must be one of {', '.join(CATEGORICAL_MODES)}, got {self.categorical!r}"
            )
        super().__init__(space, rng, quirks, **options)
        self.variant = type(self).variant_for(quirks)
        if exploration is not None:
            self.variant = replace(self.variant, exploration=float(exploration))
        n_combos = math.prod(len(p.choices) for p in space.params if p.kind == "choice")
        if self.categorical == "enumerate" and n_combos > MAX_COMBINATIONS:
            raise MetaPB2Error(
                f"{n_combos} combinations of choices to enumerate (> {MAX_COMBINATIONS}); "
                "use categorical='bandit'"
            )
        encoding = "index" if self.categorical == "index" else "onehot"
        self.scaling = bandit.Scaling(space, self.variant.scaling_log, self.variant.clip_unit, encoding)
        self.explore_rows: list[dict] = []
        self.exploit_times: dict[int, list[int]] = {}

    # ---- the data table ------------------------------------------------------------------------
    def data_table(self, records: pd.DataFrame) -> pd.DataFrame:
        """Record rows and explore rows, each tagged with the exploit segment it belongs to."""
        return bandit.data_table(records, self.explore_rows, self.exploit_times, self.space.names)

    def suggest(self, ctx: ExploreContext) -> Suggestion:
        names = self.space.names
        table = self.data_table(ctx.table)
        trans = bandit.transitions(table, names, self.quirks.transitions_by_values)
        dropped = dropped_nonfinite(table, names, self.quirks.transitions_by_values)
        clone_rows = trans[trans["member"] == ctx.clone]
        clone_reward = float(ctx.table.query("member == @ctx.clone and time == @ctx.time")["reward"].iloc[-1])
        self.exploit_times.setdefault(ctx.member, []).append(ctx.time)

        if clone_rows.empty:  # no data on the clone yet (round 1), or none finite (it diverged)
            if self.variant.fresh_draw_without_data:
                config, diagnostics = self.initializer()
            else:
                config, diagnostics = dict(ctx.clone_config), {"mode": "copy_clone"}
            own = ctx.table.loc[ctx.table["member"] == ctx.clone, "reward"].to_numpy(dtype=np.float64)
            if not np.isfinite(own).all():  # not by design (the clone diverged): say so among the fallbacks
                diagnostics = {
                    **diagnostics,
                    "mode": "no_finite_data",
                    "fallback": f"the clone has no finite transitions ({diagnostics['mode']})",
                }
            if dropped:
                diagnostics = {**diagnostics, "dropped_nonfinite": dropped}
            if not self.variant.explore_row_always:
                return Suggestion(config, diagnostics)
            return Suggestion(
                config, diagnostics, self._add_explore_row(ctx.member, ctx.time, config, clone_reward)
            )

        last = clone_rows.iloc[-1]
        newpoint = (float(last["time"]), float(last["r_before"]))
        config, diagnostics = self._select(trans, newpoint, ctx.pending, ctx.table)
        if dropped:
            diagnostics = {**diagnostics, "dropped_nonfinite": dropped}
        if self.variant.explore_row_at_clone_transition:
            at, reward = int(last["time"]), float(last["reward"])
        else:
            at, reward = ctx.time, clone_reward
        return Suggestion(config, diagnostics, self._add_explore_row(ctx.member, at, config, reward))

    def initializer(self) -> tuple[Config, dict[str, Any]]:
        """A round-1 configuration for a member whose clone has no data yet (Q36), and what it is:
        here a draw from the prior."""
        return self.space.sample(self.rng), {"mode": "prior_draw"}

    def _add_explore_row(self, member: int, time: int, config: Config, reward: float) -> tuple[int, float]:
        segment = len(self.exploit_times[member])
        self.explore_rows.append(
            {"member": member, "time": time, **config, "reward": reward, "segment": segment}
        )
        return time, reward

    # ---- the GP-UCB selection ------------------------------------------------------------------
    def _select(
        self, trans: pd.DataFrame, newpoint: tuple[float, float], pending: list[Config], records: pd.DataFrame
    ):
        names = self.space.names
        length = bandit.select_length(trans, names, newpoint, self.scaling, self._window_kernel())
        window_rows = trans.tail(length)
        window = bandit.normalise(window_rows, names, newpoint, self.scaling)
        pending_u = self.scaling.encode_configs(pending, float32=self.quirks.pending_log_float32)
        acq, diagnostics = self.acquisition(window, window_rows, pending_u)
        if self.scaling.mixed:
            config, u, value, chosen = self._select_mixed(acq, trans, records)
            diagnostics = {**diagnostics, **chosen}
        else:
            u, value = bandit.maximise(acq, len(names), self.rng)
            config = self.space.from_array(self.scaling.from_unit(u))
            config = self.space.clip(config)  # float32 rounding may step a hair outside a bound
        diagnostics = {
            "mode": "gp_ucb",
            **diagnostics,
            "window": int(length),
            "pending_rows": len(pending),
            "acquisition": value,
            "newpoint": list(newpoint),
            **self.point_diagnostics(acq, u),
        }
        return config, diagnostics

    def _select_mixed(self, acq: bandit.UCB, trans: pd.DataFrame, records: pd.DataFrame):
        """Mixed inputs: the categories, then the acquisition maximised over the numeric columns
        with the categories' one-hot columns fixed; integers rounded to their grid. The categories
        come from maximising the acquisition for every combination of them (``"enumerate"``, as
        BoTorch's ``optimize_acqf_mixed`` does with fixed features; up to ``MAX_COMBINATIONS``),
        or from the time-varying EXP3 bandit of PB2-Mix (``"bandit"``, Parker-Holder et al. 2021;
        ``choice_bandit``); ``"auto"`` (the default) enumerates when the combinations are few,
        else takes the bandit; ``"index"`` models each as one relaxed column, rounded."""
        cats = [p for p in self.space.params if p.kind == "choice"] if self.categorical != "index" else []
        if not cats:
            u, value = bandit.maximise_conditioned(acq, self.scaling.width, {}, self.rng)
            return self.scaling.decode(u, {}), u, value, {}
        n_combos = math.prod(len(p.choices) for p in cats)
        if self.categorical == "enumerate" or (self.categorical == "auto" and n_combos <= MAX_COMBINATIONS):
            combos = [
                dict(zip([p.name for p in cats], c, strict=True)) for c in product(*(p.choices for p in cats))
            ]
            best = None
            for chosen in combos:
                u, value = bandit.maximise_conditioned(
                    acq, self.scaling.width, self.scaling.fixed_columns(chosen), self.rng
                )
                if best is None or value > best[2]:
                    best = (chosen, u, value)
            chosen, u, value = best
            return self.scaling.decode(u, chosen), u, value, {"categories_by": "acquisition"}
        played = choice_bandit.plays(records, self.explore_rows, trans)
        chosen, cat_diagnostics = choice_bandit.choose(trans, played, cats, self.rng)
        u, value = bandit.maximise_conditioned(
            acq, self.scaling.width, self.scaling.fixed_columns(chosen), self.rng
        )
        return self.scaling.decode(u, chosen), u, value, cat_diagnostics

    def point_diagnostics(self, acq: bandit.UCB, u: np.ndarray) -> dict[str, Any]:
        """What to record about the model at the suggested point ``u`` (meta methods: the prior)."""
        return {}

    def acquisition(
        self, window: bandit.Window, window_rows: pd.DataFrame, pending_u: np.ndarray
    ) -> tuple[bandit.UCB, dict[str, Any]]:
        """The function to maximise over the unit box, and what to record about it. Meta methods
        override this; PB2 and PB2* fit the target GP and take UCB."""
        v = self.variant
        m, m1 = bandit.fit_with_pending(
            window.X, window.y, window.fixed, pending_u, v.kernel, clip_lengthscale=v.clip_lengthscale
        )
        acq, kappa = self.ucb(m, m1, window.fixed)
        return acq, fit_diagnostics(m, m1, kappa)

    def ucb(self, model: bandit.Surrogate, pending_model: bandit.Surrogate, fixed: np.ndarray):
        return bandit.ucb(model, pending_model, fixed, self.variant.exploration, self.variant.ucb_std)

    def _window_kernel(self) -> KernelSpec:
        # Ray's select_length always uses its own kernel (σ² 1, ℓ 1, ε 0.1), also under PB2* (Q5).
        return pb2_variant(self.quirks).kernel


def dropped_nonfinite(table: pd.DataFrame, names: list[str], by_values: bool) -> int:
    """How many transitions ``bandit.transitions`` left out of ``table`` because a reward at either
    end is not finite (a diverged member): the steps it makes of the table with those rewards made
    finite, less the steps it makes of the table itself, both uncapped. Zero, without recomputing,
    when every reward is finite; it only counts, so the suggestion is what it was without it."""
    reward = table["reward"].to_numpy(dtype=np.float64)
    finite = np.isfinite(reward)
    if finite.all():
        return 0
    filled = table.assign(reward=np.where(finite, reward, 0.0))
    every = bandit.transitions(filled, names, by_values, cap=None)
    return len(every) - len(bandit.transitions(table, names, by_values, cap=None))


def fit_diagnostics(m: GPFit, m1: GPFit, kappa: float | None = None) -> dict[str, Any]:
    """The fitted GP's parameters, and whether the pending model m1 had to fall back."""
    return {**m.diagnostics(), "kappa": kappa, "pending_fallback": m1.fallback if m1 is not m else None}


@register_method
class PB2(_PB2Base):
    name = "pb2"
    variant_for = staticmethod(pb2_variant)


@register_method
class PB2Star(_PB2Base):
    name = "pb2_star"
    variant_for = staticmethod(pb2_star_variant)
