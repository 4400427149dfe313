"""Checks that keep bad science from flowing downstream, on one run record (Dagster-free: the asset
layer turns each outcome into a blocking asset check, ``metapb2 run`` into its exit status).

A record carries its verdict in its meta (``status``: passed or failed, ``failed_checks``,
``checks``); a failed run is kept, and no reader of records or catalogs uses it as meta-data,
portfolio input, rank, report row or staleness input."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from metapb2_core.budgets import Budget
from metapb2_core.envs import TASKS
from metapb2_core.methods import METHODS, get_method
from metapb2_core.rounds import exploits_per_round
from metapb2_core.space import SearchSpace


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


CHECKS: dict[str, str] = {
    "finite_returns": "every fresh evaluation return is finite and no training return is infinite",
    "monotone_timesteps": "each member's timesteps strictly increase with its training iteration",
    "hyperparameters_in_bounds": "every configuration a member trained with lies in the search space",
    "population_as_configured": "the run has the budget's population size and number of perturbations",
    "no_target_leakage": "no meta-data or portfolio entry comes from the target task (its environment "
    "for portfolios)",
}


def expected_perturbations(budget: Budget, method: str) -> int:
    if not get_method(method).perturbs:
        return 0
    return (budget.num_intervals - 1) * exploits_per_round(budget.population_size)


def verdict(outcomes: list[CheckOutcome]) -> dict:
    """What a record's meta says of its checks."""
    failed = [o.name for o in outcomes if not o.passed]
    return {
        "status": "failed" if failed else "passed",
        "failed_checks": failed,
        "checks": {o.name: {"passed": o.passed, "description": o.description} for o in outcomes},
    }


def failure_summary(meta: dict) -> str:
    """One line naming each failed check and what it found."""
    checks = meta.get("checks") or {}
    return "; ".join(
        f"{n} ({checks.get(n, {}).get('description', '')})" for n in meta.get("failed_checks", [])
    )


def run_checks(
    points: pd.DataFrame, perturbations: pd.DataFrame, meta: dict, budget: Budget, space: SearchSpace
) -> list[CheckOutcome]:
    return [
        _finite(points),
        _monotone(points),
        _bounds(points, space),
        _population(points, perturbations, meta, budget),
        _leakage(meta),
    ]


def _finite(points: pd.DataFrame) -> CheckOutcome:
    evals = points.loc[points["eval_is_fresh"].astype(bool), "eval_return"].to_numpy(float)
    bad = int((~np.isfinite(evals)).sum())
    # NaN means no episode ended in that iteration; an infinite return is a broken environment
    bad_train = int(np.isinf(points["train_return"].to_numpy(float)).sum()) if "train_return" in points else 0
    return CheckOutcome(
        "finite_returns",
        bad == 0 and bad_train == 0,
        f"{bad} non-finite evaluation returns of {len(evals)}, {bad_train} non-finite training returns",
        {"non_finite_eval": bad, "non_finite_train": bad_train, "evaluations": len(evals)},
    )


def _monotone(points: pd.DataFrame) -> CheckOutcome:
    ordered = points.sort_values(["member", "training_iteration"])
    steps = ordered.groupby("member")["timesteps"].diff().dropna()
    bad = int((steps <= 0).sum())
    return CheckOutcome("monotone_timesteps", bad == 0, f"{bad} non-increasing steps", {"violations": bad})


def _outside(column: pd.Series, p) -> int:
    """Values of ``column`` that ``p`` does not allow (``allowed``: out of bounds, off an integer's
    grid, not one of its choices, or missing)."""
    return int((~p.allowed(column)).sum())


def _bounds(points: pd.DataFrame, space: SearchSpace) -> CheckOutcome:
    outside = {p.name: _outside(points[p.name], p) for p in space.params}
    n = sum(outside.values())
    what = ", ".join(f"{k}: {v}" for k, v in outside.items() if v) or "none"
    return CheckOutcome(
        "hyperparameters_in_bounds", n == 0, f"{n} values outside the bounds ({what})", outside
    )


def _population(
    points: pd.DataFrame, perturbations: pd.DataFrame, meta: dict, budget: Budget
) -> CheckOutcome:
    members = int(points["member"].nunique())
    if meta["method"] not in METHODS:  # an imported experiment's own scheduler: its exploits are its own
        want = len(perturbations)
    else:
        want = expected_perturbations(budget, meta["method"])
    ok = members == budget.population_size and len(perturbations) == want
    return CheckOutcome(
        "population_as_configured",
        ok,
        f"{members} members (budget: {budget.population_size}), {len(perturbations)} perturbations "
        f"(expected {want})",
        {"members": members, "perturbations": len(perturbations), "expected_perturbations": want},
    )


def _leakage(meta: dict) -> CheckOutcome:
    target = meta["task"]
    meta_leaks = [t for t in meta.get("meta_tasks") or {} if t == target]
    faithful = bool(meta.get("faithful"))

    def env_of(task: str) -> str:  # a user's own task (a Tune experiment's) is its own environment
        return TASKS[task].env_name if task in TASKS else task

    def leaks(source: str) -> bool:  # methods.md: a portfolio never sees the target's environment
        if not source:  # a hand-made portfolio without lineage
            return False
        return source == target if faithful else env_of(source) == env_of(target)

    port_leaks = [e["source_task"] for e in meta.get("portfolio") or [] if leaks(e.get("source_task", ""))]
    return CheckOutcome(
        "no_target_leakage",
        not meta_leaks and not port_leaks,
        f"meta-data tasks {sorted(meta.get('meta_tasks') or {})}, portfolio sources "
        f"{sorted({e.get('source_task') for e in meta.get('portfolio') or []})}; leaked: "
        f"{meta_leaks + port_leaks or 'none'}",
        {"leaked_meta_tasks": len(meta_leaks), "leaked_portfolio_entries": len(port_leaks)},
    )
