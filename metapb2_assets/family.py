"""The asset graph of a study's task family (architecture.md): portfolio_candidates →
performance_matrix → portfolio, meta_runs, one evaluation_<method> per method of the study,
method_ranks; partitioned by the study's tasks × seeds, with its budget as every config's default."""

import warnings

import dagster as dg
from pydantic import Field

from metapb2_assets import partition_runs
from metapb2_assets.ranks import ranks_asset
from metapb2_assets.resources import RayResource, StudyStore
from metapb2_assets.stages import tag_this_run
from metapb2_core import portfolio as core_portfolio
from metapb2_core import study
from metapb2_core.budgets import get_budget
from metapb2_core.methods import get_method
from metapb2_core.quirks import Quirks
from metapb2_core.rounds import exploits_per_round
from metapb2_core.run import RunRequest, method_code_version
from metapb2_core.space import SEARCH_SPACE
from metapb2_core.store import Replace, lineage_rows, step_rows
from metapb2_core.store.staleness import settings_version
from metapb2_core.study_spec import StudySpec


def partition_key(task: str, seed: int) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"task": task, "seed": str(seed)})


def seed_partitions(spec: StudySpec) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([str(s) for s in spec.seeds])


def study_partitions(spec: StudySpec) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {"task": dg.StaticPartitionsDefinition(list(spec.tasks)), "seed": seed_partitions(spec)}
    )


# Each seed is a replicate: a (task, seed) partition reads every task's partition of its own seed
# only, so adding a seed leaves every earlier seed's matrix, portfolio and evaluations current.
# (Both mappings are beta in dagster 1.13; constraints.txt pins the version.)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    SAME_SEED_EVERY_TASK = dg.MultiPartitionMapping(
        {
            "task": dg.DimensionPartitionMapping("task", dg.AllPartitionMapping()),
            "seed": dg.DimensionPartitionMapping("seed", dg.IdentityPartitionMapping()),
        }
    )
    BY_SEED = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="seed")


class CandidateConfig(partition_runs.RunConfig):
    configs: int = Field(
        default=core_portfolio.CANDIDATE_CONFIGS, description="random configurations per task and seed"
    )
    intervals: int = Field(
        default=core_portfolio.CANDIDATE_INTERVALS, description="intervals each candidate trains"
    )
    best: int = Field(default=3, description="candidates kept per task and seed")


class PortfolioConfig(partition_runs.RunConfig):
    size: int = Field(default=0, description="portfolio size (0: what a warm run of the budget needs)")


def _write(store: StudyStore, changes: list[Replace]) -> None:
    store.paths().catalog().write(changes)


def study_assets(spec: StudySpec) -> list:
    family = spec.family
    parts = study_partitions(spec)
    key = lambda name: dg.AssetKey([family, name])  # noqa: E731
    common = {"group_name": family, "partitions_def": parts}
    note = f"the study {spec.name!r} uses"
    run_config = partition_runs.with_defaults(
        partition_runs.RunConfig, note, budget=spec.budget, faithful=spec.faithful
    )
    candidate_config = partition_runs.with_defaults(
        CandidateConfig,
        note,
        budget=spec.budget,
        faithful=spec.faithful,
        configs=spec.candidate_configs,
        best=spec.candidate_best,
    )
    portfolio_config = partition_runs.with_defaults(
        PortfolioConfig, note, budget=spec.budget, faithful=spec.faithful
    )
    portfolio_version = partition_runs.code_version(core_portfolio)
    versioned = lambda config: settings_version(portfolio_version, config.budget, config.faithful)  # noqa: E731

    @dg.asset(
        key=key("portfolio_candidates"),
        code_version=partition_runs.code_version(core_portfolio),
        **common,
        description="Portfolio step 1: the best of a random search of configurations on one task and seed",
    )
    def candidates(
        context: dg.AssetExecutionContext, config: candidate_config, ray: RayResource, store: StudyStore
    ):
        tag_this_run(context, spec, config.budget)
        task, seed = partition_runs.task_and_seed(context)
        budget = get_budget(config.budget, family)
        found = ray.run(
            core_portfolio.search_candidates,
            task,
            seed,
            budget,
            SEARCH_SPACE,
            Quirks.from_flag(config.faithful),
            config.configs,
            config.intervals,
            config.best,
        )
        rid = study.candidates_run_id(task, budget.name, seed)
        lin = partition_runs.lineage(context, versioned(config))
        _write(store, [study.record_candidates(found, task, seed, budget.name), lineage_rows(lin, [rid])])
        return dg.MaterializeResult(metadata={"rows": len(found), "best_score": max(c.score for c in found)})

    @dg.asset(
        key=key("performance_matrix"),
        code_version=partition_runs.code_version(core_portfolio),
        **common,
        deps=[dg.AssetDep(candidates, partition_mapping=SAME_SEED_EVERY_TASK)],
        description="Portfolio step 2: the seed's candidates re-trained with fixed hyperparameters on a task",
    )
    def matrix(context: dg.AssetExecutionContext, config: run_config, ray: RayResource, store: StudyStore):
        tag_this_run(context, spec, config.budget)
        task, seed = partition_runs.task_and_seed(context)
        budget = get_budget(config.budget, family)
        cands = study.load_candidates(store.paths().catalog(), family, seed)
        scores = ray.run(
            core_portfolio.performance_matrix,
            cands,
            [task],
            budget,
            SEARCH_SPACE,
            (seed,),
            Quirks.from_flag(config.faithful),
        )
        rows, inputs = study.matrix_rows(scores, cands, seed, budget.name)
        lin = partition_runs.lineage(context, versioned(config), tuple(inputs))
        _write(
            store,
            [
                step_rows("performance_matrix", rows, task=task, seed=seed),
                lineage_rows(lin, [rows["run_id"].iloc[0]]),
            ],
        )
        return dg.MaterializeResult(metadata={"rows": len(rows), "best_score": float(rows["score"].max())})

    @dg.asset(
        key=key("portfolio"),
        code_version=partition_runs.code_version(core_portfolio),
        group_name=family,
        partitions_def=seed_partitions(spec),
        deps=[dg.AssetDep(matrix, partition_mapping=BY_SEED)],
        description="Portfolio step 3: a seed's greedy portfolio per target task, blind to the target's env",
    )
    def portfolio(context: dg.AssetExecutionContext, config: portfolio_config, store: StudyStore):
        tag_this_run(context, spec, config.budget)
        budget = get_budget(config.budget, family)
        seed = int(context.partition_key)
        size = config.size or budget.population_size + exploits_per_round(budget.population_size)
        paths = store.paths()
        table = study.build_family_portfolios(family, seed, size, Quirks.from_flag(config.faithful), paths)
        lin = partition_runs.lineage(context, versioned(config), tuple(table["run_id"]))
        _write(store, [step_rows("portfolios", table, family=family, seed=seed), lineage_rows(lin, [])])
        per_target = table.groupby("target_task")["candidate"].apply(", ".join)
        return dg.MaterializeResult(
            metadata={
                "rows": len(table),
                "targets": int(per_target.size),
                "portfolios": dg.MetadataValue.md(per_target.to_frame().to_markdown()),
            }
        )

    @dg.asset(
        key=key("meta_runs"),
        code_version=method_code_version(study.META_METHOD),
        **common,
        check_specs=partition_runs.check_specs(key("meta_runs"), parts),
        description="PB2 runs whose transitions become the meta-data of other tasks (leave-one-task-out)",
    )
    def meta_runs(context: dg.AssetExecutionContext, config: run_config, ray: RayResource, store: StudyStore):
        tag_this_run(context, spec, config.budget)
        task, seed = partition_runs.task_and_seed(context)
        req = RunRequest(
            task,
            study.META_METHOD,
            seed,
            config.budget,
            config.faithful,
            config.bounds_dict(),
            tag=study.META_TAG,
        )
        paths = store.paths()
        version = settings_version(method_code_version(study.META_METHOD), config.budget, config.faithful)
        after = lambda record: study.write_meta_data(record, paths, config.faithful)  # noqa: E731
        yield from partition_runs.materialise_run(context, req, "meta", ray, paths, version, after)

    evaluations = [
        _evaluation_asset(spec, name, key, common, run_config, meta_runs, portfolio) for name in spec.methods
    ]
    return [candidates, matrix, portfolio, meta_runs, *evaluations, ranks_asset(spec, evaluations)]


def _evaluation_asset(spec: StudySpec, method: str, key, common: dict, run_config, meta_runs, portfolio):
    requires = get_method(method).requires
    deps = []
    if "meta_tables" in requires:
        deps.append(dg.AssetDep(meta_runs, partition_mapping=SAME_SEED_EVERY_TASK))
    if "portfolio" in requires:
        deps.append(dg.AssetDep(portfolio, partition_mapping=BY_SEED))
    version = method_code_version(method)
    name = f"evaluation_{method}"

    @dg.asset(
        key=key(name),
        code_version=version,
        deps=deps,
        check_specs=partition_runs.check_specs(key(name), common["partitions_def"]),
        **common,
        description=f"{method} tuning PPO on one task and seed (the study's evaluation runs)",
    )
    def evaluation(
        context: dg.AssetExecutionContext, config: run_config, ray: RayResource, store: StudyStore
    ):
        tag_this_run(context, spec, config.budget)
        task, seed = partition_runs.task_and_seed(context)
        paths = store.paths()
        req = study.run_request(
            task, method, seed, config.budget, config.faithful, paths, config.bounds_dict()
        )
        versioned = settings_version(version, config.budget, config.faithful)
        yield from partition_runs.materialise_run(context, req, "evaluation", ray, paths, versioned)

    return evaluation
