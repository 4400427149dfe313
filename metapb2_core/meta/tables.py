"""Meta-data: the transitions of finished runs, stored per task, loaded leave-one-task-out.

A meta table holds one row per transition of a run (methods.md §2.2 without the 1000-row cap):
run_id, method, seed, budget, member, time, r_before, the hyperparameters and y. Tables live in
``<meta_dir>/<task>/<run_id>.parquet``, so they can be selected by task, method and seed.

One builder, ``meta_table_from_record``, makes every meta table: the ``metapb2 meta`` directory,
the study's ``meta/`` folder and the meta methods' reads from the catalog (``sources``). How it
groups transitions is the run's mode (``Quirks.transitions_by_values``): by segment (between
exploits) by default, by exact hyperparameter values in the faithful mode (the original's Q39).

Each table has a manifest beside it (``<run_id>.json``: its grouping, rows, bytes and SHA-256);
a table whose bytes do not match, or that has no manifest, is refused, and so is a directory
grouped otherwise than the run that reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from metapb2_core import bandit
from metapb2_core.errors import MetaPB2Error
from metapb2_core.space import SearchSpace
from metapb2_core.store.files import check_writable_dir, ensure_writable_dir, file_sha256
from metapb2_core.store.records import read_record, record_ids

GROUPING = {False: "segment", True: "values"}  # by_values → the manifest's word


class MetaLeakError(MetaPB2Error):
    """The target task's own data would reach a method that must not see it."""


def _values(column: pd.Series, kind: str) -> np.ndarray:
    """A record's hyperparameter column as the data table holds it: floats as float64 (the
    paper's space, as ever), integers and choices as they are."""
    return column.to_numpy(dtype=np.float64) if kind == "float" else column.to_numpy()


def _value(value, kind: str):
    if kind == "float":
        return float(value)
    return value.item() if isinstance(value, np.generic) else value


def data_table_from_record(
    points: pd.DataFrame, perturbations: pd.DataFrame, space: SearchSpace
) -> pd.DataFrame:
    """The data table a PB2-family method held at the end of a finished run, rebuilt from its record:
    a record row per member and evaluation, the explore rows the method recorded per perturbation,
    segments by exploit (``bandit.data_table``, the builder the methods use live)."""
    names = space.names
    fresh = points[points["eval_is_fresh"].astype(bool)]
    records = pd.DataFrame(
        {
            "member": fresh["member"].to_numpy(),
            "time": fresh["timesteps"].to_numpy(),
            **{p.name: _values(fresh[p.name], p.kind) for p in space.params},
            "reward": fresh["eval_return"].to_numpy(dtype=np.float64),
        }
    )
    exploit_times: dict[int, list[int]] = {}
    explore_rows = []
    for p in perturbations.to_dict("records"):
        times = exploit_times.setdefault(int(p["member"]), [])
        times.append(int(p["timesteps"]))
        if np.isfinite(p["explore_time"]):
            explore_rows.append(
                {
                    "member": int(p["member"]),
                    "time": int(p["explore_time"]),
                    **{q.name: _value(p[f"new_{q.name}"], q.kind) for q in space.params},
                    "reward": float(p["explore_reward"]),
                    "segment": len(times),
                }
            )
    return bandit.data_table(records, explore_rows, exploit_times, names)


def meta_table_from_record(
    points: pd.DataFrame, perturbations: pd.DataFrame, meta: dict, space: SearchSpace, by_values: bool = False
) -> pd.DataFrame:
    trans = bandit.transitions(
        data_table_from_record(points, perturbations, space), space.names, by_values, None
    )
    ident = {k: meta[k] for k in ("run_id", "task", "method", "seed", "budget")}
    return trans.assign(**ident)[[*ident, "member", "time", "r_before", *space.names, "y"]]


def write_meta_table(meta_dir: str | Path, table: pd.DataFrame, by_values: bool = False) -> Path:
    """Write ``table`` and then its manifest (a reader ignores a table without one)."""
    task, run_id = table["task"].iloc[0], table["run_id"].iloc[0]
    out = ensure_writable_dir(Path(meta_dir) / task)
    path = out / f"{run_id}.parquet"
    tmp = path.with_suffix(".tmp")
    table.to_parquet(tmp, index=False)
    manifest = {
        "run_id": run_id,
        "task": task,
        "grouping": GROUPING[by_values],
        "rows": len(table),
        "bytes": tmp.stat().st_size,
        "sha256": file_sha256(tmp),
    }
    manifest_path(path).unlink(missing_ok=True)  # from here on the old table no longer reads as complete
    tmp.replace(path)
    tmp_manifest = path.with_suffix(".json.tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp_manifest.replace(manifest_path(path))
    return path


def manifest_path(table: Path) -> Path:
    return table.with_suffix(".json")


def build_meta_dir(
    runs_dir: str | Path,
    meta_dir: str | Path,
    space: SearchSpace | None = None,
    method: str = "pb2",
    by_values: bool = False,
    role: str | None = None,
) -> list[Path]:
    """Turn every record of ``method`` (and ``role``, e.g. a study's ``meta`` runs) in ``runs_dir``
    into a meta table in ``meta_dir``; a record that failed its checks is left out (it stays on
    disk, marked). ``space``: the hyperparameters to read; None reads each record's own declared
    space (its ``bounds``: a Tune experiment's or ``--bounds`` run's as well as the paper's)."""
    runs = Path(runs_dir)
    if not runs.is_dir():
        raise MetaPB2Error(f"runs folder {runs} does not exist or is not a folder")
    check_writable_dir(meta_dir)  # before reading anything: a bad --out fails at once
    written = []
    for rid in record_ids(runs):
        record = read_record(runs, rid)
        if record.meta.get("method") != method or record.meta.get("status") == "failed":
            continue
        if role is not None and record.meta.get("role") != role:
            continue
        own = space or record_space(record.meta, rid)
        table = meta_table_from_record(record.points, record.perturbations, record.meta, own, by_values)
        if len(table):
            written.append(write_meta_table(meta_dir, table, by_values))
    if not written:
        which = f"{method!r}" + (f" {role!r}-role" if role else "")
        raise MetaPB2Error(f"no {which} run records with transitions in {runs} to build meta-data from")
    return written


def record_space(meta: dict, run_id: str) -> SearchSpace:
    """The search space a record declares (its ``bounds``), or one line naming the record."""
    if "bounds" not in meta:
        raise MetaPB2Error(f"record {run_id} declares no search space ('bounds' missing from its meta)")
    try:
        return SearchSpace.from_dict(meta["bounds"])
    except MetaPB2Error as e:
        raise MetaPB2Error(f"record {run_id}: {e}") from None


def available_tasks(meta_dir: str | Path) -> list[str]:
    root = Path(meta_dir)
    if not root.is_dir():
        raise MetaPB2Error(f"meta-data directory {root} does not exist (build it with 'metapb2 meta')")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.parquet")))


def load_meta_tables(
    meta_dir: str | Path,
    target_task: str,
    method: str | None = "pb2",
    seeds: list[int] | None = None,
    budget: str | None = None,
    by_values: bool | None = None,
) -> dict[str, pd.DataFrame]:
    """Meta tables of every task but the target (leave-one-task-out, Q22: the same environment
    under other gravities stays in), pooled over runs and sorted by time, in task-name order.
    ``by_values``: the grouping the reading run needs (None: either, as built)."""
    tables = {}
    for task in available_tasks(meta_dir):
        if task == target_task:
            continue
        parts = [_read_table(p, by_values) for p in sorted((Path(meta_dir) / task).glob("*.parquet"))]
        df = pd.concat(parts, ignore_index=True)
        if method is not None:
            df = df[df["method"] == method]
        if seeds is not None:
            df = df[df["seed"].isin(seeds)]
        if budget is not None:
            df = df[df["budget"] == budget]
        if len(df):
            tables[task] = df.sort_values("time", kind="stable").reset_index(drop=True)
    if not tables:
        raise MetaPB2Error(
            f"no meta-data for target {target_task!r} in {meta_dir} "
            f"(method={method}, seeds={seeds}, budget={budget}; the target's own task is excluded)"
        )
    check_no_leak(tables, target_task)
    return tables


def _read_table(path: Path, by_values: bool | None = None) -> pd.DataFrame:
    """A table checked against its manifest: present, the same bytes, the grouping wanted."""
    mpath = manifest_path(path)
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise MetaPB2Error(
            f"meta-data table {path} has no manifest {mpath.name} (written before tables were "
            "checksummed, or its writer was killed): rebuild the directory with 'metapb2 meta'"
        ) from None
    except (OSError, json.JSONDecodeError) as e:
        raise MetaPB2Error(f"meta-data manifest {mpath} is unreadable: {e}") from None
    if path.stat().st_size != manifest.get("bytes") or file_sha256(path) != manifest.get("sha256"):
        raise MetaPB2Error(
            f"meta-data table {path} does not match its manifest (truncated, replaced or damaged)"
        )
    if by_values is not None and manifest.get("grouping") != GROUPING[by_values]:
        need = "'metapb2 meta --faithful'" if by_values else "'metapb2 meta' without --faithful"
        raise MetaPB2Error(
            f"meta-data table {path} groups transitions by {manifest.get('grouping')}, but this run "
            f"groups them by {GROUPING[by_values]} (its mode); rebuild the directory with {need}"
        )
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a truncated or foreign file
        raise MetaPB2Error(
            f"meta-data table {path} is not a readable Parquet file ({str(e).splitlines()[0]})"
        ) from None


def check_no_leak(tables: dict[str, pd.DataFrame], target_task: str) -> None:
    leaked = [name for name, t in tables.items() if name == target_task or (t["task"] == target_task).any()]
    if leaked:
        raise MetaLeakError(
            f"meta-data for target task {target_task!r} contains that task's own runs (in {leaked}); "
            "leave-one-task-out forbids it"
        )
