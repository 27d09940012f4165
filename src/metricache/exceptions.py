"""The exceptions and warnings metricache raises.

Every exception derives from :class:`MetricacheError` and from the builtin a caller
would already catch, so ``except ValueError`` keeps working around code that used
the seed package::

    MetricacheError
     ├── InvalidMetricNameError        (ValueError)   a name that is unsafe as a file name
     ├── MetricNameCollisionError      (ValueError)   two metrics that would share one name
     ├── UnknownMetricError            (ValueError)   no function is defined for a name
     ├── MetricNotStoredError          (LookupError)  load() of a metric never stored
     ├── UnsupportedValueError         (TypeError)    a value the storage cannot hold
     ├── CorruptEntryError             (ValueError)   stored data that fails verification
     ├── PickleRequiredError           (ValueError)   a valid file that only loads by unpickling
     ├── LockTimeoutError              (TimeoutError) waited longer than ``lock_timeout``
     ├── LeaseLostError                (OSError)      a remote lease was taken over mid-compute
     ├── MetricCycleError              (RuntimeError) a metric that (indirectly) needs itself
     ├── StaleMetricError              (RuntimeError) a stored value its code no longer computes
     ├── GridError                     (RuntimeError) entries of a get_all/get_many that failed
     └── MissingDependencyError        (ImportError)  an optional extra is not installed

    CacheWriteWarning (UserWarning): a computed value could not be stored; it is
    still returned and kept in memory.
    SharedLockWarning (UserWarning): a remote store whose locks only hold within this
    process: two machines may compute the same metric twice (values stay correct).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CacheWriteWarning",
    "CorruptEntryError",
    "GridError",
    "InvalidMetricNameError",
    "LeaseLostError",
    "LockTimeoutError",
    "MetricCycleError",
    "MetricNameCollisionError",
    "MetricNotStoredError",
    "MetricacheError",
    "MissingDependencyError",
    "PickleRequiredError",
    "SharedLockWarning",
    "StaleMetricError",
    "UnknownMetricError",
    "UnsupportedValueError",
]


class MetricacheError(Exception):
    """Base class of every error metricache raises."""


class InvalidMetricNameError(MetricacheError, ValueError):
    """A metric name that cannot safely be used as a file name."""


class MetricNameCollisionError(MetricacheError, ValueError):
    """Two different metrics would be stored under the same name."""


class UnknownMetricError(MetricacheError, ValueError):
    """No function is defined for the requested metric name."""

    def __init__(self, name: str, known: Sequence[str] = (), hint: str = "") -> None:
        import difflib

        self.name = name
        known = list(dict.fromkeys(known))  # each name once, in the order given
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        message = f"unknown metric {name!r}: no function is defined for it"
        if close:
            message += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
        elif known:
            shown = sorted(known)[:10]
            more = ", ..." if len(known) > 10 else ""
            message += f"; known metrics: {', '.join(map(repr, shown))}{more}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)
        self._init_args = (name, known, hint)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the constructor arguments, not the message (pickling to processes).
        return type(self), self._init_args, self.__dict__


class MetricNotStoredError(MetricacheError, LookupError):
    """``load`` was asked for a metric that has never been stored."""

    def __str__(self) -> str:
        # LookupError's str() would show the repr of the message, quotes included.
        return str(self.args[0]) if self.args else ""


class UnsupportedValueError(MetricacheError, TypeError):
    """A value the storage interface cannot store faithfully (nothing was written)."""


class CorruptEntryError(MetricacheError, ValueError):
    """A stored entry failed verification (size, checksum, format or metadata)."""


class PickleRequiredError(MetricacheError, ValueError):
    """A stored file holds pickled objects and ``allow_pickle`` is False.

    The file is valid and left where it is (it is not corrupt, so never
    quarantined): pass ``allow_pickle=True`` to the storage interface to load it,
    if you trust whoever wrote it.
    """


class LockTimeoutError(MetricacheError, TimeoutError):
    """Waiting for another thread or process to finish a metric took too long."""


class LeaseLostError(MetricacheError, OSError):
    """A remote lease expired and was taken over while its holder computed.

    The holder's value is not stored (the new holder's entry stays); like any
    failed write, the manager still returns it and keeps it in memory.
    """


class MetricCycleError(MetricacheError, RuntimeError):
    """A metric needs itself, directly or through other metrics."""

    def __init__(self, path: Sequence[str]) -> None:
        self.path = tuple(path)
        super().__init__("metric dependency cycle: " + " -> ".join(self.path))

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the path, not the message, when sent between processes.
        return type(self), (self.path,), self.__dict__


class StaleMetricError(MetricacheError, RuntimeError):
    """A stored value is stale (``on_stale="raise"``); ``.report`` says why."""

    def __init__(self, report: Any) -> None:
        super().__init__(
            f"{report}; recompute it with use_stored=False, or pass on_stale='recompute' "
            "(or 'warn', 'ignore')"
        )
        self.report = report
        self.name: str = report.name

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.report,)


class GridError(MetricacheError, RuntimeError):
    """Entries of a ``get_all``/``get_many`` failed (every other entry was still got).

    ``.errors`` maps each failed metric name to its exception; the first one is
    also the ``__cause__``.
    """

    def __init__(self, errors: dict[str, BaseException], total: int) -> None:
        self.errors = dict(errors)
        self.total = total
        shown = [f"  {name}: {type(err).__name__}: {err}" for name, err in errors.items()]
        more = f"\n  ... and {len(shown) - 20} more" if len(shown) > 20 else ""
        super().__init__(
            f"{len(errors)} of {total} metrics failed (the others were stored):\n"
            + "\n".join(shown[:20])
            + more
        )
        self.__cause__ = next(iter(errors.values()), None)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.errors, self.total)


class MissingDependencyError(MetricacheError, ImportError):
    """An optional dependency is needed for a feature but is not installed."""


class CacheWriteWarning(UserWarning):
    """A computed value could not be written to storage; it is still returned."""


class SharedLockWarning(UserWarning):
    """A remote store's locks only hold within this process (no atomic create there).

    Two machines may compute the same metric at once; each write stays atomic and
    verified, so values stay correct.
    """
