"""Entries: the commit protocol, verified reads, legacy files and quarantine, over any Store.

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

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, BinaryIO, cast

from ._hashio import HashingWriter
from ._interface import legacy_info, not_stored_message
from ._layout import DATE_SUFFIX, data_key, old_record_key
from ._meta import EntryInfo, utc_now
from ._records import Records
from ._store import StatResult, Store
from ._verified import Decoded, decode_verified, hash_whole
from ._version import __version__
from .codecs import Codec
from .exceptions import CorruptEntryError, MetricNotStoredError, PickleRequiredError
from .provenance.values import ValueIds

__all__ = ["Entries", "MmapReader"]

#: How many earlier entries a record remembers (for same-size candidates).
_PREVIOUS_KEPT = 2
#: Reads of an entry before a persistent record/data mismatch counts as corruption.
_READ_ATTEMPTS = 3
#: Reads a local file by memory-mapping it: ``(key, hint) -> value`` or None to read.
MmapReader = Callable[[str, "str | None"], Any]
#: What encoding a value gives: size, checksum, codec hint, value id.
_Encoded = tuple[int, str, "str | None", "str | None"]


class _Changed(Exception):
    """The entry changed under a reader; read it again."""


class Entries:
    """The entries of one format (one codec, one data suffix) in one store.

    Parameters
    ----------
    store : Store
        Where the bytes live.
    codec : Codec
        How values become bytes; its suffix names the data files.
    durable : bool
        Ask the store to make each commit survive a power loss.
    verify : bool
        Check each read against the recorded checksum (sizes are always checked).
    writer : str
        Who writes (a storage interface class name), kept in each record.
    label : str
        How errors name the storage (the interface's repr).
    mmap_reader : callable, optional
        Reads a data file by memory-mapping it, skipping the checksum.
    """

    def __init__(
        self,
        store: Store,
        codec: Codec,
        *,
        durable: bool = False,
        verify: bool = True,
        writer: str = "",
        label: str = "",
        mmap_reader: MmapReader | None = None,
    ) -> None:
        self.store, self.codec, self.suffix = store, codec, codec.suffix
        self.durable, self.verify_checksums, self.writer = durable, verify, writer
        self.label = label or f"{store!r}"
        self.records = Records(store, codec.name, codec.suffix, self.where)
        self._mmap_reader = mmap_reader

    def __repr__(self) -> str:
        return self.label

    def data_key(self, name: str) -> str:
        """The key of *name*'s data."""
        return data_key(name, self.suffix)

    def exists(self, name: str) -> bool:
        """Whether *name*'s data is stored (it may still fail verification)."""
        return self.store.exists(self.data_key(name))

    # -- writing ---------------------------------------------------------------

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
            # still matches one of the record's previous entries.
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
        folder, a store without identities) entries of the same size are kept; when
        no entry describes the data (a legacy file, a lost record), it is hashed now,
        so every remembered entry carries a checksum.
        """
        try:
            stat = self.store.stat(self.data_key(name))
        except FileNotFoundError:
            return [], None
        try:
            current, previous, old = self.records.read(name)
            candidates = [c for c in (current, *previous) if c.checksum is not None]
        except (FileNotFoundError, CorruptEntryError):
            candidates, old = [], False
        same_file = [c for c in candidates if stat.identity and c.file_id == stat.identity]
        same_size = [c for c in candidates if c.size == stat.size]
        chosen = same_file[:1] or same_size[:_PREVIOUS_KEPT]
        old_key = old_record_key(name) if old else None
        return chosen or self._describe_unknown(name, stat), old_key

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

    # -- reading ---------------------------------------------------------------

    def read(self, name: str) -> tuple[Any, EntryInfo]:
        """The stored value of *name* and the record entry its data matched.

        Raises ``MetricNotStoredError`` if nothing is stored and
        ``CorruptEntryError`` if what is stored fails verification.
        """
        error: Exception | None = None
        for _ in range(_READ_ATTEMPTS):
            try:
                current, previous, _ = self.records.read(name)
            except FileNotFoundError:
                try:
                    return self._read_legacy(name)
                except _Changed as changed:
                    error = changed
                    continue
            try:
                return self._read_verified(name, [current, *previous])
            except FileNotFoundError:
                # A record without data: a first write that never finished.
                raise MetricNotStoredError(not_stored_message(name, self)) from None
            except CorruptEntryError as err:
                # Writers may have replaced record and data between our reads: a
                # mismatch that persists over fresh reads is real corruption.
                error = err
        if isinstance(error, CorruptEntryError):
            raise error
        raise CorruptEntryError(f"{self.where(self.data_key(name))} kept changing while read")

    def _read_verified(self, name: str, candidates: list[EntryInfo]) -> tuple[Any, EntryInfo]:
        """Decode the data and return it with the record entry it matches.

        The data is decoded with the codec hint of the entry it most likely is (by
        identity, else the current one); when that hint does not fit it (the data
        is an earlier entry: a writer died before its commit), with the others'.
        """
        key = self.data_key(name)
        expected = self._expected(key, candidates)
        hints = dict.fromkeys([expected.hint, *(c.hint for c in candidates)])
        error: CorruptEntryError | None = None
        for hint in hints:
            try:
                value, size, checksum = self._decode(key, hint)
            except CorruptEntryError as err:
                error = error or err
                continue
            matched = self._match(key, size, checksum, candidates)
            if matched.hint != hint:
                # Decodable with this hint, but written with another: decode it the
                # way it was written.
                value, size, checksum = self._decode(key, matched.hint)
                if self._match(key, size, checksum, candidates).hint != matched.hint:
                    raise CorruptEntryError(f"{self.where(key)} changed while read")
            return value, matched
        assert error is not None
        raise error

    def _expected(self, key: str, candidates: list[EntryInfo]) -> EntryInfo:
        """The entry the data should be, by its identity (when the store has one)."""
        try:
            identity = self.store.stat(key).identity
        except FileNotFoundError:
            return candidates[0]
        same = [c for c in candidates if identity is not None and c.file_id == identity]
        return same[0] if same else candidates[0]

    def _decode(self, key: str, hint: str | None, recorded: bool = True) -> Decoded:
        """Decode the data under *key*: ``(value, size, checksum)``."""
        if self._mmap_reader is not None and recorded:
            mapped = self._mmap_reader(key, hint)
            if mapped is not None:
                return mapped, self.store.stat(key).size, None
        with self.store.open_read(key) as f:
            try:
                return decode_verified(
                    self.codec, f, hint, hashing=self.verify_checksums, recorded=recorded
                )
            except PickleRequiredError as err:
                # A policy refusal, not damage: never quarantined, so the option can work.
                raise PickleRequiredError(f"{self.where(key)}: {err}") from None
            except CorruptEntryError as err:
                raise CorruptEntryError(f"{self.where(key)}: {err}") from None
            except (ValueError, EOFError, UnicodeDecodeError) as err:
                raise CorruptEntryError(f"{self.where(key)} cannot be decoded: {err}") from None

    def _match(
        self, key: str, size: int, checksum: str | None, candidates: list[EntryInfo]
    ) -> EntryInfo:
        """The record entry the data read matches: its size, and its checksum if hashed."""
        for info in candidates:
            if info.size == size and (checksum is None or info.checksum == checksum):
                return info
        expected = candidates[0]
        raise CorruptEntryError(
            f"{self.where(key)} does not match its metadata: "
            f"{size} bytes with checksum {checksum}, expected {expected.size} bytes "
            f"with checksum {expected.checksum}"
        )

    def _read_legacy(self, name: str) -> tuple[Any, EntryInfo]:
        """Data without a record: written by simple_metrics_manager (or copied in).

        A writer commits its record before its data and a deleter removes the data
        before the record, so data that is still the same file after the read, with
        still no record, was not written by metricache while we read it.
        """
        key = self.data_key(name)
        try:
            before = self.store.stat(key)
            value, _, _ = self._decode(key, None, recorded=False)
            after = self.store.stat(key)
        except FileNotFoundError:
            raise MetricNotStoredError(not_stored_message(name, self)) from None
        if after != before or self.records.has(name):
            raise _Changed(name)
        return value, self._legacy_info(name, after)

    def decode_legacy(self, key: str) -> Decoded:
        """Decode a file without a record (a legacy entry or sidecar) the seed's way."""
        return self._decode(key, None, recorded=False)

    def _legacy_info(self, name: str, stat: StatResult | None = None) -> EntryInfo:
        """A legacy entry's date: its seed ``_date`` sidecar, else the data's mtime."""
        try:
            date, _, _ = self.decode_legacy(self.data_key(name + DATE_SUFFIX))
            return replace(legacy_info(name, date), codec=self.codec.name)
        except (FileNotFoundError, CorruptEntryError, ValueError):
            pass
        if stat is None:
            stat = self.store.stat(self.data_key(name))
        stamp = datetime.fromtimestamp(stat.mtime, timezone.utc)
        return EntryInfo(name, stamp, size=stat.size, codec=self.codec.name, version=None,
                         legacy=True)  # fmt: skip

    def info(self, name: str) -> EntryInfo | None:
        """The record entry of *name* (or a legacy entry's date), None if not stored."""
        try:
            return self.records.read(name)[0]
        except FileNotFoundError:
            pass
        try:
            return self._legacy_info(name, self.store.stat(self.data_key(name)))
        except FileNotFoundError:
            return None

    def verify(self, name: str) -> EntryInfo | None:
        """Hash the data now and return the entry it matches (None if not stored)."""
        try:
            current, previous, _ = self.records.read(name)
        except FileNotFoundError:
            return self.info(name)
        key = self.data_key(name)
        with self.store.open_read(key) as f:
            size, checksum = hash_whole(f)
        return self._match(key, size, checksum, [current, *previous])

    def where(self, key: str) -> str:
        """A human location of *key*: its local path when the store has one."""
        path = self.store.local_path(key)
        return str(path) if path is not None else f"{self.store!r}/{key}"
