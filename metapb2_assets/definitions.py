"""The Definitions of the platform for one study root: the declared study's asset graph (or, where no
study is declared, every family's whole task space), its stage jobs, the Ray and storage resources,
the stale-evaluation schedule and the automation that keeps method_ranks fresh (on by default)."""

from __future__ import annotations

import dagster as dg

from metapb2_assets.automation import stale_evaluations_schedule
from metapb2_assets.family import study_assets
from metapb2_assets.resources import RayResource, StudyStore, resources_from_env
from metapb2_assets.stages import stage_jobs
from metapb2_core.envs import ENV_FAMILIES
from metapb2_core.study_spec import StudySpec, declared_study

RANKS_SENSOR = "refresh_method_ranks"


def studies_of(store: StudyStore, study: StudySpec | None = None) -> list[StudySpec]:
    """The study to build: the one given, the one declared in the store's root (``study.yaml``), or
    the open layout of every family."""
    spec = study or declared_study(store.paths().root)
    return [spec] if spec else [StudySpec.open_layout(f) for f in ENV_FAMILIES]


def build_definitions(
    ray: RayResource | None = None, store: StudyStore | None = None, study: StudySpec | None = None
) -> dg.Definitions:
    env_ray, env_store = resources_from_env()
    ray, store = ray or env_ray, store or env_store
    assets, schedules, jobs = [], [], []
    for spec in studies_of(store, study):
        group = study_assets(spec)
        evaluations = [a for a in group if a.key.path[-1].startswith("evaluation_")]
        assets += group
        schedules.append(stale_evaluations_schedule(spec, evaluations))
        jobs += stage_jobs(spec)
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        schedules=schedules,
        sensors=[
            dg.AutomationConditionSensorDefinition(
                RANKS_SENSOR,
                target=dg.AssetSelection.all(),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=10,  # ranks follow a landing within seconds, not half a minute
                description="Materialises method_ranks when new evaluations have landed (on by default; "
                "evaluated every 10 s)",
            )
        ],
        resources={"ray": ray, "store": store},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What ``dagster dev`` and the code server load (workspace.yaml): built when loaded, not at
    import, so a bad study.yaml in the root stops only the loading, with its one-line reason, and
    the main command can still replace it (``metapb2-study --study good.yaml``)."""
    return build_definitions()
