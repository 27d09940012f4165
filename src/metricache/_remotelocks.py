"""Which locks a remote store gets, and the check a commit makes under a lease.

:func:`locks_for` gives S3 its lease locks (:mod:`metricache._lease`), a local
folder its file locks and a process's own memory its thread locks. Most fsspec
backends other than S3 (GCS without preconditions, Azure through
adlfs, SFTP, WebDAV, ...) offer no create-only write, so no lease can be built on
them. While a Dask client is active the name is held by a ``distributed.Lock`` on
its scheduler (every worker of that cluster agrees); otherwise only the threads of
this process are kept apart, and one :class:`~metricache.SharedLockWarning` per
store says that two machines may compute the same metric twice. Each write stays
atomic and verified, so values stay correct either way: only work is repeated.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

from ._locking import LocalLocks, LockProvider, ThreadLocks
from .exceptions import LeaseLostError, LockTimeoutError, MetricCycleError, SharedLockWarning

__all__ = ["DaskOrThreadLocks", "active_dask_client", "check_lease", "locks_for", "wait_timeout"]


def locks_for(store: Any) -> LockProvider:
    """The lock provider of a remote *store* (an fsspec store: ``.fs``, ``.root``, ``.url``).

    S3 gets :class:`~metricache.S3LeaseLocks`; a local folder its file locks; a
    process's own memory its thread locks; any other filesystem a Dask lock while
    a Dask client is active, else this process's thread locks with one warning.
    """
    protocols = store.fs.protocol if isinstance(store.fs.protocol, tuple) else (store.fs.protocol,)
    if "s3" in protocols and hasattr(store.fs, "call_s3"):
        from ._lease import S3LeaseLocks

        return S3LeaseLocks.over(store.fs, store.root)
    if "file" in protocols or "local" in protocols:
        return LocalLocks(store.root)  # a local folder: its file locks hold across processes
    if "memory" in protocols:
        return ThreadLocks()  # lives in this process only: thread locks are exact
    return DaskOrThreadLocks(str(store.url))


def check_lease(locks: object, name: str) -> None:
    """Raise :class:`~metricache.LeaseLostError` if *locks* held a lease on *name* and lost it.

    Called right before an entry is committed; providers without ``still_held``
    (local locks, which a live holder never loses) are never asked.
    """
    still_held = getattr(locks, "still_held", None)
    if still_held is not None and not still_held(name):
        raise LeaseLostError(
            f"the lease on metric {name!r} expired and was taken over while it was "
            "computed; it is not stored, so the new holder's entry stays (raise the "
            "lease ttl= if computations pause this long)"
        )


def active_dask_client() -> Any | None:
    """The Dask client of this process (or worker), if one is active; never imports dask."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None  # dask was never imported here, so no client can be active
    try:
        return distributed.get_client()
    except ValueError:
        return None


class DaskOrThreadLocks:
    """Hold a name with a Dask lock while a client is active, else with a thread lock.

    Parameters
    ----------
    url : str
        The store's URL: it scopes the Dask lock names and names the store in the
        warning.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.scope = url
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        self._warned = False

    def __repr__(self) -> str:
        return f"DaskOrThreadLocks({self.url!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.url,)

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """Hold *name*: across a Dask cluster if a client is active, else in this process."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._guard:
            thread_lock = self._locks.setdefault(name, threading.RLock())
        if thread_lock._is_owned():  # type: ignore[attr-defined]
            raise MetricCycleError([name, name])
        if not thread_lock.acquire(timeout=-1.0 if timeout is None else timeout):
            raise wait_timeout(name, timeout, "another thread of this process")
        try:
            client = active_dask_client()
            if client is None:
                self._warn_once()
                yield
                return
            with self._dask_lock(client, name, deadline, timeout):
                yield
        finally:
            thread_lock.release()

    @contextlib.contextmanager
    def _dask_lock(
        self, client: Any, name: str, deadline: float | None, timeout: float | None
    ) -> Iterator[None]:
        from ._optional import require

        distributed = require("distributed", "dask", "a Dask lock")
        # The lock talks to the scheduler of the active client (*client* is only
        # the proof that one is active).
        del client
        lock = distributed.Lock(f"metricache:{self.url}:{name}")
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not lock.acquire(timeout=left):
            raise wait_timeout(name, timeout, "another worker of the Dask cluster")
        try:
            yield
        finally:
            lock.release()

    def _warn_once(self) -> None:
        with self._guard:
            if self._warned:
                return
            self._warned = True
        warnings.warn(
            f"{self.url} cannot create files atomically, so metricache cannot lock a "
            "metric across machines there: two machines may compute the same metric "
            "twice (values stay correct). Start a Dask client to lock through its "
            "scheduler, or use an S3 bucket (lease locks).",
            SharedLockWarning,
            stacklevel=4,
        )


def wait_timeout(name: str, timeout: float | None, holder: str) -> LockTimeoutError:
    """The error of a wait for *name* that *holder* kept longer than *timeout*."""
    return LockTimeoutError(
        f"gave up after waiting {timeout or 0:g} s for metric {name!r}, which {holder} "
        "is computing; raise lock_timeout= or pass lock_timeout=None to wait for it"
    )
