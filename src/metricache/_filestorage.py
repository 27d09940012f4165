"""A storage interface made of a store, a codec and a lock provider.

The entries themselves (commit protocol, verification, legacy files, quarantine)
are :mod:`metricache._entries`; this class pairs them with a folder and the locks
that make one computation of a name at a time, and answers the seed's
``exists``/``save``/``load``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from . import _housekeeping as housekeeping
from ._entries import Entries, MmapReader
from ._fsstore import default_locks, is_remote, local_path_of, open_store
from ._homes import open_local_store
from ._interface import StorageInterface
from ._lease import check_lease
from ._listing import CheckReport, check_folder, list_entries
from ._locking import LocalLocks, LockProvider, ThreadLocks
from ._meta import EntryInfo
from ._mounts import nearest_existing
from ._packed import reading
from ._store import Store
from .codecs import Codec
from .exceptions import LockTimeoutError

__all__ = ["FileStorageInterface"]

# Attributes rebuilt in every process, never pickled.
_RUNTIME = ("store", "_entries", "_default_locks", "_cleaned", "_thread_locks")


class FileStorageInterface(StorageInterface):
    """A :class:`StorageInterface` built from a store and a codec, with metadata.

    Constructing one only looks at the folder: it lists nothing, creates nothing
    and deletes nothing (the folder is created by the first write). Litter of
    writers that died is removed by :meth:`cleanup`, which the first write of each
    instance also runs.

    Parameters
    ----------
    metrics_dir : str or os.PathLike
        The cache folder; created (with parents) by the first write.
    codec : Codec
        How values become bytes.
    durable : bool
        Also fsync each file and its folder, so entries survive a power loss.
        Off by default: it costs several times a plain write, and checksums
        already catch what a power loss can damage (it then costs a recompute).
    verify : bool
        Check each load against the stored xxh3 checksum (the size is always checked).
    locks : LockProvider, optional
        Where per-name locks come from (default: :class:`~metricache.LocalLocks`
        on this folder: threads and processes of this machine).
    store : Store, optional
        Where the bytes live, instead of the local folder *metrics_dir* (which then
        only names the storage); its default locks are then this process's threads.
    storage_options : mapping, optional
        For a *metrics_dir* that is an fsspec URL (``"s3://bucket/prefix"``,
        ``"memory://cache"``): passed to fsspec (credentials, endpoint, ...).
        ``file://`` URLs and plain paths use the local store.
    cache_dir : str or os.PathLike, optional
        For a remote *metrics_dir*: a local folder keeping a copy of each data
        object read, so a later read (by any process of this machine) does not
        download it again while the remote object is unchanged.
    packed : bool or None
        Keep entries under 64 KiB (and every record) inside one index file of a
        local folder, ``.metricache/index.sqlite3`` (True), or one file each
        (False). None (default) follows the folder's recorded choice, and for a new
        folder picks packed unless it is on a network or FUSE file system or holds
        entries of an older version. See the "Where entries live" page of the docs.
    """

    def __init__(
        self,
        metrics_dir: str | os.PathLike[str],
        codec: Codec,
        *,
        durable: bool = False,
        verify: bool = True,
        locks: LockProvider | None = None,
        store: Store | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        packed: bool | None = None,
    ) -> None:
        self.metrics_dir = os.fspath(metrics_dir)
        self.packed = packed
        remote = is_remote(self.metrics_dir)
        if not remote and (storage_options is not None or cache_dir is not None):
            raise ValueError(
                f"storage_options and cache_dir are for remote folders (an fsspec URL such "
                f"as 's3://bucket/prefix'), and metrics_dir {self.metrics_dir!r} is local"
            )
        self.storage_options = dict(storage_options) if storage_options else None
        self.cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self.codec = codec
        self.file_ext = codec.suffix
        self.durable = durable
        self.verify_checksums = verify
        self.custom_locks = locks
        self.custom_store = store
        self._setup()

    def _setup(self) -> None:
        """Build what lives only in this process: the store, the entries, the locks."""
        if self.custom_store is None and is_remote(self.metrics_dir):
            # getattr: an interface pickled by an older version has neither attribute.
            options = getattr(self, "storage_options", None)
            cache_dir = getattr(self, "cache_dir", None)
            self.store: Store = open_store(self.metrics_dir, options, cache_dir)
            self._default_locks: LockProvider = default_locks(self.store)
        elif self.custom_store is None:
            path = local_path_of(self.metrics_dir)
            _check_folder(path)
            # getattr: an interface pickled by an older version has no `packed`.
            packed = getattr(self, "packed", None)
            if packed is None and getattr(self, "mmap_mode", None) is not None:
                packed = False  # memory-mapped loads need a file per entry
            self.store = open_local_store(path, packed, durable=self.durable)
            self._default_locks = LocalLocks(path)
        else:
            self.store = self.custom_store
            self._default_locks = ThreadLocks()
        self._entries = Entries(
            self.store,
            self.codec,
            durable=self.durable,
            verify=self.verify_checksums,
            writer=type(self).__name__,
            label=repr(self),
            mmap_reader=self._mmap_reader(),
        )
        self._cleaned = False

    def _mmap_reader(self) -> MmapReader | None:
        """How to memory-map a data file, for interfaces that can (default: none)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.metrics_dir!r})"

    def __getstate__(self) -> dict[str, Any]:
        # A small description: folder, codec and options; locks and threads are rebuilt.
        return {k: v for k, v in self.__dict__.items() if k not in _RUNTIME}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    # -- the seed's API --
    def exists(self, name: str) -> bool:
        return self._entries.exists(name)

    def save(self, name: str, data: Any) -> None:
        self.write_entry(name, data)

    def load(self, name: str) -> Any:
        return self.read_entry(name)[0]

    # -- the richer API the managers use --
    def check_value(self, value: Any) -> None:
        self.codec.validate(value)

    def memory_form(self, value: Any) -> Any:
        return self.codec.memory_form(value)

    def write_entry(
        self,
        name: str,
        value: Any,
        duration: float | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> EntryInfo:
        self.check_name(name)
        self._clean_once()
        # A remote lease lost while computing: the new holder's entry must stay.
        check_lease(self.lock_provider(), name)
        return self._entries.write(name, value, duration, provenance)

    def _clean_once(self) -> None:
        """On this instance's first write (never at open): remove dead writers' temp files."""
        if not self._cleaned:
            self._cleaned = True
            self._remove_dead_temp_files()

    def _all_entries(self) -> list[Entries]:
        """Every format's entries this interface owns (one here; the auto interface, all)."""
        return [self._entries]

    def rewrite_record(self, info: EntryInfo) -> bool:
        """Replace the current record of ``info.name`` by *info* (same data); False if gone."""
        return self._entries.records.rewrite_current(info)

    def read_entry(self, name: str) -> tuple[Any, EntryInfo | None]:
        entries = self._entries
        # On a packed store, one query fetches the record and the data.
        with reading(self.store, [entries.records.key(name), entries.data_key(name)]):
            return entries.read(name)

    def info(self, name: str) -> EntryInfo | None:
        return self._entries.info(name)

    def verify(self, name: str) -> EntryInfo | None:
        """Read the data file and check its size and checksum against the record."""
        return self._entries.verify(name)

    def delete(self, name: str) -> bool:
        self.check_name(name)
        return housekeeping.delete(self._entries, name)

    def stored_names(self) -> list[str]:
        return housekeeping.names(self._entries)

    def quarantine(self, name: str) -> str | None:
        return housekeeping.quarantine(self._entries, name)

    def lock_provider(self) -> LockProvider:
        return self.custom_locks or self._default_locks

    # -- the folder as a whole --
    def entries(self) -> Iterator[EntryInfo]:
        """An :class:`EntryInfo` for every entry in the folder, of every format.

        Values are not decoded; nothing is changed. Entries written by another
        interface on the same folder are listed too (see their ``codec``).
        """
        return list_entries(self.store)

    def check(self) -> CheckReport:
        """Verify every entry of the folder against its record, changing nothing."""
        return check_folder(self.store)

    def cleanup(self) -> int:
        """Remove temp files of dead writers and records whose first write never finished.

        Never touches a file metricache did not create, nor the files of a writer
        that is alive. Returns how many files were removed.
        """
        removed = self._remove_dead_temp_files()
        for entries in self._all_entries():
            for name in housekeeping.orphan_records(entries):
                try:
                    with self.lock_provider().hold(name, timeout=0):
                        removed += housekeeping.remove_orphan(entries, name)
                except (LockTimeoutError, PermissionError):
                    continue  # a live writer is between its record and its data commit
        return removed

    def _remove_dead_temp_files(self) -> int:
        removed = 0
        # Formats share the data folder: a set, so each temp file is deleted once.
        keys = {k for e in self._all_entries() for k in housekeeping.dead_temp_files(e)}
        for key in sorted(keys):
            try:
                removed += self.store.delete(key)
            except OSError:
                return removed  # a read-only folder: nothing can be cleaned, reads still work
        return removed


def _check_folder(path: str) -> None:
    """Refuse a metrics_dir that is (or lies under) a file, without creating anything."""
    folder = nearest_existing(path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        where = "exists" if folder == os.path.abspath(path) else f"lies under {folder!r}, which"
        raise NotADirectoryError(f"metrics_dir {path!r} {where} is not a folder")
