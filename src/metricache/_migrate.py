"""Migrating simple_metrics_manager folders: ``_date`` sidecars become records.

A legacy entry is a data file (``<name>.npy``, ``.npz``, ...) with a
``<name>_date`` sidecar and no record. Migrating it loads the value, writes it
again by the commit protocol (so its record holds a checksum, a size and a value
id), keeps the date the sidecar gave, and then removes the sidecar.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from ._auto import AutoStorageInterface
from ._layout import DATE_SUFFIX, data_key
from ._meta import EntryInfo

__all__ = ["Migrated", "legacy_entries", "migrate"]


@dataclass(frozen=True)
class Migrated:
    """One legacy entry and what migrating it wrote (None on a dry run)."""

    legacy: EntryInfo
    written: EntryInfo | None


def legacy_entries(storage: AutoStorageInterface) -> list[EntryInfo]:
    """The entries of the folder that have no record yet."""
    return [info for info in storage.entries() if info.legacy]


def migrate(
    storage: AutoStorageInterface, names: Iterable[str] | None = None, dry_run: bool = False
) -> list[Migrated]:
    """Give every legacy entry (or those in *names*) a record; return what was done."""
    wanted = None if names is None else set(names)
    done = []
    for info in legacy_entries(storage):
        if wanted is not None and info.name not in wanted:
            continue
        done.append(Migrated(info, None if dry_run else _migrate_one(storage, info)))
    return done


def _migrate_one(storage: AutoStorageInterface, listed: EntryInfo) -> EntryInfo:
    value, read = storage.read_entry(listed.name)
    # The sidecar's date (the listing only knows the file's mtime) is when it was computed.
    when = (read or listed).timestamp
    written = storage.write_entry(listed.name, value)
    dated = dataclasses.replace(written, timestamp=when)
    storage.rewrite_record(dated)
    for suffix in (".npy", ".npz", ".json", ""):
        storage.store.delete(data_key(listed.name + DATE_SUFFIX, suffix))
    return dated
