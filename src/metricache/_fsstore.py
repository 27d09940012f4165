"""A Store over any fsspec filesystem: ``s3://``, ``memory://``, ``gcs://``, ...

Keys are paths under the URL's root. Writes stage their bytes where no reader
sees them and publish them with one call: a generic backend stages in memory
(or a local temp file, for large values) and commits with one ``pipe``/``put``;
S3 commits with one PUT, or completes a multipart upload (see
:mod:`metricache._s3ops`), so a partial object is never visible and nothing is
ever "renamed" by copy and delete. Listings bypass fsspec's listing cache, which
would otherwise be stale: the store is as consistent as the server.

``file://`` URLs and plain paths are not remote: :func:`is_remote` says so, and
callers keep the local store for them.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, BinaryIO, TypeVar

from ._layout import TEMP_PREFIX
from ._locking import LockProvider, ThreadLocks
from ._optional import require
from ._store import Staged, StatResult, Store

__all__ = ["FsspecStore", "default_locks", "is_remote", "local_path_of", "open_store"]

T = TypeVar("T")
#: Values at least this large (by the codec's size hint) stage in a local temp file.
_SPOOL_MAX = 64 << 20
#: Info fields that name the stored bytes' identity, by backend (first found wins).
#: S3's smallest part (all but the last part of a multipart upload).
_PART_MIN = 5 << 20
_IDENTITY_FIELDS = ("ETag", "etag", "VersionId", "generation", "md5Hash")


def is_remote(url: object) -> bool:
    """Whether *url* names an fsspec filesystem other than the local one."""
    if not isinstance(url, str) or "://" not in url:
        return False
    return url.split("://", 1)[0].lower() not in ("file", "local")


def local_path_of(url: str) -> str:
    """The local path of a ``file://`` URL (and of a plain path, itself)."""
    for scheme in ("file://", "local://"):
        if url.lower().startswith(scheme):
            return url[len(scheme) :]
    return url


class _PipeStaged(Staged[T]):
    """Bytes held locally, published with one ``pipe_file``/``put_file`` on commit."""

    def __init__(self, store: FsspecStore, path: str, buffer: Any, result: T) -> None:
        self._store, self._path, self._buffer, self.result = store, path, buffer, result

    def commit(self) -> str | None:
        fs, buffer = self._store.fs, self._buffer
        if buffer is None:
            raise ValueError("this staged write was already committed or discarded")
        try:
            if isinstance(buffer, io.BytesIO):
                fs.pipe_file(self._path, buffer.getvalue())
            else:
                buffer.flush()
                fs.put_file(buffer.name, self._path)
        finally:
            self.discard()
        return self._store.stat_path(self._path).identity

    def discard(self) -> None:
        buffer, self._buffer = self._buffer, None
        if buffer is not None:
            buffer.close()  # a NamedTemporaryFile deletes itself


class FsspecStore(Store):
    """A :class:`~metricache._store.Store` on the fsspec filesystem of *url*.

    Parameters
    ----------
    url : str
        The cache folder, e.g. ``"s3://bucket/prefix"`` or ``"memory://cache"``.
    storage_options : mapping, optional
        Passed to fsspec (for S3: ``key``, ``secret``, ``client_kwargs``, ...).

    Attributes
    ----------
    fs : fsspec.AbstractFileSystem
        The filesystem.
    root : str
        The folder's path on it, without the protocol (``"bucket/prefix"``).
    protocol : str
        The URL's protocol (``"s3"``, ``"memory"``).
    url : str
        The URL the store was made from.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.protocol = url.split("://", 1)[0].lower()
        extra = "s3" if self.protocol in ("s3", "s3a") else "remote"
        require("fsspec", extra, f"a cache folder at {url!r}")
        if extra == "s3":
            require("s3fs", "s3", f"a cache folder at {url!r}")
        self._connect()

    def _connect(self) -> None:
        """Build the filesystem client (again in a forked child: async clients cannot fork)."""
        fsspec = importlib.import_module("fsspec")
        self._fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.root: str = root.rstrip("/")
        self._s3_ops: Any = None
        if _is_s3(self._fs):
            from ._s3ops import S3Ops

            self._s3_ops = S3Ops(self._fs)
        self._pid = os.getpid()

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (this process's own)."""
        if self._pid != os.getpid():
            self._connect()
        return self._fs

    @property
    def _s3(self) -> Any:
        """The S3 requests, or None on other backends."""
        if self._pid != os.getpid():
            self._connect()
        return self._s3_ops

    def __repr__(self) -> str:
        return f"FsspecStore({self.url!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # A worker rebuilds the filesystem (client, event loop) from the description.
        return (type(self), (self.url, self.storage_options))

    def path(self, key: str) -> str:
        """The filesystem path of *key*."""
        return f"{self.root}/{key}" if self.root else key

    # -- reading -----------------------------------------------------------------

    def open_read(self, key: str) -> BinaryIO:
        if self._s3 is not None:
            return self._s3.get(self.path(key))  # type: ignore[no-any-return]
        path = self.path(key)
        if not self.fs.isfile(path):
            raise FileNotFoundError(path)
        f: BinaryIO = self.fs.open(path, "rb")
        return f

    def stat_open(self, f: BinaryIO, key: str) -> StatResult:
        # The S3 reader carries what its GET response said of the bytes it streams.
        served = getattr(f, "served", None)
        return served if isinstance(served, StatResult) else self.stat(key)

    def read_bytes(self, key: str) -> bytes:
        if self._s3 is not None:
            return self._s3.read_small(self.path(key))  # type: ignore[no-any-return]
        return super().read_bytes(key)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except FileNotFoundError:
            return False
        return True

    def stat(self, key: str) -> StatResult:
        return self.stat_path(self.path(key))

    def stat_path(self, path: str) -> StatResult:
        """:meth:`stat` of a filesystem path."""
        if self._s3 is not None:
            return self._s3.head(path)  # type: ignore[no-any-return]
        info = self.fs.info(path)
        if info.get("type") != "file":
            raise FileNotFoundError(path)
        return _stat_of(info)

    # -- writing -----------------------------------------------------------------

    def stage(
        self,
        key: str,
        write: Callable[[BinaryIO], T],
        *,
        durable: bool = False,
        size_hint: int | None = None,
    ) -> Staged[T]:
        # ``durable`` needs nothing more: a remote commit returns once the server has it.
        path = self.path(key)
        if self._s3 is not None:
            # Parts of s3fs's block size (``default_block_size=`` in storage_options):
            # a value smaller than one part is a single PUT.
            part = max(int(getattr(self.fs, "default_block_size", 0) or 0), _PART_MIN)
            return self._s3.stage(path, write, part)  # type: ignore[no-any-return]
        large = size_hint is not None and size_hint >= _SPOOL_MAX
        # Closed by the commit or the discard (a temp file deletes itself then).
        buffer: Any = (
            tempfile.NamedTemporaryFile(prefix=TEMP_PREFIX)  # noqa: SIM115
            if large
            else io.BytesIO()
        )
        try:
            result = write(buffer)
        except BaseException:
            buffer.close()
            raise
        return _PipeStaged(self, path, buffer, result)

    def delete(self, key: str) -> bool:
        path = self.path(key)
        if not self.exists(key):
            return False
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            return False
        return True

    def move(self, key: str, dest: str) -> None:
        with self.open_read(key) as f:
            self.put_atomic(dest, lambda out: shutil.copyfileobj(f, out))
        self.delete(key)

    # -- listing -----------------------------------------------------------------

    def list(self, prefix: str = "") -> builtins.list[str]:
        return [name for name, kind in self._ls(prefix) if kind == "file"]

    def folders(self, prefix: str = "") -> builtins.list[str]:
        return [name for name, kind in self._ls(prefix) if kind == "directory"]

    def list_starting(self, stem: str) -> builtins.list[str]:
        """Names of the files in the root folder that start with *stem*.

        One LIST on S3 however large the folder (by key prefix), where
        ``exists`` per candidate name would be a HEAD each.
        """
        if self._s3 is not None:
            found = self._s3.list_prefix(self.path(stem))
            if found is not None:
                base = len(self.root) + 1 if self.root else 0
                return [k[base:] for k in found if not k[base:].startswith(TEMP_PREFIX)]
        return [name for name in self.list() if name.startswith(stem)]

    def _ls(self, prefix: str) -> builtins.list[tuple[str, str]]:
        """``(name, type)`` of what folder *prefix* holds: one LIST, never a cached one."""
        folder = self.path(prefix) if prefix else self.root
        self.fs.invalidate_cache(folder)
        try:
            found = self.fs.ls(folder, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        base = folder.strip("/")
        out = []
        for info in found:
            full = info["name"].rstrip("/")
            name = full.strip("/")[len(base) :].lstrip("/") if base else full.strip("/")
            if not name or "/" in name or full.strip("/") == base:
                continue  # the folder itself (or a key of that name), not what it holds
            if name.startswith(TEMP_PREFIX):
                continue
            out.append((name, info.get("type", "file")))
        return out


def _is_s3(fs: Any) -> bool:
    """Whether *fs* is s3fs's filesystem (the one with a single-PUT commit)."""
    return type(fs).__module__.split(".")[0] == "s3fs"


def _stat_of(info: Mapping[str, Any]) -> StatResult:
    """A StatResult from an fsspec ``info`` dict."""
    identity = next((str(info[k]) for k in _IDENTITY_FIELDS if info.get(k)), None)
    stamp = next((info[k] for k in ("mtime", "LastModified", "created") if info.get(k)), None)
    if isinstance(stamp, datetime):
        mtime = stamp.timestamp()
    elif isinstance(stamp, (int, float)):
        mtime = float(stamp)
    else:  # a backend that keeps no time: now, so a legacy entry still gets a date
        mtime = time.time()
    return StatResult(int(info.get("size") or 0), identity, mtime)


def open_store(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Store:
    """The store of remote folder *url*, behind a local read-through cache if *cache_dir*."""
    store = FsspecStore(url, storage_options)
    if cache_dir is None:
        return store
    from ._readcache import ReadThroughStore

    return ReadThroughStore(store, cache_dir)


def default_locks(store: Store) -> LockProvider:
    """The locks of a remote store: leases where the store can hold them, else threads.

    ``metricache._lease.locks_for`` decides per store (a lease needs an atomic
    create on the server); without it, only this process's threads are serialized.
    """
    remote = getattr(store, "remote", store)
    if importlib.util.find_spec(f"{__package__}._lease") is not None:
        lease = importlib.import_module(f"{__package__}._lease")
        locks_for = getattr(lease, "locks_for", None)
        if locks_for is not None and isinstance(remote, FsspecStore):
            provider: LockProvider = locks_for(remote)
            return provider
    return ThreadLocks()
