"""The manager's side of storage: loads into memory, writes, and the corruption policy."""

from __future__ import annotations

import os
from typing import Any, Literal

from ._log import logger, report
from ._memory import MISSING, MemoryTier
from ._meta import EntryInfo
from ._userwarn import warn_write_failed
from .exceptions import CorruptEntryError, MetricNotStoredError, UnsupportedValueError
from .storage import NpzStorageInterface, StorageInterface

__all__ = ["OnCorrupt", "StoredValues", "as_storage"]

OnCorrupt = Literal["recompute", "raise"]


class StoredValues:
    """Reads and writes one manager's entries, keeping memory and metadata in step."""

    def __init__(
        self, storage: StorageInterface, memory: MemoryTier, on_corrupt: OnCorrupt
    ) -> None:
        self.storage = storage
        self.memory = memory
        self.on_corrupt: OnCorrupt = on_corrupt
        #: Metadata of the entries this process loaded or wrote.
        self.infos: dict[str, EntryInfo] = {}

    def load(self, name: str, loud: bool) -> Any:
        """The stored value (now held), ``MISSING``, or the ``CorruptEntryError`` (if allowed).

        A :class:`~metricache.PickleRequiredError` propagates: the file is valid.
        """
        try:
            value, info = self.storage.read_entry(name)
        except MetricNotStoredError:
            return MISSING
        except CorruptEntryError as err:
            if self.on_corrupt == "raise":
                raise
            return err
        value = self.memory.hold(name, value)
        if info is not None:
            self.infos[name] = info
        if loud:
            when = info.timestamp.isoformat(timespec="seconds") if info else "an unknown date"
            report("Load %s computed on %s", name, when)
        return value

    def quarantine(self, name: str, err: CorruptEntryError, recomputable: bool) -> None:
        """Move a corrupt entry aside before it is recomputed; raise if it cannot be."""
        if not recomputable:
            # Nothing could replace it: leave the files where they are and say why.
            raise CorruptEntryError(
                f"{err} (and no function is defined for {name!r} to recompute it)"
            ) from err
        where = self.storage.quarantine(name)
        logger.warning(
            "corrupt entry %r (%s); moved to %s and recomputing", name, err, where or "nowhere"
        )

    def write(
        self, name: str, value: Any, duration: float | None, loud: bool, strict: bool
    ) -> None:
        """Store a value; a failed write warns (or raises when *strict*)."""
        try:
            info = self.storage.write_entry(name, value, duration)
        except UnsupportedValueError as err:
            # Nothing is stored or held: the value (the function's own object) is
            # handed back on the error, so a long computation is not lost.
            self.memory.forget(name)
            err.value = value  # type: ignore[attr-defined]
            err.args = (f"{err} (the computed value is on this exception as .value)",)
            raise
        except OSError as err:
            if strict:
                raise
            warn_write_failed(name, err)
            return
        self.infos[name] = info
        if loud:
            report("Save %s", name)

    def hold_computed(self, name: str, value: Any) -> Any:
        """Hold a computed value as a later load would return it; return the caller's copy."""
        return self.memory.hold(name, self.storage.memory_form(value))


def as_storage(storage: Any) -> StorageInterface:
    """The storage interface, given one or a folder path (then npz, the seed's default)."""
    if isinstance(storage, StorageInterface):
        return storage
    if isinstance(storage, (str, os.PathLike)) and isinstance(os.fspath(storage), str):
        return NpzStorageInterface(storage)
    raise TypeError(
        "storage_interface must be a StorageInterface (e.g. NpzStorageInterface('cache/')) "
        f"or a folder path (str or os.PathLike), not {type(storage).__qualname__}: "
        f"{storage!r:.80}"
    )
