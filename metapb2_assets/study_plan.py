"""The order in which a study materialises a family's graph: per partition the candidates and
meta-data runs, per partition the matrix columns, the portfolios, per partition every evaluation,
then the ranks."""

import warnings
from collections.abc import Iterator

import dagster as dg

from metapb2_assets.definitions import defs
from metapb2_core import study
from metapb2_core.budgets import get_budget
from metapb2_core.envs import get_task
from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation import IncompleteGridWarning, evaluate
from metapb2_core.evaluation.report import format_report
from metapb2_core.methods import METHODS, get_method


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
        get_budget(budget)
        if len({get_task(t).env_name for t in tasks}) < 2 and (methods is None or "pb2_star_warm" in methods):
            raise MetaPB2Error(
                "a portfolio needs tasks of at least two environments (leave-one-environment-out)"
            )
        self.family, self.tasks, self.seeds, self.budget = family, tasks, seeds, budget
        self.faithful = faithful
        self.methods = methods or list(METHODS)
        self.assets = list(defs.assets)
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

    def _partitioned(self, names: list[str]) -> Iterator[tuple]:
        for task in self.tasks:
            for seed in self.seeds:
                yield [self._key(n) for n in names], partition_key(task, seed), self._config(names)

    def steps(self) -> Iterator[tuple[list[dg.AssetKey], str | None, dict]]:
        needs_meta = any("meta_tables" in get_method(m).requires for m in self.methods)
        needs_portfolio = any("portfolio" in get_method(m).requires for m in self.methods)
        first = (["portfolio_candidates"] if needs_portfolio else []) + (["meta_runs"] if needs_meta else [])
        if first:
            yield from self._partitioned(first)
        if needs_portfolio:
            yield from self._partitioned(["performance_matrix"])
            yield [self._key("portfolio")], None, self._config(["portfolio"])
        yield from self._partitioned([f"evaluation_{m}" for m in self.methods])
        yield [self._key("method_ranks")], None, self._config(["method_ranks"])

    def run(self, instance: dg.DagsterInstance, echo=None) -> list[dg.ExecuteInProcessResult]:
        """Materialise every step in order; stop at the first failed step (its run stays in the UI)."""
        results = []
        for step, (selection, partition, run_config) in enumerate(self.steps(), 1):
            if echo:
                echo(step, selection, partition)
            result = dg.materialize(
                self.assets,
                instance=instance,
                partition_key=partition,
                run_config=run_config,
                resources=self.resources,
                selection=selection,
                raise_on_error=False,
            )
            results.append(result)
            if not result.success:
                names = ", ".join(k.path[-1] for k in selection)
                raise MetaPB2Error(f"step {step} failed ({names} {partition or ''}); see run {result.run_id}")
        return results

    @property
    def n_steps(self) -> int:
        return sum(1 for _ in self.steps())

    def database(self):
        return self.resources["store"].paths().database

    def report(self) -> str:
        points = study.evaluation_points(self.resources["store"].paths().catalog(), self.family, self.budget)
        points = points[points["task"].isin(self.tasks) & points["seed"].isin(self.seeds)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IncompleteGridWarning)
            return format_report(evaluate(points))
