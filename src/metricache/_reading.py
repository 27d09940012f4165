"""Verified reads of one format's entries, over any Store.

A read pairs the data with the record entry it matches (size, and the checksum
while hashing) and decodes it with that entry's codec hint; data that matches no
entry is corrupt, never returned. Data without a record is a legacy entry only if
no record ever existed for it (see :mod:`metricache._entries` for the protocol
the writers follow, and the ``.gone`` markers deletes leave).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, BinaryIO

from ._interface import legacy_info, not_stored_message
from ._layout import DATE_SUFFIX, data_key
from ._meta import EntryInfo
from ._packed import PackedStore
from ._records import Records
from ._store import StatResult, Store
from ._verified import Decoded, decode_verified, hash_whole
from .codecs import Codec
from .exceptions import CorruptEntryError, MetricNotStoredError, PickleRequiredError

__all__ = ["EntryReads", "MmapReader"]

#: Reads of an entry before a persistent record/data mismatch counts as corruption.
_READ_ATTEMPTS = 3
#: Seconds before the second read of a changing entry (then twice that, ...).
_RETRY_PAUSE = 0.002
#: What decoding garbage can raise besides CorruptEntryError: all of it is corruption.
#: (A declared size too large to allocate is MemoryError; nesting too deep, RecursionError.)
_DECODE_ERRORS = (
    ValueError, EOFError, UnicodeDecodeError, MemoryError, RecursionError, OverflowError,
    IndexError, KeyError, TypeError, IsADirectoryError,
)  # fmt: skip
#: Reads a local file by memory-mapping it: ``(key, hint) -> value`` or None to read.
MmapReader = Callable[[str, "str | None"], Any]


class _Changed(Exception):
    """The entry changed under a reader; read it again."""


class _Mismatch(Exception):
    """Data that matches no entry of the record, with what was read (to see a change)."""

    def __init__(self, state: object, error: CorruptEntryError) -> None:
        super().__init__(str(error))
        self.state, self.error = state, error


class EntryReads:
    """The entries of one format (one codec, one data suffix) in one store: reads.

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

    # -- reading ---------------------------------------------------------------

    def read(self, name: str) -> tuple[Any, EntryInfo]:
        """The stored value of *name* and the record entry its data matched.

        Raises ``MetricNotStoredError`` if nothing is stored and
        ``CorruptEntryError`` if what is stored fails verification. A mismatch is
        read again only while record or data change: an unchanged one is the verdict.
        """
        error: CorruptEntryError | None = None
        seen: _Mismatch | None = None
        for attempt in range(_READ_ATTEMPTS):
            if attempt:
                time.sleep(_RETRY_PAUSE * attempt)  # let a writer between its renames finish
            try:
                current, previous, _ = self.records.read(name)
            except FileNotFoundError:
                try:
                    return self._read_unrecorded(name)
                except _Changed:
                    continue
            try:
                return self._read_verified(name, [current, *previous], seen)
            except FileNotFoundError:
                # A record without data: a first write that never finished, or a delete.
                raise MetricNotStoredError(not_stored_message(name, self)) from None
            except _Mismatch as mismatch:
                if mismatch is seen:  # nothing changed since the last read: the verdict
                    raise mismatch.error from None
                seen, error = mismatch, mismatch.error
        if error is None:
            error = CorruptEntryError(
                f"{self.where(self.data_key(name))} kept changing while read"
            )
        raise error

    def _read_unrecorded(self, name: str) -> tuple[Any, EntryInfo]:
        """Data without a record: legacy only if no record ever described it."""
        if self.records.has(name):
            raise _Changed(name)  # written (or damaged) since we looked
        if self.records.ever_recorded(name):
            # Deleted: data there now is left over from a race with a writer, and
            # without its record its codec hint is lost.
            raise MetricNotStoredError(not_stored_message(name, self))
        return self._read_legacy(name)

    def _read_verified(
        self, name: str, candidates: list[EntryInfo], seen: _Mismatch | None = None
    ) -> tuple[Any, EntryInfo]:
        """Decode the data and return it with the record entry it matches.

        The size is checked (``fstat``) before anything is decoded, and the data is
        decoded once with the hint of the entry it most likely is (by identity,
        else the first of that size); only a valid earlier entry written with
        another hint is decoded a second time.
        """
        key = self.data_key(name)
        if self._mmap_reader is not None:
            mapped = self._read_mapped(key, candidates)
            if mapped is not None:
                return mapped
        with self.store.open_read(key) as f:
            stat = self.store.stat_open(f, key)
            state = (tuple(candidates), stat)
            if seen is not None and seen.state == state:
                raise seen  # the same record and the same file: decoding again changes nothing
            sized = [c for c in candidates if c.size == stat.size]
            if not sized:
                raise _Mismatch(state, self._mismatch(key, stat.size, None, candidates))
            expected = self._pick(sized, stat)
            try:
                value, size, checksum = self._decode_open(f, key, expected.hint)
            except CorruptEntryError as err:
                return self._read_other_hint(f, key, sized, expected, state, err)
            try:
                matched = self._match(key, size, checksum, sized)
            except CorruptEntryError as err:
                raise _Mismatch(state, err) from None
            if matched.hint != expected.hint:
                # Decodable with this hint, but written with another: decode it the way
                # it was written (this file matched that entry's checksum).
                f.seek(0)
                value, _, _ = self._decode_open(f, key, matched.hint)
            return value, matched

    def _read_other_hint(
        self,
        f: BinaryIO,
        key: str,
        sized: list[EntryInfo],
        expected: EntryInfo,
        state: object,
        err: CorruptEntryError,
    ) -> tuple[Any, EntryInfo]:
        """After a failed decode: the file may be an entry of another hint, else corrupt.

        Hashing tells which (it costs far less than a decode), so a corrupt file is
        decoded once.
        """
        if all(c.hint == expected.hint for c in sized):
            raise _Mismatch(state, err)
        f.seek(0)
        size, checksum = hash_whole(f)
        matched = next((c for c in sized if c.checksum == checksum), None)
        if matched is None or matched.hint == expected.hint:
            raise _Mismatch(state, err)
        f.seek(0)
        value, _, _ = self._decode_open(f, key, matched.hint)
        return value, matched

    def _read_mapped(self, key: str, candidates: list[EntryInfo]) -> tuple[Any, EntryInfo] | None:
        """The memory-mapped value (size checked, checksum not), or None to read it."""
        assert self._mmap_reader is not None
        stat = self.store.stat(key)
        sized = [c for c in candidates if c.size == stat.size]
        if not sized:
            err = self._mismatch(key, stat.size, None, candidates)
            raise _Mismatch((tuple(candidates), stat), err)
        expected = self._pick(sized, stat)
        try:
            mapped = self._mmap_reader(key, expected.hint)
        except _DECODE_ERRORS as err:
            raise CorruptEntryError(f"{self.where(key)} cannot be decoded: {err!r}") from None
        return None if mapped is None else (mapped, expected)

    @staticmethod
    def _pick(sized: list[EntryInfo], stat: StatResult) -> EntryInfo:
        """The entry the data should be, by its identity (when the store has one)."""
        same = [c for c in sized if stat.identity is not None and c.file_id == stat.identity]
        return same[0] if same else sized[0]

    def _decode_open(
        self, f: BinaryIO, key: str, hint: str | None, recorded: bool = True
    ) -> Decoded:
        """Decode the open data file *f* (of *key*): ``(value, size, checksum)``.

        Every failure to decode is corruption, naming the file; I/O errors (an
        ``OSError``) stay I/O errors.
        """
        try:
            return decode_verified(
                self.codec, f, hint, hashing=self.verify_checksums, recorded=recorded
            )
        except PickleRequiredError as err:
            # A policy refusal, not damage: never quarantined, so the option can work.
            raise PickleRequiredError(f"{self.where(key)}: {err}") from None
        except CorruptEntryError as err:
            raise CorruptEntryError(f"{self.where(key)}: {err}") from None
        except _DECODE_ERRORS as err:
            raise CorruptEntryError(f"{self.where(key)} cannot be decoded: {err!r}") from None

    def _match(
        self, key: str, size: int, checksum: str | None, candidates: list[EntryInfo]
    ) -> EntryInfo:
        """The record entry the data read matches: its size, and its checksum if hashed."""
        for info in candidates:
            if info.size == size and (checksum is None or info.checksum == checksum):
                return info
        raise self._mismatch(key, size, checksum, candidates)

    def _mismatch(
        self, key: str, size: int, checksum: str | None, candidates: list[EntryInfo]
    ) -> CorruptEntryError:
        expected = candidates[0]
        found = f"{size} bytes" + (f" with checksum {checksum}" if checksum else "")
        return CorruptEntryError(
            f"{self.where(key)} does not match its metadata: {found}, expected "
            f"{expected.size} bytes with checksum {expected.checksum}"
        )

    def _read_legacy(self, name: str) -> tuple[Any, EntryInfo]:
        """Data without a record: written by simple_metrics_manager (or copied in).

        A writer commits its record before its data, and a record is only removed
        after its marker is left, so data that is still the same file after the
        read, with still neither, was not written by metricache while we read it.
        """
        key = self.data_key(name)
        try:
            before = self.store.stat(key)
            value, _, _ = self.decode_legacy(key)
            after = self.store.stat(key)
        except FileNotFoundError:
            raise MetricNotStoredError(not_stored_message(name, self)) from None
        if after != before or self.records.ever_recorded(name):
            raise _Changed(name)
        return value, self._legacy_info(name, after)

    def decode_legacy(self, key: str) -> Decoded:
        """Decode a file without a record (a legacy entry or sidecar) the seed's way."""
        with self.store.open_read(key) as f:
            return self._decode_open(f, key, None, recorded=False)

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
        if self.records.ever_recorded(name):
            return None  # deleted: what data is left is no entry
        try:
            return self._legacy_info(name, self.store.stat(self.data_key(name)))
        except FileNotFoundError:
            return None

    def verify(self, name: str) -> EntryInfo | None:
        """Hash the data now and return the entry it matches (None if not stored).

        Like a load, a mismatch is checked again while writers may be replacing the
        entry; only one that persists is corruption.
        """
        error: CorruptEntryError | None = None
        for attempt in range(_READ_ATTEMPTS):
            if attempt:
                time.sleep(_RETRY_PAUSE * attempt)
            try:
                current, previous, _ = self.records.read(name)
            except FileNotFoundError:
                return self.info(name)
            key = self.data_key(name)
            try:
                with self.store.open_read(key) as f:
                    size, checksum = hash_whole(f)
            except FileNotFoundError:
                return None  # a record without data: not stored
            try:
                return self._match(key, size, checksum, [current, *previous])
            except CorruptEntryError as err:
                error = err
        assert error is not None
        raise error

    def where(self, key: str) -> str:
        """A human location of *key*: its local path when the store has one."""
        if isinstance(self.store, PackedStore):
            packed = self.store.describe(key)
            if packed is not None:
                return packed
        path = self.store.local_path(key)
        return str(path) if path is not None else f"{self.store!r}/{key}"
