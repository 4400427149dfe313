"""Where a meta method's meta-data come from: ``--meta PATH_OR_QUERY``.

- a directory built by ``metapb2 meta`` (one Parquet table per task and run), or
- a DuckDB catalog of the asset platform (``dagster_home/metapb2.duckdb``), optionally followed by
  ``:`` and a SQL condition on its ``runs`` table, e.g. ``metapb2.duckdb:budget = 'paper'``. Only
  runs that passed their checks are read, and only the ``meta`` role unless the condition names a
  role itself. The selected runs' transitions are rebuilt from their ``run_points`` and
  ``perturbations`` rows by the same builder as ``metapb2 meta`` (``tables.meta_table_from_record``).

Both group transitions as the reading run's mode says (``by_values``: the faithful mode's Q39).

Either way the selection is leave-one-task-out: the target task's own runs are never read.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd

from metapb2_core.errors import MetaPB2Error
from metapb2_core.meta.tables import check_no_leak, load_meta_tables, meta_table_from_record
from metapb2_core.space import SEARCH_SPACE, SearchSpace
from metapb2_core.store import Catalog, StoreError

CATALOG_SUFFIX = ".duckdb"


def split_source(source: str) -> tuple[Path, str | None] | None:
    """(catalog path, SQL condition or None) for a catalog source; None for a directory."""
    at = source.find(CATALOG_SUFFIX)
    if at < 0:
        return None
    end = at + len(CATALOG_SUFFIX)
    rest = source[end:]
    if rest and not rest.startswith(":"):
        return None
    return Path(source[:end]), (rest[1:].strip() or None) if rest else None


def load_meta(
    source: str | Path,
    target_task: str,
    method: str = "pb2",
    space: SearchSpace = SEARCH_SPACE,
    by_values: bool = False,
) -> dict[str, pd.DataFrame]:
    """Meta tables (task → pooled transitions) for ``target_task`` from a directory or a catalog,
    grouped as ``by_values`` says (a directory grouped otherwise is refused). ``method`` selects a
    catalog's runs; a directory holds the tables of the runs ``metapb2 meta --method`` chose (an
    imported Tune experiment's as well as pb2's), all of which are read."""
    catalog = split_source(str(source))
    if catalog is None:
        return load_meta_tables(source, target_task, None, by_values=by_values)
    path, where = catalog
    return load_meta_from_catalog(path, target_task, where, method, space, by_values)


def load_meta_from_catalog(
    path: Path,
    target_task: str,
    where: str | None = None,
    method: str = "pb2",
    space: SearchSpace = SEARCH_SPACE,
    by_values: bool = False,
) -> dict[str, pd.DataFrame]:
    if not path.is_file():
        raise MetaPB2Error(f"DuckDB catalog {path} does not exist (materialise meta_runs first)")
    try:
        runs, points, perturbations = Catalog(path).meta_data_runs(method, target_task, where)
    except duckdb.Error as e:
        raise MetaPB2Error(f"meta-data query on {path} failed: {str(e).splitlines()[0]}") from None
    except StoreError as e:
        raise MetaPB2Error(str(e)) from None
    by_task: dict[str, list[pd.DataFrame]] = {}
    order = ["timesteps", "member"]  # a record's order: by time, then member
    for run_id, meta_json in zip(runs["run_id"], runs["meta_json"], strict=True):
        meta = json.loads(meta_json)
        table = meta_table_from_record(
            points[points["run_id"] == run_id].sort_values(order, kind="stable"),
            perturbations[perturbations["run_id"] == run_id].sort_values(order, kind="stable"),
            meta,
            space,
            by_values,
        )
        if len(table):
            by_task.setdefault(meta["task"], []).append(table)
    if not by_task:
        raise MetaPB2Error(
            f"no {method!r} runs with transitions for target {target_task!r} in {path}"
            + (f" where {where}" if where else "")
            + " (the target's own task is excluded)"
        )
    tables = {
        task: pd.concat(parts, ignore_index=True).sort_values("time", kind="stable").reset_index(drop=True)
        for task, parts in sorted(by_task.items())
    }
    check_no_leak(tables, target_task)
    return tables
