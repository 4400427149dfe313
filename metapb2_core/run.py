"""One population run from names (task, method, seed, budget) to its records."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from metapb2_core import __version__
from metapb2_core.budgets import Budget, get_budget
from metapb2_core.envs import get_task
from metapb2_core.errors import MetaPB2Error
from metapb2_core.meta.sources import load_meta
from metapb2_core.methods import get_method
from metapb2_core.population import ProgressFn, run_population
from metapb2_core.portfolio import load_portfolio
from metapb2_core.quirks import Quirks
from metapb2_core.space import SEARCH_SPACE, SearchSpace


@dataclass(frozen=True)
class RunRequest:
    task: str
    method: str
    seed: int
    budget: str = "smoke"
    faithful: bool = False  # reproduce the original code's quirks (methods.md §11)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    meta: str | None = None  # meta-data directory (meta methods)
    portfolio: str | None = None  # portfolio directory or JSON file (warm methods)
    tag: str = ""  # tells apart runs of the same method, task and seed made for another purpose

    @property
    def run_id(self) -> str:
        suffix = ("-faithful" if self.faithful else "") + (f"-{self.tag}" if self.tag else "")
        return f"{self.method}-{self.task}-{self.budget}-s{self.seed}{suffix}"

    def space(self) -> SearchSpace:
        return SEARCH_SPACE.with_bounds(self.bounds) if self.bounds else SEARCH_SPACE

    def check(self) -> tuple[Budget, SearchSpace]:
        """Validate every name and number up front, before anything is compiled."""
        get_task(self.task)
        get_method(self.method)
        if self.seed < 0:
            raise MetaPB2Error(f"seed must be non-negative, got {self.seed}")
        return get_budget(self.budget, get_task(self.task).family), self.space()

    def method_inputs(self) -> dict[str, Any]:
        """What the method requires beyond the space: meta-data (leave-one-task-out) or a portfolio."""
        requires = get_method(self.method).requires
        inputs: dict[str, Any] = {}
        if "meta_tables" in requires:
            if not self.meta:
                raise MetaPB2Error(
                    f"method {self.method!r} needs meta-data: pass --meta DIR (built by 'metapb2 meta') "
                    "or --meta CATALOG.duckdb[:SQL condition on its runs table]"
                )
            inputs["meta_tables"] = load_meta(self.meta, self.task, space=self.space())
            inputs["target_task"] = self.task
        if "portfolio" in requires:
            if not self.portfolio:
                raise MetaPB2Error(
                    f"method {self.method!r} needs a portfolio: pass --portfolio DIR_OR_JSON "
                    "(built by 'metapb2 portfolio')"
                )
            inputs["portfolio"] = load_portfolio(self.portfolio, self.task)
        return inputs


@dataclass
class RunRecord:
    request: RunRequest
    points: pd.DataFrame
    perturbations: pd.DataFrame
    meta: dict

    @property
    def best_final_eval(self) -> float:
        last = self.points[self.points["eval_is_fresh"]]
        return float(last[last["timesteps"] == last["timesteps"].max()]["eval_return"].max())


def execute_run(req: RunRequest, progress: ProgressFn | None = None) -> RunRecord:
    budget, space = req.check()
    task = get_task(req.task)
    quirks = Quirks.from_flag(req.faithful)
    inputs = req.method_inputs()
    method = get_method(req.method)(space, np.random.default_rng([req.seed, 2]), quirks, **inputs)
    result = run_population(task, method, budget, req.seed, space, task.env_params(quirks), progress)

    ident = {
        "run_id": req.run_id,
        "task": task.key,
        "env": task.env_name,
        "context": task.context,
        "method": req.method,
        "seed": req.seed,
        "budget": budget.name,
    }
    points = result.points.assign(**ident)
    points = points[list(ident) + [c for c in result.points.columns]]
    perturbations = pd.DataFrame(
        [
            {
                "run_id": req.run_id,
                "round": p.round,
                "timesteps": p.time,
                "member": p.member,
                "cloned_from": p.cloned_from,
                "member_score": p.member_score,
                "clone_score": p.clone_score,
                **{f"old_{k}": v for k, v in p.old_config.items()},
                **{f"new_{k}": v for k, v in p.new_config.items()},
                "diagnostics": json.dumps(p.diagnostics, sort_keys=True),
            }
            for p in result.perturbations
        ],
        columns=perturbation_columns(space),
    ).astype(perturbation_dtypes(space))
    meta = {
        **ident,
        "faithful": req.faithful,
        "budget_sizes": budget.to_dict(),
        "bounds": {p.name: [p.low, p.high, p.log] for p in space.params},
        "wall_seconds": result.wall_seconds,
        "compile_seconds": result.compile_seconds,
        "train_env_steps": result.train_env_steps,
        "env_steps_per_second": result.train_env_steps / result.wall_seconds,
        "final_configs": result.final_configs,
        "meta_source": req.meta,
        "meta_tasks": {t: sorted(set(df["run_id"])) for t, df in inputs.get("meta_tables", {}).items()},
        "portfolio_source": req.portfolio,
        "portfolio": inputs.get("portfolio"),
        "code_version": __version__,
        "jax_version": jax.__version__,
    }
    record = RunRecord(req, points, perturbations, meta)
    meta["best_final_eval_return"] = record.best_final_eval
    return record


def perturbation_columns(space: SearchSpace) -> list[str]:
    return (
        ["run_id", "round", "timesteps", "member", "cloned_from", "member_score", "clone_score"]
        + [f"old_{n}" for n in space.names]
        + [f"new_{n}" for n in space.names]
        + ["diagnostics"]
    )


def perturbation_dtypes(space: SearchSpace) -> dict[str, str]:
    """Fixed column types, so an empty table (random search) has the same schema as any other."""
    ints = {"round", "timesteps", "member", "cloned_from"}
    strings = {"run_id", "diagnostics"}
    return {
        c: "int64" if c in ints else "str" if c in strings else "float64" for c in perturbation_columns(space)
    }


def ensure_writable_dir(path: str | Path) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MetaPB2Error(f"cannot create output directory {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK):
        raise MetaPB2Error(f"output directory {out} is not writable")
    return out


def write_record(record: RunRecord, out_dir: str | Path) -> dict[str, Path]:
    """Write ``<run_id>.points.parquet``, ``.perturbations.parquet`` and ``.json`` atomically:
    each file appears whole or not at all, and a re-run replaces the previous files."""
    out = ensure_writable_dir(out_dir)
    rid = record.request.run_id
    paths = {
        "points": out / f"{rid}.points.parquet",
        "perturbations": out / f"{rid}.perturbations.parquet",
        "meta": out / f"{rid}.json",
    }
    writers = {
        "points": lambda p: record.points.to_parquet(p, index=False),
        "perturbations": lambda p: record.perturbations.to_parquet(p, index=False),
        "meta": lambda p: Path(p).write_text(json.dumps(record.meta, indent=2, default=float)),
    }
    # All three are written to temporary files first and renamed only when all succeeded, so a
    # failed write leaves the previous record intact.
    tmps = {name: path.with_name(f".{path.name}.{os.getpid()}.tmp") for name, path in paths.items()}
    try:
        for name, tmp in tmps.items():
            writers[name](tmp)
        for name, tmp in tmps.items():
            os.replace(tmp, paths[name])
    except OSError as e:
        raise MetaPB2Error(f"cannot write the record of {rid} in {out}: {e.strerror}") from None
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    return paths


def read_record(out_dir: str | Path, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    out = Path(out_dir)
    return (
        pd.read_parquet(out / f"{run_id}.points.parquet"),
        pd.read_parquet(out / f"{run_id}.perturbations.parquet"),
        json.loads((out / f"{run_id}.json").read_text()),
    )
