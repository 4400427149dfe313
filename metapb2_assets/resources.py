"""Dagster resources: where partitions compute (Ray) and where a study is stored (files + DuckDB)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from pydantic import Field, PrivateAttr

from metapb2_assets.settings import (
    RAY_ADDRESS_ENV,
    RAY_RESOURCES_ENV,
    RAY_RETRIES_ENV,
    STUDY_ROOT_ENV,
    default_home,
    setting,
)
from metapb2_core.catalog_rebuild import needs_rebuild
from metapb2_core.errors import MetaPB2Error
from metapb2_core.store import StoreError, ensure_writable_dir
from metapb2_core.store.files import check_writable_dir
from metapb2_core.study import StudyPaths

T = TypeVar("T")


class StoreConfigError(MetaPB2Error):
    pass


class SettingError(MetaPB2Error):
    """A deployment's environment variable that does not parse."""


class RayTaskLost(MetaPB2Error):
    """A task whose worker or node died more often than its retries allow."""


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
    resources: dict[str, float] = Field(
        default={},
        description='custom Ray resources each run asks for, e.g. {"metapb2_runs": 1} to keep runs on the '
        "worker nodes that offer it (KubeRay: the worker group's rayStartParams.resources)",
    )
    max_retries: int = Field(
        default=3,
        description="times Ray runs a task again when its worker process or node died (a lost node, an "
        "evicted pod); never for an error of the run itself, which would fail the same way again. A "
        "run resumes from its checkpoint on the study root, so a retry repeats at most one interval",
    )
    _ready: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from metapb2_assets import ray_cluster

        if self.cpus_per_task < 1:
            raise ray_cluster.RayConfigError(
                f"resource 'ray', setting 'cpus_per_task' must be ≥ 1, got {self.cpus_per_task}"
            )
        if self.max_retries < 0:
            raise ray_cluster.RayConfigError(
                f"resource 'ray', setting 'max_retries' must be ≥ 0, got {self.max_retries}"
            )
        bad = {k: v for k, v in self.resources.items() if not k or v <= 0}
        if bad:
            raise ray_cluster.RayConfigError(
                f"resource 'ray', setting 'resources': names must be non-empty and amounts > 0, got {bad}"
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

        task = ray.remote(
            num_cpus=self.cpus_per_task,
            resources=self.resources or None,
            max_retries=self.max_retries,  # a dead worker or node: run again, from the checkpoint
            retry_exceptions=False,
        )(fn)
        try:
            return ray.get(task.remote(*args))
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, MetaPB2Error):  # its one line, without the worker's traceback
                raise e.cause from None
            raise e.as_instanceof_cause() from None
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
            raise RayTaskLost(
                f"{getattr(fn, '__name__', fn)}: its Ray worker died {self.max_retries + 1} time(s) "
                f"(resource 'ray', setting 'max_retries' = {self.max_retries}): {type(e).__name__}; "
                "its checkpoint is kept, so materialising again resumes it"
            ) from None


def resources_from_env() -> tuple[RayResource, StudyStore]:
    """The resources a deployment configures through the environment (``METAPB2_RAY_ADDRESS``,
    ``METAPB2_RAY_TASK_RESOURCES``, ``METAPB2_RAY_MAX_RETRIES``, ``METAPB2_STUDY_ROOT``); unset, the
    embedded defaults. A value that does not parse is one line naming the variable."""
    ray = {"address": setting(RAY_ADDRESS_ENV)}
    if text := setting(RAY_RESOURCES_ENV):
        try:
            resources = json.loads(text)
            if not isinstance(resources, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in resources.values()
            ):
                raise ValueError("not an object of numbers")
        except ValueError as e:
            raise SettingError(
                f"{RAY_RESOURCES_ENV} = {text!r}: expected a JSON object of amounts, "
                f'e.g. {{"metapb2_runs": 1}} ({e})'
            ) from None
        ray["resources"] = {str(k): float(v) for k, v in resources.items()}
    if text := setting(RAY_RETRIES_ENV):
        if not text.isdigit():
            raise SettingError(f"{RAY_RETRIES_ENV} = {text!r}: expected a whole number ≥ 0")
        ray["max_retries"] = int(text)
    return RayResource(**ray), StudyStore(root=setting(STUDY_ROOT_ENV))
