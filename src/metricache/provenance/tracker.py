"""One manager's provenance: what each computation read, its code, and the stale policy.

The manager calls :meth:`Tracker.computed` after a metric function returns (the
compute context holds what it read), :meth:`Tracker.for_write` when the value is
stored, and :meth:`Tracker.allow` on every disk hit.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Protocol

from .._context import current_reads
from .._meta import EntryInfo, utc_now
from ..exceptions import MetricNotStoredError, StaleMetricError
from .external import DependsOn, check_depends_on, external_parts
from .fingerprint import ALGORITHM, Parts, fingerprint
from .staleness import ON_STALE, OnStale, Staleness, StaleReport

__all__ = ["Tracker", "check_on_stale"]

logger = logging.getLogger("metricache")
#: ``with CM.stale_policy(...)``: (id of the manager, policy) pairs, innermost last.
_blocks: ContextVar[tuple[tuple[int, str], ...]] = ContextVar("metricache_stale", default=())


def check_on_stale(value: Any) -> OnStale:
    """*value* if it is a stale policy; ``ValueError`` naming the choices otherwise."""
    if value not in ON_STALE:
        raise ValueError(
            f"on_stale must be one of {', '.join(map(repr, ON_STALE))}, not {value!r}"
        )
    return value  # type: ignore[no-any-return]


class Manager(Protocol):
    """What the tracker needs of its manager."""

    functions_dict: dict[str, Any]
    _infos: dict[str, EntryInfo]
    _owners: dict[str, Any]

    @property
    def storage_interface(self) -> Any: ...


class Tracker:
    """Provenance for one manager (see the module docstring)."""

    def __init__(self, manager: Manager, on_stale: OnStale) -> None:
        # A proxy: the manager owns its tracker, so a strong reference back would make
        # a cycle that keeps a dropped manager (and its values) alive until a GC pass.
        self.manager: Manager = weakref.proxy(manager)
        self.on_stale: OnStale = check_on_stale(on_stale)
        #: base name -> (version, depends_on) given to collect()
        self.code_options: dict[str, tuple[str | None, tuple[str, ...]]] = {}
        self._pending: dict[str, dict[str, Any]] = {}
        self._warned: set[tuple[str, str | None]] = set()

    # -- code ----------------------------------------------------------------

    def declare(self, base: str, version: Any, depends_on: DependsOn) -> None:
        """Record ``collect(version=..., depends_on=...)`` for a family of metrics."""
        items = check_depends_on(depends_on)
        if version is not None or items:
            self.code_options[base] = (None if version is None else str(version), items)
        else:
            self.code_options.pop(base, None)

    def code_of(self, name: str) -> Parts | None:
        """The current fingerprint of *name*'s function (None: none defined here)."""
        function = self.manager.functions_dict.get(name)
        if function is None:
            return None
        base = getattr(self.manager._owners.get(name), "base", None)
        options = self.code_options.get(base) if isinstance(base, str) else None
        version, depends_on = options or (None, ())
        if version is None:
            parts: Parts = fingerprint(function)
        else:
            parts = (("algorithm", ALGORITHM), ("version", version))
        return (*parts, *external_parts(depends_on)) if depends_on else parts

    # -- recording -----------------------------------------------------------

    def computed(self, scope: str, name: str) -> None:
        """A metric function returned: keep what it read and its code for the write."""
        reads = current_reads(scope, name) or {}
        owner = getattr(self.manager, "_owners", {}).get(name)
        self._pending[name] = {
            "dependencies": tuple(sorted(reads.items())),
            "code": self.code_of(name),
            # What the records alone can tell a listing: its family and arguments.
            "family": getattr(owner, "base", None),
            "params": getattr(owner, "shown", None) or None,
        }

    def for_write(self, name: str) -> dict[str, Any] | None:
        """The provenance of the value about to be stored as *name* (None: not computed here)."""
        return self._pending.pop(name, None)

    def value_id(self, name: str) -> str | None:
        """The value id of the entry this process holds for *name*, when known."""
        info = self.manager._infos.get(name)
        return None if info is None else info.value_id

    # -- checking ------------------------------------------------------------

    def info_of(self, name: str) -> EntryInfo | None:
        """*name*'s current entry: the one this process holds, else its record."""
        found = self.manager._infos.get(name)
        if found is not None:
            return found
        try:
            return self.manager.storage_interface.info(name)  # type: ignore[no-any-return]
        except (MetricNotStoredError, ValueError, OSError):
            return None

    def checker(self) -> Staleness:
        """A fresh checker (it memoises the entries it reads)."""
        return Staleness(self.info_of, self.code_of)

    def explain(self, name: str) -> StaleReport:
        """The staleness report of *name*'s stored entry."""
        return self.checker().report(name)

    def policy(self, explicit: str | None) -> OnStale:
        """The policy in force: the call's, else the innermost ``stale_policy`` block's."""
        if explicit is not None:
            return check_on_stale(explicit)
        for owner, chosen in reversed(_blocks.get()):
            if owner == id(self):
                return chosen  # type: ignore[return-value]
        return self.on_stale

    def block(self, policy: str) -> contextlib.AbstractContextManager[None]:
        """Apply *policy* to this manager's loads inside the ``with`` block."""
        return self._block(check_on_stale(policy))  # checked now, not at ``with``

    @contextlib.contextmanager
    def _block(self, policy: OnStale) -> Iterator[None]:
        token = _blocks.set((*_blocks.get(), (id(self), policy)))
        try:
            yield
        finally:
            _blocks.reset(token)

    def allow(self, name: str, info: EntryInfo | None, policy: OnStale) -> bool:
        """Whether a loaded entry may be used (False: recompute it); may raise or log."""
        if info is None or policy == "ignore" or not _has_provenance(info):
            return True
        report = self.checker().report(name, info)
        if not report.stale:
            return True
        if policy == "raise":
            raise StaleMetricError(report)
        if policy == "recompute":
            return False
        key = (name, info.checksum or info.value_id)
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("%s; using the stored value (on_stale='warn')", report)
        return True

    # -- invalidation --------------------------------------------------------

    def dependants(self, names: set[str]) -> list[str]:
        """Stored entries computed (transitively) from any of *names*."""
        entries = {info.name: info for info in self.manager.storage_interface.entries()}
        found: list[str] = []
        frontier = set(names)
        while frontier:
            frontier = {
                n
                for n, info in entries.items()
                if n not in found and n not in names
                and any(dep in frontier for dep, _ in info.dependencies or ())
            }  # fmt: skip
            found += sorted(frontier)
        return found

    def mark(self, name: str, info: EntryInfo, why: str) -> EntryInfo | None:
        """Write the invalidation mark into *name*'s record; the marked entry, or None."""
        from dataclasses import replace

        storage = self.manager.storage_interface
        rewrite = getattr(storage, "rewrite_record", None)
        stamp = utc_now().isoformat(timespec="seconds")
        marked = replace(info, invalidated=f"{stamp}{why}")
        if rewrite is None or not rewrite(marked):
            return None
        self._warned.discard((name, info.checksum or info.value_id))
        return marked


def _has_provenance(info: EntryInfo) -> bool:
    return bool(info.code or info.dependencies or info.invalidated)
