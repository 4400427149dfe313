"""What the run-producing assets (meta_runs, evaluation_<method>) share: partition parsing, running
on Ray, recording into the catalog, metadata and check results."""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Callable
from typing import TypeVar

import dagster as dg
from pydantic import Field

from metapb2_assets.metadata import curve_markdown, number, seconds
from metapb2_assets.resources import RayResource
from metapb2_core.checks import CHECKS
from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation.fallbacks import describe as describe_fallbacks
from metapb2_core.provenance import code_digest
from metapb2_core.run import RunRequest, check_run, execute_run, save_run
from metapb2_core.store import Lineage, RunRecord, checkpoint_path, remove_checkpoint
from metapb2_core.store.reproduced import reproduced
from metapb2_core.study import StudyPaths, publish_run, record_run

C = TypeVar("C", bound=dg.Config)


class RunConfig(dg.Config):
    budget: str = Field(
        default="smoke", description="budget preset (smoke, short, paper): sizes only, never code paths"
    )
    faithful: bool = Field(
        default=False,
        description="reproduce the original code's quirks (methods.md §11) instead of the fixes",
    )
    bounds: dict[str, list[float]] = Field(
        default={},
        description="search-space bounds to override, e.g. {lr: [1e-5, 5e-4]} (the run id says so)",
    )

    def bounds_dict(self) -> dict[str, tuple[float, float]]:
        for name, pair in self.bounds.items():
            if len(pair) != 2:
                raise MetaPB2Error(f"run config 'bounds': {name} needs [low, high], got {pair}")
        return {name: (float(lo), float(hi)) for name, (lo, hi) in self.bounds.items()}


def with_defaults(base: type[C], note: str, **defaults: object) -> type[C]:
    """``base`` with other defaults (a study's budget, quirk mode, candidate sizes): what a run
    launched from the UI, a backfill or a stage job uses unless its config says otherwise."""
    ns: dict = {"__module__": base.__module__, "__qualname__": base.__qualname__, "__annotations__": {}}
    for name, value in defaults.items():
        info = base.model_fields[name]
        ns["__annotations__"][name] = info.annotation
        ns[name] = Field(default=value, description=f"{info.description} ({note}: {value})")
    return type(base.__name__, (base,), ns)


def task_and_seed(context: dg.AssetExecutionContext) -> tuple[str, int]:
    keys = context.partition_key.keys_by_dimension
    return keys["task"], int(keys["seed"])


def code_version(*objs: object) -> str:
    """The digest of the source that computes an asset (``provenance.code_digest``: the modules of
    ``objs`` and everything they import): editing any of it makes the asset's partitions stale
    (the re-run schedule picks them up)."""
    return code_digest(*(inspect.getmodule(obj).__name__ for obj in objs))


def lineage(context: dg.AssetExecutionContext, version: str, inputs: tuple[str, ...] = ()) -> Lineage:
    partition = context.partition_key if context.has_partition_key else ""
    return Lineage(context.asset_key.to_user_string(), partition, context.run.run_id, version, inputs)


def check_specs(key: dg.AssetKey, partitions: dg.PartitionsDefinition) -> list[dg.AssetCheckSpec]:
    """Blocking checks per partition: each result says which task and seed it judged (partitioned
    check specs are a preview feature of dagster 1.13; constraints.txt pins the version)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [
            dg.AssetCheckSpec(name, asset=key, description=text, blocking=True, partitions_def=partitions)
            for name, text in CHECKS.items()
        ]


def materialise_run(
    context: dg.AssetExecutionContext,
    req: RunRequest,
    role: str,
    ray: RayResource,
    paths: StudyPaths,
    version: str,
    after: Callable[[RunRecord], object] | None = None,
):
    """Run on Ray, check, and only then let anything downstream read the run:

    1. the run (resuming from a checkpoint beside its record when a killed step left one);
    2. its checks, whose verdict goes into the record, written to disk (kept even when it fails;
       a passed re-run that reproduced the record on disk keeps that one, ``store.reproduced``);
    3. the catalog rows, staged: no reader (meta-data, portfolio, ranks, report, staleness) sees them;
    4. the materialisation and the check results, recorded by Dagster;
    5. the catalog rows published as passed or failed; ``after`` (the meta-data export) if passed.
    A step killed before 5 leaves a staged run that is never read and is replaced when re-run."""
    run = req.resolve()  # names, numbers and inputs checked here, before Ray is asked for anything
    budget = run.budget
    context.log.info(
        f"{run.run_id}: {budget.population_size} members × {budget.num_intervals} intervals on Ray"
    )
    record: RunRecord = ray.run(execute_run, run, None, paths.runs)
    done = record.meta["resumed_from_interval"]
    if done:
        context.log.info(
            f"{run.run_id}: resumed from its checkpoint after interval {done} of {budget.num_intervals}"
        )
    record.meta["role"] = role
    outcomes = check_run(record, run)
    ran = record.meta  # this run's timings, whichever record stands
    kept = reproduced(paths.runs, record) if record.meta["status"] == "passed" else None
    if kept is None:
        save_run(record, paths.runs)
    else:  # the files (and reports citing them by digest) stay; the lineage says this code re-made it
        remove_checkpoint(checkpoint_path(paths.runs, record.run_id))  # as save_run does
        context.log.info(
            f"{run.run_id}: reproduced the record on disk value for value (timings aside), made by "
            f"code {kept.meta['code_version']}: kept it"
        )
        record = kept
    lin = lineage(context, version)
    catalog = paths.catalog()
    record_run(record, role, lin, catalog)
    m = record.meta
    r = run.request
    diagnostics = [json.loads(d) for d in record.perturbations["diagnostics"]]
    yield dg.MaterializeResult(
        metadata={
            "run_id": m["run_id"],
            "task": r.task,
            "seed": dg.MetadataValue.int(int(r.seed)),
            "budget": budget.name,
            "status": m["status"] + (f": {', '.join(m['failed_checks'])}" if m["failed_checks"] else ""),
            "rows": dg.MetadataValue.int(len(record.points)),
            "perturbations": dg.MetadataValue.int(len(record.perturbations)),
            "fallbacks": describe_fallbacks(diagnostics),
            "final_best_return": number(float(m["best_final_eval_return"])),
            "wall_time": seconds(float(ran["wall_seconds"])),
            "throughput": number(float(ran["env_steps_per_second"]), 0, " env-steps/s"),
            "resumed_from_interval": dg.MetadataValue.int(int(ran["resumed_from_interval"])),
            "learning_curve": dg.MetadataValue.md(curve_markdown(record.points, m["run_id"])),
            "record": dg.MetadataValue.path(str(paths.runs / f"{m['run_id']}.json")),
            "reproduced_existing_record": kept is not None,
        }
    )
    where = f"{m['run_id']} ({r.task}, seed {r.seed})"
    for outcome in outcomes:
        yield dg.AssetCheckResult(
            check_name=outcome.name,
            passed=outcome.passed,
            description=f"{where}: {outcome.description}",
            metadata={
                "run_id": m["run_id"],
                "task": r.task,
                "seed": dg.MetadataValue.int(int(r.seed)),
                **{k: dg.MetadataValue.int(int(v)) for k, v in outcome.metadata.items()},
            },
        )
    publish_run(record, lin, catalog)
    if after and m["status"] == "passed":
        after(record)
