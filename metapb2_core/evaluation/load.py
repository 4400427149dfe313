"""Run points from a folder of run records, a DuckDB file or a DataFrame, as one DataFrame.

Everything downstream takes the points DataFrame only, so another source needs only a loader here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation.grid import FAILED_COLUMNS
from metapb2_core.store import Catalog, find_records, read_record

REQUIRED_COLUMNS = ("run_id", "task", "method", "seed", "member", "timesteps", "eval_return")
DUCKDB_TABLE = "run_points"


@dataclass
class Runs:
    points: pd.DataFrame  # points of the runs to rank
    failed: pd.DataFrame  # run_id, task, method, seed, reason: failed their checks, kept, not ranked
    perturbations: pd.DataFrame  # of the runs in points (their diagnostics: fallbacks)


def load_runs(source: str | Path | pd.DataFrame, role: str | None = "evaluation") -> Runs:
    """The runs in ``source``: a folder of run records (searched recursively), a ``.duckdb`` catalog
    (its ``runs`` table says each run's role and status; a file with only a ``run_points`` table is
    read whole), or a DataFrame of points. Only runs of ``role`` (None: every role) are read; a run
    that failed its checks (or is still staged in a catalog) is never in ``points``."""
    if isinstance(source, pd.DataFrame):
        return Runs(check_points(source.copy(), "the points DataFrame"), _no_failed(), pd.DataFrame())
    path = Path(source)
    if path.suffix == ".duckdb":
        return _load_catalog(path, role)
    if not path.exists():
        raise MetaPB2Error(f"runs folder {path} does not exist")
    if not path.is_dir():
        raise MetaPB2Error(f"{path} is neither a runs folder nor a .duckdb file")
    found = find_records(path)
    if not found:
        raise MetaPB2Error(f"no run records in {path}; write some with 'metapb2 run --out'")
    check_one_record_per_run(found)
    points, perturbations, failed = [], [], []
    for folder, rid in found:
        record = read_record(folder, rid)
        if role is not None and record.meta.get("role", "evaluation") != role:
            continue
        if record.meta.get("status") == "failed":
            m = record.meta
            reason = ", ".join(m.get("failed_checks", [])) or "failed"
            failed.append(
                {"run_id": rid, "task": m["task"], "method": m["method"], "seed": m["seed"], "reason": reason}
            )
            continue
        points.append(record.points)
        perturbations.append(record.perturbations)
    if not points:
        raise MetaPB2Error(
            f"no {role or ''} runs that passed their checks in {path}"
            + (f" ({len(failed)} failed)" if failed else "")
        )
    return Runs(
        check_points(pd.concat(points, ignore_index=True), str(path)),
        pd.DataFrame(failed, columns=FAILED_COLUMNS),
        pd.concat(perturbations, ignore_index=True),
    )


def check_one_record_per_run(found: list[tuple[Path, str]]) -> None:
    """Two records of one run id (a copy under a subfolder) are an error naming both: pooled, they
    would count one run twice and make a grid read complete."""
    seen: dict[str, Path] = {}
    for folder, rid in found:
        if rid in seen:
            raise MetaPB2Error(
                f"two records of run {rid!r}: {seen[rid] / (rid + '.json')} and {folder / (rid + '.json')}; "
                "a run counts once: remove or move one copy"
            )
        seen[rid] = folder


def load_points(source: str | Path | pd.DataFrame, role: str | None = "evaluation") -> pd.DataFrame:
    """The points of ``load_runs(source, role)``."""
    return load_runs(source, role).points


def check_points(points: pd.DataFrame, where: str) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in points.columns]
    if missing:
        raise MetaPB2Error(f"{where} lacks the point column(s) {', '.join(missing)}")
    if points.empty:
        raise MetaPB2Error(f"{where} holds no points")
    return points


def _no_failed() -> pd.DataFrame:
    return pd.DataFrame(columns=FAILED_COLUMNS)


def _load_catalog(path: Path, role: str | None) -> Runs:
    if not path.is_file():
        raise MetaPB2Error(f"DuckDB file {path} does not exist")
    catalog = Catalog(path)
    if not catalog.has(DUCKDB_TABLE):
        raise MetaPB2Error(f"{path} has no {DUCKDB_TABLE!r} table of run points")
    if not catalog.has("runs"):  # points alone, e.g. exported by hand: no role or status to select by
        return Runs(check_points(catalog.rows(DUCKDB_TABLE), str(path)), _no_failed(), pd.DataFrame())
    runs = catalog_runs(catalog, role)
    if runs.points.empty:
        roles = ", ".join(catalog.roles())
        raise MetaPB2Error(
            f"{path} holds no {role + ' ' if role else ''}runs that passed their checks"
            + (f" ({len(runs.failed)} failed)" if len(runs.failed) else "")
            + (f"; roles there: {roles}" if role else "")
        )
    return runs


def catalog_runs(
    catalog: Catalog,
    role: str | None,
    budget: str | None = None,
    tasks: Sequence[str] | None = None,
    faithful: bool | None = None,
) -> Runs:
    """The runs of a platform catalog with ``role`` (None: any), budget, tasks and quirk mode (each
    None: any): points and perturbations of those that passed their checks, and the list of those
    that failed. Staged runs (not yet materialised) are in neither."""
    points, perturbations, failed = catalog.runs_matching(role, budget, tasks, faithful)
    return Runs(points, failed, perturbations)
