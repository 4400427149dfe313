"""Runs in flight carried to another machine (issue 36, item 4): the checkpoints of unfinished runs
copied into the study root's committed ``inflight/`` folder, within a size bound, and put back
where their runs resume from them; nothing of a finished run is carried."""

from __future__ import annotations

import json
import shutil

import numpy as np

from metapb2_core.store import save_checkpoint
from metapb2_core.store.inflight import export_inflight, import_inflight, intervals_done
from metapb2_core.store.records import record_paths


def checkpoint(runs, run_id: str, intervals: int, kib: int = 64) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    weights = np.random.default_rng(intervals).standard_normal(kib * 256).astype(np.float32)
    save_checkpoint(runs / f"{run_id}.checkpoint", {"intervals_done": intervals, "weights": weights})


def committed_part(src, dst) -> None:
    """What a commit of the study root carries: records and inflight/, no runs/*.checkpoint."""
    shutil.copytree(src / "inflight", dst / "inflight")
    shutil.copytree(src / "runs", dst / "runs", ignore=shutil.ignore_patterns("*.checkpoint"))


def test_an_unfinished_run_is_carried_to_another_root_and_resumes_from_the_same_checkpoint(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    checkpoint(a / "runs", "pb2-x-short-s0", 7)
    checkpoint(a / "runs", "pbt-x-short-s0", 3)
    checkpoint(a / "runs", "taf-x-short-s0", 15)
    record_paths(a / "runs", "taf-x-short-s0")["meta"].write_text(json.dumps({"run_id": "taf-x-short-s0"}))
    out = export_inflight(a)
    assert sorted(out.copied) == ["pb2-x-short-s0", "pbt-x-short-s0"]  # taf finished: its record is there
    assert sorted(p.name for p in (a / "inflight").iterdir()) == [
        "pb2-x-short-s0.checkpoint",
        "pbt-x-short-s0.checkpoint",
    ]
    committed_part(a, b)
    back = import_inflight(b)
    assert sorted(back.copied) == ["pb2-x-short-s0", "pbt-x-short-s0"]
    for rid in back.copied:
        assert (b / "runs" / f"{rid}.checkpoint").read_bytes() == (
            a / "runs" / f"{rid}.checkpoint"
        ).read_bytes()
    assert intervals_done(b / "runs" / "pb2-x-short-s0.checkpoint") == 7
    assert not (b / "runs" / "taf-x-short-s0.checkpoint").exists()


def test_a_newer_checkpoint_is_never_replaced_by_an_older_copy_and_a_finished_run_leaves_inflight(tmp_path):
    root = tmp_path / "study"
    checkpoint(root / "runs", "pb2-x-short-s0", 4)
    export_inflight(root)
    checkpoint(root / "runs", "pb2-x-short-s0", 9)  # the run went on after the export
    assert import_inflight(root).behind == ["pb2-x-short-s0"]
    assert intervals_done(root / "runs" / "pb2-x-short-s0.checkpoint") == 9
    assert export_inflight(root).copied == ["pb2-x-short-s0"]  # the newer one replaces the copy
    assert intervals_done(root / "inflight" / "pb2-x-short-s0.checkpoint") == 9
    record_paths(root / "runs", "pb2-x-short-s0")["meta"].write_text("{}")
    assert export_inflight(root).finished == ["pb2-x-short-s0"]
    assert list((root / "inflight").iterdir()) == []


def test_the_size_bound_keeps_the_runs_furthest_along_and_names_the_rest(tmp_path):
    root = tmp_path / "study"
    for rid, intervals in (("a-x-short-s0", 2), ("b-x-short-s0", 12), ("c-x-short-s0", 8)):
        checkpoint(root / "runs", rid, intervals, kib=400)
    size = (root / "runs" / "b-x-short-s0.checkpoint").stat().st_size
    out = export_inflight(root, max_bytes=2 * size + 10)
    assert out.copied == ["b-x-short-s0", "c-x-short-s0"] and out.too_large == ["a-x-short-s0"]
    assert "over the size bound, not carried: a-x-short-s0" in out.describe()
    assert sum(p.stat().st_size for p in (root / "inflight").iterdir()) <= 2 * size + 10
    assert not list((root / "inflight").glob("*.tmp*"))
