"""What each artefact of a study writes into the catalog, as ``Replace``s keyed so a re-write
replaces instead of duplicating. ``TABLES`` documents every table (README, docs)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from metapb2_core.store.catalog import Delete, Replace, Update
from metapb2_core.store.records import dumps_strict

TABLES: dict[str, str] = {
    "runs": "one row per population run: ids, role (evaluation, meta), status (passed, failed, or "
    "staged until its materialisation is recorded; readers use passed runs only), failed checks, budget, "
    "wall seconds, env-steps/s, best final return, code version, the Dagster run and partition",
    "run_points": "one row per run, member and training iteration: hyperparameters, PPO metrics, "
    "evaluation return when fresh (the input of evaluation.load_points)",
    "perturbations": "one row per exploit/explore step: who cloned whom, old and new configuration, "
    "the method's diagnostics (JSON)",
    "meta_usage": "lineage edges from a producing run (meta-data run or candidate search) to the "
    "run that consumed its data, with the kind of use (meta_data or portfolio)",
    "candidates": "portfolio step 1: the best configurations of each task and seed's random search",
    "performance_matrix": "portfolio step 2: every candidate's final return on every task and seed",
    "portfolios": "portfolio step 3: the greedy portfolio of each target task, in selection order",
    "evaluations": "best-member score of each evaluation run at each evaluation point",
    "ranks": "method_ranks: mean rank and normalised score of each method at each point",
    "lineage": "one row per materialisation: asset key, partition, Dagster run id, code version, "
    "the run ids it consumed, and the status of the run it made (for run-producing assets)",
}


@dataclass(frozen=True)
class Lineage:
    asset_key: str
    partition: str  # "" for an unpartitioned asset
    dagster_run_id: str
    code_version: str
    input_runs: tuple[str, ...] = field(default=())


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def lineage_rows(lin: Lineage, output_runs: list[str], status: str | None = None) -> Replace:
    row = {
        "asset_key": lin.asset_key,
        "partition": lin.partition,
        "dagster_run_id": lin.dagster_run_id,
        "code_version": lin.code_version,
        "output_runs": json.dumps(sorted(output_runs)),
        "input_runs": json.dumps(sorted(set(lin.input_runs))),
        "materialized_at": _now(),
        "status": status,
    }
    return Replace("lineage", {"asset_key": lin.asset_key, "partition": lin.partition}, pd.DataFrame([row]))


def usage_edges(meta: dict) -> pd.DataFrame:
    """The runs whose data ``meta`` (a run record's meta) consumed: meta-data runs and portfolio
    entries' candidate searches."""
    edges = [
        {"producer_run_id": rid, "producer_task": task, "kind": "meta_data"}
        for task, rids in (meta.get("meta_tasks") or {}).items()
        for rid in rids
    ]
    edges += [
        {"producer_run_id": e["run_id"], "producer_task": e["source_task"], "kind": "portfolio"}
        for e in meta.get("portfolio") or []
        if "run_id" in e
    ]
    cols = ["consumer_run_id", "producer_run_id", "producer_task", "kind"]
    return pd.DataFrame(edges, columns=cols[1:]).assign(consumer_run_id=meta["run_id"])[cols].astype(str)


def run_rows(
    points: pd.DataFrame,
    perturbations: pd.DataFrame,
    meta: dict,
    role: str,
    lin: Lineage,
    status: str | None = None,
) -> list:
    """The run's rows in every run table; ``status`` defaults to its record's verdict ("unchecked"
    for a record whose checks never ran: no reader uses it)."""
    rid = meta["run_id"]
    keep = [
        "run_id",
        "task",
        "env",
        "context",
        "method",
        "seed",
        "budget",
        "faithful",
        "wall_seconds",
        "compile_seconds",
        "train_env_steps",
        "env_steps_per_second",
        "best_final_eval_return",
        "code_version",
    ]
    sizes = meta["budget_sizes"]
    run = {
        **{k: meta.get(k) for k in keep},
        "role": role,
        "status": status or meta.get("status") or "unchecked",
        "failed_checks": ", ".join(meta.get("failed_checks") or []),
        "population_size": sizes["population_size"],
        "total_steps": sizes["total_steps"],
        "n_points": len(points),
        "n_perturbations": len(perturbations),
        "dagster_run_id": lin.dagster_run_id,
        "partition": lin.partition,
        "asset_key": lin.asset_key,
        "created_at": _now(),
        "meta_json": dumps_strict(meta),
    }
    key = {"run_id": rid}
    return [
        *retire_partition_runs(lin, rid),
        Replace("runs", key, pd.DataFrame([run])),
        Replace("run_points", key, points),
        Replace("perturbations", key, perturbations),
        Replace("meta_usage", {"consumer_run_id": rid}, usage_edges(meta)),
    ]


# Tables whose rows belong to one run, and the column naming it.
RUN_TABLES = {
    "run_points": "run_id",
    "perturbations": "run_id",
    "meta_usage": "consumer_run_id",
    "evaluations": "run_id",
}


def retire_partition_runs(lin: Lineage, keep: str) -> list[Delete]:
    """Deletes of the runs an asset partition recorded before, other than ``keep``: a partition
    holds one run, and re-materialising it after its inputs changed makes a run of another request
    (another run id), which replaces the old one in the catalog (its record files stay on disk)."""
    if not lin.partition:
        return []
    old = "SELECT run_id FROM runs WHERE asset_key = ? AND partition = ? AND run_id <> ?"
    params = (lin.asset_key, lin.partition, keep)
    return [Delete(t, f'"{col}" IN ({old})', params) for t, col in RUN_TABLES.items()] + [
        Delete("runs", "asset_key = ? AND partition = ? AND run_id <> ?", params)
    ]


def publish_rows(run_id: str, status: str, lin: Lineage) -> list[Update]:
    """Turn a staged run into a readable one (``status`` passed) or a kept, failed one."""
    return [
        Update("runs", {"status": status}, {"run_id": run_id}),
        Update("lineage", {"status": status}, {"asset_key": lin.asset_key, "partition": lin.partition}),
    ]


def evaluation_rows(scores: pd.DataFrame, run_id: str) -> Replace:
    """The best-member score of an evaluation run at each point (``evaluation.scores.run_scores``)."""
    return Replace("evaluations", {"run_id": run_id}, scores)
