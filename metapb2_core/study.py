"""The steps of a study over a task family, one function per artefact, each reading its inputs from
and writing its outputs to the study's storage (per-run files + DuckDB catalog). The asset layer
calls these; a script or notebook can too."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from metapb2_core.envs import TASKS
from metapb2_core.errors import MetaPB2Error
from metapb2_core.evaluation.load import Runs, catalog_runs
from metapb2_core.evaluation.scores import run_scores
from metapb2_core.meta.tables import meta_table_from_record, write_meta_table
from metapb2_core.methods import get_method
from metapb2_core.portfolio import Candidate, portfolio_for
from metapb2_core.quirks import Quirks
from metapb2_core.run import RunRequest
from metapb2_core.run_ids import run_id as make_run_id
from metapb2_core.space import SEARCH_SPACE
from metapb2_core.store import (
    Catalog,
    Lineage,
    Replace,
    RunRecord,
    evaluation_rows,
    lineage_rows,
    publish_rows,
    run_rows,
    step_rows,
    usage_edges,
)
from metapb2_core.study_spec import StudySpec
from metapb2_core.xla_setup import machine_label

META_METHOD = "pb2"  # the paper's meta-data are PB2 runs
META_TAG = "meta"


@dataclass(frozen=True)
class StudyPaths:
    root: Path  # per-run records, meta tables and portfolio files live under it
    database: Path

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def meta(self) -> Path:
        return self.root / "meta"

    @property
    def portfolios(self) -> Path:
        return self.root / "portfolio"

    def portfolios_of(self, seed: int) -> Path:
        """Where seed ``seed``'s portfolio files are: each seed is a replicate with its own
        candidates, matrix and portfolio, so adding a seed never changes an earlier one's."""
        return self.portfolios / f"s{seed}"

    def catalog(self) -> Catalog:
        return Catalog(self.database)


def family_tasks(family: str) -> list[str]:
    return [k for k, t in TASKS.items() if t.family == family]


def run_request(
    task: str,
    method: str,
    seed: int,
    budget: str,
    faithful: bool,
    paths: StudyPaths,
    bounds: dict[str, tuple[float, float]] | None = None,
) -> RunRequest:
    """The request of an evaluation run with its inputs: meta-data are the study's own meta runs of
    the same seed, budget and quirk switch that passed their checks, read from its catalog (a run
    still staged or failed is never read); the portfolio is the same seed's."""
    requires = get_method(method).requires
    return RunRequest(
        task,
        method,
        seed,
        budget,
        faithful,
        bounds or {},
        meta=meta_source(paths, budget, faithful, seed) if "meta_tables" in requires else None,
        portfolio=str(paths.portfolios_of(seed)) if "portfolio" in requires else None,
    )


def meta_source(paths: StudyPaths, budget: str, faithful: bool, seed: int) -> str:
    return (
        f"{paths.database}:role = 'meta' AND budget = '{budget}' AND faithful = {str(faithful).lower()} "
        f"AND seed = {int(seed)}"
    )


def record_run(record: RunRecord, role: str, lin: Lineage, catalog: Catalog) -> None:
    """One transaction: the run, its points, perturbations, usage edges, scores and lineage, all
    staged: no reader uses them until ``publish_run`` (after the materialisation is recorded)."""
    meta = record.meta
    changes = run_changes(record, role, lin, "staged")
    used = tuple(usage_edges(meta)["producer_run_id"])
    changes.append(lineage_rows(replace(lin, input_runs=lin.input_runs + used), [meta["run_id"]], "staged"))
    catalog.write(changes)


def run_changes(record: RunRecord, role: str, lin: Lineage, status: str) -> list:
    """The run's rows in every run table with ``status``, and its scores when its checks passed."""
    changes = run_rows(record.points, record.perturbations, record.meta, role, lin, status=status)
    if role == "evaluation" and record.meta.get("status") == "passed":
        changes.append(evaluation_rows(run_scores(record.points), record.meta["run_id"]))
    return changes


def publish_run(record: RunRecord, lin: Lineage, catalog: Catalog) -> None:
    """The staged run becomes what its checks said: passed (read from now on) or failed (kept)."""
    catalog.write(publish_rows(record.run_id, record.meta.get("status") or "unchecked", lin))


def candidates_run_id(task: str, budget: str, seed: int) -> str:
    return make_run_id("candidates", task, budget, seed)


def record_candidates(cands: list[Candidate], task: str, seed: int, budget: str) -> Replace:
    rid = candidates_run_id(task, budget, seed)
    rows = [
        {
            "candidate_id": c.id,
            "run_id": rid,
            "source_task": c.source_task,
            "seed": c.seed,
            "budget": budget,
            "rank": i,
            "score": c.score,
            **c.config,
        }
        for i, c in enumerate(cands)
    ]
    return step_rows("candidates", pd.DataFrame(rows), source_task=task, seed=seed)


def load_candidates(catalog: Catalog, family: str, seed: int | None = None) -> list[Candidate]:
    """The candidates of ``family``'s searches (of seed ``seed`` only, unless None)."""
    df = catalog.candidates()
    if df.empty:
        raise MetaPB2Error("no portfolio candidates yet: materialise portfolio_candidates first")
    df = df[df["source_task"].isin(family_tasks(family))]
    if seed is not None:
        df = df[df["seed"] == seed]
    if df.empty:
        of = f" of seed {seed}" if seed is not None else ""
        raise MetaPB2Error(f"no portfolio candidates of the {family} family{of} yet")
    return [
        Candidate(
            r["candidate_id"],
            r["source_task"],
            int(r["seed"]),
            {n: float(r[n]) for n in SEARCH_SPACE.names},
            float(r["score"]),
        )
        for r in df.to_dict("records")
    ]


def matrix_rows(
    scores: pd.DataFrame, cands: list[Candidate], seed: int, budget: str
) -> tuple[pd.DataFrame, list[str]]:
    """Long rows of one performance-matrix column (``portfolio.performance_matrix`` of one task and
    seed) and the candidate searches it used."""
    (task,) = scores.columns
    rows = pd.DataFrame(
        {
            "candidate_id": scores.index,
            "task": task,
            "seed": seed,
            "score": scores[task].to_numpy(float),
            "run_id": make_run_id("matrix", task, budget, seed),
        }
    )
    return rows, sorted({candidates_run_id(c.source_task, budget, c.seed) for c in cands})


def family_matrix(
    catalog: Catalog, family: str, cands: Sequence[str], seed: int | None = None
) -> pd.DataFrame:
    """The performance matrix of ``family``: candidates of ``cands`` × tasks, rows scored on every
    task (the columns of seed ``seed`` only, unless None: then the mean over seeds where a column
    has several)."""
    long = catalog.rows("performance_matrix")
    if long.empty:
        raise MetaPB2Error("no performance matrix yet: materialise performance_matrix first")
    long = long[long["task"].isin(family_tasks(family)) & long["candidate_id"].isin(cands)]
    if seed is not None:
        long = long[long["seed"] == seed]
    return long.pivot_table(index="candidate_id", columns="task", values="score", aggfunc="mean").dropna()


def build_family_portfolios(
    family: str, seed: int, size: int, quirks: Quirks, paths: StudyPaths
) -> pd.DataFrame:
    """Step 3 of seed ``seed`` for every task of ``family`` a portfolio can be formed for (columns:
    the tasks of the seed's matrix; rows: the seed's candidates scored on every one of them);
    writes ``<task>_portfolio.json`` files under ``paths.portfolios_of(seed)``."""
    catalog = paths.catalog()
    cands = {c.id: c for c in load_candidates(catalog, family, seed)}
    runs_of = dict(catalog.candidates()[["candidate_id", "run_id"]].itertuples(index=False))
    matrix = family_matrix(catalog, family, list(cands), seed)
    if matrix.empty:
        raise MetaPB2Error(f"the {family} performance matrix of seed {seed} is empty")
    sources = {c: cands[c].source_task for c in matrix.index}
    configs = {c: cands[c].config for c in matrix.index}
    rows = []
    folder = paths.portfolios_of(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for target in family_tasks(family):
        try:
            ids = portfolio_for(matrix, sources, target, size, quirks, configs)
        except MetaPB2Error:
            continue  # too few candidates from other environments: no portfolio for this target
        entries = [
            {**cands[i].config, "candidate": i, "source_task": cands[i].source_task, "run_id": runs_of[i]}
            for i in ids
        ]
        tmp = folder / f".{target}_portfolio.json.tmp"
        tmp.write_text(json.dumps(entries, indent=2))
        tmp.replace(folder / f"{target}_portfolio.json")
        rows += [
            {"family": family, "seed": seed, "target_task": target, "position": k, **e}
            for k, e in enumerate(entries)
        ]
    if not rows:
        raise MetaPB2Error(
            f"no {family} task has {size} candidates from other environments; search more tasks or seeds"
        )
    return pd.DataFrame(rows)


def evaluation_runs(catalog: Catalog, family: str, budget: str, faithful: bool | None = None) -> Runs:
    """The family's evaluation runs of ``budget`` (and quirk mode, unless None): those that passed
    their checks, and those that failed (kept, listed, never ranked)."""
    if not catalog.has("runs"):
        raise MetaPB2Error("no runs in the catalog yet: materialise evaluation assets first")
    return catalog_runs(catalog, "evaluation", budget, family_tasks(family), faithful)


def study_evaluation_runs(
    catalog: Catalog, spec: StudySpec, budget: str | None = None, seeds: Sequence[int] = ()
) -> Runs:
    """The evaluation runs a study ranks, at ``budget`` (default: the study's). A declared study:
    its grid only (quirk mode, tasks, methods, seeds); an undeclared root: every run of the family.
    ``seeds`` narrows either to those seeds."""
    faithful = spec.faithful if spec.declared else None
    found = evaluation_runs(catalog, spec.family, budget or spec.budget, faithful)
    seeds = list(seeds) or (list(spec.seeds) if spec.declared else [])

    def keep(df: pd.DataFrame) -> pd.DataFrame:
        mask = df["seed"].isin(seeds) if seeds else pd.Series(True, index=df.index)
        if spec.declared:
            mask &= df["task"].isin(spec.tasks) & df["method"].isin(spec.methods)
        return df[mask]

    return Runs(keep(found.points), keep(found.failed), found.perturbations)


def run_manifests(catalog: Catalog, run_ids: Sequence[str]) -> pd.DataFrame:
    """The manifests of ``run_ids``: run_id, method, role and the manifest (a dict), by run id."""
    rows = catalog.manifests(run_ids)
    rows["manifest"] = rows.pop("meta_json").map(json.loads)
    return rows.sort_values("run_id").reset_index(drop=True)


def run_machines(catalog: Catalog, run_ids: Sequence[str]) -> pd.DataFrame:
    """The machine each of ``run_ids`` ran on, from its manifest: run_id, method and a label
    ("AMD EPYC, 2 cores"; "not recorded" for records older than the field)."""
    rows = run_manifests(catalog, run_ids)[["run_id", "method", "manifest"]]
    rows["machine"] = rows.pop("manifest").map(lambda meta: machine_label(meta.get("machine")))
    return rows


def unpublished_partitions(catalog: Catalog, asset_key: str) -> set[str]:
    """Partitions of ``asset_key`` whose last run was staged but never published (killed midway)."""
    rows = catalog.lineage([asset_key])
    return set(rows.loc[rows["status"] == "staged", "partition"])


def newest_landing(catalog: Catalog, asset_keys: list[str]):
    """When the newest passed materialisation of any of ``asset_keys`` landed (UTC), or None."""
    rows = catalog.lineage(asset_keys)
    t = rows.loc[rows["status"] == "passed", "materialized_at"].max()
    return None if pd.isna(t) else pd.Timestamp(t)


def write_meta_data(record: RunRecord, paths: StudyPaths, by_values: bool = False) -> Path | None:
    table = meta_table_from_record(record.points, record.perturbations, record.meta, SEARCH_SPACE, by_values)
    return write_meta_table(paths.meta, table, by_values) if len(table) else None
