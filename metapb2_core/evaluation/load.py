"""Run points from a folder of run records, a DuckDB file or a DataFrame, as one DataFrame.

Everything downstream takes the points DataFrame only, so another source needs only a loader here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metapb2_core.errors import MetaPB2Error

REQUIRED_COLUMNS = ("run_id", "task", "method", "seed", "member", "timesteps", "eval_return")
DUCKDB_TABLE = "run_points"


def load_points(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Points of every run in ``source``: a folder of ``*.points.parquet`` records (searched
    recursively), a ``.duckdb`` file with a ``run_points`` table, or a DataFrame of points."""
    if isinstance(source, pd.DataFrame):
        return check_points(source.copy(), "the points DataFrame")
    path = Path(source)
    if path.suffix == ".duckdb":
        return check_points(_load_duckdb(path), str(path))
    if not path.exists():
        raise MetaPB2Error(f"runs folder {path} does not exist")
    if not path.is_dir():
        raise MetaPB2Error(f"{path} is neither a runs folder nor a .duckdb file")
    files = sorted(path.rglob("*.points.parquet"))
    if not files:
        raise MetaPB2Error(
            f"no run records (*.points.parquet) in {path}; write some with 'metapb2 run --out'"
        )
    return check_points(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True), str(path))


def check_points(points: pd.DataFrame, where: str) -> pd.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in points.columns]
    if missing:
        raise MetaPB2Error(f"{where} lacks the point column(s) {', '.join(missing)}")
    if points.empty:
        raise MetaPB2Error(f"{where} holds no points")
    return points


def _load_duckdb(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise MetaPB2Error(f"DuckDB file {path} does not exist")
    try:
        import duckdb
    except ImportError:
        raise MetaPB2Error(f"reading {path} needs the duckdb package (pip install duckdb)") from None
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:
        raise MetaPB2Error(f"cannot open {path} as a DuckDB database: {e}") from None
    try:
        found = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [DUCKDB_TABLE]
        ).fetchone()[0]
        if not found:
            raise MetaPB2Error(f"{path} has no {DUCKDB_TABLE!r} table of run points")
        return con.execute(f"SELECT * FROM {DUCKDB_TABLE}").df()
    finally:
        con.close()
