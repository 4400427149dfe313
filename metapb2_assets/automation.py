"""Automation: a nightly schedule that re-runs stale evaluations (their method's code changed, or
the meta-data or portfolio they used was re-made); method_ranks refreshes itself through its
automation condition (ranks.py) when evaluations land."""

import dagster as dg

from metapb2_assets.resources import StudyStore
from metapb2_assets.stages import run_tags
from metapb2_core.store import Catalog
from metapb2_core.store.staleness import settings_version, stale_partitions
from metapb2_core.study_spec import StudySpec


def stale_keys(catalog: Catalog, asset: dg.AssetsDefinition, spec: StudySpec) -> list[str]:
    """Materialised partitions of ``asset`` (``""`` when unpartitioned) that its current code, the
    study's budget and quirk mode, or a newer input would make differently. Where no study is
    declared, a partition may hold any budget: only its code and inputs count."""
    key = asset.key
    inputs = [dep.to_user_string() for dep in asset.asset_deps[key]]
    version = settings_version(asset.code_versions_by_key[key], spec.budget, spec.faithful)
    return stale_partitions(catalog, key.to_user_string(), version, inputs, code_only=not spec.declared)


def stale_evaluations_schedule(
    spec: StudySpec, evaluations: list[dg.AssetsDefinition], cron: str = "0 3 * * *"
) -> dg.ScheduleDefinition:
    family = spec.family

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
        state = catalog.lineage()["materialized_at"].max() if catalog.has("lineage") else ""
        for asset in evaluations:
            key = asset.key
            for partition in stale_keys(catalog, asset, spec):
                requests.append(
                    dg.RunRequest(
                        run_key=f"{key.to_user_string()}|{partition}|{state}",
                        asset_selection=[key],
                        partition_key=partition,
                        tags=run_tags(spec, [key.path[-1]], spec.budget),
                    )
                )
        return requests or dg.SkipReason("every materialised evaluation is up to date")

    return rerun_stale
