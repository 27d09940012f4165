"""The packed home: small entries and every record inside one index file per folder.

A :class:`PackedStore` is a local folder whose keys live in two homes: the index
(``.metricache/index.sqlite3``, see :mod:`metricache._index`) for records, markers
and data under :data:`~metricache._layout.PACKED_MAX` bytes, and files for larger
data (so ``np.load("<folder>/<name>.npy")`` still works) and everything else. The
entries protocol above sees one store: a key present in both homes (a folder
shared with a per-file writer, or a crash between a commit and the removal of the
other home's copy) resolves to the copy committed last, the index's on a tie.

A small entry's record and data are committed in one transaction
(:func:`transaction_for`); a large entry's record goes to the index, then its data
file is renamed into place, as in a folder of files. Whether a folder's writes are
packed is recorded once in ``.metricache/layout.json`` (see :mod:`metricache._homes`).
A folder packed since its first write has no legacy files: a data file without a
record there lost its record (with a damaged index) and is "not stored".
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from ._index import Index, Row
from ._layout import (
    INDEX_KEY,
    META_DIR,
    PACKED_MAX,
    QUARANTINE_DIR,
    data_key,
    fits_index,
    old_record_key,
    record_key,
)
from ._safeopen import RECORD_MAX
from ._store import LocalStore, Staged, StatResult
from .exceptions import CorruptEntryError

if TYPE_CHECKING:
    from ._entries import Entries

__all__ = [
    "PackedStore",
    "legacy_files_possible",
    "maybe_present",
    "reading",
    "transaction_for",
]

T = TypeVar("T")


class _Blob(io.BytesIO):
    """The bytes of one index key, open for reading, with their stat."""

    def __init__(self, row: Row) -> None:
        super().__init__(row[0])
        self.stat_result = StatResult(len(row[0]), row[2], row[1])


class _PackedStaged(Staged[T]):
    """Bytes bound for the index, committed (in the open transaction) by :meth:`commit`."""

    def __init__(self, store: PackedStore, key: str, data: bytes, result: T) -> None:
        self._store, self._key, self._data, self.result = store, key, data, result
        self.identity = os.urandom(8).hex()

    def commit(self) -> str | None:
        self._store.put_packed(self._key, self._data, self.identity or "")
        return self.identity

    def discard(self) -> None:
        self._data = b""


class _FileStaged(Staged[T]):
    """A data file's staged write; after its commit, the index's older copy is dropped."""

    def __init__(self, store: PackedStore, key: str, inner: Staged[Any], result: T) -> None:
        self._store, self._key, self._inner, self.result = store, key, inner, result
        self.identity = inner.identity

    def commit(self) -> str | None:
        identity = self._inner.commit()
        self._store.drop_packed(self._key)
        return identity

    def discard(self) -> None:
        self._inner.discard()


class PackedStore(LocalStore):
    """A local folder with a packed home; *packs* says whether this store's writes go there.

    *packs* is called once, before the first write (it settles the folder's
    recorded layout). Reads always look in both homes.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        packs: Callable[[], bool],
        since_empty: Callable[[], bool | None] = lambda: None,
        would_pack: Callable[[], bool] | None = None,
        *,
        durable: bool = False,
        max_packed: int = PACKED_MAX,
    ) -> None:
        super().__init__(root)
        self.index_path = self._base + INDEX_KEY
        self.index = Index(self.index_path, durable, self._quarantine_index)
        self._settle, self.max_packed = packs, max_packed
        self._packs: bool | None = None
        self._would_pack = would_pack or packs
        self._since_empty, self._no_legacy, self._root_made = since_empty, False, False
        self._local = threading.local()  # keys whose file copies go after the commit

    def __repr__(self) -> str:
        return f"PackedStore({str(self.root)!r})"

    def packs(self) -> bool:
        """Whether this store's writes go to the index (settles the layout once)."""
        if self._packs is None:
            self._packs = bool(self._settle())
        return self._packs

    def _packs_soon(self) -> bool:
        """Whether a write staged now will be packed: known, or guessed without recording.

        The folder's layout is recorded by the first commit (a record or data), so
        a value that fails to encode leaves nothing behind.
        """
        return self._packs if self._packs is not None else bool(self._would_pack())

    def no_legacy(self) -> bool:
        """Whether every data file here has (or had) a record: packed since the first write."""
        if not self._no_legacy:
            self._no_legacy = self._since_empty() is True  # once True, always True
        return self._no_legacy

    # -- resolving a key -------------------------------------------------------------

    def _row(self, key: str) -> Row | None:
        """*key*'s index row when it holds the newest copy of the key, else None."""
        if not fits_index(key):
            return None
        self._check_root_dir(key, reading=True)
        snapshot: dict[str, Row | None] | None = getattr(self._local, "snapshot", None)
        if snapshot is not None and key in snapshot:
            row = snapshot.pop(key)  # answered once: a read again (a retry) asks the index
        else:
            row = self.index.get(key)
        if row is None:
            return None
        try:
            mtime = os.stat(self._base + key).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return row
        return row if row[1] >= mtime else None

    def describe(self, key: str) -> str | None:
        """Where an index key's bytes are, for messages (None: it is a file)."""
        return f"{self.index_path} [{key}]" if self._row(key) is not None else None

    def open_read(self, key: str) -> BinaryIO:
        row = self._row(key)
        return _Blob(row) if row is not None else super().open_read(key)

    def read_bytes(self, key: str) -> bytes:
        row = self._row(key)
        if row is None:
            return super().read_bytes(key)
        if len(row[0]) > RECORD_MAX:
            raise CorruptEntryError(f"{self.index_path} [{key}] is too large for a record")
        return row[0]

    def stat(self, key: str) -> StatResult:
        row = self._row(key)
        return super().stat(key) if row is None else StatResult(len(row[0]), row[2], row[1])

    def stat_open(self, f: BinaryIO, key: str) -> StatResult:
        if isinstance(f, _Blob):
            return f.stat_result
        return super().stat_open(f, key)

    def exists(self, key: str) -> bool:
        return (fits_index(key) and self.index.has(key)) or super().exists(key)

    def existing(self, keys: builtins.list[str]) -> set[str]:
        """Which of *keys* hold bytes, in either home (one index query for all).

        Inside :meth:`reading`, the first call answers from the rows the block
        fetched; a later one fetches them again (a lookup retried after a race).
        """
        packed = [k for k in keys if fits_index(k)]
        snapshot: dict[str, Row | None] | None = getattr(self._local, "snapshot", None)
        if snapshot is None:
            found = self.index.present(packed)
        else:
            if not self._local.unused or not snapshot.keys() >= set(packed):
                self._fetch(packed, snapshot)
            self._local.unused = False
            found = {k for k in packed if snapshot.get(k) is not None}
        return found | {k for k in keys if k not in found and LocalStore.exists(self, k)}

    def _fetch(self, keys: builtins.list[str], snapshot: dict[str, Row | None]) -> None:
        """Put the rows of *keys* (None for each without one) in *snapshot*, in one query."""
        snapshot.update(dict.fromkeys(keys))
        snapshot.update(self.index.get_many(keys))

    @contextlib.contextmanager
    def reading(self, keys: builtins.list[str]) -> Iterator[None]:
        """A block of reads of one entry whose *keys* are fetched at once, in one query.

        Each row so fetched answers one read of its key in this thread (with the
        file-newer check as ever) and the block's first :meth:`existing`; a second
        read asks the index again, so a read retried because a writer was midway
        sees that writer's commit. Blocks nest (the outer one's rows serve).
        """
        if getattr(self._local, "snapshot", None) is not None:
            yield
            return
        snapshot: dict[str, Row | None] = {}
        self._fetch([k for k in keys if fits_index(k)], snapshot)
        self._local.snapshot, self._local.unused = snapshot, True
        try:
            yield
        finally:
            self._local.snapshot = None

    def local_path(self, key: str) -> Path | None:
        return None if self._row(key) is not None else super().local_path(key)

    def list(self, prefix: str = "") -> builtins.list[str]:
        names = super().list(prefix)
        if not prefix or prefix == META_DIR or prefix.startswith(META_DIR + "/"):
            packed = self.index.children(prefix)
            if packed:
                return sorted({*names, *packed})
        return names

    def folders(self, prefix: str = "") -> builtins.list[str]:
        names = super().folders(prefix)
        if prefix == META_DIR:
            return sorted({*names, *self.index.folders(prefix)})
        return names

    def records_under(self, prefix: str) -> builtins.list[tuple[str, bytes]]:
        """``(key, bytes)`` of every index key under *prefix*, in one query (listings)."""
        return self.index.scan(prefix)

    # -- writing ---------------------------------------------------------------------

    def stage(
        self,
        key: str,
        write: Callable[[BinaryIO], T],
        *,
        durable: bool = False,
        size_hint: int | None = None,
    ) -> Staged[T]:
        small = size_hint is None or size_hint < self.max_packed
        if not (small and fits_index(key) and self._packs_soon()):
            inner = super().stage(key, write, durable=durable, size_hint=size_hint)
            return _FileStaged(self, key, inner, inner.result)
        buffer = io.BytesIO()
        result = write(buffer)
        if buffer.tell() < self.max_packed:
            return _PackedStaged(self, key, buffer.getvalue(), result)
        data = buffer.getbuffer()  # larger than its hint said: a file after all
        copied = super().stage(key, lambda f: f.write(data), durable=durable)
        return _FileStaged(self, key, copied, result)

    def put_atomic(
        self,
        key: str,
        write: Callable[[BinaryIO], T],
        *,
        durable: bool = False,
        size_hint: int | None = None,
    ) -> T:
        if not (fits_index(key) and self.packs()):
            result = super().put_atomic(key, write, durable=durable, size_hint=size_hint)
            self.drop_packed(key)
            return result
        buffer = io.BytesIO()
        result = write(buffer)
        self.put_packed(key, buffer.getvalue(), os.urandom(8).hex())
        return result

    def put_packed(self, key: str, data: bytes, ident: str) -> None:
        """Commit *data* under *key* in the index; its file copy goes after the commit.

        If the folder turned out to be per-file (another process recorded it first),
        the bytes become a file instead, atomically as ever.
        """
        if not self.packs():
            LocalStore.put_atomic(self, key, lambda f: f.write(data))
            return
        self._check_root_dir(key, reading=False)
        self._make_root_dir()
        self.index.put(key, data, ident)
        pending: list[str] | None = getattr(self._local, "pending", None)
        if pending is None:
            self._drop_file(key)
        else:
            pending.append(key)

    def drop_packed(self, key: str) -> None:
        """Remove the index's copy of *key* (after a file of it was committed)."""
        if fits_index(key) and self.index.has(key):
            self.index.delete(key)

    def _make_root_dir(self) -> None:
        """Make ``.metricache/`` for the index (once it is seen, never again)."""
        if not self._root_made:
            os.makedirs(os.path.dirname(self.index_path), exist_ok=True)
            self._root_made = True

    def _drop_file(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            os.unlink(self._base + key)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One index transaction; file copies of its keys are removed once it commits."""
        if not self.packs():
            yield  # a per-file folder: each commit is atomic alone
            return
        self._make_root_dir()
        outer = getattr(self._local, "pending", None) is None
        if outer:
            self._local.pending = []
        try:
            with self.index.transaction():
                yield
            pending = self._local.pending if outer else []
        finally:
            if outer:
                self._local.pending = None
        for key in pending:
            self._drop_file(key)

    def delete(self, key: str) -> bool:
        packed = fits_index(key) and self.index.delete(key)
        return super().delete(key) or packed

    def move(self, key: str, dest: str) -> None:
        row = self._moved_row(key) if fits_index(key) else None
        moved = False
        with contextlib.suppress(FileNotFoundError):
            super().move(key, dest)
            moved = True
        if row is not None:
            data = row[0]
            LocalStore.put_atomic(
                self, dest + ".index" if moved else dest, lambda f: f.write(data)
            )
            self.index.delete(key)
        elif not moved:
            raise FileNotFoundError(key)

    def _moved_row(self, key: str) -> Row | None:
        """*key*'s row to move out: its bytes as put, or as stored if they do not decode."""
        try:
            return self.index.get(key)
        except CorruptEntryError:
            return self.index.get(key, raw=True)

    def _quarantine_index(self, path: str) -> str:
        """Move the damaged index (and its WAL files) into a fresh quarantine folder."""
        folder = f"{self._base}{QUARANTINE_DIR}/index-{uuid.uuid4().hex[:8]}"
        os.makedirs(folder, exist_ok=True)
        os.replace(path, f"{folder}/{os.path.basename(path)}")
        for extra in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(path + extra, f"{folder}/{os.path.basename(path)}{extra}")
        return folder


def transaction_for(store: object, staged: object) -> AbstractContextManager[None]:
    """The transaction that commits a packed entry's record and data together."""
    if isinstance(store, PackedStore) and isinstance(staged, _PackedStaged):
        return store.transaction()
    return contextlib.nullcontext()


def reading(store: object, keys: list[str]) -> AbstractContextManager[None]:
    """:meth:`PackedStore.reading` of *keys* on a packed store; elsewhere nothing."""
    if isinstance(store, PackedStore):
        return store.reading(keys)
    return contextlib.nullcontext()


def legacy_files_possible(store: object) -> bool:
    """Whether data without a record in *store* may be a legacy entry (see ``no_legacy``)."""
    return not (isinstance(store, PackedStore) and store.no_legacy())


def maybe_present(store: object, name: str, formats: list[Entries]) -> list[Entries]:
    """The *formats* that may hold data or a record of *name* (a superset; exact elsewhere).

    On a packed store one index query answers for every format; elsewhere each is
    returned, for the caller's exact check.
    """
    if not isinstance(store, PackedStore):
        return formats
    keys = {e: (data_key(name, e.suffix), record_key(name, e.suffix)) for e in formats}
    found = store.existing([k for pair in keys.values() for k in pair] + [old_record_key(name)])
    if old_record_key(name) in found:
        return formats  # a 0.1 record may describe any format's data
    return [e for e, pair in keys.items() if found.intersection(pair)]
