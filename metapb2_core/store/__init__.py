"""Study storage: per-run Parquet records (run.write_record) and the DuckDB catalog over them."""

from metapb2_core.store.catalog import Catalog, Replace, StoreError
from metapb2_core.store.rows import TABLES, Lineage, evaluation_rows, lineage_rows, run_rows, usage_edges

__all__ = [
    "TABLES",
    "Catalog",
    "Lineage",
    "Replace",
    "StoreError",
    "evaluation_rows",
    "lineage_rows",
    "run_rows",
    "usage_edges",
]
