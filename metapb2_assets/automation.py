"""Automation: a nightly schedule that re-runs stale evaluations (their method's code changed, or
the meta-data or portfolio they used was re-made); method_ranks refreshes itself through its
automation condition (ranks.py) when evaluations land."""

import dagster as dg

from metapb2_assets.resources import StudyStore
from metapb2_core.store.staleness import stale_partitions


def stale_evaluations_schedule(family: str, evaluations: list[dg.AssetsDefinition], cron: str = "0 3 * * *"):
    @dg.schedule(
        name=f"{family}_rerun_stale_evaluations",
        cron_schedule=cron,
        target=dg.AssetSelection.assets(*evaluations),
        description="Re-materialise each evaluation partition whose code version differs from the current "
        "one, or whose meta-data or portfolio inputs were materialised after it",
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    def rerun_stale(context: dg.ScheduleEvaluationContext, store: StudyStore):
        catalog = store.paths().catalog()
        requests = []
        # A run key per state of the catalog: a stale partition is requested once per state, so a run
        # that fails is not relaunched every night until something it depends on changes.
        state = (
            catalog.query("SELECT max(materialized_at) AS t FROM lineage")["t"].iloc[0]
            if catalog.tables()
            else ""
        )
        for asset in evaluations:
            key = asset.key
            inputs = [dep.to_user_string() for dep in asset.asset_deps[key]]
            for partition in stale_partitions(
                catalog, key.to_user_string(), asset.code_versions_by_key[key], inputs
            ):
                requests.append(
                    dg.RunRequest(
                        run_key=f"{key.to_user_string()}|{partition}|{state}",
                        asset_selection=[key],
                        partition_key=partition,
                    )
                )
        return requests or dg.SkipReason("every materialised evaluation is up to date")

    return rerun_stale
