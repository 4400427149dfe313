"""Where a method did not do its real work: suggestions whose model fit failed, whose pending model
fell back, or whose meta method used plain PB2* (too few window rows, no meta rows in range) or a
nearest-time meta slice. Round-1 draws (prior, portfolio entry, copy of the clone) are by design
and not counted. Read from each perturbation's diagnostics."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd

FIELDS = {"fallback": "model fit", "pending_fallback": "pending model", "meta_fallback": "meta"}
ROUND_ONE = {"prior_draw", "copy_clone", "portfolio_entry"}


def suggestion_fallbacks(diagnostics: dict) -> list[str]:
    """What fell back in one suggestion, as 'what: why' strings (empty: none)."""
    if diagnostics.get("mode") in ROUND_ONE:
        return []
    return [f"{what}: {diagnostics[key]}" for key, what in FIELDS.items() if diagnostics.get(key)]


def summarise(diagnostics: list[dict]) -> tuple[int, int, Counter]:
    """(model-based suggestions, those with a fallback, count per reason)."""
    model_based = [d for d in diagnostics if d.get("mode") not in ROUND_ONE]
    reasons = Counter(r for d in model_based for r in suggestion_fallbacks(d))
    fell_back = sum(1 for d in model_based if suggestion_fallbacks(d))
    return len(model_based), fell_back, reasons


def describe(diagnostics: list[dict]) -> str:
    """One line, e.g. '2 of 4 model-based suggestions fell back (meta: 3 window rows (< 4) ×2)'."""
    n, fell_back, reasons = summarise(diagnostics)
    if not n:
        return "no model-based suggestions"
    if not fell_back:
        return f"none of {n} model-based suggestions fell back"
    why = ", ".join(f"{r} ×{c}" for r, c in reasons.most_common())
    return f"{fell_back} of {n} model-based suggestions fell back ({why})"


def fallback_table(perturbations: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Per method: runs, model-based suggestions, fallbacks and their reasons (the report's table)."""
    cols = ["method", "runs", "suggestions", "fallbacks", "reasons"]
    if perturbations.empty or "diagnostics" not in perturbations:
        return pd.DataFrame(columns=cols)
    method_of = points.drop_duplicates("run_id").set_index("run_id")["method"]
    diags = perturbations.assign(method=perturbations["run_id"].map(method_of)).dropna(subset=["method"])
    rows = []
    for method, df in diags.groupby("method", sort=True):
        parsed = [json.loads(d) for d in df["diagnostics"]]
        n, fell_back, reasons = summarise(parsed)
        if not n:
            continue
        why = ", ".join(f"{r} ×{c}" for r, c in reasons.most_common()) or "-"
        rows.append([method, df["run_id"].nunique(), n, fell_back, why])
    return pd.DataFrame(rows, columns=cols)
