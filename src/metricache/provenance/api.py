"""The managers' provenance methods: explain, invalidate, status, graph, stale_policy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from .._memory import MemoryTier
from .._meta import EntryInfo
from ..exceptions import MetricNotStoredError
from .graph import DependencyGraph, build_graph
from .staleness import OnStale, StaleReport
from .status import StatusTable, build_status
from .tracker import Tracker, check_on_stale

__all__ = ["ProvenanceMethods"]


class ProvenanceMethods:
    """Mixed into the managers: what a user asks about staleness and provenance."""

    _provenance: Tracker
    _infos: dict[str, EntryInfo]
    _owners: dict[str, Any]
    _memory: MemoryTier

    def _hold(self, name: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def check_name(self, name: str) -> None:
        raise NotImplementedError

    @property
    def storage_interface(self) -> Any:
        raise NotImplementedError

    def entries(self) -> Iterator[EntryInfo]:
        raise NotImplementedError

    @property
    def on_stale(self) -> OnStale:
        """What a load of a stale entry does: warn, ignore, recompute or raise."""
        return self._provenance.on_stale

    @on_stale.setter
    def on_stale(self, value: OnStale) -> None:
        self._provenance.on_stale = check_on_stale(value)

    def stale_policy(self, on_stale: OnStale) -> AbstractContextManager[None]:
        """Apply *on_stale* to every load of this manager inside a ``with`` block.

        It holds for the current thread or task (and threads started through
        ``contextvars.copy_context().run``); an explicit ``on_stale=`` still wins.
        """
        return self._provenance.block(on_stale)

    def explain(self, name: str) -> StaleReport:
        """Whether *name*'s stored value is stale, and why.

        The report's ``str()`` names root causes (a helper that changed, a
        dependency recomputed with a new value), ``.stale`` and ``.reasons`` (each
        with a ``kind``) say it for code, and ``.to_dict()`` for JSON. Nothing is
        computed or decoded: only records are read.
        """
        self.check_name(name)
        report = self._provenance.explain(name)
        if not report.stored:
            raise MetricNotStoredError(
                f"metric {name!r} is not stored, so it has nothing to explain"
            )
        return report

    def invalidate(self, name: str, downstream: bool = True) -> list[str]:
        """Mark *name*'s stored entry stale without deleting it; return the names marked.

        With *downstream*, every stored entry computed from it (transitively) is
        marked too, so they stay stale even if *name* is recomputed to the same
        value; without, they are stale only until it is. Recomputing an entry
        clears its mark. Values held in memory are dropped, so the next ``get``
        sees the mark (and applies ``on_stale``).
        """
        self.check_name(name)
        if self._provenance.info_of(name) is None:
            raise MetricNotStoredError(
                f"metric {name!r} is not stored, so it cannot be invalidated"
            )
        names = [name, *(self._provenance.dependants({name}) if downstream else [])]
        return [n for n in names if self._mark(n, "" if n == name else f" (upstream {name})")]

    def _mark(self, name: str, why: str) -> bool:
        with self._hold(name):
            self._memory.forget(name)
            self._infos.pop(name, None)
            info = self.storage_interface.info(name)
            if info is None or info.legacy:
                return False
            return self._provenance.mark(name, info, why) is not None

    def status(self) -> StatusTable:
        """A table of every stored entry: name, parameters, date, size, compute time,
        status (``fresh``, ``stale``, ``unknown``) and reason.

        ``str()`` gives plain text, notebooks show HTML and ``.to_pandas()`` a
        DataFrame (needs pandas).
        """
        infos = [self._infos.get(i.name, i) for i in self.entries()]
        shown = {i.name: i.params for i in infos if i.params}  # from the records ...
        shown |= {n: o.shown for n, o in self._owners.items() if getattr(o, "shown", "")}
        return build_status(infos, self._provenance.checker(), shown)

    def graph(self) -> DependencyGraph:
        """The dependency graph of the stored entries, read from their records.

        Works in a fresh process without computing anything: ``.to_mermaid()``,
        ``.to_dot()``, and SVG in notebooks when the ``graphviz`` package is installed.
        """
        infos = [self._infos.get(i.name, i) for i in self.entries()]
        return build_graph(infos, self._provenance.checker())
