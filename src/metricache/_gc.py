"""Garbage collection of a cache folder: pins, the eviction score, old quarantine.

``metricache gc --max-size`` evicts entries until the folder fits. Entries go in
order of their *eviction score*, highest first::

    score = size_in_MiB * (1 + days_since_last_use) / (compute_seconds + 1)

so a large entry that was cheap to compute and has not been used for a while goes
first, and a small entry that took an hour to compute goes last. The last use is
the data file's access time when the filesystem keeps one newer than its
modification, else its modification time. Entries with an unknown compute time
(legacy files) count as 1 second. Pinned entries (:meth:`~metricache.DatedCacheManager.pin`,
kept as ``.metricache/pins/<name>``) and names matching ``--keep`` are never evicted.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from ._layout import PIN_DIR, QUARANTINE_DIR
from ._meta import EntryInfo
from ._store import Store

__all__ = [
    "Eviction",
    "eviction_score",
    "is_pinned",
    "old_quarantine",
    "parse_age",
    "parse_size",
    "pin",
    "pinned",
    "plan_eviction",
    "remove_folder",
    "store_of",
    "unpin",
    "walk",
]

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MIB = 2**20
_DAY = 86400.0


def parse_size(text: str) -> int:
    """Bytes in a size such as ``"50GB"``, ``"512M"``, ``"1.5 GiB"`` or ``"1000"``.

    >>> parse_size("50GB"), parse_size("1.5k")
    (53687091200, 1536)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"{text!r} is not a size; write it like 50GB, 512MB or 1000")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def parse_age(text: str) -> float:
    """Seconds in an age such as ``"30d"``, ``"12h"``, ``"2w"`` or ``"90s"``.

    >>> parse_age("30d"), parse_age("1.5h")
    (2592000.0, 5400.0)
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"{text!r} is not an age; write it like 30d, 12h, 2w or 90s")
    return float(match[1]) * _AGES[match[2].lower()]


# -- pins ---------------------------------------------------------------------------


def store_of(storage: object) -> Store:
    """The store under *storage*; a clear error for interfaces without one."""
    store = getattr(storage, "store", None)
    if not isinstance(store, Store):
        raise TypeError(
            f"{storage!r} keeps no store to hold pins; use a FileStorageInterface "
            "(NpzStorageInterface, AutoStorageInterface, ...)"
        )
    return store


def pin(store: Store, name: str) -> None:
    """Pin *name*: garbage collection never evicts it."""
    store.put_atomic(f"{PIN_DIR}/{name}", lambda f: f.write(b""))


def unpin(store: Store, name: str) -> bool:
    """Remove *name*'s pin; return whether it was pinned."""
    return store.delete(f"{PIN_DIR}/{name}")


def is_pinned(store: Store, name: str) -> bool:
    """Whether *name* is pinned."""
    return store.exists(f"{PIN_DIR}/{name}")


def pinned(store: Store) -> set[str]:
    """Every pinned name."""
    return set(store.list(PIN_DIR))


# -- eviction -----------------------------------------------------------------------


@dataclass(frozen=True)
class Eviction:
    """What ``gc --max-size`` would remove: entries, the bytes freed, and what stays too big."""

    evict: list[EntryInfo]
    freed: int
    remaining: int


def eviction_score(info: EntryInfo, last_use: float, now: float) -> float:
    """The eviction score of *info* (see the module docstring): higher goes first."""
    idle_days = max(0.0, now - last_use) / _DAY
    compute = info.duration if info.duration is not None else 1.0
    return (info.size or 0) / _MIB * (1.0 + idle_days) / (compute + 1.0)


def _last_use(store: Store, info: EntryInfo, key: str) -> float:
    path = store.local_path(key)
    if path is not None:
        try:
            st = path.stat()
            return max(st.st_atime, st.st_mtime)
        except OSError:
            pass
    return info.timestamp.timestamp()


def plan_eviction(
    store: Store,
    entries: Iterable[tuple[EntryInfo, str]],
    max_size: int,
    keep: Iterable[str] = (),
    now: float | None = None,
) -> Eviction:
    """Which ``(entry, data key)`` pairs to evict so the total fits in *max_size* bytes."""
    now = time.time() if now is None else now
    items = list(entries)
    total = sum(info.size or 0 for info, _ in items)
    protected, patterns = pinned(store), list(keep)
    candidates = [
        (eviction_score(info, _last_use(store, info, key), now), info)
        for info, key in items
        if info.name not in protected and not any(fnmatch.fnmatch(info.name, p) for p in patterns)
    ]
    evict, freed = [], 0
    for _, info in sorted(candidates, key=lambda c: (-c[0], c[1].name)):
        if total - freed <= max_size:
            break
        evict.append(info)
        freed += info.size or 0
    return Eviction(evict, freed, total - freed)


def old_quarantine(store: Store, older_than: float, now: float | None = None) -> list[str]:
    """Quarantine folders (keys under ``QUARANTINE_DIR``) older than *older_than* seconds.

    A folder's age comes from the UTC stamp that starts its name.
    """
    now = time.time() if now is None else now
    found = []
    for folder in store.folders(QUARANTINE_DIR):
        try:
            stamp = datetime.strptime(folder[:15], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
        except ValueError:
            continue  # not a folder metricache made: leave it alone
        if now - stamp.timestamp() > older_than:
            found.append(f"{QUARANTINE_DIR}/{folder}")
    return sorted(found)


def walk(store: Store, prefix: str) -> Iterator[str]:
    """Every key under folder *prefix*, at any depth."""
    for f in store.list(prefix):
        yield f"{prefix}/{f}"
    for sub in store.folders(prefix):
        yield from walk(store, f"{prefix}/{sub}")


def remove_folder(store: Store, prefix: str) -> int:
    """Delete every key under *prefix* (and the emptied local folders); return the count."""
    removed = sum(store.delete(key) for key in list(walk(store, prefix)))
    path = store.local_path(prefix)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)  # only empty folders are left
    return removed
