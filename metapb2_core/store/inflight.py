"""Runs in flight, carried to another machine: their checkpoints copied out of ``runs/`` (where a
run writes them after every interval, git-ignored) into ``<root>/inflight/`` (committed with the
study root, bounded in size), and back in when a study starts where they are not.

A long study stopped midway (a session's end, a node given back) loses nothing but the interval in
progress: ``export_inflight`` keeps the newest checkpoint of each unfinished run, within
``max_bytes`` (the runs furthest along first; one that does not fit is named, not half-written),
and ``import_inflight`` puts each back where its run resumes from it, unless the run has finished
(its record is there) or a checkpoint at least as far along is already in ``runs/``. A copy whose
run has a record is removed, so ``inflight/`` holds only what is still to be finished.
"""

from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from metapb2_core.store.files import temp_path
from metapb2_core.store.records import record_paths

INFLIGHT_DIR = "inflight"
SUFFIX = ".checkpoint"
MAX_BYTES = 64 * 2**20  # two runs of the classic study's networks (6.5 MB each) fit many times over


@dataclass
class Carried:
    """What an export or import did, by run id."""

    copied: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)  # a record exists: the copy is removed
    behind: list[str] = field(default_factory=list)  # the other side is as far along: left
    too_large: list[str] = field(default_factory=list)
    bytes: int = 0

    def describe(self) -> str:
        parts = [f"{len(self.copied)} checkpoint(s) carried ({self.bytes / 2**20:.1f} MiB)"]
        if self.finished:
            parts.append(f"{len(self.finished)} of finished runs removed")
        if self.behind:
            parts.append(f"{len(self.behind)} not newer, left")
        if self.too_large:
            parts.append(f"over the size bound, not carried: {', '.join(self.too_large)}")
        return "; ".join(parts)


def intervals_done(path: Path) -> int:
    """How many intervals the checkpoint at ``path`` holds (-1: unreadable)."""
    try:
        with open(path, "rb") as f:
            return int(pickle.load(f).get("intervals_done", -1))
    except Exception:  # a truncated or foreign file: unpickling raises many types
        return -1


def _run_id(path: Path) -> str:
    return path.name.removesuffix(SUFFIX)


def _finished(runs: Path, run_id: str) -> bool:
    return record_paths(runs, run_id)["meta"].is_file()


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dst)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def export_inflight(root: str | Path, max_bytes: int = MAX_BYTES) -> Carried:
    """Copy the checkpoints of ``root/runs`` whose run has no record into ``root/inflight``."""
    root = Path(root)
    runs, out = root / "runs", root / INFLIGHT_DIR
    done = Carried()
    for old in sorted(out.glob(f"*{SUFFIX}")):
        if _finished(runs, _run_id(old)):
            old.unlink()
            done.finished.append(_run_id(old))
    found = [(intervals_done(p), p) for p in runs.glob(f"*{SUFFIX}") if not _finished(runs, _run_id(p))]
    for done_intervals, path in sorted(found, key=lambda t: (-t[0], t[1].name)):
        if done_intervals < 0:
            continue
        target = out / path.name
        if target.is_file() and intervals_done(target) >= done_intervals:
            done.behind.append(_run_id(path))
            done.bytes += target.stat().st_size
            continue
        size = path.stat().st_size
        if done.bytes + size > max_bytes:
            done.too_large.append(_run_id(path))
            continue
        _copy(path, target)
        done.copied.append(_run_id(path))
        done.bytes += size
    return done


def import_inflight(root: str | Path) -> Carried:
    """Put each checkpoint of ``root/inflight`` back into ``root/runs`` where its run resumes from
    it: unless the run has a record (the copy is removed) or ``runs/`` holds one as far along."""
    root = Path(root)
    runs = root / "runs"
    done = Carried()
    for path in sorted((root / INFLIGHT_DIR).glob(f"*{SUFFIX}")):
        rid = _run_id(path)
        if _finished(runs, rid):
            path.unlink()
            done.finished.append(rid)
            continue
        target = runs / path.name
        if target.is_file() and intervals_done(target) >= intervals_done(path):
            done.behind.append(rid)
            continue
        _copy(path, target)
        done.copied.append(rid)
        done.bytes += path.stat().st_size
    return done
