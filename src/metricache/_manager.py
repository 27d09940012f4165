"""The cache managers: when to compute, load or save a metric (the policy)."""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, overload

from . import _gc, _portable
from ._context import note_read
from ._listing import CheckReport
from ._locking import LockProvider, scope_of, single_flight
from ._log import report, seconds
from ._lru import parse_bytes
from ._memory import MISSING, MemoryTier
from ._meta import EntryInfo
from ._parallel import GridOptions, OnError, note_compute, run_grid
from ._parameterized import ParamsList, collect_metric
from ._registry import MetricRegistry
from ._stored import OnCorrupt, StoredValues, as_storage
from .exceptions import CorruptEntryError, MetricNotStoredError, UnknownMetricError
from .provenance.api import ProvenanceMethods
from .provenance.external import DependsOn
from .provenance.staleness import OnStale
from .provenance.tracker import Tracker
from .storage import DATE_SUFFIX, StorageInterface

__all__ = [
    "CollectingDatedCacheManager",
    "DataCacheManager",
    "DatedCacheManager",
    "ParameterizedDataCacheManager",
    "ParameterizedDatedCacheManager",
]

_MISSING = MISSING


def _forget(infos: dict[str, EntryInfo], name: str) -> None:
    """Drop the entry info of a value the memory tier no longer holds."""
    infos.pop(name, None)


class DatedCacheManager(ProvenanceMethods, MetricRegistry):
    """Compute each metric once; keep it in memory and in a storage interface, dated.

    Parameters
    ----------
    storage_interface : StorageInterface, str or os.PathLike
        Where values persist, e.g. ``NpzStorageInterface("cache/")``; a folder
        path is short for ``AutoStorageInterface(path)`` (a format per value).
    verbose : bool
        Default for every call's ``verbose``: report computes, saves and loads on
        the ``metricache`` logger (on stderr when no logging is configured).
    on_corrupt : {"recompute", "raise"}
        What a load that fails verification does: log a warning, move the bad files
        to ``.metricache/quarantine/`` and recompute; or raise ``CorruptEntryError``.
    lock_timeout : float, optional
        Longest wait, in seconds, for another thread or process computing the same
        metric (``LockTimeoutError`` after it). ``None`` waits as long as it computes.
    dynamic_metric_creation : bool
        Let collected metrics be called with parameters not declared in ``params_list``.
    readonly : bool
        Hand out values that cannot change what memory holds: arrays as read-only
        views (changing one in place raises ``ValueError``; ``.copy()`` gives a
        writeable array), lists and dicts as a fresh container per call. False
        hands out the held object itself, as simple_metrics_manager did.
    locks : LockProvider, optional
        Where per-name locks come from: any object with ``hold(name, timeout)``
        (see :class:`~metricache.LockProvider`). Default: the storage interface's
        (:class:`~metricache.LocalLocks` for a local folder: this machine's threads
        and processes).
    on_stale : {"warn", "ignore", "recompute", "raise"}
        What a load of a stale entry does (its code or a dependency changed since
        it was computed, see :meth:`explain`): return it and log a warning once per
        entry and process; return it silently; recompute it; or raise
        :class:`~metricache.StaleMetricError`. ``get``, ``CM.<metric>()`` and
        ``get_all`` take ``on_stale=`` too, and :meth:`stale_policy` sets it for a block.
    max_memory : int or str, optional
        Most bytes of values memory holds (``"2GB"``, ``"512MiB"`` or a count):
        above it the least recently loaded or computed values are dropped (they
        load again from storage when asked); a value larger than the bound is
        returned but not held. None (the default) holds everything, as the seed did.

    Notes
    -----
    Memory holds a value as a later load returns it (``storage.memory_form``):
    with ``JsonStorageInterface`` an array or tuple is a list from the start.

    A manager pickles to a small description (its storage interface, options and
    the metrics whose functions pickle), so worker processes can rebuild it; values
    in memory, locks and threads are never shipped.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from metricache import DatedCacheManager, NpyStorageInterface
    >>> CM = DatedCacheManager(NpyStorageInterface(tempfile.mkdtemp()), verbose=False)
    >>> @CM.collect
    ... def squares():
    ...     return np.arange(4) ** 2
    >>> CM.squares()
    array([0, 1, 4, 9])
    >>> CM.squares().flags.writeable
    False
    >>> CM.exists("squares")
    True
    >>> CM.set_functions_dict({"answer": lambda: 42})
    >>> CM["answer"]
    42
    """

    def __init__(
        self,
        storage_interface: StorageInterface | str | os.PathLike[str],
        verbose: bool = True,
        *,
        on_corrupt: OnCorrupt = "recompute",
        lock_timeout: float | None = None,
        dynamic_metric_creation: bool = False,
        readonly: bool = True,
        locks: LockProvider | None = None,
        on_stale: OnStale = "warn",
        max_memory: int | str | None = None,
    ) -> None:
        if on_corrupt not in ("recompute", "raise"):
            raise ValueError(f"on_corrupt must be 'recompute' or 'raise', not {on_corrupt!r}")
        storage_interface = as_storage(storage_interface)
        self.verbose = verbose
        self.lock_timeout = lock_timeout
        super().__init__(dynamic_metric_creation)
        self._memory = MemoryTier(readonly, parse_bytes(max_memory))
        self._max_memory = max_memory
        # The memory tier's dict of shareable values: a memory hit is one lookup in it.
        # While a metric computes, an empty dict instead (see _computing_begins).
        self._cache: dict[str, Any] = self._memory.values
        self._stored = StoredValues(storage_interface, self._memory, on_corrupt)
        self._infos: dict[str, EntryInfo] = self._stored.infos
        # A name memory drops takes its metadata with it (it is read again on load).
        # Not a bound method: a manager must not be in a reference cycle with its own
        # memory tier, or dropping it would keep every value until the next GC pass.
        self._memory.on_evict = functools.partial(_forget, self._infos)
        self._custom_locks = locks
        #: The lock provider holding each name while it is computed.
        self.locks: LockProvider = locks or storage_interface.lock_provider()
        #: Metrics a pickled manager left behind (their functions do not pickle).
        self._unshipped: frozenset[str] = frozenset()
        self._provenance = Tracker(self, on_stale)
        self._scope = scope_of(self.locks)
        self._computing = 0
        self._computing_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.storage_interface!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        options = self._pickle_options()
        code_options = self._provenance.code_options
        # Blank first, then the description as state: a function shipped by value
        # whose globals hold this manager is met in the pickle memo, not recursed into.
        return _portable.blank, (type(self),), (_portable.describe(self, options), code_options)

    def _pickle_options(self) -> dict[str, Any]:
        """The constructor options a pickled manager is rebuilt with."""
        return {
            "verbose": self.verbose,
            "on_corrupt": self.on_corrupt,
            "lock_timeout": self.lock_timeout,
            "dynamic_metric_creation": self.dynamic_metric_creation,
            "readonly": self.readonly,
            "locks": self._custom_locks,
            "on_stale": self.on_stale,
            "max_memory": self._max_memory,
        }

    def __setstate__(self, state: tuple[_portable.Description, dict[str, Any]]) -> None:
        description, code_options = state
        _portable.rebuild_into(self, description)
        self._provenance.code_options.update(code_options)

    def _hold(self, name: str) -> AbstractContextManager[None]:
        """Hold *name* while it is computed: one computation at a time, cycles caught."""
        return single_flight(self.locks, name, self.lock_timeout)

    @property
    def storage_interface(self) -> StorageInterface:
        """Where values persist."""
        return self._stored.storage

    @property
    def on_corrupt(self) -> OnCorrupt:
        """What a load that fails verification does (``"recompute"`` or ``"raise"``)."""
        return self._stored.on_corrupt

    @on_corrupt.setter
    def on_corrupt(self, value: OnCorrupt) -> None:
        self._stored.on_corrupt = value

    @property
    def readonly(self) -> bool:
        """Whether values are handed out so they cannot change what memory holds."""
        return self._memory.readonly

    @property
    def cache(self) -> dict[str, Any]:
        """The in-memory cache: a dict of metric name -> value, each safe to hand out.

        With ``readonly`` (the default), list and dict values are held apart (each
        caller gets a fresh container), so they are not in this dict. Assigning a
        new dict replaces everything held; the dict itself stays the same object,
        which the ``CM.<metric>`` functions hold on to for speed.
        """
        return self._memory.values

    @cache.setter
    def cache(self, values: dict[str, Any]) -> None:
        self._memory.replace(values)

    def check_name(self, name: str) -> None:
        """Raise :class:`~metricache.InvalidMetricNameError` unless storage can hold *name*."""
        self.storage_interface.check_name(name)

    @overload
    def collect(
        self,
        f: Callable[..., Any],
        name: str | None = None,
        *,
        base_name: str | None = None,
        params_list: ParamsList = ((),),
        name_generation_function: Callable[[str, tuple[Any, ...]], str] | None = None,
        version: Any = None,
        depends_on: DependsOn = (),
    ) -> Callable[..., Any]: ...

    @overload
    def collect(
        self,
        f: None = None,
        name: str | None = None,
        *,
        base_name: str | None = None,
        params_list: ParamsList = ((),),
        name_generation_function: Callable[[str, tuple[Any, ...]], str] | None = None,
        version: Any = None,
        depends_on: DependsOn = (),
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...

    def collect(
        self,
        f: Callable[..., Any] | None = None,
        name: str | None = None,
        *,
        base_name: str | None = None,
        params_list: ParamsList = ((),),
        name_generation_function: Callable[[str, tuple[Any, ...]], str] | None = None,
        version: Any = None,
        depends_on: DependsOn = (),
    ) -> Any:
        """Decorator: define a metric (or a family, one per parameters) and attach ``CM.<name>``.

        Use bare (``@CM.collect``) or with arguments
        (``@CM.collect(params_list=[[1, 2], [1, 3]])``). The decorated function runs
        exactly like the original unless called with ``cache=True`` (then it goes
        through the cache, like ``CM.<name>(...)``; ``use_stored=False`` recomputes).

        The code fingerprint that tells stale entries apart is computed from the
        function, its helpers and constants; ``version="2"`` replaces it by a
        version you name, and ``depends_on=["data/raw.csv", "env:SEED",
        "package:scipy"]`` adds files (by content), environment variables and
        installed package versions.
        """

        def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
            decorated = collect_metric(
                self, function, base_name or name, params_list, name_generation_function
            )
            base = base_name or name or getattr(function, "__name__", None)
            if isinstance(base, str):
                self._provenance.declare(base, version, depends_on)
            return decorated

        return decorate if f is None else decorate(f)

    # -- the seed's API ---------------------------------------------------------

    def exists(self, name: str) -> bool:
        """Whether *name*'s value is available without computing (in memory or stored)."""
        if name in self._memory:
            return True
        self.storage_interface.check_name(name)
        return self.storage_interface.exists(name)

    def clear_cache(self) -> None:
        """Forget every value held in memory (stored values are kept)."""
        self._memory.clear()
        self._infos.clear()

    def compute(self, name: str, force: bool = False, verbose: bool | None = None) -> Any:
        """Return *name*'s value from memory, computing it (into memory only) when missing."""
        if not force:
            held = self._memory.lookup(name)
            if held is not MISSING:
                return self._noted(name, held)
        self.storage_interface.check_name(name)
        with self._hold(name):
            held = MISSING if force else self._memory.lookup(name)
            if held is MISSING:
                value, _ = self._run(name, verbose)
                self._infos.pop(name, None)  # what is stored is not this value
                held = self._hold_computed(name, value)
        return self._noted(name, held)

    def save(self, name: str, force: bool = False, verbose: bool | None = None) -> None:
        """Compute *name* and store it, unless it is already stored (or *force*).

        Unlike :meth:`get`, a failing write raises.
        """
        self.storage_interface.check_name(name)
        with self._hold(name):
            if not force and self.storage_interface.exists(name):
                return
            value = MISSING if force else self._memory.lookup(name)
            if value is not MISSING:
                self._write(name, value, None, verbose, strict=True)
                return
            value, duration = self._run(name, verbose)
            self._store_computed(name, value, duration, verbose, strict=True)

    def load(self, name: str, force: bool = False, verbose: bool | None = None) -> Any:
        """Return *name*'s stored value (from memory unless *force*); never computes it.

        Raises ``MetricNotStoredError`` if it was never stored.
        """
        held = MISSING if force else self._memory.lookup(name)
        if held is not MISSING:
            return self._noted(name, held)
        self.storage_interface.check_name(name)
        # load() never computes: a stale entry warns (or raises) at most.
        policy = self._provenance.policy(None)
        value = self._try_load(name, verbose, "warn" if policy == "recompute" else policy)
        if isinstance(value, CorruptEntryError):
            return self._noted(name, self._recover(name, verbose))
        if value is _MISSING:
            raise MetricNotStoredError(
                f"metric {name!r} is not stored in {self.storage_interface!r}; "
                "use get() to compute and store it"
            )
        return self._noted(name, value)

    def get(
        self,
        name: str,
        use_stored: bool = True,
        verbose: bool | None = None,
        on_stale: OnStale | None = None,
    ) -> Any:
        """Return *name*'s value: from memory, else from storage, else compute and store it.

        ``use_stored=False`` recomputes and overwrites memory and storage;
        ``on_stale=`` overrides the manager's policy for a stale stored entry.
        """
        if use_stored:
            try:
                return self._cache[name]
            except KeyError:
                pass
        return self._noted(name, self._get(name, use_stored, verbose, on_stale))

    def __getitem__(self, name: str) -> Any:
        try:
            return self._cache[name]
        except KeyError:
            return self._noted(name, self._get(name, True, None, None))

    # -- beyond the seed ------------------------------------------------------

    def get_many(
        self,
        names: Iterable[str],
        use_stored: bool = True,
        verbose: bool | None = None,
        on_stale: OnStale | None = None,
        *,
        n_jobs: int | None = None,
        executor: Any = None,
        client: Any = None,
        progress: bool | None = None,
        batch: int | None = None,
        return_values: bool = True,
        on_error: OnError = "raise",
    ) -> Any:
        """Get every one of *names*, skipping stored ones, here or on workers.

        Parameters
        ----------
        names : iterable of str
            The metrics, e.g. ``[CM.poly.metric_name(1, 2), "spectrum"]``.
        use_stored, verbose, on_stale
            As for :meth:`get`; ``use_stored=False`` recomputes every one.
        n_jobs : int, optional
            Run on this many local worker processes (``-1``: every core); needs
            ``pip install metricache[parallel]``.
        executor : concurrent.futures.Executor, optional
            Run on this executor instead (a process pool, loky, MPI, Dask's).
        client : dask.distributed.Client, optional
            Run on a Dask cluster, one task per *batch*; needs
            ``pip install metricache[dask]``.
        progress : bool, optional
            Show a tqdm bar on stderr; by default when stderr is a terminal or a
            notebook.
        batch : int, optional
            Entries per task (default: about 16 tasks per local worker or Dask
            thread, each of at most 64 entries; so one entry per task in a small
            grid).
        return_values : bool
            True: the values in order (a list; from workers a sequence that loads
            each from the store when read). False: a :class:`GridSummary`.
        on_error : {"raise", "return", "skip"}
            A failing entry never stops the others: afterwards raise one
            :class:`~metricache.GridError` naming each; put the exception in its
            place among the values; or leave it out.
        """
        options = GridOptions(
            use_stored, verbose, on_stale, n_jobs, executor, client, progress, batch,
            return_values, on_error,
        )  # fmt: skip
        return run_grid(self, list(names), options)

    def delete(self, name: str) -> bool:
        """Remove *name* from memory and storage; return whether it was stored."""
        self.storage_interface.check_name(name)
        with self._hold(name):
            self._memory.forget(name)
            self._infos.pop(name, None)
            return self.storage_interface.delete(name)

    def info(self, name: str) -> EntryInfo:
        """The stored entry's metadata (:class:`EntryInfo`); ``MetricNotStoredError`` if none."""
        found = self._infos.get(name)
        if found is None:
            self.storage_interface.check_name(name)
            found = self.storage_interface.info(name)
        if found is None:
            raise MetricNotStoredError(f"metric {name!r} is not stored, so it has no info")
        return found

    def date(self, name: str) -> datetime:
        """When the stored value of *name* was computed (timezone-aware)."""
        return self.info(name).timestamp

    def verify(self, name: str) -> EntryInfo:
        """Re-read *name*'s data file and check it against its checksum now."""
        self.storage_interface.check_name(name)
        found = self.storage_interface.verify(name)
        if found is None:
            raise MetricNotStoredError(f"metric {name!r} is not stored")
        return found

    def entries(self) -> Iterator[EntryInfo]:
        """An :class:`EntryInfo` for every stored entry (read from records, nothing decoded)."""
        return self.storage_interface.entries()

    def check(self) -> CheckReport:
        """Verify every stored entry against its checksum, changing nothing."""
        return self.storage_interface.check()

    def cleanup(self) -> int:
        """Remove what writers that died left in the storage; return how many files went."""
        return self.storage_interface.cleanup()

    def pin(self, name: str) -> None:
        """Keep *name* through ``metricache gc --max-size``: pinned entries are never evicted."""
        self.check_name(name)
        _gc.pin(_gc.store_of(self.storage_interface), name)

    def unpin(self, name: str) -> bool:
        """Undo :meth:`pin`; return whether *name* was pinned."""
        self.check_name(name)
        return _gc.unpin(_gc.store_of(self.storage_interface), name)

    # -- internals --------------------------------------------------------------

    def _get(
        self, name: str, use_stored: bool, verbose: bool | None, on_stale: OnStale | None
    ) -> Any:
        """The slow path of :meth:`get`: storage, then single-flight compute."""
        if use_stored:
            held = self._memory.lookup(name)  # a list or dict, held apart from the cache
            if held is not MISSING:
                return held
        date = self._date_alias(name)
        if date is not None:
            return date
        self.storage_interface.check_name(name)
        policy = self._provenance.policy(on_stale)
        if use_stored:
            value = self._try_load(name, verbose, policy)
            if value is not _MISSING and not isinstance(value, CorruptEntryError):
                return value
        with self._hold(name):
            if use_stored:
                # Another thread or process may have stored it while we waited.
                value = self._memory.lookup(name)
                if value is not MISSING:
                    return value
                value = self._try_load(name, verbose, policy)
                if isinstance(value, CorruptEntryError):
                    self._quarantine(name, value)
                elif value is not _MISSING:
                    return value
            return self._compute_and_store(name, verbose)

    def _noted(self, name: str, value: Any) -> Any:
        """Hand out *value*, recording it as read by the metric computing now, if any."""
        if self._computing:
            note_read(self._scope, name, self._provenance.value_id(name))
        return value

    def _computing_begins(self, delta: int) -> None:
        """Count computes; while any runs, memory hits take the recording slow path."""
        with self._computing_lock:
            self._computing += delta
            if self._computing in (0, 1) and (self._computing == 1) == (delta > 0):
                fast = {} if self._computing else self._memory.values
                self._cache = fast
                for front in self.parameterized_metrics:
                    reroute = getattr(front, "_reroute", None)
                    if reroute is not None:
                        reroute(fast)

    def _date_alias(self, name: str) -> str | None:
        """The seed's ``CM['<name>_date']``: the ``'YYYY-MM-DD'`` a stored metric was computed."""
        if not isinstance(name, str) or name in self.functions_dict:
            return None
        if not name.endswith(DATE_SUFFIX):
            return None
        base = name[: -len(DATE_SUFFIX)]
        if not base:
            return None
        try:
            return self.info(base).date
        except (MetricNotStoredError, ValueError):
            return None

    def _recover(self, name: str, verbose: bool | None) -> Any:
        """Quarantine a corrupt entry and recompute it (``on_corrupt="recompute"``)."""
        with self._hold(name):
            value = self._try_load(name, verbose)
            if not isinstance(value, CorruptEntryError) and value is not _MISSING:
                return value
            if isinstance(value, CorruptEntryError):
                self._quarantine(name, value)
            return self._compute_and_store(name, verbose)

    def _try_load(self, name: str, verbose: bool | None, on_stale: OnStale = "ignore") -> Any:
        """The stored value, ``_MISSING`` (also: stale, to recompute), or the corruption error."""
        policy = self._provenance.policy(on_stale)

        def fresh_enough(name: str, info: EntryInfo | None) -> bool:
            return self._provenance.allow(name, info, policy)

        return self._stored.load(name, self._verbose(verbose), fresh_enough)

    def _quarantine(self, name: str, err: CorruptEntryError) -> None:
        self._stored.quarantine(name, err, name in self.functions_dict)

    def _compute_and_store(self, name: str, verbose: bool | None) -> Any:
        value, duration = self._run(name, verbose)
        return self._store_computed(name, value, duration, verbose, strict=False)

    def _store_computed(
        self, name: str, value: Any, duration: float | None, verbose: bool | None, strict: bool
    ) -> Any:
        """Write a computed value and hold it; return what the caller gets.

        A value the storage refuses is not held; one whose write failed is (and a
        strict write's error propagates after holding it).
        """
        try:
            self._write(name, value, duration, verbose, strict)
        except OSError:
            self._hold_computed(name, value)
            raise
        return self._hold_computed(name, value)

    def _hold_computed(self, name: str, value: Any) -> Any:
        return self._stored.hold_computed(name, value)

    def _run(self, name: str, verbose: bool | None) -> tuple[Any, float]:
        """Call *name*'s function; its exception propagates unchanged, with a note."""
        function = self.functions_dict.get(name)
        if function is None:
            hint = ""
            if any(name == u or name.startswith(u + "_") for u in self._unshipped):
                hint = (
                    "its function could not be pickled with the manager (a lambda or a "
                    "closure?): define it at module level to use it in other processes"
                )
            raise UnknownMetricError(name, list(self.functions_dict), hint=hint)
        loud = self._verbose(verbose)
        if loud:
            report("Compute %s", name)
        start = time.perf_counter()
        counted = False
        try:
            # Counted inside the try: an interrupt right after it must not leave
            # memory hits on the slow path for good.
            self._computing_begins(+1)
            counted = True
            value = function()
        except BaseException as err:
            if hasattr(err, "add_note"):
                err.add_note(f"(raised while computing metric {name!r}; nothing was cached)")
            raise
        finally:
            if counted:
                self._computing_begins(-1)
        duration = time.perf_counter() - start
        self._provenance.computed(self._scope, name)
        note_compute(name, duration)
        if loud:
            report("Completed %s in %s", name, seconds(duration))
        return value, duration

    def _write(
        self, name: str, value: Any, duration: float | None, verbose: bool | None, strict: bool
    ) -> None:
        provenance = self._provenance.for_write(name)
        self._stored.write(name, value, duration, self._verbose(verbose), strict, provenance)

    def _verbose(self, verbose: bool | None) -> bool:
        return self.verbose if verbose is None else verbose


class CollectingDatedCacheManager(DatedCacheManager):
    """The seed's manager with ``collect``; every metricache manager can collect."""


class ParameterizedDatedCacheManager(DatedCacheManager):
    """The seed's manager for parameterized metrics (``collect(params_list=...)``).

    Identical to :class:`DatedCacheManager`; kept as its own class for the seed's
    code and ``isinstance`` checks.
    """


#: The seed's other name for :class:`DatedCacheManager`.
DataCacheManager = DatedCacheManager
#: The seed's other name for :class:`ParameterizedDatedCacheManager`.
ParameterizedDataCacheManager = ParameterizedDatedCacheManager
