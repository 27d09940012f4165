"""Housekeeping of one format's entries: delete, quarantine, names, and dead writers' litter.

Separate from the commit protocol (:mod:`metricache._entries`): none of these
runs on the path of a load or a store.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from ._entries import Entries
from ._interface import legacy_info
from ._layout import DATE_SUFFIX, QUARANTINE_DIR, ROOT_DIR, record_dir
from ._packed import legacy_files_possible
from .exceptions import CorruptEntryError

__all__ = [
    "dead_temp_files",
    "delete",
    "names",
    "orphan_records",
    "quarantine",
    "remove_orphan",
]


def delete(entries: Entries, name: str) -> bool:
    """Remove *name*'s data and record; return whether data was stored."""
    sidecar = is_legacy_sidecar_of(entries, name)
    # Data first: a crash midway leaves a record without data, i.e. "not stored".
    existed = entries.store.delete(entries.data_key(name))
    entries.records.delete(name)
    if sidecar:
        entries.store.delete(entries.data_key(name + DATE_SUFFIX))
    return existed


def is_legacy_sidecar_of(entries: Entries, name: str) -> bool:
    """Whether ``<name>_date`` is the seed's date sidecar of *name*, not a metric.

    It is one only if metricache never stored a metric by that name (no record),
    it is not dated itself (the seed dated every metric it saved, never a
    sidecar: no ``<name>_date_date``), and it holds a ``'YYYY-MM-DD'`` date.
    """
    sidecar = name + DATE_SUFFIX
    if entries.records.has(sidecar) or entries.exists(sidecar + DATE_SUFFIX):
        return False
    try:
        date, _, _ = entries.decode_legacy(entries.data_key(sidecar))
        legacy_info(name, date)
    except (OSError, ValueError):  # absent, unreadable, undecodable, or not a date
        return False
    return True


def quarantine(entries: Entries, name: str) -> str:
    """Move *name*'s data and record into a fresh quarantine folder; return where."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    folder = f"{QUARANTINE_DIR}/{stamp}-{uuid.uuid4().hex[:6]}"
    # The marker first: data that appears once the record is gone is never legacy.
    entries.records.mark_gone(name)
    for key in [entries.data_key(name), *entries.records.keys(name)]:
        try:
            entries.store.move(key, f"{folder}/{key}")
        except FileNotFoundError:
            continue
    return entries.where(folder)


def names(entries: Entries) -> list[str]:
    """Names of every entry of this format (legacy ones included, sidecars not)."""
    suffix = entries.suffix
    files = {f for f in entries.store.list() if f.endswith(suffix) and not f.startswith(".")}
    # `<name>.tmp<ext>` are the old package's temp files, never entries.
    found = {f[: len(f) - len(suffix)] for f in files if not f.endswith(".tmp" + suffix)}
    if not legacy_files_possible(entries.store):
        found &= set(entries.records.names())  # data without a record lost it: not stored
    return sorted(n for n in found if not _is_sidecar_name(entries, n, found))


def _is_sidecar_name(entries: Entries, name: str, found: set[str]) -> bool:
    if not name.endswith(DATE_SUFFIX) or name == DATE_SUFFIX:
        return False
    base = name[: -len(DATE_SUFFIX)]
    return base in found and is_legacy_sidecar_of(entries, base)


def dead_temp_files(entries: Entries) -> list[str]:
    """Keys of temp files whose writers died, next to data and records (and the layout)."""
    folders = ("", record_dir(entries.suffix), ROOT_DIR)
    return [key for f in folders for key, dead in entries.store.temp_files(f) if dead]


def orphan_records(entries: Entries) -> list[str]:
    """Names whose record has no data: first writes that never finished (or are under way)."""
    recorded = entries.records.names()
    if not recorded:
        return []
    data = set(entries.store.list())
    return sorted(n for n in recorded if entries.data_key(n) not in data)


def remove_orphan(entries: Entries, name: str) -> bool:
    """Delete *name*'s record if it still has no data (call with *name* locked)."""
    if entries.exists(name):
        return False
    try:
        entries.records.delete(name)
    except CorruptEntryError:
        return False
    return True
