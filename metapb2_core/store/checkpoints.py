"""Checkpoints of unfinished runs: ``<run_id>.checkpoint`` next to where the run's record will be.

A checkpoint is one pickle of plain data (numpy arrays, lists, dicts), written to a temporary name,
flushed and renamed into place after every completed interval, so a killed run leaves the last
complete one, and so does a write that fails (a full disk, a folder made read-only or immutable):
the new one never replaces it, and the failure is one ``CheckpointError`` line. The record's writer
removes it once the record is in place.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

from metapb2_core.errors import MetaPB2Error
from metapb2_core.store.files import atomic_write

log = logging.getLogger(__name__)
FORMAT = 1


def checkpoint_path(out_dir: str | Path, run_id: str) -> Path:
    return Path(out_dir) / f"{run_id}.checkpoint"


class CheckpointError(MetaPB2Error):
    """A checkpoint that could not be saved; the previous one, if any, is untouched."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    try:
        atomic_write(path, pickle.dumps({"format": FORMAT, **state}, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError as e:
        raise CheckpointError(f"cannot save the checkpoint {path}: {e.strerror or e}") from None


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none or it cannot be read (said in the log:
    the run then starts afresh, which is always correct, only slower)."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except Exception as e:  # a truncated or foreign file: unpickling raises many types
        log.warning("checkpoint %s is unreadable (%s); starting afresh", path, e)
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        log.warning("checkpoint %s has another format; starting afresh", path)
        return None
    return state


def remove_checkpoint(path: Path) -> None:
    path.unlink(missing_ok=True)
