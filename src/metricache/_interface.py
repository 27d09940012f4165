"""The storage interface contract: the seed's ``exists``/``save``/``load``, and more.

:class:`StorageInterface` is the seed's three-method contract; a subclass that
implements only those is a working backend. The managers call a richer, optional
API (``write_entry``, ``read_entry``, ``info``, ``delete``, ...) whose defaults
fall back on the three methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from ._layout import DATE_SUFFIX
from ._listing import CheckReport, Damage
from ._locking import LockProvider, ThreadLocks
from ._meta import EntryInfo, utc_now
from ._names import validate_name
from .exceptions import CorruptEntryError, MetricNotStoredError

__all__ = ["DATE_SUFFIX", "StorageInterface", "legacy_info", "not_stored_message"]


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

    def memory_form(self, value: Any) -> Any:
        """*value* as a later :meth:`load` would return it (default: *value* itself).

        The managers hold this in memory, so the process that computes a value sees
        the same types as every process that loads it. Override it when ``load``
        changes types (JSON turns tuples into lists); it must not serialise.
        """
        return value

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

    def lock_provider(self) -> LockProvider:
        """Where this storage's per-name locks come from (default: this process's threads)."""
        # In __dict__, not __init__: subclasses written for the seed need not call it.
        provider = self.__dict__.get("_thread_locks")
        if provider is None:
            provider = self.__dict__.setdefault("_thread_locks", ThreadLocks())
        return provider  # type: ignore[no-any-return]

    def entries(self) -> Iterator[EntryInfo]:
        """An :class:`EntryInfo` for every stored entry (default: from :meth:`stored_names`)."""
        for name in self.stored_names():
            info = self.info(name)
            yield info if info is not None else EntryInfo(name, utc_now(), version=None)

    def check(self) -> CheckReport:
        """Verify every stored entry, changing nothing (default: each via :meth:`verify`)."""
        report = CheckReport()
        for name in self.stored_names():
            try:
                info = self.verify(name)
            except CorruptEntryError as err:
                report.damaged.append(Damage(name, name, str(err)))
                continue
            report.ok.append(info if info is not None else EntryInfo(name, utc_now()))
        return report

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


def not_stored_message(name: str, storage: object) -> str:
    return f"metric {name!r} is not stored in {storage!r}; use get() to compute and store it"
