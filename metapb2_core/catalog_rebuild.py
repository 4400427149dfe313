"""A study root's catalog from its files alone: the run records under ``runs/`` and the exported
tables under ``tables/`` (``store.table_files``). This is how a fresh clone of a committed study
gets back the catalog it continues from, so no finished run is computed twice.

A run enters the rebuilt catalog only when an exported lineage row names it as its output, with
that row's status (passed or failed): a record whose step never published (killed between writing
the record and publishing it) stays out, and its step runs again, as it would have on the machine
that wrote it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from metapb2_core.errors import MetaPB2Error
from metapb2_core.store import Lineage, read_record, record_ids
from metapb2_core.store.table_files import TABLES_DIR, read_tables
from metapb2_core.study import StudyPaths, run_changes


@dataclass(frozen=True)
class Rebuilt:
    runs: int
    table_files: int
    unpublished_records: tuple[str, ...]  # records no exported lineage row publishes

    def describe(self) -> str:
        left = len(self.unpublished_records)
        extra = f"; {left} unpublished record(s) left out" if left else ""
        return f"{self.runs} runs and {self.table_files} table files{extra}"


def _lineage_of_runs(changes: list) -> dict[str, tuple[Lineage, str]]:
    """run id -> (the lineage of the materialisation that made it, its status)."""
    out: dict[str, tuple[Lineage, str]] = {}
    for change in changes:
        if change.table != "lineage":
            continue
        for row in change.rows.to_dict("records"):
            lin = Lineage(
                row["asset_key"],
                row["partition"],
                row["dagster_run_id"],
                row["code_version"],
                tuple(json.loads(row["input_runs"])),
            )
            for rid in json.loads(row["output_runs"]):
                out[rid] = (lin, row["status"])
    return out


def rebuild_catalog(paths: StudyPaths) -> Rebuilt:
    """Write the catalog at ``paths.database`` from the files under ``paths.root``. The database
    must not exist yet: a rebuild never merges into, or overwrites, a catalog that holds work."""
    if paths.database.exists():
        raise MetaPB2Error(f"{paths.database} exists: a catalog is rebuilt only where there is none")
    changes = read_tables(paths.root)
    if not changes:
        raise MetaPB2Error(f"no exported tables under {paths.root / TABLES_DIR}: nothing to rebuild from")
    catalog = paths.catalog()
    catalog.write(changes)
    made_by = _lineage_of_runs(changes)
    runs, unpublished = 0, []
    for rid in record_ids(paths.runs) if paths.runs.is_dir() else []:
        if rid not in made_by or made_by[rid][1] not in ("passed", "failed"):
            unpublished.append(rid)
            continue
        lin, status = made_by[rid]
        record = read_record(paths.runs, rid)
        catalog.write(run_changes(record, record.meta["role"], lin, status))
        runs += 1
    return Rebuilt(runs, len(changes), tuple(unpublished))


def needs_rebuild(paths: StudyPaths) -> bool:
    """A study root with exported tables and no catalog: a fresh clone of a committed study."""
    return not paths.database.exists() and (paths.root / TABLES_DIR).is_dir()
