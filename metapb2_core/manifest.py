"""The one builder of a run record: the identity columns on its points, its perturbation table and
the manifest keys every record has, whoever made it (a population run of the platform, an ask/tell
population of a user's loop). A key a producer has no value for is there as None, so readers of a
manifest never depend on who wrote it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from metapb2_core.provenance import provenance
from metapb2_core.rounds import Perturbation
from metapb2_core.space import SearchSpace
from metapb2_core.store import POINT_IDENTITY, RunRecord, perturbation_table

# What a producer may leave out (None in the manifest): the variant and timings of a loop it did not
# run; likewise meta_source and portfolio_source, the sources of inputs it did not read.
LOOP_FIELDS = (
    "variant",
    "wall_seconds",
    "compile_seconds",
    "checkpoint_seconds",
    "resumed_from_interval",
    "train_env_steps",
    "env_steps_per_second",
)


def build_record(
    ident: dict[str, Any],
    points: pd.DataFrame,
    perturbations: Sequence[Perturbation],
    space: SearchSpace,
    *,
    faithful: bool,
    tag: str,
    budget_sizes: dict[str, Any],
    final_configs: list[dict],
    meta_tasks: dict[str, list[str]],
    portfolio: list[dict] | None,
    code_version: str,
    **fields: Any,
) -> RunRecord:
    """The record of run ``ident`` (the ``POINT_IDENTITY`` values): ``points`` get the identity
    columns first; the manifest holds the identity, the keys every record has, ``LOOP_FIELDS``,
    meta_source and portfolio_source (from ``fields``, else None), any further ``fields`` after
    them, then the best final return."""
    if list(ident) != POINT_IDENTITY:
        raise ValueError(f"a record's identity is {POINT_IDENTITY}, not {list(ident)}")
    run_id = ident["run_id"]
    points = points.assign(**ident)[[*ident, *[c for c in points.columns if c not in ident]]]
    table = perturbation_table(run_id, list(perturbations), space.names, space.column_dtypes())
    manifest = {
        **ident,
        "faithful": faithful,
        "tag": tag,
        "budget_sizes": budget_sizes,
        "bounds": space.declaration(),
        **{k: fields.pop(k, None) for k in LOOP_FIELDS},
        "final_configs": final_configs,
        "meta_source": fields.pop("meta_source", None),
        "meta_tasks": meta_tasks,
        "portfolio_source": fields.pop("portfolio_source", None),
        "portfolio": portfolio,
        "code_version": code_version,
        "provenance": provenance(code_version),
        **fields,
    }
    record = RunRecord(run_id, points, table, manifest)
    manifest["best_final_eval_return"] = record.best_final_eval
    return record
