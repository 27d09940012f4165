"""A storage interface made of a store and a codec, with verified, crash-safe entries.

Each entry is a data file ``<name><suffix>`` and a record
``.metricache/meta/<name>.json`` (see :mod:`metricache._meta` for the commit
protocol). Loads verify size and checksum; legacy files without a record load
as simple_metrics_manager wrote them.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, cast

from ._flock import FolderLocks
from ._hashio import HashingReader, HashingWriter, hash_fd_in_background
from ._interface import DATE_SUFFIX, StorageInterface, legacy_info, not_stored_message
from ._locking import LOCK_DIR, NameLocks
from ._meta import META_DIR, EntryInfo, decode_record, encode_record, utc_now
from ._store import LocalStore, Store
from ._version import __version__
from .codecs import Codec
from .exceptions import CorruptEntryError, MetricNotStoredError

__all__ = ["QUARANTINE_DIR", "FileStorageInterface"]

QUARANTINE_DIR = ".metricache/quarantine"
#: How many earlier entries a record remembers (see the commit protocol in _meta).
_PREVIOUS_KEPT = 2
#: Reads of an entry before a persistent record/data mismatch counts as corruption.
_READ_ATTEMPTS = 3
#: Seeking codecs (npz) read files up to this size into memory in one read: faster
#: than decoding the file while another thread hashes it.
_IN_MEMORY_MAX = 96 * 1024


class FileStorageInterface(StorageInterface):
    """A :class:`StorageInterface` built from a store and a codec, with metadata.

    Parameters
    ----------
    metrics_dir : str or os.PathLike
        The cache folder; created (with parents) when missing.
    codec : Codec
        How values become bytes.
    durable : bool
        Also fsync each file and its folder, so entries survive a power loss.
        Off by default: it costs several times a plain write, and checksums
        already catch what a power loss can damage (it then costs a recompute).
    verify : bool
        Check each load against the stored xxh3 checksum (the size is always checked).
    """

    def __init__(
        self,
        metrics_dir: str | os.PathLike[str],
        codec: Codec,
        *,
        durable: bool = False,
        verify: bool = True,
    ) -> None:
        self.metrics_dir = os.fspath(metrics_dir)
        self.codec = codec
        self.file_ext = codec.suffix
        self.durable = durable
        self.verify_checksums = verify
        self.store: Store = LocalStore(_make_folder(Path(self.metrics_dir)))
        self.cleanup()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.metrics_dir!r})"

    # -- keys --
    def _data_key(self, name: str) -> str:
        return name + self.file_ext

    def _meta_key(self, name: str) -> str:
        return f"{META_DIR}/{name}.json"

    # -- the seed's API --
    def exists(self, name: str) -> bool:
        return self.store.exists(self._data_key(name))

    def save(self, name: str, data: Any) -> None:
        self.write_entry(name, data)

    def load(self, name: str) -> Any:
        return self.read_entry(name)[0]

    # -- writing --
    def check_value(self, value: Any) -> None:
        self.codec.validate(value)

    def write_entry(self, name: str, value: Any, duration: float | None = None) -> EntryInfo:
        self.check_name(name)
        self.codec.validate(value)
        staged = self.store.stage(
            self._data_key(name),
            self._encoder(value),
            durable=self.durable,
            size_hint=self.codec.size_hint(value),
        )
        try:
            size, checksum, hint = staged.result
            info = EntryInfo(
                name, utc_now(), duration, size, checksum, self.codec.name,
                type(self).__name__, __version__, hint, staged.identity,
            )  # fmt: skip
            record = encode_record(info, self._previous_entries(name))
            # The record goes first: until the data rename lands, the data on disk
            # still matches one of the record's previous entries.
            self.store.put_atomic(
                self._meta_key(name), lambda f: f.write(record), durable=self.durable
            )
            staged.commit()
        except BaseException:
            staged.discard()
            raise
        return info

    def _encoder(self, value: Any) -> Any:
        def encode(f: BinaryIO) -> tuple[int, str, str | None]:
            writer = HashingWriter(f)
            hint = self.codec.write(value, cast(BinaryIO, writer))
            return writer.size, writer.checksum(), hint

        return encode

    def _previous_entries(self, name: str) -> list[EntryInfo]:
        """The entries that may describe the data on disk now (kept for the crash window).

        The data file's identity picks the one entry exactly, however many earlier
        writers died between their record and their rename; without a match (a
        copied folder, a legacy file) entries of the same size are kept.
        """
        try:
            size, identity = self.store.stat(self._data_key(name))
        except FileNotFoundError:
            return []
        try:
            current, previous = self._read_record(name)
            candidates = [current, *previous]
        except (FileNotFoundError, CorruptEntryError):
            candidates = []
        same_file = [c for c in candidates if identity is not None and c.file_id == identity]
        same_size = [c for c in candidates if c.size == size]
        legacy = EntryInfo(name, utc_now(), size=size, version=None, file_id=identity, legacy=True)
        return same_file[:1] or same_size[:_PREVIOUS_KEPT] or [legacy]

    # -- reading --
    def _read_record(self, name: str) -> tuple[EntryInfo, list[EntryInfo]]:
        key = self._meta_key(name)
        raw = self.store.read_bytes(key)
        try:
            return decode_record(raw, name)
        except CorruptEntryError as err:
            # Name the file, so a user can find (and inspect) what was wrong.
            raise CorruptEntryError(f"{self._where(key)}: {err}") from None

    def read_entry(self, name: str) -> tuple[Any, EntryInfo | None]:
        error: CorruptEntryError | None = None
        for _ in range(_READ_ATTEMPTS):
            try:
                current, previous = self._read_record(name)
            except FileNotFoundError:
                return self._read_legacy(name)
            try:
                return self._read_verified(name, [current, *previous])
            except FileNotFoundError:
                # A record without data: a first write that never finished.
                raise MetricNotStoredError(not_stored_message(name, self)) from None
            except CorruptEntryError as err:
                # Writers may have replaced record and data between our reads: a
                # mismatch that persists over fresh reads is real corruption.
                error = err
        assert error is not None
        raise error

    def _read_verified(self, name: str, candidates: list[EntryInfo]) -> tuple[Any, EntryInfo]:
        """Decode the data file and return it with the record entry it matches."""
        hint = self._expected(name, candidates).hint
        value, size, checksum = self._decode(name, hint)
        matched = self._match(name, size, checksum, candidates)
        if matched.hint != hint:
            # The data is an earlier entry (a writer died before its rename) whose
            # codec hint differs: decode it the way it was written.
            value, size, checksum = self._decode(name, matched.hint)
            if self._match(name, size, checksum, candidates).hint != matched.hint:
                raise CorruptEntryError(f"{self._where(self._data_key(name))} changed while read")
        return value, matched

    def _expected(self, name: str, candidates: list[EntryInfo]) -> EntryInfo:
        """The entry the data file on disk should be, by its identity (an inode)."""
        try:
            _, identity = self.store.stat(self._data_key(name))
        except FileNotFoundError:
            return candidates[0]
        same_file = [c for c in candidates if identity is not None and c.file_id == identity]
        return same_file[0] if same_file else candidates[0]

    def _decode(
        self, name: str, hint: str | None, recorded: bool = True
    ) -> tuple[Any, int, str | None]:
        """Decode the data file, returning the value with its size and checksum.

        *recorded* is False for legacy files, whose codec checks (zip CRCs) are then
        the only integrity check there is.
        """
        key = self._data_key(name)
        with self.store.open_read(key) as f:
            try:
                if self.codec.sequential:
                    return self._decode_stream(f, hint)
                return self._decode_seekable(f, hint, recorded)
            except CorruptEntryError as err:
                raise CorruptEntryError(f"{self._where(key)}: {err}") from None
            except (ValueError, EOFError, UnicodeDecodeError) as err:
                raise CorruptEntryError(f"{self._where(key)} cannot be decoded: {err}") from None

    def _decode_stream(self, f: BinaryIO, hint: str | None) -> tuple[Any, int, str | None]:
        """Decode front to back, hashing every byte as the codec reads it."""
        reader = HashingReader(f, hashing=self.verify_checksums)
        value = self.codec.read(cast(BinaryIO, reader), hint)
        size, checksum = reader.finish()
        return value, size, checksum

    def _decode_seekable(
        self, f: BinaryIO, hint: str | None, recorded: bool
    ) -> tuple[Any, int, str | None]:
        """Decode a codec that seeks: on the real file, hashed meanwhile on another thread."""
        fd = _fileno(f)
        if fd is None:
            return self._decode_in_memory(f, hint)
        size = os.fstat(fd).st_size
        if not self.verify_checksums:
            return self.codec.read(f, hint), size, None  # only the size is checked
        pending = hash_fd_in_background(fd) if size > _IN_MEMORY_MAX else None
        if pending is None:  # a small file, or no pread on this platform
            return self._decode_in_memory(f, hint)
        value = self.codec.read_verified(f, hint) if recorded else self.codec.read(f, hint)
        size, checksum = pending.result()
        return value, size, checksum

    def _decode_in_memory(self, f: BinaryIO, hint: str | None) -> tuple[Any, int, str | None]:
        """Read the whole file in one read (hashing it), then decode the copy."""
        reader = HashingReader(f, hashing=self.verify_checksums)
        value = self.codec.read(io.BytesIO(reader.read()), hint)
        size, checksum = reader.finish()
        return value, size, checksum

    def _match(
        self, name: str, size: int, checksum: str | None, candidates: list[EntryInfo]
    ) -> EntryInfo:
        """The record entry the data read matches (size, and checksum when verifying)."""
        for info in candidates:
            if info.size == size and (checksum is None or info.checksum in (checksum, None)):
                return info
        expected = candidates[0]
        raise CorruptEntryError(
            f"{self._where(self._data_key(name))} does not match its metadata: "
            f"{size} bytes with checksum {checksum}, expected {expected.size} bytes "
            f"with checksum {expected.checksum}"
        )

    def _read_legacy(self, name: str) -> tuple[Any, EntryInfo]:
        """An entry without a record: written by simple_metrics_manager (or copied in)."""
        try:
            value, _, _ = self._decode(name, None, recorded=False)
        except FileNotFoundError:
            raise MetricNotStoredError(not_stored_message(name, self)) from None
        return value, self._legacy_info(name)

    def _legacy_info(self, name: str) -> EntryInfo:
        try:
            date, _, _ = self._decode(name + DATE_SUFFIX, None, recorded=False)
            return legacy_info(name, date)
        except (FileNotFoundError, CorruptEntryError, ValueError):
            path = self.store.local_path(self._data_key(name))
            mtime = path.stat().st_mtime if path is not None else time.time()
            stamp = datetime.fromtimestamp(mtime, timezone.utc)
            return EntryInfo(name, stamp, version=None, legacy=True)

    def info(self, name: str) -> EntryInfo | None:
        try:
            return self._read_record(name)[0]
        except FileNotFoundError:
            if not self.exists(name):
                return None
            return self._legacy_info(name)

    def verify(self, name: str) -> EntryInfo | None:
        """Read the data file and check its size and checksum against the record."""
        try:
            current, previous = self._read_record(name)
        except FileNotFoundError:
            return self.info(name)
        with self.store.open_read(self._data_key(name)) as f:
            size, checksum = HashingReader(f).finish()
        return self._match(name, size, checksum, [current, *previous])

    # -- housekeeping --
    def delete(self, name: str) -> bool:
        self.check_name(name)
        # Data first: a crash midway leaves a record without data, i.e. "not stored".
        existed = self.store.delete(self._data_key(name))
        self.store.delete(self._meta_key(name))
        self.store.delete(self._data_key(name + DATE_SUFFIX))
        return existed

    def stored_names(self) -> list[str]:
        ext = self.file_ext
        files = {f for f in self.store.list() if f.endswith(ext) and not f.startswith(".")}
        # `<name>.tmp<ext>` are the old package's temp files, never entries.
        names = {f[: -len(ext)] for f in files if not f.endswith(".tmp" + ext)}
        sidecars = {
            n for n in names if n.endswith(DATE_SUFFIX) and n[: -len(DATE_SUFFIX)] in names
        }
        return sorted(names - sidecars)

    def quarantine(self, name: str) -> str | None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        folder = f"{QUARANTINE_DIR}/{stamp}-{uuid.uuid4().hex[:6]}"
        for key in (self._data_key(name), self._meta_key(name)):
            try:
                # The record goes to meta/: with the json codec both files are '<name>.json'.
                self.store.move(key, f"{folder}/{key.replace(META_DIR, 'meta')}")
            except FileNotFoundError:
                continue
        return os.path.join(self.metrics_dir, folder)

    def locks(self, timeout: float | None = None) -> NameLocks:
        return NameLocks(Path(self.metrics_dir), timeout)

    def cleanup(self) -> int:
        """Remove temp files of dead writers and records whose first write never finished."""
        return self.store.cleanup(("", META_DIR)) + self._remove_orphan_records()

    def _remove_orphan_records(self) -> int:
        """Delete records without data whose name no writer holds locked."""
        records = {f[: -len(".json")] for f in self.store.list(META_DIR) if f.endswith(".json")}
        if not records:
            return 0
        ext = self.file_ext
        orphans = records - {f[: -len(ext)] for f in self.store.list() if f.endswith(ext)}
        removed = 0
        try:
            Path(self.metrics_dir, LOCK_DIR).mkdir(parents=True, exist_ok=True)
        except OSError:
            return removed  # a read-only folder: nothing can be cleaned, reads still work
        locks = FolderLocks(Path(self.metrics_dir, LOCK_DIR))
        for name in sorted(orphans):
            try:
                if not locks.acquire(name, 0):
                    continue  # a live writer is between its record and its data rename
            except OSError:
                return removed  # a read-only folder: nothing can be cleaned, reads still work
            try:
                if not self.store.exists(self._data_key(name)):
                    removed += self.store.delete(self._meta_key(name))
            finally:
                locks.release(name)
        return removed

    def _where(self, key: str) -> str:
        path = self.store.local_path(key)
        return str(path) if path is not None else key


def _make_folder(path: Path) -> Path:
    """Create the cache folder, with a clear error when a file is in the way."""
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"metrics_dir {str(path)!r} exists and is not a folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _fileno(f: BinaryIO) -> int | None:
    """The OS file descriptor behind *f*, if it has one."""
    try:
        return f.fileno()
    except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
        return None
