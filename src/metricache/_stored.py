"""The manager's side of storage: loads into memory, writes, and the corruption policy."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any, Literal

from ._log import logger, report
from ._memory import MISSING, MemoryTier
from ._meta import EntryInfo
from ._userwarn import warn_write_failed
from .exceptions import CorruptEntryError, MetricNotStoredError, UnsupportedValueError
from .storage import AutoStorageInterface, StorageInterface

__all__ = ["OnCorrupt", "StoredValues", "as_storage"]

OnCorrupt = Literal["recompute", "raise"]
#: ``(name, entry) -> whether the loaded entry may be used`` (the stale policy).
FreshCheck = Callable[[str, "EntryInfo | None"], bool]


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

    def load(self, name: str, loud: bool, fresh_enough: FreshCheck | None = None) -> Any:
        """The stored value (now held), ``MISSING``, or the ``CorruptEntryError`` (if allowed).

        A :class:`~metricache.PickleRequiredError` propagates: the file is valid.
        *fresh_enough* sees the entry first: False (a stale entry, to recompute)
        makes it ``MISSING``.
        """
        try:
            value, info = self.storage.read_entry(name)
        except MetricNotStoredError:
            return MISSING
        except CorruptEntryError as err:
            if self.on_corrupt == "raise":
                raise
            return err
        if fresh_enough is not None and not fresh_enough(name, info):
            return MISSING
        if info is not None:
            self.infos[name] = info  # first: memory drops it with a value it will not hold
        value = self.memory.hold(name, value)
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
        try:
            where = self.storage.quarantine(name)
        except OSError as move_err:
            # A read-only folder (EROFS, EACCES): the entry stays where it is; the value
            # is still recomputed and returned (its write then warns the same way).
            logger.warning(
                "corrupt entry %r (%s) could not be moved aside (%s); recomputing",
                name, err, move_err,
            )  # fmt: skip
            return
        logger.warning(
            "corrupt entry %r (%s); moved to %s and recomputing", name, err, where or "nowhere"
        )

    def write(
        self,
        name: str,
        value: Any,
        duration: float | None,
        loud: bool,
        strict: bool,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        """Store a value; a failed write warns (or raises when *strict*)."""
        try:
            if provenance is not None and _takes_provenance(type(self.storage)):
                write = self.storage.write_entry
                info = write(name, value, duration, provenance=provenance)  # type: ignore[call-arg]
            else:  # a write_entry of three arguments (written for the seed, or overridden)
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


@functools.cache
def _takes_provenance(kind: type[StorageInterface]) -> bool:
    """Whether *kind*'s ``write_entry`` records provenance (a ``provenance=`` argument)."""
    return "provenance" in inspect.signature(kind.write_entry).parameters


def as_storage(storage: Any) -> StorageInterface:
    """The storage interface, given one or a folder path (then a format per value, there)."""
    if isinstance(storage, StorageInterface):
        return storage
    if isinstance(storage, (str, os.PathLike)) and isinstance(os.fspath(storage), str):
        return AutoStorageInterface(storage)
    raise TypeError(
        "storage_interface must be a StorageInterface (e.g. AutoStorageInterface('cache/')) "
        f"or a folder path (str or os.PathLike), not {type(storage).__qualname__}: "
        f"{storage!r:.80}"
    )
