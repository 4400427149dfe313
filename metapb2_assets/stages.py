"""The stages of a study as named asset jobs, the tags every run carries (study, stage, method,
budget), and the order in which the main command launches the stages' runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from metapb2_core.study_spec import StudySpec

STAGE_OF = {
    "portfolio_candidates": "candidates",
    "performance_matrix": "matrix",
    "portfolio": "portfolio",
    "meta_runs": "meta",
    "method_ranks": "ranks",
}
EVALUATION_PREFIX = "evaluation_"
TAG = "metapb2/"  # the namespace of the tags below: filter runs by them in the UI's run list


def stage_of(asset_name: str) -> str:
    return "evaluation" if asset_name.startswith(EVALUATION_PREFIX) else STAGE_OF[asset_name]


def run_tags(spec: StudySpec, asset_names: Iterable[str], budget: str | None = None) -> dict[str, str]:
    """Tags of a run that materialises ``asset_names`` of ``spec``'s graph."""
    names = sorted(set(asset_names))
    stages = sorted({stage_of(n) for n in names})
    methods = sorted(n[len(EVALUATION_PREFIX) :] for n in names if n.startswith(EVALUATION_PREFIX))
    tags = {f"{TAG}study": spec.name, f"{TAG}stage": ",".join(stages)}
    if len(methods) == 1:
        tags[f"{TAG}method"] = methods[0]
    elif methods:
        tags[f"{TAG}method"] = f"{len(methods)} methods"
    if budget:
        tags[f"{TAG}budget"] = budget
    return tags


def tag_this_run(context: dg.AssetExecutionContext, spec: StudySpec, budget: str) -> None:
    """Tag the run from inside one of its steps, so that runs launched from the UI's asset graph or
    a backfill (Dagster's unnamed asset job) say what they are as the stage jobs' runs do."""
    names = [k.path[-1] for k in (context.run.asset_selection or {context.asset_key})]
    tags = run_tags(spec, names, budget)
    have = context.run.tags
    new = {k: v for k, v in tags.items() if have.get(k) != v}
    if new:
        context.instance.add_run_tags(context.run_id, new)


TASK_AND_SEED, SEED, ONCE = "task and seed", "seed", ""


@dataclass(frozen=True)
class Stage:
    """One named job: the assets it materialises, once per task and seed, once per seed, or once."""

    job: str
    assets: tuple[str, ...]
    per: str  # TASK_AND_SEED, SEED or ONCE


def study_stages(spec: StudySpec) -> list[list[Stage]]:
    """Phases of stages; the stages of a phase (and their partitions) are independent."""
    fam = spec.family
    first = []
    if spec.needs_portfolio:
        first.append(Stage(f"{fam}_candidates", ("portfolio_candidates",), TASK_AND_SEED))
    if spec.needs_meta:
        first.append(Stage(f"{fam}_meta_runs", ("meta_runs",), TASK_AND_SEED))
    phases = [first] if first else []
    if spec.needs_portfolio:
        phases.append([Stage(f"{fam}_performance_matrix", ("performance_matrix",), TASK_AND_SEED)])
        phases.append([Stage(f"{fam}_portfolio", ("portfolio",), SEED)])
    phases.append([Stage(f"{fam}_evaluation_{m}", (f"evaluation_{m}",), TASK_AND_SEED) for m in spec.methods])
    phases.append([Stage(f"{fam}_method_ranks", ("method_ranks",), ONCE)])
    return phases


def stage_run_config(spec: StudySpec, stage: Stage) -> dict:
    """The study's settings written out as the stage job's run config: the launch dialog opens
    with them, so the budget a run will use is on the screen before it starts."""
    ops = {}
    for name in stage.assets:
        config: dict = {"budget": spec.budget}
        if name != "method_ranks":
            config["faithful"] = spec.faithful
        if name == "portfolio_candidates":
            config |= {"configs": spec.candidate_configs, "best": spec.candidate_best}
        ops[f"{spec.family}__{name}"] = {"config": config}
    return {"ops": ops}


def stage_jobs(spec: StudySpec) -> list[dg.UnresolvedAssetJobDefinition]:
    """One job per stage (its partitions are its assets'), tagged like the runs it launches."""
    jobs = []
    for phase in study_stages(spec):
        for stage in phase:
            keys = [dg.AssetKey([spec.family, a]) for a in stage.assets]
            jobs.append(
                dg.define_asset_job(
                    stage.job,
                    selection=keys,
                    config=stage_run_config(spec, stage),
                    tags=run_tags(spec, stage.assets, spec.budget),
                    description=f"{spec.name}: the {stage_of(stage.assets[0])} stage"
                    + (f" (one run per {stage.per})" if stage.per else ""),
                )
            )
    return jobs
