"""The filesystem side of the study store, used by every writer in it: folders checked writable
before any work, temp files named by host and process (so a sweep can tell a dead writer's leftovers
from a live one's), and one atomic write (temp file, fsync, rename) for single-file states."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
from pathlib import Path

from metapb2_core.errors import MetaPB2Error

STALE_TEMP_SECONDS = 24 * 3600  # a temp file this old is swept whoever wrote it (other hosts too)


def ensure_writable_dir(path: str | Path, what: str = "output directory") -> Path:
    """``path`` created if needed and writable, or one line naming it as ``what``. Writable is
    what ``os.access`` says: a read-only volume refuses even root, file modes do not."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise MetaPB2Error(f"{what} {out} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MetaPB2Error(f"cannot create {what} {out}: {e.strerror}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise MetaPB2Error(f"{what} {out} is not writable")
    return out


def check_writable_dir(path: str | Path, what: str = "output directory") -> Path:
    """Refuse, before any work, a folder that could not be written: a file, or a folder whose
    nearest existing parent cannot be written. Creates nothing (``ensure_writable_dir`` does)."""
    out = Path(path)
    if out.exists():
        if not out.is_dir():
            raise MetaPB2Error(f"{what} {out} is a file, not a directory")
        if not os.access(out, os.W_OK | os.X_OK):
            raise MetaPB2Error(f"{what} {out} is not writable")
        return out
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise MetaPB2Error(f"cannot create {what} {out}: {parent} is not a writable directory")
    return out


def temp_path(path: Path) -> Path:
    """Where a writer puts ``path`` before renaming it into place: named by host and process, so
    the sweep can tell a dead writer's leftovers from a live one's."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def sweep_temp_files(out_dir: Path) -> list[Path]:
    """Remove temp files of writers that died: this host's whose process is gone, any host's
    older than a day. Returns what was removed."""
    host, removed = socket.gethostname(), []
    for tmp in out_dir.glob(".*.tmp"):
        parts = tmp.name.rsplit(".", 3)  # .<name>.<host>.<pid>.tmp
        try:
            dead = parts[1] == host and not _alive(int(parts[2]))
            old = time.time() - tmp.stat().st_mtime > STALE_TEMP_SECONDS
        except (IndexError, ValueError, OSError):
            continue
        if dead or old:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` or what it held before, never a part: written to a temp name,
    flushed to disk and renamed over it. An ``OSError`` (a full disk, a folder made read-only or
    immutable) leaves the old file untouched and no temp file where one can be removed."""
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):  # in a folder made immutable even this fails
            tmp.unlink(missing_ok=True)
