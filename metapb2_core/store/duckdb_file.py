"""The engine under the catalog: one DuckDB file, written by one process at a time. It knows no
table of the platform (``store.catalog`` owns the schema, the readers and the writers).

DuckDB lets one process open a file for writing. Concurrent partitions (a backfill, Ray workers)
therefore serialise on an advisory lock file beside the database (``<db>.lock``, ``flock``): the
kernel releases it when a holder dies, so a killed run never leaves a stale lock. Every write is a
set of ``Replace``s applied in one transaction: the rows a key names are deleted, then the new rows
inserted, so a retried or re-materialised step replaces its rows instead of duplicating them, and a
step killed mid-write leaves the previous rows (DuckDB's WAL rolls back the open transaction).
A process outside the platform holding the file (the duckdb shell, a notebook) is waited for.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from metapb2_core.errors import MetaPB2Error

log = logging.getLogger(__name__)
SAY_WAIT_AFTER_S = 5.0  # a wait for the platform's write lock longer than this is said in the log


class StoreError(MetaPB2Error):
    """The catalog cannot be opened or written; the message names the file and the cause."""


@dataclass(frozen=True)
class Replace:
    """Delete the rows of ``table`` matching ``where`` (column = value), then insert ``rows``."""

    table: str
    where: dict[str, object]
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class Update:
    """Set columns (``values``) of the rows of ``table`` matching ``where`` (column = value)."""

    table: str
    values: dict[str, object]
    where: dict[str, object]


@dataclass(frozen=True)
class Delete:
    """Delete the rows of ``table`` matching a SQL condition (with ``?`` parameters); nothing when
    the table does not exist yet."""

    table: str
    condition: str
    params: tuple = ()


class DuckDBFile:
    def __init__(self, path: str | Path, timeout: float = 300.0):
        self.path = Path(path)
        self.timeout = timeout

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def check(self) -> None:
        """Create the file if needed and prove it is a writable DuckDB database, or raise."""
        self.write([])

    def write(self, changes: list[Replace | Update | Delete]) -> None:
        with self._locked(fcntl.LOCK_EX), self._connect(read_only=False) as con:
            _sql(con, "BEGIN TRANSACTION")
            try:
                for change in changes:
                    _apply(con, change)
                _sql(con, "COMMIT")
            except BaseException:
                _sql(con, "ROLLBACK")
                raise

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        if not self.path.exists():
            raise StoreError(f"DuckDB catalog {self.path} does not exist yet (nothing was materialised)")
        with self._locked(fcntl.LOCK_SH), self._connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

    def tables(self) -> list[str]:
        if not self.path.exists():
            return []
        found = self.query("SELECT table_name FROM information_schema.tables ORDER BY table_name")
        return list(found["table_name"])

    def count(self, table: str, where: dict[str, object] | None = None) -> int:
        if table not in self.tables():
            return 0
        clause, params = _where(where or {})
        return int(self.query(f'SELECT count(*) AS n FROM "{table}"{clause}', params)["n"].iloc[0])

    @contextmanager
    def _locked(self, mode: int) -> Iterator[None]:
        reading = mode == fcntl.LOCK_SH
        if reading and not self.lock_path.exists():  # never written by the platform: no writer to wait for
            yield
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | (0 if reading else os.O_CREAT), 0o644)
        except OSError as e:
            if reading and self.path.is_file():  # a read-only copy: no writer to wait for
                yield
                return
            raise StoreError(
                f"cannot create the DuckDB catalog in {self.path.parent}: {e.strerror}"
            ) from None
        try:
            start = time.monotonic()
            said = False
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = time.monotonic() - start
                    if waited > self.timeout:
                        raise StoreError(
                            f"gave up after {self.timeout:g}s waiting for the lock {self.lock_path} of "
                            f"the DuckDB catalog: {_flock_holders(fd)} holds it"
                        ) from None
                    if not said and waited > SAY_WAIT_AFTER_S:  # a write takes well under a second
                        log.warning(
                            "waiting up to %gs for the lock %s of the DuckDB catalog: %s holds it",
                            self.timeout, self.lock_path, _flock_holders(fd),
                        )  # fmt: skip
                        said = True
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline, waiting = time.monotonic() + self.timeout, False
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as e:
                if "lock" not in str(e).lower():
                    raise StoreError(_explain(self.path, e)) from None
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"gave up after {self.timeout:g}s waiting for the DuckDB catalog {self.path}: "
                        f"{_holder(e)} keeps it open; close it there and run again"
                    ) from None
                if not waiting:  # held by a process outside the platform: wait for it, saying so
                    log.warning(
                        "waiting up to %gs for the DuckDB catalog %s: %s keeps it open (a duckdb "
                        "shell or notebook?)", self.timeout, self.path, _holder(e)
                    )  # fmt: skip
                    waiting = True
                time.sleep(0.2)
            except duckdb.Error as e:
                raise StoreError(_explain(self.path, e)) from None
        try:
            yield con
        except duckdb.Error as e:
            # a block that fails its checksum is found only when a query reads it; a full volume
            # only when a write needs room (the transaction is rolled back: the last commit stays)
            if _damaged(e) or isinstance(e, duckdb.IOException):
                raise StoreError(_explain(self.path, e, "read" if read_only else "write")) from None
            raise
        finally:
            con.close()


def _flock_holders(fd: int) -> str:
    """The processes holding a ``flock`` on the file open as ``fd``, from /proc/locks (Linux)."""
    st = os.fstat(fd)
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        lines = []
    pids = sorted(
        {f[4] for f in (line.split() for line in lines) if len(f) > 5 and f[1] == "FLOCK" and f[5] == dev}
    )
    return f"process {', '.join(pids)} (another writer of the platform)" if pids else "another writer"


def _holder(e: Exception) -> str:
    """Who holds DuckDB's lock, from its message ("Conflicting lock is held in /usr/bin/python3
    (PID 1234) by user root"), or "another process"."""
    found = re.search(r"Conflicting lock is held in (.+?) \(PID (\d+)\)", str(e))
    return f"process {found[2]} ({found[1]})" if found else "another process"


_DAMAGE = ("not a valid duckdb", "corrupt", "magic", "could not read enough bytes", "checksum")


def _damaged(e: Exception) -> bool:
    return any(w in str(e).lower() for w in _DAMAGE)


def _explain(path: Path, e: Exception, doing: str = "open") -> str:
    text = str(e).splitlines()[0]
    if not path.parent.is_dir():
        return f"cannot create the DuckDB catalog {path}: its folder does not exist ({text})"
    if path.exists() and _damaged(e):
        return (
            f"{path} is not a valid DuckDB database (truncated, corrupt or another kind of file); it was "
            f"left untouched: move it away or point the catalog elsewhere ({text})"
        )
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"the DuckDB catalog {path} is not writable ({text})"
    return f"cannot {doing} the DuckDB catalog {path}: {text}"


def _where(where: dict[str, object]) -> tuple[str, list]:
    if not where:
        return "", []
    return " WHERE " + " AND ".join(f'"{c}" = ?' for c in where), list(where.values())


def _sql(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list:
    return con.execute(sql, params or []).fetchall()  # duckdb 2 wants each result consumed


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        _sql(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table])[0][0]
    )


def _apply(con: duckdb.DuckDBPyConnection, change: Replace | Update | Delete) -> None:
    if isinstance(change, Update):
        if _exists(con, change.table):
            sets = ", ".join(f'"{c}" = ?' for c in change.values)
            clause, params = _where(change.where)
            _sql(con, f'UPDATE "{change.table}" SET {sets}{clause}', [*change.values.values(), *params])
        return
    if isinstance(change, Delete):
        if _exists(con, change.table):
            _sql(con, f'DELETE FROM "{change.table}" WHERE {change.condition}', list(change.params))
        return
    table, rows = change.table, change.rows
    exists = _exists(con, table)
    if not exists:
        if rows.columns.empty:
            return
        con.register("_rows", rows)
        _sql(con, f'CREATE TABLE "{table}" AS SELECT * FROM _rows LIMIT 0')
        con.unregister("_rows")
        untyped = _sql(  # columns of an empty object-typed frame: text until a value says otherwise
            con,
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            """AND data_type IN ('NULL', '"NULL"')""",
            [table],
        )
        for (col,) in untyped:
            _sql(con, f'ALTER TABLE "{table}" ALTER COLUMN "{col}" TYPE VARCHAR')
    clause, params = _where(change.where)
    _sql(con, f'DELETE FROM "{table}"{clause}', params)
    if rows.empty:
        return
    have = {
        r[0]
        for r in _sql(con, "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table])
    }
    con.register("_rows", rows)
    for col in rows.columns:
        if col not in have:  # a record with a column this table has not seen yet
            kind = _sql(con, f'SELECT typeof("{col}") FROM _rows LIMIT 1')[0][0]
            _sql(con, f'ALTER TABLE "{table}" ADD COLUMN "{col}" {kind}')
    _sql(con, f'INSERT INTO "{table}" BY NAME SELECT * FROM _rows')
    con.unregister("_rows")
