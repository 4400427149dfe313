"""method_ranks: rank tables, statistics and plots over a family's evaluation runs; refreshed by
declarative automation whenever an evaluation partition lands."""

import warnings

import dagster as dg
import pandas as pd
from pydantic import Field

from metapb2_assets import runs
from metapb2_assets.metadata import ranks_markdown
from metapb2_assets.resources import StudyStore
from metapb2_core import study
from metapb2_core.evaluation import IncompleteGridWarning, evaluate
from metapb2_core.evaluation.report import format_report, write_report
from metapb2_core.store import Replace, lineage_rows

# Any evaluation partition updated since the last refresh, once none of them is still running.
REFRESH_ON_NEW_EVALUATIONS = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("refresh when new evaluations land")


class RanksConfig(dg.Config):
    budget: str = Field(default="smoke", description="rank the evaluation runs of this budget preset")
    alpha: float = Field(default=0.05, description="significance level of the Friedman and Nemenyi tests")
    seeds: list[int] = Field(default=[], description="rank only these seeds (empty: every materialised seed)")


def rank_rows(ev, family: str, budget: str) -> pd.DataFrame:
    per_point = ev.ranks.groupby(level="point").mean().stack().rename("mean_rank").to_frame()
    per_point["mean_normalised"] = ev.normalised.groupby(level="point").mean().stack()
    rows = per_point.reset_index().rename(columns={"level_1": "method"})
    rows = rows.rename(columns={rows.columns[1]: "method"})
    return rows.assign(family=family, budget=budget)


def ranks_asset(family: str, evaluations: list[dg.AssetsDefinition]) -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey([family, "method_ranks"]),
        group_name=family,
        deps=evaluations,
        automation_condition=REFRESH_ON_NEW_EVALUATIONS,
        code_version=runs.code_version(evaluate),
        description="Ranks, normalised scores, Friedman/Nemenyi tests and plots over every evaluation run",
    )
    def method_ranks(context: dg.AssetExecutionContext, config: RanksConfig, store: StudyStore):
        paths = store.paths()
        found = study.evaluation_runs(paths.catalog(), family, config.budget)
        points, failed = found.points, found.failed
        if config.seeds:
            points, failed = (
                points[points["seed"].isin(config.seeds)],
                failed[failed["seed"].isin(config.seeds)],
            )
        if points.empty:
            raise dg.Failure(
                f"no {config.budget} evaluation runs of the {family} family that passed their checks in "
                f"{paths.database}" + (f" ({len(failed)} failed)" if len(failed) else "")
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IncompleteGridWarning)  # reported in the metadata below
            ev = evaluate(points, alpha=config.alpha, failed=failed, perturbations=found.perturbations)
        out = paths.root / "reports" / family
        written = write_report(ev, points, out)
        rows = rank_rows(ev, family, config.budget)
        lin = runs.lineage(context, runs.code_version(evaluate), tuple(points["run_id"].unique()))
        paths.catalog().write(
            [Replace("ranks", {"family": family, "budget": config.budget}, rows), lineage_rows(lin, [])]
        )
        context.log.info("\n" + format_report(ev))
        anytime = ev.ranks.groupby(level="point").mean()
        return dg.MaterializeResult(
            metadata={
                "rows": len(rows),
                "runs": int(points["run_id"].nunique()),
                "rank_table": dg.MetadataValue.md(ev.summary.round(3).to_markdown()),
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
