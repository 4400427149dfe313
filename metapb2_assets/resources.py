"""Dagster resources: where partitions compute (Ray) and where a study is stored (files + DuckDB)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field, PrivateAttr

from metapb2_assets.settings import RAY_ADDRESS_ENV, STUDY_ROOT_ENV, default_home, setting
from metapb2_core.catalog_rebuild import needs_rebuild
from metapb2_core.errors import MetaPB2Error
from metapb2_core.store import StoreError, ensure_writable_dir
from metapb2_core.store.records import check_writable_dir
from metapb2_core.study import StudyPaths

T = TypeVar("T")


class StoreConfigError(MetaPB2Error):
    pass


class StudyStore(dg.ConfigurableResource):
    """Per-run Parquet records, meta-data tables, portfolio files and the DuckDB catalog."""

    root: str = Field(
        default="",
        description="folder of run records, meta-data and portfolios (default: $DAGSTER_HOME)",
    )
    database: str = Field(
        default="",
        description="DuckDB catalog file (default: <root>/metapb2.duckdb); one writer at a time, "
        "serialised by a lock file beside it",
    )

    def paths(self) -> StudyPaths:
        root = Path(self.root).resolve() if self.root else default_home()
        db = Path(self.database).resolve() if self.database else root / "metapb2.duckdb"
        return StudyPaths(root, db)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self.check()

    def check(self) -> None:
        """The catalog opens (created if absent, unless exported tables wait to be rebuilt into
        it) and the records' folder can be written, or one line naming the setting and why (a
        read-only volume, a damaged catalog): at each run's start, and in the main command before
        anything is declared or run."""
        paths = self.paths()
        try:
            if needs_rebuild(paths):  # a fresh clone: rebuilt from the records, not created empty
                check_writable_dir(paths.database.parent, "the catalog's folder")
            else:
                paths.catalog().check()
        except (StoreError, MetaPB2Error) as e:
            raise StoreConfigError(
                f"resource 'store', setting 'database' = {str(paths.database)!r}: {e}"
            ) from None
        try:
            ensure_writable_dir(paths.runs, "the records' folder")
        except MetaPB2Error as e:
            raise StoreConfigError(f"resource 'store', setting 'root' = {str(paths.root)!r}: {e}") from None


class RayResource(dg.ConfigurableResource):
    """Runs each partition's work as a Ray task."""

    address: str = Field(
        default="",
        description="address of an existing Ray cluster, e.g. ray://raycluster-head-svc:10001 (KubeRay) or "
        "HOST:6379; empty: a local Ray head started on demand and shared by the instance's runs",
    )
    num_cpus: int = Field(default=0, description="CPUs of the local Ray head (0: every core of this machine)")
    cpus_per_task: int = Field(
        default=1,
        description="CPUs each run asks Ray for; also the XLA threads of its worker, so parallel partitions "
        "never oversubscribe the cores",
    )
    state_dir: str = Field(
        default="", description="where the local head's address and lock live (default: $DAGSTER_HOME/.ray)"
    )
    idle_seconds: float = Field(
        default=1800.0,
        description="a local head no run used for this long stops (under dagster dev it also stops with "
        "dagster dev; after a one-shot command, when the command ends)",
    )
    _ready: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from metapb2_assets import ray_cluster

        if self.cpus_per_task < 1:
            raise ray_cluster.RayConfigError(
                f"resource 'ray', setting 'cpus_per_task' must be ≥ 1, got {self.cpus_per_task}"
            )
        if self.address:
            self.check_address()
            address = self.address
        else:
            cpus = self.num_cpus or len(os.sched_getaffinity(0))
            state = Path(self.state_dir) if self.state_dir else default_home() / ".ray"
            address = ray_cluster.local_head(state, cpus, self.idle_seconds)
        ray_cluster.connect(address, self.cpus_per_task)
        self._ready = True

    def check_address(self) -> None:
        """An address no Ray cluster answers at, refused in one line naming it and where it was set
        (at each run's start, and by the main command before any run)."""
        from metapb2_assets import ray_cluster

        if self.address:
            ray_cluster.check_reachable(self.address, self.address_setting())

    def address_setting(self) -> str:
        if self.address and self.address == setting(RAY_ADDRESS_ENV):
            return f"{RAY_ADDRESS_ENV} (resource 'ray', setting 'address')"
        return "resource 'ray', setting 'address'"

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a Ray worker holding ``cpus_per_task`` CPUs; its exception is re-raised here."""
        import ray

        task = ray.remote(num_cpus=self.cpus_per_task, max_retries=0)(fn)
        try:
            return ray.get(task.remote(*args))
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, MetaPB2Error):  # its one line, without the worker's traceback
                raise e.cause from None
            raise e.as_instanceof_cause() from None


def resources_from_env() -> tuple[RayResource, StudyStore]:
    """The resources a deployment configures through the environment (``METAPB2_RAY_ADDRESS``,
    ``METAPB2_STUDY_ROOT``); unset, the embedded defaults."""
    return RayResource(address=setting(RAY_ADDRESS_ENV)), StudyStore(root=setting(STUDY_ROOT_ENV))
