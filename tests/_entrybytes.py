"""The bytes of one key of a cache folder, wherever they live: a file or the packed index.

Suites that damage, inspect or snapshot entries use these, so they run the same on
folders of one file per entry and on packed folders (where small entries and every
record are rows of ``.metricache/index.sqlite3``, read and written here with plain
sqlite3, as a damaged disk or a curious user would). A row the index compressed
(its identity marked ``z1:``) is shown decompressed, and bytes written here are
stored plain, so a test damages the bytes metricache put, not their compression.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from metricache._layout import INDEX_KEY
from metricache._squeeze import unsqueeze


def index_rows(folder: Path) -> dict[str, bytes]:
    """Every key of the folder's index with its bytes (empty without an index)."""
    path = folder / INDEX_KEY
    if not path.exists():
        return {}
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT key, data, ident FROM blobs").fetchall()
    finally:
        conn.close()
    return {key: unsqueeze(bytes(data), ident, key)[0] for key, data, ident in rows}


@dataclass(frozen=True)
class Slot:
    """The bytes stored under *key* in cache folder *folder*."""

    folder: Path
    key: str

    @property
    def file(self) -> Path:
        return self.folder / self.key

    def packed(self) -> bool:
        """Whether the index holds this key (and no newer file of it)."""
        return self.key in index_rows(self.folder) and not self.file.exists()

    def read_bytes(self) -> bytes:
        if self.packed():
            return index_rows(self.folder)[self.key]
        return self.file.read_bytes()

    def write_bytes(self, data: bytes) -> None:
        """Replace the bytes in place (a damaged disk: no commit protocol)."""
        if not self.packed():
            self.file.write_bytes(data)
            return
        conn = sqlite3.connect(self.folder / INDEX_KEY)
        try:
            with conn:
                conn.execute(
                    "UPDATE blobs SET data = ?, ident = CASE WHEN substr(ident, 1, 3) = 'z1:'"
                    " THEN substr(ident, 4) ELSE ident END WHERE key = ?",
                    (data, self.key),
                )
        finally:
            conn.close()

    def commit_bytes(self, data: bytes, packed: bool) -> None:
        """Put *data* under the key as a writer's commit would, in the index or a file."""
        if not packed:
            self.file.write_bytes(data)
            return
        conn = sqlite3.connect(self.folder / INDEX_KEY)
        try:
            with conn:
                row = (self.key, data, time.time(), "restored")
                conn.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?)", row)
        finally:
            conn.close()

    def size(self) -> int:
        return len(self.read_bytes())

    def where(self) -> str:
        """How error messages name this key's bytes."""
        if self.packed():
            return f"{self.folder / INDEX_KEY} [{self.key}]"
        return str(self.file)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry key's bytes: files (not locks, not the index's own) and index rows."""
    files = {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and "locks" not in p.parts and not p.name.startswith("index.sqlite3")
    }
    return {**files, **{f"[index] {k}": v for k, v in index_rows(folder).items()}}
