"""method_ranks: rank tables, statistics and plots over a family's evaluation runs; refreshed by
declarative automation whenever an evaluation partition lands."""

import warnings

import dagster as dg
import pandas as pd
from pydantic import Field

from metapb2_assets import partition_runs
from metapb2_assets.metadata import final_return_table, frame_table, rank_summary_table, ranks_markdown
from metapb2_assets.partition_runs import with_defaults
from metapb2_assets.resources import StudyStore
from metapb2_assets.stages import tag_this_run
from metapb2_core import study
from metapb2_core.budgets import get_budget
from metapb2_core.evaluation import IncompleteGridWarning, evaluate
from metapb2_core.evaluation.inference_tables import headline, mean_ranks_table, tests_table
from metapb2_core.evaluation.report import format_report, write_report
from metapb2_core.evaluation.study_ranking import rank_study, ranked_points, ranked_seeds
from metapb2_core.store import lineage_rows, step_rows
from metapb2_core.store.staleness import settings_version
from metapb2_core.study_spec import StudySpec

# Any evaluation partition updated since the last refresh, once none of them is still running.
REFRESH_ON_NEW_EVALUATIONS = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("refresh when new evaluations land")


class RanksConfig(dg.Config):
    budget: str = Field(default="smoke", description="rank the evaluation runs of this budget preset")
    alpha: float = Field(default=0.05, description="significance level of the Friedman and Nemenyi tests")
    seeds: list[int] = Field(
        default=[], description="rank only these seeds (empty: the study's seeds, every seed if undeclared)"
    )


def rank_rows(ev, family: str, budget: str) -> pd.DataFrame:
    per_point = ev.ranks.groupby(level="point").mean().stack().rename("mean_rank").to_frame()
    per_point["mean_normalised"] = ev.normalised.groupby(level="point").mean().stack()
    rows = per_point.reset_index().rename(columns={"level_1": "method"})
    rows = rows.rename(columns={rows.columns[1]: "method"})
    return rows.assign(family=family, budget=budget)


def completeness(spec: StudySpec, points: pd.DataFrame, failed: pd.DataFrame, ranked: list[int]) -> str:
    """How much of the planned grid (tasks × seeds × methods) has a run that passed its checks,
    and which seeds are ranked (``ranked``) when a seed midway is left out."""
    if not spec.declared:
        return (
            f"{points['run_id'].nunique()} evaluation runs ranked; no study is declared in this root "
            "(study.yaml), so there is no plan to measure them against"
        )
    planned = {(t, s, m) for t in spec.tasks for s in spec.seeds for m in spec.methods}
    have = set(points[["task", "seed", "method"]].drop_duplicates().itertuples(index=False, name=None))
    done = len(planned & have)
    text = (
        f"{done} of {len(planned)} planned evaluation runs passed their checks "
        f"({len(spec.tasks)} tasks × {len(spec.seeds)} seeds × {len(spec.methods)} methods)"
    )
    if len(failed):
        text += f"; {len(failed)} failed their checks (kept, not ranked)"
    missing = sorted(planned - have)
    if missing:
        shown = ", ".join(f"{m} on {t} seed {s}" for t, s, m in missing[:5])
        text += f"; missing: {shown}" + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    left_out = sorted({int(s) for s in points["seed"]} - set(ranked))
    if left_out:
        text += (
            f"; ranked: the complete seed(s) {', '.join(map(str, ranked))} alone, seed(s) "
            f"{', '.join(map(str, left_out))} left out until complete"
        )
    return text


def ranks_asset(spec: StudySpec, evaluations: list[dg.AssetsDefinition]) -> dg.AssetsDefinition:
    family = spec.family
    config_type = with_defaults(RanksConfig, f"the study {spec.name!r} uses", budget=spec.budget)

    @dg.asset(
        key=dg.AssetKey([family, "method_ranks"]),
        group_name=family,
        deps=evaluations,
        automation_condition=REFRESH_ON_NEW_EVALUATIONS,
        code_version=partition_runs.code_version(evaluate),
        description="Ranks, normalised scores, Friedman/Nemenyi tests and plots over the study's evaluation "
        "runs; refreshed automatically when an evaluation lands",
    )
    def method_ranks(context: dg.AssetExecutionContext, config: config_type, store: StudyStore):
        tag_this_run(context, spec, config.budget)
        paths = store.paths()
        catalog = paths.catalog()
        found = study.study_evaluation_runs(catalog, spec, config.budget, config.seeds)
        points, failed = found.points, found.failed
        if points.empty:
            raise dg.Failure(
                f"no {config.budget} evaluation runs of the {family} family that passed their checks in "
                f"{paths.database}" + (f" ({len(failed)} failed)" if len(failed) else "")
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IncompleteGridWarning)  # reported in the metadata below
            # the one ranking of a study: REPORT.md, the CLI and this asset state the same tests
            declared = spec if spec.declared else None
            rs = rank_study(points, declared, failed, found.perturbations, config.alpha)
        ev = rs.evaluation
        ranked = ranked_points(ev, points)
        out = paths.root / "reports" / family
        written = write_report(ev, ranked, out, rs)
        rows = rank_rows(ev, family, config.budget)
        version = settings_version(partition_runs.code_version(evaluate), config.budget, spec.faithful)
        lin = partition_runs.lineage(context, version, tuple(ranked["run_id"].unique()))
        catalog.write([step_rows("ranks", rows, family=family, budget=config.budget), lineage_rows(lin, [])])
        context.log.info("\n" + format_report(rs))
        anytime = ev.ranks.groupby(level="point").mean()
        newest = study.newest_landing(catalog, [e.key.to_user_string() for e in evaluations])
        paper_interval = get_budget("paper", family).interval
        inf = rs.inference
        return dg.MaterializeResult(
            metadata={
                "study": spec.describe(),
                "completeness": completeness(spec, points, failed, ranked_seeds(ev)),
                "what_the_data_support": dg.MetadataValue.text(headline(rs, paper_interval)),
                "tests": frame_table(tests_table(rs, paper_interval)),
                "mean_ranks_with_intervals": frame_table(mean_ranks_table(rs)),
                "per_environment_final_rank": frame_table(inf.env_ranks.round(2)),
                "per_task_verdict": frame_table(inf.per_unit),
                "final_return": final_return_table(ev.final, inf.mean_ranks["final normalised"]),
                "runs": dg.MetadataValue.int(int(ranked["run_id"].nunique())),
                "newest_run_landed": f"{newest:%Y-%m-%d %H:%M:%S} UTC" if newest is not None else "—",
                "rank_table": rank_summary_table(ev.summary, anytime),
                "anytime_rank": dg.MetadataValue.md(ranks_markdown(anytime)),
                "grid": dg.MetadataValue.text(ev.grid.summary()),
                "failed_runs": dg.MetadataValue.int(len(ev.grid.failed)),
                "fallbacks": dg.MetadataValue.md(
                    ev.fallbacks.to_markdown(index=False) if not ev.fallbacks.empty else "none recorded"
                ),
                "report": dg.MetadataValue.path(str(out)),
                "files": len(written),
            }
        )

    return method_ranks
