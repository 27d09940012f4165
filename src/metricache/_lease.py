"""Compute once across machines: lease locks on S3 conditional writes.

Each name held is one small lease object under ``.metricache/locks/`` of the
store (:func:`metricache._layout.lease_key`), holding its holder's token (host,
pid, random part), the TTL and a heartbeat count. It is created with
``If-None-Match: *``, so only one client wins it; a background thread renews it
(``If-Match`` the version it wrote) every ``heartbeat`` seconds; a waiter takes it
over (``If-Match`` the version it saw) only once the server's own clock says it is
older than its TTL, so a holder that died (or was cut off) delays the others by at
most the TTL. It is released with a conditional DELETE, which never removes a lease
someone else took over.

A holder that lost its lease (paused or cut off past its TTL, and taken over) must
not publish over what the new holder wrote: :meth:`S3LeaseLocks.still_held` renews
the lease right before a commit, and :func:`check_lease` turns a lost lease into a
:class:`~metricache.exceptions.LeaseLostError` (the manager then keeps the value in
memory and warns, as for any failed write).

:func:`locks_for` (in :mod:`._remotelocks`, re-exported here) picks the locks of
a remote store.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ._flock import reset_in_forked_children
from ._layout import lease_key
from ._leaseio import LeaseIO, LeaseState, Taken
from ._remotelocks import check_lease, locks_for, wait_timeout
from ._store import _HOST
from .exceptions import MetricCycleError

__all__ = ["S3LeaseLocks", "check_lease", "locks_for"]

logger = logging.getLogger(__name__)

#: First and longest pause between two looks at a lease held by someone else.
_POLL_MIN, _POLL_MAX = 0.05, 1.0


@dataclass
class _Held:
    """A lease this process holds: its version, and when it was last renewed (local monotonic)."""

    key: str
    token: str
    etag: str
    renewed: float
    beats: int = 0
    lost: bool = False
    guard: threading.Lock = field(default_factory=threading.Lock)


class S3LeaseLocks:
    """A lock provider whose locks hold across machines: one S3 lease object per name.

    Parameters
    ----------
    url : str
        The cache folder on S3 (``"s3://bucket/prefix"``); leases live in its
        ``.metricache/locks/``.
    storage_options : dict, optional
        Passed to s3fs (credentials, ``client_kwargs={"endpoint_url": ...}``).
    ttl : float
        Seconds a lease lasts without a heartbeat; a holder that died delays the
        others by at most this (plus a second: server stamps are whole seconds).
    heartbeat : float, optional
        Seconds between renewals of each held lease (default ``ttl / 3``); must be
        under half the TTL, so one lost renewal never loses the lease.

    Examples
    --------
    >>> from metricache import NpzStorageInterface, S3LeaseLocks
    >>> locks = S3LeaseLocks("s3://bucket/cache", ttl=60)  # doctest: +SKIP
    >>> storage = NpzStorageInterface("s3://bucket/cache", locks=locks)  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        *,
        ttl: float = 30.0,
        heartbeat: float | None = None,
    ) -> None:
        from ._optional import require

        require("s3fs", "s3", "a lease lock on S3")
        fsspec = require("fsspec", "s3", "a lease lock on S3")
        fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self._setup(fs, root, ttl, heartbeat)

    @classmethod
    def over(
        cls, fs: Any, root: str, *, ttl: float = 30.0, heartbeat: float | None = None
    ) -> S3LeaseLocks:
        """Leases through the s3fs filesystem *fs*, under folder *root* (``bucket/prefix``)."""
        locks = cls.__new__(cls)
        locks._setup(fs, root, ttl, heartbeat)
        return locks

    def _setup(self, fs: Any, root: str, ttl: float, heartbeat: float | None) -> None:
        """Check the timings and build the per-process state."""
        heartbeat = ttl / 3 if heartbeat is None else heartbeat
        if not ttl > 0 or not 0 < heartbeat < ttl / 2:
            raise ValueError(
                f"lease ttl={ttl!r}, heartbeat={heartbeat!r}: need ttl > 0 and "
                "0 < heartbeat < ttl / 2 (one lost renewal must not lose the lease)"
            )
        self.fs, self.root = fs, root.strip("/")
        self.ttl, self.heartbeat = float(ttl), float(heartbeat)
        bucket, _, self._prefix = self.root.partition("/")
        self._io = LeaseIO(fs, bucket)
        #: Managers over one S3 folder share a scope, so a cycle through two is still seen.
        self.scope = f"s3://{self.root}"
        self._reset()
        reset_in_forked_children(self)

    def _reset(self) -> None:
        """Hold nothing: no thread locks, no leases, no heartbeat thread."""
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        self._held: dict[str, _Held] = {}
        self._beater: threading.Thread | None = None

    def _after_fork(self) -> None:
        # The parent's leases and heartbeat thread stay the parent's.
        self._reset()

    def __repr__(self) -> str:
        return f"S3LeaseLocks({self.scope!r}, ttl={self.ttl:g})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Leases and threads stay in this process; the receiver gets its own.
        return _rebuild, (self.fs, self.root, self.ttl, self.heartbeat)

    def _key(self, name: str) -> str:
        return f"{self._prefix}/{lease_key(name)}" if self._prefix else lease_key(name)

    # -- holding --
    @contextlib.contextmanager
    def hold(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """Hold *name*'s lease for the ``with`` block, renewed by a heartbeat meanwhile.

        Raises :class:`~metricache.LockTimeoutError` (naming the holder) after
        *timeout* seconds, and :class:`~metricache.MetricCycleError` if this thread
        holds *name* already.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        thread_lock = self._thread_lock(name)
        if thread_lock._is_owned():  # type: ignore[attr-defined]
            raise MetricCycleError([name, name])  # this thread would wait on itself
        try:
            wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            if not thread_lock.acquire(timeout=wait):
                raise wait_timeout(name, timeout, "another thread of this process")
            held = self._acquire(name, deadline, timeout)
            try:
                yield
            finally:
                self._release(name, held)
        finally:
            if thread_lock._is_owned():  # type: ignore[attr-defined]
                thread_lock.release()

    def _thread_lock(self, name: str) -> threading.RLock:
        # An RLock knows its owner, so a same-thread re-entry is told from a wait.
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

    def _acquire(self, name: str, deadline: float | None, timeout: float | None) -> _Held:
        """Win *name*'s lease (create it, or take over an expired one), waiting with backoff."""
        key, token = self._key(name), f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        delay, state = _POLL_MIN, None
        first = True
        while True:
            won, state = self._attempt(key, token, name, look_first=not first)
            first = False
            if won is not None:
                self._start(name, won)
                return won
            if deadline is not None and time.monotonic() >= deadline:
                raise wait_timeout(name, timeout, _holder(state))
            pause = delay * random.uniform(0.7, 1.3)
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 1.5, max(_POLL_MIN, min(_POLL_MAX, self.ttl / 4)))

    def _attempt(
        self, key: str, token: str, name: str, look_first: bool
    ) -> tuple[_Held | None, LeaseState | None]:
        """One try at the lease: the lease won, or the state of someone else's."""
        state = self._io.read(key) if look_first else None
        if state is None:
            sent = time.monotonic()
            try:
                return _Held(
                    key, token, self._io.create(key, self._body(token, name, 0)), sent
                ), None
            except Taken:
                state = self._io.read(key)
                if state is None:
                    return None, None  # released in between: the next try creates it
        if state.owner == token:  # our write landed, its answer was lost (retried by s3fs)
            return _Held(key, token, state.etag, time.monotonic()), None
        if not state.expired(self.ttl):
            return None, state
        sent = time.monotonic()
        try:
            etag = self._io.replace(key, self._body(token, name, 0), state.etag)
        except Taken:
            return self._retried(key, token, sent)
        logger.info("took over the expired lease of %r from %s", name, state.owner)
        return _Held(key, token, etag, sent), None

    def _retried(
        self, key: str, token: str, sent: float
    ) -> tuple[_Held | None, LeaseState | None]:
        """After a 412: ours if the write landed (its retry met it), else whoever won."""
        state = self._io.read(key)
        if state is not None and state.owner == token:
            return _Held(key, token, state.etag, sent), None
        return None, state

    def _body(self, token: str, name: str, beats: int) -> dict[str, Any]:
        return {"owner": token, "host": _HOST, "pid": os.getpid(), "name": name,
                "ttl": self.ttl, "beats": beats}  # fmt: skip

    def _start(self, name: str, held: _Held) -> None:
        """Register a won lease with the heartbeat (started if none runs)."""
        with self._guard:
            self._held[name] = held
            if self._beater is None:
                self._beater = threading.Thread(
                    target=self._beat, name="metricache-lease-heartbeat", daemon=True
                )
                self._beater.start()

    def _release(self, name: str, held: _Held) -> None:
        """Stop renewing and delete the lease, unless it is someone else's by now."""
        with self._guard:
            if self._held.get(name) is held:
                del self._held[name]
        with held.guard:
            if held.lost:
                return
            held.lost = True  # the heartbeat thread must not renew it any more
            try:
                if not self._io.delete(held.key, held.etag):
                    logger.warning("the lease of %r was taken over before its release", name)
            except Exception as err:  # noqa: BLE001 - any request error: the TTL frees it
                logger.warning("could not release the lease of %r (%s); it expires in %g s",
                               name, err, self.ttl)  # fmt: skip

    # -- the heartbeat, and the check before a commit --
    def _beat(self) -> None:
        """Renew every held lease every ``heartbeat`` seconds; end when none is held."""
        while True:
            time.sleep(self.heartbeat)
            with self._guard:
                held = list(self._held.items())
                if not held:
                    self._beater = None
                    return
            for name, lease in held:
                self._renew(name, lease)

    def _renew(self, name: str, held: _Held) -> bool:
        """Renew *held* (``If-Match`` its version); False once it is lost."""
        with held.guard:
            if held.lost:
                return False
            sent = time.monotonic()
            try:
                held.etag = self._io.replace(
                    held.key, self._body(held.token, name, held.beats + 1), held.etag
                )
            except Taken:
                mine, _ = self._retried(held.key, held.token, sent)
                if mine is None:
                    held.lost = True
                    logger.warning("lost the lease of %r (taken over or removed): its value "
                                   "will not be stored over the new holder's", name)  # fmt: skip
                    return False
                held.etag = mine.etag
            except Exception as err:  # noqa: BLE001 - the heartbeat thread must never die
                # A local monotonic duration, never a comparison with the server's clock.
                if time.monotonic() - held.renewed > self.ttl:
                    held.lost = True
                    logger.warning("could not renew the lease of %r for its whole TTL (%s): "
                                   "counted as lost", name, err)  # fmt: skip
                    return False
                logger.warning("could not renew the lease of %r (%s); retrying", name, err)
                return True
            held.beats += 1
            held.renewed = sent
            return True

    def still_held(self, name: str) -> bool:
        """Whether a commit of *name* from this process is still safe (renewing its lease).

        False once the lease this process held on *name* was lost (taken over
        after it expired, or removed); True while it is held, and when this
        process holds no lease on *name* (nothing to protect).
        """
        with self._guard:
            held = self._held.get(name)
        return True if held is None else self._renew(name, held)


def _holder(state: LeaseState | None) -> str:
    return "another process" if state is None else state.holder()


def _rebuild(fs: Any, root: str, ttl: float, heartbeat: float) -> S3LeaseLocks:
    return S3LeaseLocks.over(fs, root, ttl=ttl, heartbeat=heartbeat)
