"""The study's DuckDB catalog: its schema, every query that reads it and every change that writes
it. No other module holds SQL (``tests/test_architecture.py`` checks): a schema change touches this
file alone. Readers return DataFrames; writers return the ``Replace``/``Update``/``Delete``s that
``Catalog.write`` applies in one transaction, keyed so a re-write replaces instead of duplicating.
The catalog is derived from the run records and exported tables (``store.rebuild``), which are the
authority; the engine (locking, transactions) is ``store.duckdb_file``."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from metapb2_core.store.duckdb_file import Delete, DuckDBFile, Replace, StoreError, Update
from metapb2_core.store.records import dumps_strict

__all__ = ["TABLE_KEYS", "TABLES", "Catalog", "Delete", "Lineage", "Replace", "StoreError", "Update"]

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


# Tables that no run record holds -> the columns that key the rows one step writes (the ``where``
# of its ``Replace``, and one exported file each: ``store.table_files``)
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "candidates": ("source_task", "seed"),
    "performance_matrix": ("task", "seed"),
    "portfolios": ("family", "seed"),
    "ranks": ("family", "budget"),
    "lineage": ("asset_key",),
}
LINEAGE_COLUMNS = (
    "asset_key",
    "partition",
    "dagster_run_id",
    "code_version",
    "output_runs",
    "input_runs",
    "materialized_at",
    "status",
)


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


def step_rows(table: str, rows: pd.DataFrame, **key: object) -> Replace:
    """The rows one step writes into ``table`` (one of ``TABLE_KEYS`` but lineage), replacing that
    step's earlier rows: ``key`` names every key column of the table."""
    if table not in TABLE_KEYS or table == "lineage":
        raise ValueError(
            f"{table!r} is not a step's table: {', '.join(t for t in TABLE_KEYS if t != 'lineage')}"
        )
    if tuple(key) != TABLE_KEYS[table]:
        raise ValueError(f"the rows of {table} are keyed by {TABLE_KEYS[table]}, not {tuple(key)}")
    return Replace(table, key, rows)


def evaluation_rows(scores: pd.DataFrame, run_id: str) -> Replace:
    """The best-member score of an evaluation run at each point (``evaluation.scores.run_scores``)."""
    return Replace("evaluations", {"run_id": run_id}, scores)


def _marks(values: Sequence) -> str:
    return ", ".join("?" for _ in values)


class Catalog(DuckDBFile):
    """The catalog's readers; a table that does not exist yet reads as empty (or None)."""

    def has(self, table: str) -> bool:
        return table in self.tables()

    def rows(self, table: str) -> pd.DataFrame:
        """Every row of ``table`` (one of ``TABLES``)."""
        if table not in TABLES:
            raise StoreError(f"{table!r} is not a table of the catalog (tables: {', '.join(TABLES)})")
        return self.query(f'SELECT * FROM "{table}"') if self.has(table) else pd.DataFrame()

    def roles(self) -> list[str]:
        return list(self.query("SELECT DISTINCT role FROM runs ORDER BY role")["role"])

    def run_ids(self) -> list[str]:
        return list(self.query("SELECT run_id FROM runs")["run_id"]) if self.has("runs") else []

    def runs_matching(
        self,
        role: str | None,
        budget: str | None = None,
        tasks: Sequence[str] | None = None,
        faithful: bool | None = None,
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(points, perturbations, failed) of the runs with ``role`` (None: any), budget, tasks and
        quirk mode (None: any): points and perturbations of those that passed their checks, and
        run_id, task, method, seed and reason of those that failed. Staged runs are in neither."""
        conds, args = ["true"], []
        for column, value in (("role", role), ("budget", budget), ("faithful", faithful)):
            if value is not None:
                conds.append(f"r.{column} = ?")
                args.append(value)
        if tasks is not None:
            conds.append(f"r.task IN ({_marks(tasks)})" if tasks else "false")
            args += list(tasks)
        cond = " AND ".join(conds)
        passed = f"{cond} AND r.status = 'passed'"
        points = self.query(f"SELECT p.* FROM run_points p JOIN runs r USING (run_id) WHERE {passed}", args)
        perturbations = self.query(
            f"SELECT q.* FROM perturbations q JOIN runs r USING (run_id) WHERE {passed}", args
        )
        failed = self.query(
            "SELECT r.run_id, r.task, r.method, r.seed, r.failed_checks AS reason FROM runs r "
            f"WHERE {cond} AND r.status = 'failed' ORDER BY r.run_id",
            args,
        )
        return points, perturbations, failed

    def meta_data_runs(
        self, method: str, target_task: str, where: str | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(runs: run_id and meta_json, points, perturbations) of the passed ``method`` runs on tasks
        other than ``target_task`` with role meta, narrowed by a user's SQL condition ``where`` on
        the runs table (which may name another role)."""
        cond = "method = ? AND task <> ? AND status = 'passed'"
        cond += "" if where and _names_role(where) else " AND role = 'meta'"
        cond += f" AND ({where})" if where else ""
        params = [method, target_task]
        runs = self.query(f"SELECT run_id, meta_json FROM runs WHERE {cond} ORDER BY run_id", params)
        ids = f"SELECT run_id FROM runs WHERE {cond}"
        points = self.query(f"SELECT * FROM run_points WHERE run_id IN ({ids})", params)
        perturbations = self.query(f"SELECT * FROM perturbations WHERE run_id IN ({ids})", params)
        return runs, points, perturbations

    def manifests(self, run_ids: Sequence[str]) -> pd.DataFrame:
        """run_id, method, role and meta_json (the manifest as JSON) of ``run_ids``."""
        if not run_ids or not self.has("runs"):
            return pd.DataFrame(columns=["run_id", "method", "role", "meta_json"])
        sql = f"SELECT run_id, method, role, meta_json FROM runs WHERE run_id IN ({_marks(run_ids)})"
        return self.query(sql, list(run_ids))

    def candidates(self) -> pd.DataFrame:
        """Portfolio step 1's rows, by source task, seed and rank."""
        if not self.has("candidates"):
            return pd.DataFrame()
        return self.query("SELECT * FROM candidates ORDER BY source_task, seed, rank")

    def lineage(self, asset_keys: Sequence[str] | None = None, published: bool = False) -> pd.DataFrame:
        """Lineage rows (of ``asset_keys`` only, unless None; without staged ones when ``published``)."""
        if not self.has("lineage") or (asset_keys is not None and not asset_keys):
            return pd.DataFrame(columns=list(LINEAGE_COLUMNS))
        conds, args = ["true"], []
        if asset_keys is not None:
            conds.append(f"asset_key IN ({_marks(asset_keys)})")
            args += list(asset_keys)
        if published:
            conds.append("coalesce(status, '') <> 'staged'")
        return self.query(f"SELECT * FROM lineage WHERE {' AND '.join(conds)}", args)


def _names_role(where: str) -> bool:
    return re.search(r"\brole\b", where) is not None
