"""One population run: a request (names and numbers), resolved once into everything the run needs,
executed (resuming from a checkpoint when one is there) into a record.

A run id names exactly one request (``run_ids.run_id``: method, task, budget and seed), then
``-faithful`` for the quirk switch, ``-{tag}`` for a tag, and an 8-digit digest of whatever else
differs from the defaults: bounds, the content of the meta-data read, the portfolio. The same
request again has the same id and replaces its record; two requests that differ anywhere never
share one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import jax
import pandas as pd

from metapb2_core.ask_tell import build_method, check_seed
from metapb2_core.budgets import Budget, get_budget
from metapb2_core.checks import CheckOutcome, run_checks, verdict
from metapb2_core.envs import Task, get_task
from metapb2_core.errors import MetaPB2Error
from metapb2_core.manifest import build_record
from metapb2_core.method_inputs import method_inputs
from metapb2_core.methods import Method, get_method
from metapb2_core.population import ProgressFn, run_population
from metapb2_core.ppo.trainer import check_tunable
from metapb2_core.provenance import portable_source, run_code_digest
from metapb2_core.quirks import Quirks
from metapb2_core.run_ids import run_id as make_run_id
from metapb2_core.space import SEARCH_SPACE, SearchSpace
from metapb2_core.store import (
    RunRecord,
    checkpoint_path,
    ensure_writable_dir,
    remove_checkpoint,
    write_record,
)
from metapb2_core.xla_setup import host_cpu


@dataclass(frozen=True)
class RunRequest:
    task: str
    method: str
    seed: int
    budget: str = "smoke"
    faithful: bool = False  # reproduce the original code's quirks (methods.md §11)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    meta: str | None = None  # meta-data directory or catalog query (meta methods)
    portfolio: str | None = None  # portfolio directory or JSON file (warm methods)
    tag: str = ""  # tells apart runs of the same method, task and seed made for another purpose

    def resolve(self) -> ResolvedRun:
        """Check every name and number and load the method's inputs, once, before anything is
        compiled; the resolved run is what executes (on Ray, it is what the worker receives)."""
        task = get_task(self.task)
        get_method(self.method)
        check_seed(self.seed)
        budget = get_budget(self.budget, task.family)
        space = SEARCH_SPACE.with_bounds(self.bounds, add=True) if self.bounds else SEARCH_SPACE
        check_tunable(space.names)
        words = [p.name for p in space.params if p.kind == "choice" and p.type is str]
        if words:
            raise MetaPB2Error(f"hyperparameter(s) {words}: the PPO trainer takes numbers, not words")
        quirks = Quirks.from_flag(self.faithful)
        inputs = method_inputs(self.method, self.task, space, self.meta, self.portfolio, quirks)
        return ResolvedRun(self, task, budget, space, quirks, inputs)


@dataclass(frozen=True)
class ResolvedRun:
    request: RunRequest
    task: Task
    budget: Budget
    space: SearchSpace
    quirks: Quirks
    inputs: dict[str, Any]  # the method's keyword inputs: meta_tables + target_task, portfolio

    @cached_property
    def variant(self) -> dict[str, Any]:
        """What differs from the defaults beyond method, task, budget, seed, quirks and tag."""
        out: dict[str, Any] = {}
        default = {p.name: p for p in SEARCH_SPACE.params}
        changed = [p for p in self.space.params if default.get(p.name) != p]
        if changed:  # a float keeps its old form [low, high], so existing run ids stay
            out["bounds"] = {
                p.name: [p.low, p.high] if p.kind == "float" else p.declaration() for p in changed
            }
        if "meta_tables" in self.inputs:
            out["meta_data"] = meta_digest(self.inputs["meta_tables"])
        if "portfolio" in self.inputs:
            out["portfolio"] = [[e.get(n) for n in self.space.names] for e in self.inputs["portfolio"]]
        return out

    @cached_property
    def run_id(self) -> str:
        r = self.request
        digest = ""
        if self.variant:
            text = json.dumps(self.variant, sort_keys=True, default=float)
            digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        faithful = "faithful" if r.faithful else ""
        return make_run_id(r.method, r.task, self.budget.name, r.seed, faithful, r.tag or "", digest)

    def identity(self) -> dict[str, Any]:
        """What a checkpoint of this run must have been made for."""
        r = self.request
        return {
            "run_id": self.run_id,
            "method": r.method,
            "task": r.task,
            "faithful": r.faithful,
            **self.variant,
        }

    @property
    def code_version(self) -> str:
        return method_code_version(self.request.method)

    def build_method(self) -> Method:
        return build_method(self.request.method, self.space, self.request.seed, self.quirks, self.inputs)


def method_code_version(method: str) -> str:
    """The digest of the code a run of ``method`` executes (``provenance.run_code_digest``): what
    staleness compares, so a record made by other code is not current."""
    return run_code_digest(get_method(method).__module__)


def meta_digest(tables: dict[str, pd.DataFrame]) -> str:
    """A digest of meta-data by content (task names and every value), independent of its source."""
    h = hashlib.sha1()
    for name in sorted(tables):
        h.update(name.encode())
        h.update(pd.util.hash_pandas_object(tables[name], index=False).to_numpy().tobytes())
    return h.hexdigest()


def execute_run(
    run: ResolvedRun | RunRequest,
    progress: ProgressFn | None = None,
    out_dir: str | Path | None = None,
    restart: bool = False,
    say: Callable[[str], None] | None = None,
) -> RunRecord:
    """The run's record. With ``out_dir`` the loop checkpoints there after every interval and
    continues from a checkpoint it finds (``restart`` discards it first); ``say`` gets one line
    when it resumes. The record is not written here: ``save_run`` writes it. A plain request is
    resolved first (callers that check a request before the run resolve it themselves and pass that)."""
    if isinstance(run, RunRequest):
        run = run.resolve()
    req, budget, space, task = run.request, run.budget, run.space, run.task
    checkpoint = checkpoint_path(ensure_writable_dir(out_dir), run.run_id) if out_dir is not None else None
    if checkpoint is not None and restart:
        remove_checkpoint(checkpoint)
    result = run_population(
        task,
        run.build_method(),
        budget,
        req.seed,
        space,
        task.env_params(run.quirks),
        progress,
        checkpoint=checkpoint,
        identity=run.identity(),
        say=say,
    )
    ident = {
        "run_id": run.run_id,
        "task": task.key,
        "env": task.env_name,
        "context": task.context,
        "method": req.method,
        "seed": req.seed,
        "budget": budget.name,
    }
    meta_tables = run.inputs.get("meta_tables", {})
    return build_record(
        ident,
        result.points,
        result.perturbations,
        space,
        faithful=req.faithful,
        tag=req.tag,
        budget_sizes=budget.to_dict(),
        variant=run.variant,
        wall_seconds=result.wall_seconds,
        compile_seconds=result.compile_seconds,
        checkpoint_seconds=result.checkpoint_seconds,
        resumed_from_interval=result.resumed_from,
        train_env_steps=result.train_env_steps,
        env_steps_per_second=result.train_env_steps / result.wall_seconds,
        final_configs=result.final_configs,
        meta_source=portable_source(req.meta),
        meta_tasks={t: sorted(set(df["run_id"])) for t, df in meta_tables.items()},
        portfolio_source=portable_source(req.portfolio),
        portfolio=run.inputs.get("portfolio"),
        code_version=run.code_version,
        jax_version=jax.__version__,
        # a study that spans machines compares run times only within one of them
        machine={**host_cpu(), "backend": jax.default_backend()},
        load_average_at_end=round(os.getloadavg()[0], 2),  # > cores: other work shared the CPU
    )


def check_run(record: RunRecord, run: ResolvedRun) -> list[CheckOutcome]:
    """Run the record's checks and write their verdict into its meta (before the record is saved)."""
    outcomes = run_checks(record.points, record.perturbations, record.meta, run.budget, run.space)
    record.meta.update(verdict(outcomes))
    return outcomes


def save_run(record: RunRecord, out_dir: str | Path) -> dict[str, Path]:
    """Write the record, then remove the run's checkpoint (the record supersedes it)."""
    paths = write_record(record, out_dir)
    remove_checkpoint(checkpoint_path(out_dir, record.run_id))
    return paths
