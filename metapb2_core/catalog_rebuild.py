"""A study root's catalog from its files alone: the run records under ``runs/`` and the exported
tables under ``tables/`` (``store.table_files``). This is how a fresh clone of a committed study
gets back the catalog it continues from, so no finished run is computed twice.

A run enters the rebuilt catalog only when an exported lineage row names it as its output, with
that row's status (passed or failed): a record whose step never published (killed between writing
the record and publishing it) stays out, and its step runs again, as it would have on the machine
that wrote it.

A rebuild is atomic: it writes a catalog beside the real one (``.<name>.rebuilding``) and moves it
into place only when every record has entered, so an interrupted rebuild (Ctrl-C, a kill) or one
stopped by a damaged record leaves no catalog, and the next command rebuilds again instead of
ranking a partial catalog as complete. A damaged record stops it with the record's file name.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from metapb2_core.errors import MetaPB2Error
from metapb2_core.store import Lineage, RecordError, read_record, record_ids
from metapb2_core.store.table_files import TABLES_DIR, read_tables
from metapb2_core.study import StudyPaths, run_changes

BATCH = 40  # records per catalog transaction


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


def rebuilding_path(paths: StudyPaths):
    """Where a rebuild writes before it is complete (never read as a catalog)."""
    return paths.database.with_name(f".{paths.database.name}.rebuilding")


def rebuild_catalog(
    paths: StudyPaths, progress: Callable[[int, int], None] | None = None, every_s: float = 5.0
) -> Rebuilt:
    """Write the catalog at ``paths.database`` from the files under ``paths.root``, atomically.
    The database must not exist yet: a rebuild never merges into, or overwrites, a catalog that
    holds work. ``progress(done, total)`` is called every ``every_s`` seconds and at the end."""
    if paths.database.exists():
        raise MetaPB2Error(f"{paths.database} exists: a catalog is rebuilt only where there is none")
    changes = read_tables(paths.root)
    if not changes:
        raise MetaPB2Error(f"no exported tables under {paths.root / TABLES_DIR}: nothing to rebuild from")
    aside = StudyPaths(paths.root, rebuilding_path(paths))
    for leftover in (aside.database, aside.database.with_name(aside.database.name + ".wal")):
        leftover.unlink(missing_ok=True)  # an interrupted rebuild's: never resumed, begun again
    try:
        rebuilt = _rebuild_into(aside, changes, progress, every_s)
        os.replace(aside.database, paths.database)
    finally:
        aside.database.unlink(missing_ok=True)
        aside.catalog().lock_path.unlink(missing_ok=True)
    return rebuilt


def _rebuild_into(paths: StudyPaths, changes: list, progress, every_s: float) -> Rebuilt:
    catalog = paths.catalog()
    catalog.write(changes)
    made_by = _lineage_of_runs(changes)
    ids = record_ids(paths.runs) if paths.runs.is_dir() else []
    runs, unpublished, batch, last = 0, [], [], time.monotonic()
    for done, rid in enumerate(ids, 1):
        if rid not in made_by or made_by[rid][1] not in ("passed", "failed"):
            unpublished.append(rid)
            continue
        lin, status = made_by[rid]
        try:
            record = read_record(paths.runs, rid)
        except RecordError as e:
            raise RecordError(
                f"the catalog was not rebuilt (nothing was written): {e}; restore the record "
                "(git checkout) or remove its files, then run again"
            ) from None
        batch += run_changes(record, record.meta["role"], lin, status)
        runs += 1
        if runs % BATCH == 0:
            catalog.write(batch)  # one transaction per batch of records: a rebuild is write-bound
            batch = []
        if progress and time.monotonic() - last >= every_s:
            progress(done, len(ids))
            last = time.monotonic()
    catalog.write(batch)
    if progress:
        progress(len(ids), len(ids))
    return Rebuilt(runs, len(changes), tuple(unpublished))


def needs_rebuild(paths: StudyPaths) -> bool:
    """A study root with exported tables and no catalog: a fresh clone of a committed study."""
    return not paths.database.exists() and (paths.root / TABLES_DIR).is_dir()
