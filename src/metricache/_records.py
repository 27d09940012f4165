"""Records: the one place that reads, writes and removes the metadata of one format's entries.

A record belongs to one data file (``.metricache/meta/<kind>/<name>.json``, see
:mod:`metricache._layout`); metricache 0.1 kept one record per name whatever the
format (``.metricache/meta/<name>.json``), which is read as long as it describes
this format's data, and removed once a new record replaces it.
"""

from __future__ import annotations

from collections.abc import Callable

from ._layout import gone_key, old_record_key, record_dir, record_key
from ._meta import EntryInfo, decode_record, encode_record
from ._packed import legacy_files_possible
from ._store import Store
from .exceptions import CorruptEntryError

__all__ = ["Record", "Records"]

#: ``(current, previous, from_a_0.1_record)``
Record = tuple[EntryInfo, list[EntryInfo], bool]


class Records:
    """The records of the entries of one codec (named *codec*, data suffix *suffix*).

    *where* turns a key into the location error messages show.
    """

    def __init__(self, store: Store, codec: str, suffix: str, where: Callable[[str], str]) -> None:
        self.store, self.codec, self.suffix, self.where = store, codec, suffix, where

    def key(self, name: str) -> str:
        """Where *name*'s record is written."""
        return record_key(name, self.suffix)

    def read(self, name: str) -> Record:
        """*name*'s record; ``FileNotFoundError`` if none describes this format's data.

        ``CorruptEntryError`` if the record cannot be read or names another metric.
        """
        try:
            current, previous = self._decode(self.key(name), name)
            return current, previous, False
        except FileNotFoundError:
            key = old_record_key(name)
        current, previous = self._decode(key, name)
        if current.codec not in (None, self.codec):
            # A 0.1 record was one per name: this one describes another format's file.
            raise FileNotFoundError(key)
        return current, previous, True

    def _decode(self, key: str, name: str) -> tuple[EntryInfo, list[EntryInfo]]:
        raw = self.store.read_bytes(key)
        try:
            return decode_record(raw, name)
        except CorruptEntryError as err:
            # Name the file, so a user can find (and inspect) what was wrong.
            raise CorruptEntryError(f"{self.where(key)}: {err}") from None

    def has(self, name: str) -> bool:
        """Whether *name* has a record of this format (readable or not)."""
        try:
            self.read(name)
        except FileNotFoundError:
            return False
        except CorruptEntryError:
            return True
        return True

    def ever_recorded(self, name: str) -> bool:
        """Whether *name*'s data file has (or once had) a record of this format.

        A record is only ever removed after a marker is left in its place (see
        :meth:`mark_gone`), so this answer never turns from True to False: data
        with no record now and no marker never had one (a legacy file).
        """
        if not legacy_files_possible(self.store):
            return True
        return self.has(name) or self.store.exists(gone_key(name, self.suffix))

    def mark_gone(self, name: str) -> None:
        """Leave the marker that *name* had a record, before the record is removed."""
        self.store.put_atomic(gone_key(name, self.suffix), lambda f: f.write(b""))

    def has_old(self, name: str) -> bool:
        """Whether *name*'s record of this format is a 0.1 record."""
        try:
            return self.read(name)[2]
        except (FileNotFoundError, CorruptEntryError):
            return False

    def keys(self, name: str) -> list[str]:
        """The record files of *name* of this format (for removal or quarantine)."""
        return [self.key(name), *([old_record_key(name)] if self.has_old(name) else [])]

    def write(
        self, current: EntryInfo, previous: list[EntryInfo], *, durable: bool = False
    ) -> None:
        """Publish *current*'s record, remembering *previous*, atomically."""
        record = encode_record(current, previous)
        self.store.put_atomic(self.key(current.name), lambda f: f.write(record), durable=durable)

    def rewrite_current(self, current: EntryInfo) -> bool:
        """Replace the current entry's record fields by *current*'s, atomically.

        Only for fields that do not describe the data (an invalidation mark): size
        and checksum must stay those of the data. The caller holds the name's lock.
        Returns False when the record is gone or describes other data now.
        """
        try:
            found, previous, _ = self.read(current.name)
        except (FileNotFoundError, CorruptEntryError):
            return False
        if (found.size, found.checksum) != (current.size, current.checksum):
            return False
        self.write(current, previous)
        return True

    def delete(self, name: str) -> None:
        """Remove *name*'s records of this format (leaving the marker that it had one)."""
        # Only records seen here are removed, after the marker: one a writer
        # publishes meanwhile stays, and so describes the data it commits next.
        keys = [key for key in self.keys(name) if self.store.exists(key)]
        if keys:
            self.mark_gone(name)
        for key in keys:
            self.store.delete(key)

    def names(self) -> list[str]:
        """Names with a record in this format's folder (data present or not)."""
        folder = record_dir(self.suffix)
        return [f[: -len(".json")] for f in self.store.list(folder) if f.endswith(".json")]
