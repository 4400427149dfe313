"""Study storage: per-run records (Parquet + manifest), checkpoints of unfinished runs, the DuckDB
catalog over them, and the filesystem helpers every writer of them uses (``files``)."""

from metapb2_core.store.catalog import (
    TABLES,
    Catalog,
    Delete,
    Lineage,
    Replace,
    StoreError,
    Update,
    evaluation_rows,
    lineage_rows,
    publish_rows,
    run_rows,
    step_rows,
    usage_edges,
)
from metapb2_core.store.checkpoints import (
    checkpoint_path,
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
)
from metapb2_core.store.files import ensure_writable_dir
from metapb2_core.store.records import (
    POINT_IDENTITY,
    RecordError,
    RunRecord,
    find_records,
    perturbation_columns,
    perturbation_dtypes,
    perturbation_table,
    read_record,
    record_ids,
    write_record,
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
    "step_rows",
    "usage_edges",
    "write_record",
]
