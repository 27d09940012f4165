"""The storage interface contract: the seed's ``exists``/``save``/``load``, and more.

:class:`StorageInterface` is the seed's three-method contract; a subclass that
implements only those is a working backend. The managers call a richer, optional
API (``write_entry``, ``read_entry``, ``info``, ``delete``, ...) whose defaults
fall back on the three methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime, timezone
from typing import Any

from ._locking import NameLocks
from ._meta import EntryInfo, utc_now
from ._names import validate_name
from .exceptions import CorruptEntryError, MetricNotStoredError

__all__ = ["DATE_SUFFIX", "StorageInterface", "legacy_info", "not_stored_message"]

#: Suffix of the seed's date sidecars: ``<name>_date``.
DATE_SUFFIX = "_date"


class StorageInterface(ABC):
    """Persistent storage for metric values: the seed's ``exists``/``save``/``load``.

    Subclass it and implement those three methods to add a backend; the managers
    then date each entry with a ``<name>_date`` sidecar saved through ``save``,
    as the seed package did.
    """

    #: Suffix of the data files, when the backend uses files (the seed's attribute).
    file_ext: str = ""

    @abstractmethod
    def exists(self, name: str) -> bool:
        """Whether a value is stored under *name*."""

    @abstractmethod
    def save(self, name: str, data: Any) -> None:
        """Store *data* under *name*, replacing any older value."""

    @abstractmethod
    def load(self, name: str) -> Any:
        """Return the value stored under *name*."""

    # -- the richer API managers use; defaults build on the three methods above --

    def check_name(self, name: str) -> None:
        """Raise :class:`~metricache.InvalidMetricNameError` unless *name* is storable."""
        validate_name(name, self.file_ext)

    def check_value(self, value: Any) -> None:  # noqa: B027 - optional hook
        """Raise :class:`~metricache.UnsupportedValueError` for a value that cannot be stored."""

    def write_entry(self, name: str, value: Any, duration: float | None = None) -> EntryInfo:
        """Store *value* and return its metadata (default: ``save`` plus a date sidecar)."""
        info = EntryInfo(name, utc_now(), duration, storage=type(self).__name__)
        self.save(name, value)
        self.save(name + DATE_SUFFIX, info.date)
        return info

    def read_entry(self, name: str) -> tuple[Any, EntryInfo | None]:
        """Return the stored value and its metadata; ``MetricNotStoredError`` if absent."""
        if not self.exists(name):
            raise MetricNotStoredError(not_stored_message(name, self))
        return self.load(name), self.info(name)

    def info(self, name: str) -> EntryInfo | None:
        """Metadata of the entry *name* (default: from its date sidecar), or None."""
        if not self.exists(name + DATE_SUFFIX):
            return None
        return legacy_info(name, self.load(name + DATE_SUFFIX))

    def delete(self, name: str) -> bool:
        """Remove the entry *name*; return whether it existed."""
        raise NotImplementedError(f"{type(self).__name__} does not implement delete()")

    def stored_names(self) -> list[str]:
        """Names of every stored entry."""
        raise NotImplementedError(f"{type(self).__name__} does not implement stored_names()")

    def quarantine(self, name: str) -> str | None:
        """Move a corrupt entry aside; return where it went (None: not supported)."""
        return None

    def verify(self, name: str) -> EntryInfo | None:
        """Re-read the entry and check it against its metadata (default: nothing to check)."""
        return self.info(name)

    def locks(self, timeout: float | None = None) -> NameLocks:
        """The per-name lock provider for this storage (default: threads only)."""
        return NameLocks(None, timeout)

    def cleanup(self) -> int:
        """Remove files left behind by dead writers; return how many."""
        return 0


def legacy_info(name: str, date: Any) -> EntryInfo:
    """Metadata from a seed-style ``'YYYY-MM-DD'`` date sidecar (local midnight)."""
    text = str(date.item() if hasattr(date, "item") else date)
    try:
        local = datetime.strptime(text, "%Y-%m-%d").astimezone()
    except ValueError as err:
        raise CorruptEntryError(f"date sidecar of {name!r} holds {text!r}, not a date") from err
    return EntryInfo(name, local.astimezone(timezone.utc), version=None, legacy=True)


def not_stored_message(name: str, storage: StorageInterface) -> str:
    return f"metric {name!r} is not stored in {storage!r}; use get() to compute and store it"
