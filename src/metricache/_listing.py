"""Listing and checking a whole cache folder: every format's entries, without decoding values.

Both only read: a tool that looks (``ls``, a dashboard, a second process) can use
them on a folder it must not change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ._layout import (
    DATE_SUFFIX,
    META_DIR,
    QUARANTINE_DIR,
    RECORD_SUFFIX,
    data_key,
    record_dir,
    suffix_of_record_dir,
)
from ._meta import EntryInfo, decode_current, decode_record
from ._packed import PackedStore, legacy_files_possible
from ._store import LocalStore, Store
from ._verified import hash_whole
from .codecs import codec_registry
from .exceptions import CorruptEntryError

__all__ = ["CheckReport", "Damage", "check_folder", "list_entries"]


@dataclass(frozen=True)
class Damage:
    """One entry that failed a check: its name, the key at fault, and what is wrong."""

    name: str
    key: str
    reason: str


@dataclass
class CheckReport:
    """What :meth:`~metricache.DatedCacheManager.check` found; nothing was changed.

    Attributes
    ----------
    ok : list of EntryInfo
        Entries whose data matches their record (legacy entries, which have no
        checksum, are listed here with ``legacy=True``).
    damaged : list of Damage
        Entries whose data or record fails verification.
    orphans : list of str
        Record keys without data: first writes that never finished (or are under way).
    temp_files : list of str
        Temp files of writers that died before committing.
    quarantined : list of str
        Folders of entries moved aside as corrupt.
    """

    ok: list[EntryInfo] = field(default_factory=list)
    damaged: list[Damage] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing is damaged, orphaned or left behind."""
        return not (self.damaged or self.orphans or self.temp_files)


@dataclass(frozen=True)
class _Found:
    """A record file found in the folder, with the data key it belongs to."""

    name: str
    suffix: str
    record: str
    #: The record's bytes when read with the listing (a packed index), else None.
    raw: bytes | None = None

    def read(self, store: Store) -> bytes:
        """The record's bytes."""
        return self.raw if self.raw is not None else store.read_bytes(self.record)


def _suffixes(store: Store) -> dict[str, str]:
    """Data suffix -> codec name, for every registered codec and every record folder."""
    known = {cls.suffix: name for name, cls in codec_registry.items()}
    for folder in store.folders(META_DIR):
        suffix = suffix_of_record_dir(folder)
        known.setdefault(suffix, suffix.lstrip("."))
    return known


def _records(store: Store, suffixes: dict[str, str]) -> Iterator[_Found]:
    """Every record in the folder: this version's, then 0.1's (one per name)."""
    for suffix in suffixes:
        folder = record_dir(suffix)
        if isinstance(store, PackedStore):
            yield from _packed_records(store, folder, suffix)
            continue
        for f in store.list(folder):
            if f.endswith(RECORD_SUFFIX):
                yield _Found(f[: -len(RECORD_SUFFIX)], suffix, f"{folder}/{f}")
    by_codec = {codec: suffix for suffix, codec in suffixes.items()}
    for f in store.list(META_DIR):
        if f.endswith(RECORD_SUFFIX):
            name, key = f[: -len(RECORD_SUFFIX)], f"{META_DIR}/{f}"
            codec = _old_record_codec(store, key, name)
            if codec in by_codec:
                yield _Found(name, by_codec[codec], key)


def _packed_records(store: PackedStore, folder: str, suffix: str) -> Iterator[_Found]:
    """The records of one folder of a packed store, read in one pass over the index.

    A record that also has a file (a per-file writer's) is read the usual way,
    which picks the newer copy.
    """
    files = set(LocalStore.list(store, folder))
    start = len(folder) + 1
    for key, raw in store.index.iter_scan(folder):
        f = key[start:]
        if "/" in f or not f.endswith(RECORD_SUFFIX):
            continue
        yield _Found(f[: -len(RECORD_SUFFIX)], suffix, key, None if f in files else raw)
        files.discard(f)
    for f in files:
        if f.endswith(RECORD_SUFFIX):
            yield _Found(f[: -len(RECORD_SUFFIX)], suffix, f"{folder}/{f}")


def _old_record_codec(store: Store, key: str, name: str) -> str | None:
    with contextlib.suppress(OSError, CorruptEntryError):
        return decode_record(store.read_bytes(key), name)[0].codec
    return None


def list_entries(store: Store) -> Iterator[EntryInfo]:
    """An :class:`EntryInfo` for every stored entry of every format, sorted by name.

    Entries with a record are described by it; data files without one (written by
    simple_metrics_manager) as legacy entries. Records without data and records
    that cannot be read are left out: :func:`check_folder` reports them.
    """
    suffixes = _suffixes(store)
    files = set(store.list())
    found: dict[tuple[str, str], EntryInfo] = {}
    for rec in _records(store, suffixes):
        if (rec.name, rec.suffix) in found or data_key(rec.name, rec.suffix) not in files:
            continue
        try:
            found[rec.name, rec.suffix] = decode_current(rec.read(store), rec.name)
        except (OSError, CorruptEntryError):
            continue
    legacy = _legacy_files(files, suffixes) if legacy_files_possible(store) else iter(())
    for name, suffix in legacy:
        if (name, suffix) not in found:
            found[name, suffix] = _legacy_entry(store, name, suffix, suffixes[suffix])
    for key in sorted(found):
        yield found[key]


def _legacy_files(files: set[str], suffixes: dict[str, str]) -> Iterator[tuple[str, str]]:
    """``(name, suffix)`` of data files that may be legacy entries (not sidecars, not temps)."""
    for f in files:
        if f.startswith("."):
            continue
        for suffix in suffixes:
            if suffix and f.endswith(suffix) and not f.endswith(".tmp" + suffix):
                name = f[: -len(suffix)]
                if not _is_sidecar(name, suffix, files):
                    yield name, suffix


def _is_sidecar(name: str, suffix: str, files: set[str]) -> bool:
    """Whether *name* is the seed's ``_date`` sidecar of another legacy data file."""
    if not name.endswith(DATE_SUFFIX) or len(name) == len(DATE_SUFFIX):
        return False
    base = name[: -len(DATE_SUFFIX)]
    has_own_sidecar = data_key(name + DATE_SUFFIX, suffix) in files
    return data_key(base, suffix) in files and not has_own_sidecar


def _legacy_entry(store: Store, name: str, suffix: str, codec: str) -> EntryInfo:
    stat = store.stat(data_key(name, suffix))
    stamp = datetime.fromtimestamp(stat.mtime, timezone.utc)
    return EntryInfo(name, stamp, size=stat.size, codec=codec, version=None, legacy=True)


def check_folder(store: Store) -> CheckReport:
    """Verify every entry of the folder against its record; change nothing."""
    report = CheckReport()
    suffixes = _suffixes(store)
    files = set(store.list())
    seen: set[tuple[str, str]] = set()
    for rec in _records(store, suffixes):
        if (rec.name, rec.suffix) in seen:
            continue  # a 0.1 record next to this version's: the newer one describes the data
        seen.add((rec.name, rec.suffix))
        if data_key(rec.name, rec.suffix) not in files:
            report.orphans.append(rec.record)
            continue
        _check_one(store, rec, report)
    legacy = _legacy_files(files, suffixes) if legacy_files_possible(store) else iter(())
    for name, suffix in sorted(legacy):
        if (name, suffix) not in seen:
            report.ok.append(_legacy_entry(store, name, suffix, suffixes[suffix]))
    for folder in ["", *(record_dir(s) for s in suffixes)]:
        report.temp_files += [key for key, dead in store.temp_files(folder) if dead]
    report.quarantined = sorted(f"{QUARANTINE_DIR}/{q}" for q in store.folders(QUARANTINE_DIR))
    return report


def _check_one(store: Store, rec: _Found, report: CheckReport) -> None:
    key = data_key(rec.name, rec.suffix)
    try:
        current, previous = decode_record(rec.read(store), rec.name)
        with store.open_read(key) as f:
            size, checksum = hash_whole(f)
    except CorruptEntryError as err:
        report.damaged.append(Damage(rec.name, rec.record, str(err)))
        return
    except FileNotFoundError:
        report.orphans.append(rec.record)  # deleted while we looked
        return
    for entry in (current, *previous):
        if entry.size == size and entry.checksum == checksum:
            report.ok.append(entry)
            return
    reason = f"{size} bytes with checksum {checksum}, expected {current.size} bytes "
    report.damaged.append(Damage(rec.name, key, reason + f"with checksum {current.checksum}"))
