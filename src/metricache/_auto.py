"""A storage interface that picks the format from each value: one Entries per codec, one folder.

Writing picks the codec (:meth:`AutoStorageInterface.codec_for`), commits that
format's entry by the usual protocol, then removes the name's entries in every
other format. A crash between those two steps leaves two complete entries; a
load then takes the one whose record is newest (its ``timestamp``, set when the
write began). Each step alone is crash-safe, so that is the only mixed state: a
format whose first write died before its data commit has a record but no data,
and is not "there". Records name their codec, so a load never guesses a format.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

from . import _housekeeping as housekeeping
from ._entries import Entries, MmapReader
from ._filestorage import FileStorageInterface
from ._interface import not_stored_message
from ._lease import check_lease
from ._locking import LockProvider
from ._meta import EntryInfo
from ._packed import PackedStore, maybe_present, reading
from ._store import Store
from .codecs import Codec, FrameCodec, JsonCodec, NpyCodec, NpzCodec, _values
from .exceptions import (
    CorruptEntryError,
    MetricNotStoredError,
    UnsupportedValueError,
)

__all__ = ["AutoStorageInterface"]

#: How often a load looks for the format again when the one it chose vanished
#: under it (another process rewrote the name in another format meanwhile).
_LOOKUPS = 3
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)

_HOLDS = (
    "a numpy array or numpy/Python scalar (.npy); a list, tuple or str-keyed dict of "
    "them (.npz); a pandas DataFrame or Series, polars DataFrame or pyarrow Table "
    "(.arrow); or JSON data: None, bool, int, float, str, and lists and str-keyed "
    "dicts of them (.json)"
)


class AutoStorageInterface(FileStorageInterface):
    """Stores each metric in the format its value needs: npy, npz, Arrow IPC or JSON.

    ``DatedCacheManager("cache/")`` uses it. The codec is picked from the value:
    one array or scalar as ``<name>.npy``; a list, tuple or dict of them as
    ``<name>.npz``; a pandas DataFrame or Series, polars DataFrame or pyarrow
    Table as ``<name>.arrow`` (needs ``pip install metricache[frames]``); other
    JSON data (``None``, nested lists and dicts) as ``<name>.json``. Anything
    else is refused (:class:`~metricache.UnsupportedValueError`, naming what can
    be stored); pickles are never written or read here (see
    :class:`~metricache.PickleStorageInterface`). A name may change format
    between writes; the older format's entry is then removed.

    Entries written by :class:`~metricache.NpzStorageInterface`, ``Npy`` and
    ``Json`` interfaces in the same folder (and simple_metrics_manager's files)
    load as they are.

    Parameters
    ----------
    metrics_dir : str or os.PathLike
        The cache folder; created by the first write.
    allow_pickle : bool
        Allow object arrays in npy/npz entries (pickled inside the file).
    mmap_mode : {None, "r"}
        ``"r"`` memory-maps npy arrays and Arrow files on load: an Arrow table or
        polars frame stays in the mapping, a pandas frame is built from it. The
        checksum is then only checked by an explicit ``verify(name)``.
    durable, verify, locks, store, storage_options, cache_dir, packed
        See :class:`~metricache.FileStorageInterface` (*metrics_dir* may be an fsspec
        URL such as ``"s3://bucket/prefix"``).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> storage = AutoStorageInterface(tempfile.mkdtemp())
    >>> storage.save("ramp", np.arange(3))
    >>> storage.save("parts", [np.zeros(2), "label"])
    >>> storage.save("config", {"depth": {"max": 3}})
    >>> [storage.info(n).codec for n in ("ramp", "parts", "config")]
    ['npy', 'npz', 'json']
    """

    #: No single suffix: each entry's record names its format.
    file_ext = ""

    def __init__(
        self,
        metrics_dir: str | os.PathLike[str],
        allow_pickle: bool = False,
        *,
        mmap_mode: str | None = None,
        durable: bool = False,
        verify: bool = True,
        locks: LockProvider | None = None,
        store: Store | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        packed: bool | None = None,
    ) -> None:
        if mmap_mode not in (None, "r"):
            raise ValueError(f"mmap_mode must be None or 'r', not {mmap_mode!r}")
        self.allow_pickle, self.mmap_mode = allow_pickle, mmap_mode
        codec = NpzCodec(allow_pickle=allow_pickle)
        super().__init__(
            metrics_dir, codec, durable=durable, verify=verify, locks=locks, store=store,
            storage_options=storage_options, cache_dir=cache_dir, packed=packed,
        )  # fmt: skip
        self.file_ext = ""

    def _setup(self) -> None:
        super()._setup()
        npy = NpyCodec(allow_pickle=self.allow_pickle)
        # Their errors name the interface to pass allow_pickle to: this one.
        npy._interface = self.codec._interface = type(self).__name__  # type: ignore[attr-defined]
        codecs: list[Codec] = [FrameCodec(), npy, self.codec, JsonCodec()]
        #: One Entries per format, by codec name, in the order values are matched.
        self._formats = {c.name: self._entries_of(c) for c in codecs}
        self._entries = self._formats[self.codec.name]

    def _entries_of(self, codec: Codec) -> Entries:
        return Entries(
            self.store,
            codec,
            durable=self.durable,
            verify=self.verify_checksums,
            writer=type(self).__name__,
            label=repr(self),
            mmap_reader=self._mapper(codec),
        )

    def _mapper(self, codec: Codec) -> MmapReader | None:
        """How to memory-map *codec*'s data files (with ``mmap_mode="r"``)."""
        if self.mmap_mode is None or not isinstance(codec, (NpyCodec, FrameCodec)):
            return None
        store = self.store

        def read(key: str, hint: str | None) -> Any:
            path = store.local_path(key)
            return None if path is None else codec.read_mmap(path, hint)

        return read

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_formats", None)
        return state

    # -- choosing a format ----------------------------------------------------------

    def codec_for(self, value: Any) -> Codec:
        """The codec that stores *value*; :class:`~metricache.UnsupportedValueError` if none."""
        return self._pick(value).codec

    def _pick(self, value: Any) -> Entries:
        frames, npy, npz, json = self._formats.values()
        if isinstance(frames.codec, FrameCodec) and frames.codec.accepts(value):
            frames.codec.validate(value)  # its reason is the one to show
            return frames
        if isinstance(value, np.ndarray) or _values.is_scalar(value):
            npy.codec.validate(value)  # an array stays an array, or is refused
            return npy
        reasons = []
        for entries in (npz, json) if type(value) in (list, tuple, dict) else (json,):
            try:
                entries.codec.validate(value)
            except UnsupportedValueError as err:
                reasons.append(f"{entries.codec.name}: {err}")
                continue
            return entries
        raise UnsupportedValueError(
            f"AutoStorageInterface cannot store {_values.describe(value)}: it stores {_HOLDS}"
            + (f" ({'; '.join(reasons)})" if type(value) in (list, tuple, dict) else "")
            + "; for other objects use PickleStorageInterface (only on folders you trust)"
        )

    def check_value(self, value: Any) -> None:
        self._pick(value)

    def memory_form(self, value: Any) -> Any:
        try:
            return self._pick(value).codec.memory_form(value)
        except UnsupportedValueError:
            return value  # the write refuses it; nothing is held

    # -- writing ----------------------------------------------------------------------

    def write_entry(
        self,
        name: str,
        value: Any,
        duration: float | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> EntryInfo:
        self.check_name(name)
        entries = self._pick(value)
        self._clean_once()
        # A writer whose lease was taken over must not publish over the new holder's entry.
        check_lease(self.lock_provider(), name)
        info = entries.write(name, value, duration, provenance)
        # Only now, with the new entry complete: a crash before this loop leaves two
        # entries, and loads take the newer.
        others = [e for e in self._formats.values() if e is not entries]
        for other in maybe_present(self.store, name, others):
            if self._has_any(other, name):
                housekeeping.delete(other, name)
        return info

    def rewrite_record(self, info: EntryInfo) -> bool:
        """Replace the current record of ``info.name`` in the format it names."""
        entries = self._formats.get(info.codec or "") or self._format_of(info.name)
        return False if entries is None else bool(entries.records.rewrite_current(info))

    @staticmethod
    def _has_any(entries: Entries, name: str) -> bool:
        """Whether *name* has data or a record in this format."""
        return entries.exists(name) or entries.records.has(name)

    # -- reading ------------------------------------------------------------------------

    def _stored_in(self, name: str) -> list[Entries]:
        """The formats holding data of *name*."""
        # A remote store answers for every format in one LIST (a HEAD each otherwise).
        starting = getattr(self.store, "list_starting", None)
        if starting is not None:
            keys = set(starting(name))
            return [e for e in self._formats.values() if e.data_key(name) in keys]
        if isinstance(self.store, PackedStore):  # one index query for every format
            found = self.store.existing([e.data_key(name) for e in self._formats.values()])
            return [e for e in self._formats.values() if e.data_key(name) in found]
        return [e for e in self._formats.values() if e.exists(name)]

    def _format_of(self, name: str) -> Entries | None:
        """The format whose entry of *name* is current: the only one, else the newest."""
        present = self._stored_in(name)
        if len(present) <= 1:
            return present[0] if present else None
        return max(present, key=lambda e: _age_key(e, name))

    def exists(self, name: str) -> bool:
        return bool(self._stored_in(name))

    def read_entry(self, name: str) -> tuple[Any, EntryInfo | None]:
        # On a packed store, one query fetches every format's data and record.
        keys = [k for e in self._formats.values() for k in (e.data_key(name), e.records.key(name))]
        with reading(self.store, keys):
            for _ in range(_LOOKUPS):
                entries = self._format_of(name)
                if entries is None:
                    break
                try:
                    return entries.read(name)
                except MetricNotStoredError:
                    continue  # rewritten in another format while we read: look again
        raise MetricNotStoredError(not_stored_message(name, self))

    def info(self, name: str) -> EntryInfo | None:
        entries = self._format_of(name)
        return None if entries is None else entries.info(name)

    def verify(self, name: str) -> EntryInfo | None:
        entries = self._format_of(name)
        return None if entries is None else entries.verify(name)

    # -- housekeeping ---------------------------------------------------------------

    def delete(self, name: str) -> bool:
        self.check_name(name)
        existed = False
        for entries in self._formats.values():
            if self._has_any(entries, name):
                existed = housekeeping.delete(entries, name) or existed
        return existed

    def stored_names(self) -> list[str]:
        names: set[str] = set()
        for entries in self._formats.values():
            names.update(housekeeping.names(entries))
        return sorted(names)

    def quarantine(self, name: str) -> str | None:
        # Every format of the name: an older one left behind must not be loaded instead.
        places = [
            housekeeping.quarantine(e, name)
            for e in self._formats.values()
            if self._has_any(e, name)
        ]
        return ", ".join(places) or None

    def _all_entries(self) -> list[Entries]:
        return list(self._formats.values())


def _age_key(entries: Entries, name: str) -> tuple[int, datetime]:
    """How recent *name*'s entry in this format is, for picking among several.

    A record's timestamp beats any legacy file's date; an unreadable record ranks
    first, so the load fails (and the manager recomputes) instead of returning an
    older value that may be stale.
    """
    try:
        return 1, entries.records.read(name)[0].timestamp
    except FileNotFoundError:
        info = entries.info(name)
        return 0, info.timestamp if info is not None else _OLDEST
    except CorruptEntryError:
        return 2, _OLDEST
