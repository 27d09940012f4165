"""Entries: the commit protocol over any Store (verified reads are in :mod:`._reading`).

An entry is a data file ``<name><suffix>`` and its record
``.metricache/meta/<kind>/<name>.json`` (see :mod:`metricache._layout`), which
names the data's size and checksum. Only :class:`~metricache._store.Store`
primitives are used here, so the same protocol runs on a local folder, an object
store or anything else that can stage and commit bytes.

The commit protocol: stage the new data where no reader sees it (hashing it while
it is written), write the record atomically with ``current`` = the new entry and
``previous`` = the entry whose data is visible now, then commit the data. A crash
at any point leaves data that matches ``current`` or one of ``previous``: the old
value or the new one, both readable; a reader never pairs data with a record entry
it does not match (size and checksum), so data without a matching entry is corrupt,
never a wrong value. Nothing here relies on the store's identities (inodes, ETags):
they only pick the exact previous entry faster, and may be None.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, BinaryIO, cast

from ._hashio import HashingWriter
from ._layout import old_record_key
from ._meta import EntryInfo, utc_now
from ._packed import transaction_for
from ._reading import EntryReads, MmapReader
from ._store import StatResult
from ._verified import hash_whole
from ._version import __version__
from .exceptions import CorruptEntryError
from .provenance.values import ValueIds

__all__ = ["Entries", "MmapReader"]

#: How many earlier entries a record remembers (for same-size candidates).
_PREVIOUS_KEPT = 2
#: What encoding a value gives: size, checksum, codec hint, value id.
_Encoded = tuple[int, str, "str | None", "str | None"]


class Entries(EntryReads):
    """The entries of one format in one store: the commit protocol (reads in the base).

    Constructed like :class:`~metricache._reading.EntryReads`.
    """

    def write(
        self,
        name: str,
        value: Any,
        duration: float | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> EntryInfo:
        """Store *value* as *name* by the commit protocol; return its record entry.

        *provenance* (``dependencies``, ``code``) goes into the record as given;
        the value id is computed while the value is written.
        """
        self.codec.validate(value)
        staged = self.store.stage(
            self.data_key(name),
            self._encoder(value),
            durable=self.durable,
            size_hint=self.codec.size_hint(value),
        )
        try:
            size, checksum, hint, value_id = staged.result
            info = EntryInfo(
                name, utc_now(), duration, size, checksum, self.codec.name,
                self.writer, __version__, hint, staged.identity, value_id=value_id,
                **(provenance or {}),
            )  # fmt: skip
            previous, old_record = self._previous_entries(name)
            # The record goes first: until the data commit lands, the data visible
            # still matches one of the record's previous entries. A packed entry's
            # record and data commit in one transaction.
            with transaction_for(self.store, staged):
                self.records.write(info, previous, durable=self.durable)
                staged.commit()
        except BaseException:
            staged.discard()
            raise
        if old_record:
            # The 0.1 record described this entry; the new one does now.
            self.store.delete(old_record)
        return info

    def _encoder(self, value: Any) -> Callable[[BinaryIO], _Encoded]:
        def encode(f: BinaryIO) -> _Encoded:
            ids = ValueIds(value)  # takes array bytes from the writes: one pass
            writer = HashingWriter(f, ids.sink)
            hint = self.codec.write(value, cast(BinaryIO, writer))
            return writer.size, writer.checksum(), hint, ids.finish()

        return encode

    def _previous_entries(self, name: str) -> tuple[list[EntryInfo], str | None]:
        """The entries that describe the data visible now, and the 0.1 record that did.

        The data's identity picks the one entry exactly, however many earlier
        writers died between their record and their commit; without one (a copied
        folder, a store without identities) entries of the same size are kept. Only
        a legacy file (no record ever) is hashed now and remembered as it is; data
        that a record once described but none does now is never remembered (its
        codec hint is lost, so read hint-less it could be another value).
        """
        key = self.data_key(name)
        try:
            stat = self.store.stat(key)
        except FileNotFoundError:
            return [], None
        try:
            current, previous, old = self.records.read(name)
        except FileNotFoundError:
            if not self.records.ever_recorded(name):
                return self._describe_unknown(name, stat), None
            self._drop_undescribed(key)
            return [], None
        except CorruptEntryError:
            self._drop_undescribed(key)
            return [], None
        candidates = [c for c in (current, *previous) if c.checksum is not None]
        same_file = [c for c in candidates if stat.identity and c.file_id == stat.identity]
        same_size = [c for c in candidates if c.size == stat.size]
        chosen = same_file[:1] or same_size[:_PREVIOUS_KEPT]
        return chosen, old_record_key(name) if old else None

    def _drop_undescribed(self, key: str) -> None:
        """Remove data no record describes before a new record names other data.

        Readers then see "not stored" until the commit, instead of data that
        matches nothing; removing data never makes a reader return a wrong value.
        """
        with contextlib.suppress(OSError):
            self.store.delete(key)

    def _describe_unknown(self, name: str, stat: StatResult) -> list[EntryInfo]:
        """An entry for data no record describes: hashed now, decoded as legacy."""
        try:
            with self.store.open_read(self.data_key(name)) as f:
                size, checksum = hash_whole(f)
        except FileNotFoundError:
            return []
        stamp = datetime.fromtimestamp(stat.mtime, timezone.utc)
        return [
            EntryInfo(
                name,
                stamp,
                size=size,
                checksum=checksum,
                codec=self.codec.name,
                version=None,
                file_id=stat.identity,
                legacy=True,
            )  # fmt: skip
        ]
