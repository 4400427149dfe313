"""The Definitions of the platform: one asset group per task family, the Ray and storage
resources, the stale-evaluation schedules and the automation that keeps method_ranks fresh."""

from __future__ import annotations

import os

import dagster as dg

from metapb2_assets.automation import stale_evaluations_schedule
from metapb2_assets.family import family_assets
from metapb2_assets.resources import RayResource, StudyStore
from metapb2_core.envs import ENV_FAMILIES


def build_definitions(ray: RayResource | None = None, store: StudyStore | None = None) -> dg.Definitions:
    assets, schedules = [], []
    for family in ENV_FAMILIES:
        group = family_assets(family)
        evaluations = [a for a in group if a.key.path[-1].startswith("evaluation_")]
        assets += group
        schedules.append(stale_evaluations_schedule(family, evaluations))
    return dg.Definitions(
        assets=assets,
        schedules=schedules,
        sensors=[
            dg.AutomationConditionSensorDefinition("refresh_method_ranks", target=dg.AssetSelection.all())
        ],
        resources={
            # deployments set these (deploy/values.yaml); empty means the embedded default
            "ray": ray or RayResource(address=os.environ.get("METAPB2_RAY_ADDRESS", "")),
            "store": store or StudyStore(root=os.environ.get("METAPB2_STUDY_ROOT", "")),
        },
    )


defs = build_definitions()
