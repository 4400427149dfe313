"""What a method needs beyond its search space, loaded from where a user keeps it: meta-data (a
directory built by ``metapb2 meta`` or a catalog query) for the meta methods, a portfolio (a
directory or JSON file built by ``metapb2 portfolio``) for the warm start. ``metapb2 run``, the
platform, the ask/tell population and the Tune schedulers all load them here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metapb2_core.errors import MetaPB2Error
from metapb2_core.meta.sources import load_meta
from metapb2_core.methods import get_method
from metapb2_core.quirks import Quirks
from metapb2_core.space import Config, SearchSpace


def method_inputs(
    method: str,
    target_task: str,
    space: SearchSpace,
    meta: str | Path | None = None,
    portfolio: str | Path | list[Config] | None = None,
    quirks: Quirks | None = None,
) -> dict[str, Any]:
    """The keyword inputs ``method`` requires (none for PBT, random search, PB2, PB2*): meta-data
    of every task but ``target_task`` (leave-one-task-out), grouped as ``quirks`` group the
    method's own transitions, or ``target_task``'s portfolio."""
    requires = get_method(method).requires
    inputs: dict[str, Any] = {}
    if "meta_tables" in requires:
        if not meta:
            raise MetaPB2Error(
                f"method {method!r} needs meta-data: pass --meta DIR (built by 'metapb2 meta') "
                "or --meta CATALOG.duckdb[:SQL condition on its runs table]"
            )
        by_values = (quirks or Quirks()).transitions_by_values
        inputs["meta_tables"] = load_meta(meta, target_task, space=space, by_values=by_values)
        inputs["target_task"] = target_task
    if "portfolio" in requires:
        if not portfolio:
            raise MetaPB2Error(
                f"method {method!r} needs a portfolio: pass --portfolio DIR_OR_JSON "
                "(built by 'metapb2 portfolio')"
            )
        inputs["portfolio"] = (
            list(portfolio) if isinstance(portfolio, list) else load_portfolio(portfolio, target_task)
        )
    return inputs


def load_portfolio(path: str | Path, task: str) -> list[Config]:
    """A portfolio JSON file, or ``<dir>/<task>_portfolio.json``; entries keep only hyperparameters
    (extra keys such as the source task are lineage)."""
    p = Path(path)
    file = p / f"{task}_portfolio.json" if p.is_dir() else p
    if not file.is_file():
        raise MetaPB2Error(
            f"no portfolio for task {task!r}: {file} does not exist (build it with 'metapb2 portfolio')"
        )
    try:
        entries = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise MetaPB2Error(f"portfolio {file} is not valid JSON: {e}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise MetaPB2Error(f"portfolio {file} must be a list of configurations")
    return entries
