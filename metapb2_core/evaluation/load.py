"""Run points from a folder of run records, a DuckDB file or a DataFrame, as one DataFrame.

Everything downstream takes the points DataFrame only, so another source needs only a loader here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metapb2_core.errors import MetaPB2Error
from metapb2_core.store import Catalog, find_records, read_record

REQUIRED_COLUMNS = ("run_id", "task", "method", "seed", "member", "timesteps", "eval_return")
DUCKDB_TABLE = "run_points"


def load_points(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Points of every run in ``source``: a folder of run records (searched recursively), a
    ``.duckdb`` catalog with a ``run_points`` table, or a DataFrame of points."""
    if isinstance(source, pd.DataFrame):
        return check_points(source.copy(), "the points DataFrame")
    path = Path(source)
    if path.suffix == ".duckdb":
        return check_points(_load_catalog(path), str(path))
    if not path.exists():
        raise MetaPB2Error(f"runs folder {path} does not exist")
    if not path.is_dir():
        raise MetaPB2Error(f"{path} is neither a runs folder nor a .duckdb file")
    found = find_records(path)
    if not found:
        raise MetaPB2Error(f"no run records in {path}; write some with 'metapb2 run --out'")
    points = [read_record(folder, rid).points for folder, rid in found]
    return check_points(pd.concat(points, ignore_index=True), str(path))


def check_points(points: pd.DataFrame, where: str) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in points.columns]
    if missing:
        raise MetaPB2Error(f"{where} lacks the point column(s) {', '.join(missing)}")
    if points.empty:
        raise MetaPB2Error(f"{where} holds no points")
    return points


def _load_catalog(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise MetaPB2Error(f"DuckDB file {path} does not exist")
    catalog = Catalog(path)
    if DUCKDB_TABLE not in catalog.tables():
        raise MetaPB2Error(f"{path} has no {DUCKDB_TABLE!r} table of run points")
    return catalog.query(f'SELECT * FROM "{DUCKDB_TABLE}"')
