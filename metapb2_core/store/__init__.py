"""Study storage: per-run records (Parquet + manifest), checkpoints of unfinished runs, and the
DuckDB catalog over them."""

from metapb2_core.store.catalog import Catalog, Delete, Replace, StoreError, Update
from metapb2_core.store.checkpoints import (
    checkpoint_path,
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
)
from metapb2_core.store.records import (
    POINT_IDENTITY,
    RecordError,
    RunRecord,
    ensure_writable_dir,
    find_records,
    perturbation_columns,
    perturbation_dtypes,
    perturbation_table,
    read_record,
    record_ids,
    write_record,
)
from metapb2_core.store.rows import (
    TABLES,
    Lineage,
    evaluation_rows,
    lineage_rows,
    publish_rows,
    run_rows,
    usage_edges,
)

__all__ = [
    "POINT_IDENTITY",
    "TABLES",
    "Catalog",
    "Delete",
    "Lineage",
    "RecordError",
    "Replace",
    "RunRecord",
    "StoreError",
    "Update",
    "checkpoint_path",
    "ensure_writable_dir",
    "evaluation_rows",
    "find_records",
    "lineage_rows",
    "load_checkpoint",
    "perturbation_columns",
    "perturbation_dtypes",
    "perturbation_table",
    "publish_rows",
    "read_record",
    "record_ids",
    "remove_checkpoint",
    "run_rows",
    "save_checkpoint",
    "usage_edges",
    "write_record",
]
