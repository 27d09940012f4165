"""Filling many entries at once: ``get_all``/``get_many`` in this process, on worker
processes, on any ``concurrent.futures`` executor, or on a Dask cluster.

The plan is the same everywhere: names already stored are skipped before anything
is submitted; the rest go out in batches to workers, each of which rebuilds the
manager from its pickled description (:mod:`metricache._portable`), gets every
name of its batch (computing and storing it, or loading what another worker
stored meanwhile) and answers with a small :class:`Status` per name, never a
value. Each entry is computed once because workers take the storage's per-name
lock before computing (the same single-flight as two threads in one process);
Dask task keys only save submitting the same work twice.
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._progress import Progress
from .exceptions import GridError

__all__ = [
    "GridSummary",
    "GridValues",
    "OnError",
    "Status",
    "note_compute",
    "run_grid",
    "run_names",
]

OnError = Literal["raise", "return", "skip"]
_ON_ERROR = ("raise", "return", "skip")

#: name -> compute seconds of the metrics computed in this context (a grid's worker).
_computes: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar(
    "metricache_grid_computes", default=None
)


def note_compute(name: str, duration: float) -> None:
    """Record that *name* was computed here (the manager calls this after each compute)."""
    computes = _computes.get()
    if computes is not None:
        computes[name] = duration


@dataclass(frozen=True)
class Status:
    """What a worker did with one name: ``"computed"``, ``"loaded"`` or ``"failed"``."""

    name: str
    kind: str
    seconds: float = 0.0
    error: BaseException | None = None


@dataclass
class GridSummary:
    """What a ``get_all(return_values=False)`` did.

    ``computed``, ``loaded`` and ``failed`` count entries (``loaded`` includes those
    found stored or in memory before anything ran); ``errors`` maps each failed
    name to its exception; ``wall_time`` is the whole call and ``compute_time`` the
    sum of the metric functions' own run times, in seconds.
    """

    computed: int = 0
    loaded: int = 0
    failed: int = 0
    errors: dict[str, BaseException] = field(default_factory=dict)
    wall_time: float = 0.0
    compute_time: float = 0.0

    def add(self, status: Status) -> None:
        """Count one name's status."""
        if status.kind == "computed":
            self.computed += 1
            self.compute_time += status.seconds
        elif status.kind == "failed":
            self.failed += 1
            assert status.error is not None
            self.errors[status.name] = status.error
        else:
            self.loaded += 1


class GridValues(Sequence[Any]):
    """The values of a grid in order, each loaded from the store when it is read.

    Holding this holds names, not values: iterating loads one value at a time
    (through the manager, so its ``max_memory`` bound applies). Compares equal to
    a list of the same values.
    """

    def __init__(
        self,
        manager: Any,
        names: list[str],
        errors: dict[str, BaseException],
        get_options: tuple[bool | None, Any] = (None, None),
    ) -> None:
        self._manager = manager
        self._names = names
        self._errors = errors
        self._verbose, self._on_stale = get_options

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        name = self._names[index]
        error = self._errors.get(name)
        if error is not None:
            return error
        return self._manager.get(name, True, self._verbose, on_stale=self._on_stale)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, GridValues)):
            return len(other) == len(self) and all(
                _same(a, b) for a, b in zip(self, other, strict=True)
            )
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<GridValues of {len(self)} metrics>"


def _same(a: Any, b: Any) -> bool:
    result = a == b
    if hasattr(result, "all"):
        return bool(result.all()) and getattr(a, "shape", None) == getattr(b, "shape", None)
    return bool(result)


def run_names(
    manager: Any,
    names: Iterable[str],
    use_stored: bool,
    verbose: bool | None,
    on_stale: Any,
) -> list[Status]:
    """Get each of *names* through *manager* here; a failure is a status, not a raise."""
    statuses = []
    for name in names:
        computes: dict[str, float] = {}
        token = _computes.set(computes)
        try:
            manager.get(name, use_stored, verbose, on_stale=on_stale)
        except Exception as err:  # noqa: BLE001  # the user's code: reported by name, later
            statuses.append(Status(name, "failed", error=err))
            continue
        finally:
            _computes.reset(token)
        if name in computes:
            statuses.append(Status(name, "computed", computes[name]))
        else:
            statuses.append(Status(name, "loaded"))
    return statuses


@dataclass
class GridOptions:
    """The keywords of ``get_all``/``get_many`` beyond the seed's."""

    use_stored: bool = True
    verbose: bool | None = None
    on_stale: Any = None
    n_jobs: int | None = None
    executor: Any = None
    client: Any = None
    progress: bool | None = None
    batch: int | None = None
    return_values: bool = True
    on_error: OnError = "raise"

    def check(self) -> None:
        """Refuse contradictory or unknown options before anything runs."""
        if self.on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, not {self.on_error!r}")
        chosen = [k for k in ("n_jobs", "executor", "client") if getattr(self, k) is not None]
        if len(chosen) > 1:
            raise ValueError(f"pass only one of n_jobs=, executor=, client= (got {chosen})")
        if self.batch is not None and self.batch < 1:
            raise ValueError(f"batch must be a positive number of entries, not {self.batch!r}")
        if self.n_jobs is not None and (self.n_jobs == 0 or self.n_jobs < -1):
            raise ValueError(
                f"n_jobs must be a positive count or -1 (every core), not {self.n_jobs}"
            )

    @property
    def parallel(self) -> bool:
        """Whether the work leaves this process."""
        return self.client is not None or self.executor is not None or (self.n_jobs or 1) != 1


def run_grid(manager: Any, names: Sequence[str], options: GridOptions) -> Any:
    """Get every one of *names* as *options* say; the values (in order) or a summary."""
    options.check()
    held = _all_in_memory(manager, names, options)
    if held is not None:
        return held
    started = time.perf_counter()
    unique = list(dict.fromkeys(names))
    summary = GridSummary()
    # A stale entry to recompute is stored, yet to do: then only workers can tell.
    skip = options.use_stored and manager._provenance.policy(options.on_stale) != "recompute"
    todo = _missing(manager, unique) if skip else unique
    summary.loaded = len(unique) - len(todo)
    with Progress(options.progress, len(unique), summary.loaded) as bar:
        for status in _statuses(manager, todo, options):
            summary.add(status)
            bar.update(summary)
    summary.wall_time = time.perf_counter() - started
    if summary.errors and options.on_error == "raise":
        raise GridError(summary.errors, len(unique))
    if not options.return_values:
        return summary
    kept = list(names)
    if options.on_error == "skip":
        kept = [n for n in kept if n not in summary.errors]
    values = GridValues(manager, kept, summary.errors, (options.verbose, options.on_stale))
    return values if options.parallel else list(values)


def _all_in_memory(manager: Any, names: Sequence[str], options: GridOptions) -> list[Any] | None:
    """The values, when every one is a plain memory hit and nothing else was asked for.

    What a warm ``get_all()`` is: one dict lookup per name, as ``CM.get`` does. The
    manager's hot dict is empty while a metric computes, so reads made then still
    take the full path, which records them as dependencies.
    """
    if not options.use_stored or not options.return_values or options.parallel:
        return None
    if options.progress:  # a bar was asked for: show it
        return None
    cache = manager._cache
    try:
        return [cache[name] for name in names]
    except KeyError:  # not held, held apart (a list or dict), or evicted
        return None


def _missing(manager: Any, names: list[str]) -> list[str]:
    """The names neither in memory nor stored (checked by name, nothing is decoded)."""
    storage = manager.storage_interface
    held = manager._memory
    return [n for n in names if n not in held and not storage.exists(n)]


def _statuses(manager: Any, todo: list[str], options: GridOptions) -> Iterator[Status]:
    """Each name's status as its batch finishes, wherever the work runs."""
    if not todo:
        return iter(())
    if not options.parallel:
        # One name at a time, so the progress bar moves as each finishes.
        get = (options.use_stored, options.verbose, options.on_stale)
        return (status for name in todo for status in run_names(manager, [name], *get))
    from . import _grid_backends

    if options.client is not None:
        return _grid_backends.on_dask(manager, todo, options)
    return _grid_backends.on_executor(manager, todo, options)


def batches(names: list[str], size: int | None, workers: int) -> list[list[str]]:
    """*names* cut in batches of *size* (default: about 16 batches per worker, <= 64).

    Many batches per worker keep both busy to the end of a short grid of long
    entries (with four, 16 entries of 35 ms ran 1.2x faster on two workers than on
    one; with sixteen, 1.6x); 64 entries per batch make the round trips of a big
    grid of small entries negligible.
    """
    if size is None:
        size = max(1, min(64, math.ceil(len(names) / (16 * max(1, workers)))))
    return [names[i : i + size] for i in range(0, len(names), size)]


def failed(names: Iterable[str], err: BaseException) -> list[Status]:
    """A failed status for each of *names* (a batch whose worker died)."""
    return [Status(n, "failed", error=err) for n in names]


Runner = Callable[..., list[Status]]
