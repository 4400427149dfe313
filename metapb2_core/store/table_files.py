"""The catalog rows that no run record holds (portfolio candidates, the performance matrix, the
portfolios and the lineage of every materialisation), as Parquet files beside the records, so a
study root of files alone rebuilds its catalog (``catalog_rebuild``) and can be committed.

One file per table and key, ``<root>/tables/<table>/<key>.parquet``, keyed as the steps write the
table (a task and seed's candidates, one asset's lineage), so finished work leaves its files
unchanged and a version-controlled study root grows instead of rewriting one large file. Only what
readers may use is exported: lineage rows still ``staged`` (a step that has not passed its checks
yet) are left out, and so is everything that names them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from metapb2_core.store.catalog import TABLE_KEYS, Catalog, Replace
from metapb2_core.store.files import temp_path

TABLES_DIR = "tables"


def _file_name(key: dict[str, object]) -> str:
    text = ",".join(f"{k}={v}" for k, v in key.items())
    return re.sub(r"[^A-Za-z0-9_.,=-]", "_", text) + ".parquet"


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value  # numpy scalars as Python values


def _published(catalog: Catalog, table: str) -> pd.DataFrame:
    df = catalog.rows(table)
    if table == "lineage":
        df = df[df["status"].fillna("") != "staged"]
    return df


def export_tables(catalog: Catalog, root: str | Path) -> list[Path]:
    """Write the catalog's published rows of ``TABLE_KEYS``' tables under ``root/tables``; returns
    the files written (those whose rows changed). A file is replaced atomically."""
    out = Path(root) / TABLES_DIR
    written: list[Path] = []
    present = set(catalog.tables())
    for table, key_cols in TABLE_KEYS.items():
        if table not in present:
            continue
        df = _published(catalog, table)
        for values, rows in df.groupby(list(key_cols), sort=True):
            key = dict(zip(key_cols, values if isinstance(values, tuple) else (values,), strict=True))
            path = out / table / _file_name(key)
            rows = rows.sort_values(list(rows.columns[:2])).reset_index(drop=True)
            if path.exists() and pd.read_parquet(path).equals(rows):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_path(path)
            rows.to_parquet(tmp, index=False)
            tmp.replace(path)
            written.append(path)
    return written


def read_tables(root: str | Path) -> list[Replace]:
    """The exported files of ``root`` as the ``Replace``s that write them into a catalog."""
    changes = []
    for table, key_cols in TABLE_KEYS.items():
        for path in sorted((Path(root) / TABLES_DIR / table).glob("*.parquet")):
            rows = pd.read_parquet(path)
            if rows.empty:
                continue
            key = {c: _plain(rows[c].iloc[0]) for c in key_cols}
            changes.append(Replace(table, key, rows))
    return changes
