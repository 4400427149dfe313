"""The main command's engine: the declared study's stage jobs, phase after phase, one Dagster run
per job and partition (executed in process, ``workers`` at a time, each a named job run with the
study's tags in the instance), skipping every partition that is materialised and up to date."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass

import dagster as dg

from metapb2_assets.automation import stale_keys
from metapb2_assets.child_processes import die_with_parent
from metapb2_assets.definitions import build_definitions
from metapb2_assets.family import partition_key
from metapb2_assets.resources import RayResource, StudyStore
from metapb2_assets.stages import ONCE, SEED, TASK_AND_SEED, Stage, stage_run_config, study_stages
from metapb2_core import study
from metapb2_core.catalog_rebuild import needs_rebuild, rebuild_catalog
from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation import IncompleteGridWarning
from metapb2_core.evaluation.study_ranking import RankedStudy, rank_study
from metapb2_core.store.table_files import export_tables
from metapb2_core.study_spec import StudySpec

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class Step:
    stage: Stage
    partition: str | None

    def describe(self) -> str:
        return self.stage.job + (f" [{self.partition}]" if self.partition else "")


@dataclass(frozen=True)
class StepResult:
    step: Step
    success: bool
    run_id: str
    reason: str = ""  # of a failed run: the first line of what failed it

    def describe(self) -> str:
        return f"{self.step.describe()} (run {self.run_id})"


def failure_reason(result: dg.ExecuteInProcessResult) -> str:
    """One line saying why a run failed: the deepest cause of its first failure event (a resource
    that could not start, a step's error), without Dagster's wrappers."""
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None) if event.is_failure else None
        if error is None:
            continue
        while error.cause is not None:
            error = error.cause
        line = (error.message.strip().splitlines() or [error.cls_name or "failed"])[0]
        prefix, sep, rest = line.partition(": ")  # "module.ClassName: message"
        return rest if sep and error.cls_name and prefix.endswith(error.cls_name) else line
    return ""


def failed_summary(failed: list[StepResult]) -> str:
    """The one line a phase with failed runs ends the main command with: each reason once, with
    the runs it failed."""
    by_reason: dict[str, list[StepResult]] = {}
    for r in failed:
        by_reason.setdefault(r.reason or "see the run's log", []).append(r)
    parts = [f"{reason} ({', '.join(r.describe() for r in runs)})" for reason, runs in by_reason.items()]
    return (
        f"{len(failed)} run(s) failed: {'; '.join(parts)}; see them in the UI's run list, fix, and "
        "run the same command again"
    )


def prepare_instance(home: str) -> None:
    """Create the instance's SQLite storages once, before parallel runs would race to create them."""
    instance = dg.DagsterInstance.from_config(home)
    instance.get_runs(limit=1)
    instance.get_asset_keys()
    instance.dispose()


def _settings(resources: dict) -> dict:
    ray, store = resources["ray"], resources["store"]
    return {
        "ray": {
            k: getattr(ray, k) for k in ("address", "num_cpus", "cpus_per_task", "state_dir", "idle_seconds")
        },
        "store": {k: getattr(store, k) for k in ("root", "database")},
    }


def _execute(home: str, settings: dict, spec: dict, stage: Stage, partition: str | None) -> tuple:
    """One named job run, in this process or a pool worker (definitions and instance reopened)."""
    study_spec = StudySpec.from_dict(spec)
    d = build_definitions(RayResource(**settings["ray"]), StudyStore(**settings["store"]), study_spec)
    result = d.resolve_job_def(stage.job).execute_in_process(
        run_config={**stage_run_config(study_spec, stage), **QUIET},
        instance=dg.DagsterInstance.from_config(home),
        partition_key=partition,
        raise_on_error=False,
    )
    return result.success, result.run_id, "" if result.success else failure_reason(result)


class StudyRunner:
    def __init__(self, spec: StudySpec, ray: RayResource | None = None, store: StudyStore | None = None):
        self.spec = spec
        self.defs = build_definitions(ray, store, spec)
        self.resources = self.defs.resources
        self.assets = {a.key.path[-1]: a for a in self.defs.assets}

    @property
    def paths(self) -> study.StudyPaths:
        return self.resources["store"].paths()

    def phases(self) -> list[list[Step]]:
        """Seed after seed, and within a phase partition after partition with every stage of it:
        a study that spans sessions (and machines) completes whole seeds and whole task × method
        blocks first, and a task's methods run close together, on the same machine."""
        keys = {
            TASK_AND_SEED: [str(partition_key(t, s)) for s in self.spec.seeds for t in self.spec.tasks],
            SEED: [str(s) for s in self.spec.seeds],
            ONCE: [None],
        }
        return [
            [Step(stage, pk) for per in keys for pk in keys[per] for stage in phase if stage.per == per]
            for phase in study_stages(self.spec)
        ]

    def adopt_records(self, instance: dg.DagsterInstance, say: Callable[[str], None]) -> int:
        """A study root of committed files (no catalog yet): rebuild the catalog from its records,
        then report to the instance every partition the catalog's lineage proves materialised and
        the instance does not know, so ``pending`` skips them. Returns the partitions reported."""
        paths = self.paths
        if needs_rebuild(paths):
            say(f"rebuilding the catalog {paths.database.name} from the records in {paths.root} …")
            progress = lambda done, total: say(f"  {done} of {total} records read")  # noqa: E731
            say(f"rebuilt the catalog from {paths.root}: {rebuild_catalog(paths, progress).describe()}")
        catalog = paths.catalog()
        lineage = catalog.lineage(published=True)
        if lineage.empty:
            return 0
        reported = 0
        for asset in self.assets.values():
            name = asset.key.to_user_string()
            rows = lineage[lineage["asset_key"] == name]
            if rows.empty:
                continue
            if asset.partitions_def is None:
                have = {""} if instance.get_latest_materialization_event(asset.key) else set()
            else:
                have = set(instance.get_materialized_partitions(asset.key))
            for row in rows.itertuples(index=False):
                if row.partition in have:
                    continue
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(
                        asset.key,
                        partition=row.partition or None,
                        description=f"from the study's records (Dagster run {row.dagster_run_id})",
                        metadata={"dagster_run_id": row.dagster_run_id, "code_version": row.code_version},
                    )
                )
                reported += 1
        if reported:
            say(f"{reported} materialisations proven by the records reported to the instance")
        return reported

    def export(self) -> list:
        """The catalog's rows that no record holds, as files beside the records (``table_files``)."""
        return export_tables(self.paths.catalog(), self.paths.root)

    def pending(self, phase: list[Step]) -> list[Step]:
        """The steps of ``phase`` that are not materialised (no published lineage row in the
        catalog: the instance only shows it), or are stale (other code, budget or mode,
        or older than an input), or whose last run never got published (killed midway)."""
        catalog = self.paths.catalog()
        out_of_date: dict[str, set[str]] = {}  # asset → partitions to run ("" when unpartitioned)
        for name in {a for step in phase for a in step.stage.assets}:
            asset = self.assets[name]
            # the catalog's lineage decides (derived from the study root's files); the instance
            # only shows it, after adopt_records told it what it did not know
            have = set(catalog.lineage([asset.key.to_user_string()], published=True)["partition"])
            if asset.partitions_def is None:
                wanted = {""}
            else:
                wanted = {s.partition for s in phase if name in s.stage.assets}
            stale = set(stale_keys(catalog, asset, self.spec))
            stale |= study.unpublished_partitions(catalog, asset.key.to_user_string())
            out_of_date[name] = (wanted - have) | (wanted & stale)
        return [s for s in phase if any((s.partition or "") in out_of_date[a] for a in s.stage.assets)]

    def run(
        self, home: str, echo: Callable[[str], None] | None = None, workers: int = 2
    ) -> tuple[list[StepResult], int]:
        """Run what is pending, phase after phase, into the instance at ``home``; returns the
        results and the number of steps skipped as up to date. Stops after the first phase with a
        failed run; every run stays in the UI, where it can be re-executed."""
        say = echo or (lambda _: None)
        settings, spec = _settings(self.resources), self.spec.to_dict()
        prepare_instance(home)
        instance = dg.DagsterInstance.from_config(home)
        self.adopt_records(instance, say)
        results: list[StepResult] = []
        skipped = 0
        spawn, parent = mp.get_context("spawn"), (os.getpid(),)
        pool = (
            ProcessPoolExecutor(workers, mp_context=spawn, initializer=die_with_parent, initargs=parent)
            if workers > 1
            else None
        )
        try:
            for phase in self.phases():
                todo = self.pending(phase)
                skipped += len(phase) - len(todo)
                if len(todo) < len(phase):
                    fresh = len(phase) - len(todo)
                    say(f"{fresh} of {len(phase)} runs of {_names(phase)} up to date: skipped")
                done, started = [], time.perf_counter()
                for step, outcome in self._execute_all(todo, pool, workers, (home, settings, spec), say):
                    done.append(StepResult(step, *outcome))
                    verdict = "done" if done[-1].success else "FAILED"
                    progress = progress_note(len(done), len(todo), time.perf_counter() - started)
                    say(f"{verdict} {step.describe()} ({progress})")
                    self.export()  # each finished step's files at once: a study stopped midway keeps them
                results += done
                failed = [r for r in done if not r.success]
                if failed:
                    raise MetaPB2Error(failed_summary(failed))
        finally:
            if pool:
                pool.shutdown()
        return results, skipped

    @staticmethod
    def _execute_all(todo: list[Step], pool: ProcessPoolExecutor | None, workers: int, common: tuple, say):
        """(step, outcome) of every step of ``todo`` as each finishes. At most ``workers`` steps
        are handed to the pool at a time, so "run …" is said when a step starts, not when it is
        queued (all of a phase's steps at once said nothing about what was running)."""
        if pool is None or len(todo) == 1:
            for step in todo:
                say(f"run {step.describe()}")
                yield step, _execute(*common, step.stage, step.partition)
            return
        waiting, running = list(todo), {}
        while waiting or running:
            while waiting and len(running) < workers:
                step = waiting.pop(0)
                say(f"run {step.describe()}")
                running[pool.submit(_execute, *common, step.stage, step.partition)] = step
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                yield running.pop(future), future.result()

    def ranking(self) -> RankedStudy:
        """The study's ranking over what the catalog holds (``partial`` when short of the plan)."""
        found = study.study_evaluation_runs(self.paths.catalog(), self.spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IncompleteGridWarning)
            return rank_study(found.points, self.spec, found.failed, found.perturbations)


def progress_note(done: int, total: int, seconds: float) -> str:
    """``k of n``, the time the phase has taken and what is left at its mean pace so far, e.g.
    ``3 of 24; 4 min 10 s so far, about 29 min left``."""
    if done >= total:
        return f"{done} of {total}; {_duration(seconds)}"
    left = seconds / done * (total - done)
    return f"{done} of {total}; {_duration(seconds)} so far, about {_duration(left)} left"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _names(phase: list[Step]) -> str:
    jobs = list(dict.fromkeys(s.stage.job for s in phase))
    return ", ".join(jobs) if len(jobs) <= 2 else f"{len(jobs)} jobs ({jobs[0]}, …)"
