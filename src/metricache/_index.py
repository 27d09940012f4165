"""The packed home's index: one SQLite file per folder holding small keys and their bytes.

A key-value table (``key``, ``data``, ``stamp`` = commit time, ``ident`` = the
bytes' identity) in WAL mode: readers never wait for a writer, a writer waits at
most :data:`BUSY_SECONDS` for another. Each thread of each process has its own
connection, opened lazily and reopened after a fork (a connection carried across
``fork`` is never used nor closed in the child: closing it would drop the child's
own locks on the file) and whenever the file at the index's path is another file
than the one open (a damaged index moved aside by another process).

A damaged index (SQLite reports ``SQLITE_CORRUPT`` or ``SQLITE_NOTADB``) is moved
into quarantine and answered by ``CorruptEntryError``: the next write starts a
fresh index, and only the small entries it held are computed again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ._squeeze import squeeze, unsqueeze
from .exceptions import CorruptEntryError

__all__ = ["BUSY_SECONDS", "Index", "Row"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: How long a writer waits for another process's transaction (seconds).
BUSY_SECONDS = 120.0
#: ``(data, stamp, ident)`` of one key.
Row = tuple[bytes, float, str]
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, data BLOB NOT NULL,"
    " stamp REAL NOT NULL, ident TEXT NOT NULL)"
)
_DAMAGED = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
#: Reads within this many seconds of the last check trust that the index file is the
#: one open (a write always checks): a stat per read would cost as much as the query.
_RECHECK = 0.5
# Connections inherited over fork: kept referenced so they are never closed (see above).
_FORSAKEN: list[sqlite3.Connection] = []


class Index:
    """The index file at *path*; *quarantine* moves a damaged one aside, returning where."""

    def __init__(self, path: str, durable: bool, quarantine: Callable[[str], str]) -> None:
        self.path, self.durable, self._quarantine = path, durable, quarantine
        self._local = threading.local()

    # -- connections -------------------------------------------------------------

    def _conn(self, create: bool) -> sqlite3.Connection | None:
        """This thread's connection to the current index file (None: none exists)."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.depth:
            return conn  # inside a transaction: keep its connection
        now = time.monotonic()
        if conn is not None and not create and now < local.checked + _RECHECK:
            return conn  # a read soon after the last check: the file is the same
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            ino = None
        if conn is not None and local.pid == os.getpid() and local.ino == ino:
            local.checked = now
            return conn
        if conn is not None:
            if local.pid != os.getpid():
                _FORSAKEN.append(conn)
            else:
                conn.close()
            local.conn = None
        if ino is None and not create:
            return None
        conn = self._open()
        local.conn, local.pid, local.ino, local.depth = conn, os.getpid(), ino, 0
        local.checked = now
        if ino is None:
            local.ino = os.stat(self.path).st_ino
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
        try:
            self._set_up(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _set_up(self, conn: sqlite3.Connection) -> None:
        """WAL mode, the sync level and the table, waiting for another process at it.

        Switching a new file to WAL (or creating the table) while another process
        does the same is reported "locked" at once, without SQLite's busy wait.
        """
        deadline = time.monotonic() + BUSY_SECONDS
        pause = 0.001
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'NORMAL'}")
                conn.execute(_SCHEMA)
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _run(self, create: bool, default: T, op: Callable[[sqlite3.Connection], T]) -> T:
        """*op* on this thread's connection; *default* when no index exists."""
        try:
            conn = self._conn(create)
            return default if conn is None else op(conn)
        except sqlite3.DatabaseError as err:
            raise self._translate(err) from None

    def _translate(self, err: sqlite3.DatabaseError) -> Exception:
        """A SQLite error as metricache reports it; a damaged index is moved aside."""
        if getattr(err, "sqlite_errorcode", None) not in _DAMAGED:
            return OSError(f"{self.path}: {err}")
        self._drop_connection()
        try:
            where = self._quarantine(self.path)
        except OSError:
            where = "quarantine (moved by another process)"
        logger.warning("%s is damaged (%s): moved to %s", self.path, err, where)
        return CorruptEntryError(
            f"{self.path} is damaged ({err}); moved to {where}: its entries are computed again"
        )

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- transactions --------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction around the block (nested blocks join the outer one)."""
        local = self._local
        if getattr(local, "depth", 0) > 0:
            local.depth += 1
            try:
                yield
            finally:
                local.depth -= 1
            return
        conn = self._run(True, None, lambda c: c)
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as err:
            raise self._translate(err) from None
        local.depth = 1
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as err:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise self._translate(err) from None
        finally:
            local.depth = 0

    # -- keys ------------------------------------------------------------------------

    def get(self, key: str, raw: bool = False) -> Row | None:
        """The row of *key*, or None; *raw*: its bytes as stored (compressed or not)."""

        def op(c: sqlite3.Connection) -> Row | None:
            found: Any = c.execute(
                "SELECT data, stamp, ident FROM blobs WHERE key = ?", (key,)
            ).fetchone()
            if found is None:
                return None
            if raw:
                return bytes(found[0]), found[1], found[2]
            return self._row(key, found[0], found[1], found[2])

        return self._run(False, None, op)

    def get_many(self, keys: list[str]) -> dict[str, Row]:
        """The rows of those of *keys* that have one, read in one query (one snapshot)."""
        if not keys:
            return {}
        sql = (
            "SELECT key, data, stamp, ident FROM blobs"
            f" WHERE key IN ({', '.join('?' * len(keys))})"
        )

        def op(c: sqlite3.Connection) -> dict[str, Row]:
            return {r[0]: self._row(*r) for r in c.execute(sql, keys)}

        return self._run(False, {}, op)

    def _listed(self, key: str, data: bytes, ident: str) -> bytes:
        """A listed row's bytes; a damaged one as stored (its decoding then fails: listed
        as damaged, and the listing goes on)."""
        try:
            return self._row(key, data, 0.0, ident)[0]
        except CorruptEntryError:
            return bytes(data)

    def _row(self, key: str, data: bytes, stamp: float, ident: str) -> Row:
        """A row as it was put (decompressed); a damaged one is ``CorruptEntryError``."""
        value, ident = unsqueeze(bytes(data), ident, f"{self.path} [{key}]")
        return value, stamp, ident

    def has(self, key: str) -> bool:
        """Whether *key* has a row."""
        sql = "SELECT 1 FROM blobs WHERE key = ?"
        return self._run(False, False, lambda c: c.execute(sql, (key,)).fetchone() is not None)

    def present(self, keys: list[str]) -> set[str]:
        """Which of *keys* have a row (one query)."""
        if not keys:
            return set()
        sql = f"SELECT key FROM blobs WHERE key IN ({', '.join('?' * len(keys))})"
        return self._run(False, set(), lambda c: {r[0] for r in c.execute(sql, keys)})

    def put(self, key: str, data: bytes | memoryview, ident: str) -> float:
        """Store *data* under *key* (in the open transaction, if any); return its stamp.

        Compressed when that pays (see :mod:`metricache._squeeze`); reads undo it.
        """
        stamp = time.time()
        stored, ident = squeeze(data, ident)
        self._run(
            True,
            None,
            lambda c: c.execute(
                "INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?)", (key, stored, stamp, ident)
            ),
        )
        return stamp

    def delete(self, key: str) -> bool:
        """Remove *key*; whether it was there."""
        return self._run(
            False,
            False,
            lambda c: c.execute("DELETE FROM blobs WHERE key = ?", (key,)).rowcount > 0,
        )

    def children(self, prefix: str) -> list[str]:
        """Keys directly inside folder *prefix* (``""``: the root), relative to it."""
        if not prefix:
            sql, args = "SELECT key FROM blobs WHERE instr(key, '/') = 0", ()
            return self._run(False, [], lambda c: [r[0] for r in c.execute(sql, args)])
        start = len(prefix) + 1
        rows = self.scan(prefix, with_data=False)
        return [k[start:] for k, _ in rows if "/" not in k[start:]]

    def scan(self, prefix: str, with_data: bool = True) -> list[tuple[str, bytes]]:
        """``(key, data)`` of every key under folder *prefix* (data empty unless asked)."""
        low, high = prefix + "/", prefix + "0"  # "0" sorts right after "/"
        if not with_data:
            sql = "SELECT key, x'' FROM blobs WHERE key >= ? AND key < ? ORDER BY key"
            return self._run(False, [], lambda c: c.execute(sql, (low, high)).fetchall())
        sql = "SELECT key, data, ident FROM blobs WHERE key >= ? AND key < ? ORDER BY key"
        return self._run(
            False, [], lambda c: [(r[0], self._listed(*r)) for r in c.execute(sql, (low, high))]
        )

    def iter_scan(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        """``(key, data)`` under folder *prefix*, streamed (a listing of a million keys)."""
        conn = self._run(False, None, lambda c: c)
        if conn is None:
            return
        sql = "SELECT key, data, ident FROM blobs WHERE key >= ? AND key < ? ORDER BY key"
        try:
            cursor = conn.execute(sql, (prefix + "/", prefix + "0"))
            while rows := cursor.fetchmany(4096):
                for row in rows:
                    yield row[0], self._listed(*row)
        except sqlite3.DatabaseError as err:
            raise self._translate(err) from None

    def folders(self, prefix: str) -> list[str]:
        """Names of the folders directly inside *prefix* holding keys (a skip scan)."""
        if not prefix:
            sql = (
                "SELECT DISTINCT substr(key, 1, instr(key, '/') - 1) FROM blobs"
                " WHERE instr(key, '/')"
            )
            return self._run(False, [], lambda c: [r[0] for r in c.execute(sql)])
        base, high = prefix + "/", prefix + "0"
        sql = "SELECT key FROM blobs WHERE key >= ? AND key < ? ORDER BY key LIMIT 1"

        def op(c: sqlite3.Connection) -> list[str]:
            found: list[str] = []
            low = base
            while True:
                row = c.execute(sql, (low, high)).fetchone()
                if row is None:
                    return found
                rest = row[0][len(base) :]
                if "/" in rest:
                    name = rest.split("/", 1)[0]
                    found.append(name)
                    low = f"{base}{name}0"
                else:
                    low = row[0] + "\x00"

        return self._run(False, [], op)
