"""A re-run that reproduced the record already on disk keeps that record.

A partition is re-run when its lineage says it is stale (an input re-materialised, other code),
yet the request, and so the run id, may be unchanged: an input whose content did not change, code
certified or not to compute the same. When the new run's points and perturbations equal the
record's value for value (timings aside, which no two runs share), the record on disk stands:
its files, and every report that cites them by digest, stay valid, and the lineage records that
the current code re-made the partition. Any difference, and the new record replaces the old."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from metapb2_core.errors import MetaPB2Error
from metapb2_core.store.records import RunRecord, read_record

TIMING = ("wall_seconds", "total_run_time")  # seconds of this run, never part of its result


def same_result(a: RunRecord, b: RunRecord) -> bool:
    """Points (timings aside), perturbations and final configurations equal value for value."""
    if a.meta.get("final_configs") != b.meta.get("final_configs"):
        return False
    try:
        for x, y in ((a.points, b.points), (a.perturbations, b.perturbations)):
            drop = [c for c in TIMING if c in x.columns]
            pd.testing.assert_frame_equal(
                x.drop(columns=drop).reset_index(drop=True),
                y.drop(columns=[c for c in TIMING if c in y.columns]).reset_index(drop=True),
                check_dtype=False,
                check_exact=True,
            )
    except AssertionError:
        return False
    return True


def reproduced(runs: str | Path, record: RunRecord) -> RunRecord | None:
    """The passed record of ``record``'s run id in ``runs`` if ``record`` reproduces it (the same
    role, the same result); None where there is none, it differs, failed or cannot be read."""
    if not (Path(runs) / f"{record.run_id}.json").exists():
        return None
    try:
        old = read_record(runs, record.run_id)
    except MetaPB2Error:  # damaged: the new record replaces it
        return None
    if old.meta.get("status") != "passed" or old.meta.get("role") != record.meta.get("role"):
        return None
    return old if same_result(old, record) else None
