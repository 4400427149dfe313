"""The order in which a study materialises a family's graph: per partition the candidates and
meta-data runs, per partition the matrix columns, the portfolios, per partition every evaluation,
then the ranks."""

import multiprocessing as mp
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import dagster as dg

from metapb2_assets.definitions import build_definitions, defs
from metapb2_assets.resources import RayResource, StudyStore
from metapb2_core import study
from metapb2_core.budgets import get_budget
from metapb2_core.envs import get_task
from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation import IncompleteGridWarning, evaluate
from metapb2_core.evaluation.report import format_report
from metapb2_core.methods import METHODS, get_method


@dataclass(frozen=True)
class StepResult:
    selection: list[str]
    partition: str | None
    success: bool
    run_id: str
    checks: list[tuple[str, bool]]  # (asset/check, passed) of every check evaluated in the run

    def describe(self) -> str:
        return f"{', '.join(self.selection)} [{self.partition or '-'}] (run {self.run_id})"


class _Done:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


def _settings(resources: dict) -> dict:
    ray, store = resources["ray"], resources["store"]
    return {
        "ray": {
            k: getattr(ray, k) for k in ("address", "num_cpus", "cpus_per_task", "state_dir", "idle_seconds")
        },
        "store": {k: getattr(store, k) for k in ("root", "database")},
    }


def _materialise(
    home: str, settings: dict, paths: list, partition: str | None, run_config: dict
) -> StepResult:
    """One run, in this process or a pool worker (the instance is reopened from ``home``)."""
    d = build_definitions(RayResource(**settings["ray"]), StudyStore(**settings["store"]))
    selection = [dg.AssetKey(p) for p in paths]
    result = dg.materialize(
        list(d.assets),
        instance=dg.DagsterInstance.from_config(home),
        partition_key=partition,
        run_config=run_config,
        resources=d.resources,
        selection=selection,
        raise_on_error=False,
    )
    checks = [
        (f"{e.asset_key.to_user_string()}:{e.check_name}", e.passed)
        for e in result.get_asset_check_evaluations()
    ]
    names = [k.to_user_string() for k in selection]
    return StepResult(names, partition, result.success, result.run_id, checks)


def _prepare_instance(home: str) -> None:
    """Create the instance's SQLite storages once, before parallel runs would race to create them."""
    instance = dg.DagsterInstance.from_config(home)
    instance.get_runs(limit=1)
    instance.get_asset_keys()
    instance.dispose()


def partition_key(task: str, seed: int) -> str:
    return dg.MultiPartitionKey({"task": task, "seed": str(seed)})


class StudyPlan:
    def __init__(
        self, family, tasks, seeds, budget, faithful=False, methods=None, resources=None, best=3, configs=30
    ):
        for t in tasks:
            if get_task(t).family != family:
                raise MetaPB2Error(f"task {t!r} is not of the {family!r} family")
        for m in methods or []:
            get_method(m)
        get_budget(budget, family)
        if len({get_task(t).env_name for t in tasks}) < 2 and (methods is None or "pb2_star_warm" in methods):
            raise MetaPB2Error(
                "a portfolio needs tasks of at least two environments (leave-one-environment-out)"
            )
        self.family, self.tasks, self.seeds, self.budget = family, tasks, seeds, budget
        self.faithful = faithful
        self.methods = methods or list(METHODS)
        self.resources = resources or defs.resources
        self.best, self.configs = best, configs  # candidates kept of those drawn per task and seed

    def _key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.family, name])

    def _config(self, names: list[str]) -> dict:
        run = {"budget": self.budget, "faithful": self.faithful}
        ops = {f"{self.family}__{n}": {"config": run} for n in names if n != "method_ranks"}
        if "portfolio_candidates" in names:
            ops[f"{self.family}__portfolio_candidates"] = {
                "config": {**run, "best": self.best, "configs": self.configs}
            }
        if "method_ranks" in names:
            ops[f"{self.family}__method_ranks"] = {"config": {"budget": self.budget}}
        return {"ops": ops, "loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    def _partitioned(self, names: list[str]) -> list[tuple]:
        keys = [self._key(n) for n in names]
        return [(keys, partition_key(t, s), self._config(names)) for t in self.tasks for s in self.seeds]

    def phases(self) -> Iterator[list[tuple[list[dg.AssetKey], str | None, dict]]]:
        """Steps whose runs are independent (one per partition), phase after phase."""
        needs_meta = any("meta_tables" in get_method(m).requires for m in self.methods)
        needs_portfolio = any("portfolio" in get_method(m).requires for m in self.methods)
        first = (["portfolio_candidates"] if needs_portfolio else []) + (["meta_runs"] if needs_meta else [])
        if first:
            yield self._partitioned(first)
        if needs_portfolio:
            yield self._partitioned(["performance_matrix"])
            yield [([self._key("portfolio")], None, self._config(["portfolio"]))]
        yield self._partitioned([f"evaluation_{m}" for m in self.methods])
        yield [([self._key("method_ranks")], None, self._config(["method_ranks"]))]

    def run(self, home: str, echo=None, workers: int = 2) -> list[StepResult]:
        """Materialise phase after phase into the instance at ``home``; the runs of a phase go
        ``workers`` at a time (separate processes sharing the instance, Ray head and catalog).
        Stops at the first failed phase; every run stays in the UI."""
        settings = _settings(self.resources)
        _prepare_instance(home)
        results: list[StepResult] = []
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) if workers > 1 else None
        try:
            step = 0
            for phase in self.phases():
                jobs = []
                for selection, partition, run_config in phase:
                    step += 1
                    paths = [k.path for k in selection]
                    args = (home, settings, paths, partition, run_config)
                    if echo:
                        echo(step, selection, partition)
                    if pool is None or len(phase) == 1:
                        jobs.append(_Done(_materialise(*args)))
                    else:
                        jobs.append(pool.submit(_materialise, *args))
                done = [j.result() for j in jobs]
                results += done
                failed = [r for r in done if not r.success]
                if failed:
                    raise MetaPB2Error(
                        f"{len(failed)} run(s) failed: {', '.join(r.describe() for r in failed)}"
                    )
        finally:
            if pool:
                pool.shutdown()
        return results

    def steps(self) -> list[tuple]:
        return [s for phase in self.phases() for s in phase]

    @property
    def n_steps(self) -> int:
        return len(self.steps())

    def database(self):
        return self.resources["store"].paths().database

    def report(self) -> str:
        found = study.evaluation_runs(self.resources["store"].paths().catalog(), self.family, self.budget)
        mine = lambda df: df[df["task"].isin(self.tasks) & df["seed"].isin(self.seeds)]  # noqa: E731
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IncompleteGridWarning)
            ev = evaluate(mine(found.points), failed=mine(found.failed), perturbations=found.perturbations)
            return format_report(ev)
