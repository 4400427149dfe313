"""Run records: the files of one population run, keyed by its run id.

A record in a folder is ``<run_id>.points.parquet`` (one row per member and training iteration),
``<run_id>.perturbations.parquet`` (one row per exploit) and ``<run_id>.json``, the manifest: the
run's sizes, bounds, timings and lineage, plus the size and SHA-256 digest of both Parquet files.
The manifest is written last, so a record is complete exactly when its manifest exists and both
files match it: a writer killed between two files never leaves a record that reads as complete,
and a re-write replaces the three files. Temporary files of a killed writer are swept by the next
write into the folder. The manifest is strict JSON (a non-finite number is ``null``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from metapb2_core.errors import MetaPB2Error
from metapb2_core.rounds import Perturbation
from metapb2_core.store.files import ensure_writable_dir, file_sha256, sweep_temp_files, temp_path

# Columns naming the run on every point row, in this order, before the loop's own columns.
POINT_IDENTITY = ["run_id", "task", "env", "context", "method", "seed", "budget"]
PARQUET_PARTS = ("points", "perturbations")
# What every reader of a manifest takes for granted (the catalog's runs row, the checks, the report):
# a manifest without one is refused by name instead of failing later with a KeyError.
MANIFEST_FIELDS: dict[str, type] = {
    "run_id": str,
    "task": str,
    "method": str,
    "seed": int,
    "budget": str,
    "budget_sizes": dict,
}
_KIND_WORDS = {str: "a string", int: "an integer", dict: "a mapping"}


class RecordError(MetaPB2Error):
    """A record that is incomplete, damaged or absent; the message names the file."""


@dataclass
class RunRecord:
    run_id: str
    points: pd.DataFrame
    perturbations: pd.DataFrame
    meta: dict

    @property
    def best_final_eval(self) -> float:
        last = self.points[self.points["eval_is_fresh"].astype(bool)]
        return float(last[last["timesteps"] == last["timesteps"].max()]["eval_return"].max())


def perturbation_columns(names: list[str]) -> list[str]:
    return (
        ["run_id", "round", "timesteps", "member", "cloned_from", "member_score", "clone_score"]
        + [f"old_{n}" for n in names]
        + [f"new_{n}" for n in names]
        + ["explore_time", "explore_reward", "diagnostics"]
    )


def perturbation_dtypes(names: list[str], kinds: dict[str, str] | None = None) -> dict[str, str]:
    """Fixed column types, so an empty table (random search) has the same schema as any other;
    ``kinds`` gives a hyperparameter's column type (``SearchSpace.column_dtypes``), float64 else."""
    ints = {"round", "timesteps", "member", "cloned_from"}
    strings = {"run_id", "diagnostics"}
    kinds = kinds or {}
    hyper = {f"{side}_{n}": kinds.get(n, "float64") for n in names for side in ("old", "new")}
    return {
        c: hyper.get(c) or ("int64" if c in ints else "str" if c in strings else "float64")
        for c in perturbation_columns(names)
    }


def perturbation_table(
    run_id: str, perturbations: list[Perturbation], names: list[str], kinds: dict[str, str] | None = None
) -> pd.DataFrame:
    """The perturbations table of a record: one row per exploit, in the order they were made."""
    return pd.DataFrame(
        [
            {
                "run_id": run_id,
                "round": p.round,
                "timesteps": p.time,
                "member": p.member,
                "cloned_from": p.cloned_from,
                "member_score": p.member_score,
                "clone_score": p.clone_score,
                **{f"old_{k}": p.old_config[k] for k in names},
                **{f"new_{k}": p.new_config[k] for k in names},
                "explore_time": p.explore_time,
                "explore_reward": p.explore_reward,
                "diagnostics": json.dumps(p.diagnostics, sort_keys=True),
            }
            for p in perturbations
        ],
        columns=perturbation_columns(names),
    ).astype(perturbation_dtypes(names, kinds))


def record_paths(out_dir: str | Path, run_id: str) -> dict[str, Path]:
    out = Path(out_dir)
    return {
        "points": out / f"{run_id}.points.parquet",
        "perturbations": out / f"{run_id}.perturbations.parquet",
        "meta": out / f"{run_id}.json",
    }


def strict_json(obj: Any) -> Any:
    """``obj`` with numpy scalars made plain and non-finite floats made None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps_strict(obj: Any, **kw: Any) -> str:
    return json.dumps(strict_json(obj), allow_nan=False, **kw)


def write_record(record: RunRecord, out_dir: str | Path) -> dict[str, Path]:
    """Write the record's two Parquet files, then its manifest; each file is written to a temporary
    name and renamed into place, and the manifest's rename is what makes the record complete."""
    out = ensure_writable_dir(out_dir)
    sweep_temp_files(out)
    rid = record.run_id
    paths = record_paths(out, rid)
    tmps = {name: temp_path(p) for name, p in paths.items()}
    frames = {"points": record.points, "perturbations": record.perturbations}
    try:
        files = {}
        for name, frame in frames.items():
            frame.to_parquet(tmps[name], index=False)
            files[name] = {
                "file": paths[name].name,
                "bytes": tmps[name].stat().st_size,
                "sha256": file_sha256(tmps[name]),
            }
        manifest = {**record.meta, "run_id": rid, "record_files": files}
        tmps["meta"].write_text(dumps_strict(manifest, indent=2))
        paths["meta"].unlink(missing_ok=True)  # from here on the old record no longer reads as complete
        for name in PARQUET_PARTS:
            os.replace(tmps[name], paths[name])
        os.replace(tmps["meta"], paths["meta"])
    except OSError as e:
        raise MetaPB2Error(f"cannot write the record of {rid} in {out}: {e.strerror or e}") from None
    finally:
        for tmp in tmps.values():
            with contextlib.suppress(OSError):  # in a folder made immutable even this fails
                tmp.unlink(missing_ok=True)
    return paths


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"run record manifest {path} is unreadable: {e}") from None
    if not isinstance(manifest, dict) or "record_files" not in manifest:
        raise RecordError(f"{path} is not a run record manifest (no 'record_files')")
    missing = [k for k in MANIFEST_FIELDS if k not in manifest]
    if missing:
        raise RecordError(f"run record manifest {path} lacks {', '.join(map(repr, missing))}")
    for key, kind in MANIFEST_FIELDS.items():
        value = manifest[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise RecordError(f"run record manifest {path}: {key!r} is {value!r}, not {_KIND_WORDS[kind]}")
    files = manifest["record_files"]
    for part in PARQUET_PARTS:
        entry = files.get(part) if isinstance(files, dict) else None
        if not isinstance(entry, dict) or not {"bytes", "sha256"} <= set(entry):
            raise RecordError(
                f"run record manifest {path}: record_files has no size and digest of its {part} file "
                f"(got {json.dumps(files)[:80]})"
            )
    return manifest


def read_record(out_dir: str | Path, run_id: str) -> RunRecord:
    """The record ``run_id`` in ``out_dir``; raises ``RecordError`` naming the file when it is
    absent, incomplete (a killed writer) or damaged."""
    paths = record_paths(out_dir, run_id)
    if not paths["meta"].is_file():
        raise RecordError(
            f"no complete record {run_id!r} in {out_dir} (its manifest {paths['meta'].name} is absent)"
        )
    meta = read_manifest(paths["meta"])
    files = meta.pop("record_files")
    frames = {}
    for name in PARQUET_PARTS:
        path, want = paths[name], files.get(name, {})
        if not path.is_file():
            raise RecordError(f"record {run_id!r}: {path} is missing")
        if path.stat().st_size != want.get("bytes") or file_sha256(path) != want.get("sha256"):
            raise RecordError(
                f"record {run_id!r}: {path} does not match its manifest (truncated, replaced or damaged)"
            )
        try:
            frames[name] = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise RecordError(f"record {run_id!r}: {path} is not a readable Parquet file ({e})") from None
    return RunRecord(run_id, frames["points"], frames["perturbations"], meta)


def record_ids(out_dir: str | Path) -> list[str]:
    """Run ids of the records in ``out_dir`` that have a manifest, sorted."""
    out = Path(out_dir)
    suffix = ".points.parquet"
    return sorted(
        p.name[: -len(".json")]
        for p in out.glob("*.json")
        if not p.name.startswith(".") and (out / (p.name[: -len(".json")] + suffix)).is_file()
    )


def find_records(root: str | Path) -> list[tuple[Path, str]]:
    """(folder, run id) of every record under ``root``, searched recursively, sorted."""
    root = Path(root)
    folders = sorted({p.parent for p in root.rglob("*.points.parquet")})
    return [(folder, rid) for folder in folders for rid in record_ids(folder)]
