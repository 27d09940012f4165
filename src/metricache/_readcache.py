"""A local read-through cache of a remote store's data objects (``cache_dir=``).

A read asks the server what the object is now (one HEAD: its size and ETag) and
serves the local copy made for exactly that object, else downloads it once into
the cache (a temp file, renamed when complete) and serves that. A replaced remote
object has another ETag, so a stale copy is never served; the entries layer then
checks every byte read against the remote record's checksum, as for any read.
Records, markers and locks are always read from the remote store (they are small,
and must be current); only data objects are cached. Several processes may share
one cache folder: copies are written whole and renamed into place.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from ._layout import ROOT_DIR, TEMP_PREFIX
from ._store import Staged, StatResult, Store

__all__ = ["ReadThroughStore"]

T = TypeVar("T")


class _CachedFile(io.FileIO):
    """A local copy being read, carrying the remote object's stat it was made from."""

    served: StatResult


class ReadThroughStore(Store):
    """*remote* with its data objects read through local copies in *cache_dir*."""

    def __init__(self, remote: Store, cache_dir: str | os.PathLike[str]) -> None:
        self.remote = remote
        self.cache_dir = Path(cache_dir)

    def __repr__(self) -> str:
        return repr(self.remote)

    def _copy_of(self, key: str, stat: StatResult) -> Path:
        """Where the copy of *key* as it is now (size and identity) lives."""
        where = hashlib.sha256(f"{self.remote!r}/{key}".encode()).hexdigest()[:32]
        what = hashlib.sha256(f"{stat.size}:{stat.identity}".encode()).hexdigest()[:16]
        return self.cache_dir / where[:2] / f"{where}-{what}"

    def open_read(self, key: str) -> BinaryIO:
        if key.startswith(ROOT_DIR + "/"):
            return self.remote.open_read(key)
        stat = self.remote.stat(key)
        if stat.identity is None:  # nothing to tell a copy from the current object
            return self.remote.open_read(key)
        copy = self._copy_of(key, stat)
        opened = _open_copy(copy, stat)
        if opened is not None:
            return opened
        with self.remote.open_read(key) as f:
            served = self.remote.stat_open(f, key)
            if served != stat:  # replaced since the HEAD: cache what was downloaded
                stat, copy = served, self._copy_of(key, served)
            _download(f, copy, stat.size)
        opened = _open_copy(copy, stat)
        if opened is None:  # the copy came out short: the object changed mid-read
            return self.remote.open_read(key)
        return opened

    def stat_open(self, f: BinaryIO, key: str) -> StatResult:
        if isinstance(f, _CachedFile):
            return f.served
        return self.remote.stat_open(f, key)

    # -- everything else is the remote store's --------------------------------------

    def stage(
        self,
        key: str,
        write: Callable[[BinaryIO], T],
        *,
        durable: bool = False,
        size_hint: int | None = None,
    ) -> Staged[T]:
        return self.remote.stage(key, write, durable=durable, size_hint=size_hint)

    def read_bytes(self, key: str) -> bytes:
        return self.remote.read_bytes(key)

    def exists(self, key: str) -> bool:
        return self.remote.exists(key)

    def delete(self, key: str) -> bool:
        return self.remote.delete(key)

    def list(self, prefix: str = "") -> builtins.list[str]:
        return self.remote.list(prefix)

    def list_starting(self, stem: str) -> builtins.list[str]:
        """See :meth:`FsspecStore.list_starting`."""
        starting = getattr(self.remote, "list_starting", None)
        if starting is None:
            return [name for name in self.list() if name.startswith(stem)]
        found: builtins.list[str] = starting(stem)
        return found

    def folders(self, prefix: str = "") -> builtins.list[str]:
        return self.remote.folders(prefix)

    def stat(self, key: str) -> StatResult:
        return self.remote.stat(key)

    def move(self, key: str, dest: str) -> None:
        self.remote.move(key, dest)


def _open_copy(copy: Path, stat: StatResult) -> _CachedFile | None:
    """The local copy opened, if it is there whole; None otherwise."""
    try:
        f = _CachedFile(copy, "rb")
    except FileNotFoundError:
        return None
    if os.fstat(f.fileno()).st_size != stat.size:
        f.close()
        return None
    f.served = stat
    return f


def _download(f: BinaryIO, copy: Path, size: int) -> None:
    """Write *f* to *copy* through a temp file, renamed only when all *size* bytes came."""
    copy.parent.mkdir(parents=True, exist_ok=True)
    tmp = copy.parent / f"{TEMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "xb") as out:
            shutil.copyfileobj(f, out, 8 << 20)
            complete = out.tell() == size
        if complete:
            for older in copy.parent.glob(copy.name.rsplit("-", 1)[0] + "-*"):
                with contextlib.suppress(FileNotFoundError):
                    older.unlink()  # copies of objects this key no longer holds
            os.replace(tmp, copy)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
