"""Per-name single-flight: one computation of a metric at a time, across threads
and processes, with dependency-cycle detection instead of deadlock.

A *lock provider* is any object with ``hold(name, timeout)``, a context manager
that holds *name* exclusively (:class:`LockProvider`); the managers ask for nothing
else, so a distributed lock can replace the default. :func:`single_flight` wraps a
provider with what every provider needs: the compute context (so a metric that
needs itself in one thread raises :class:`MetricCycleError` instead of waiting on
itself).

The default, :class:`LocalLocks`, gives each name a thread lock (within the
process) and, for a local folder, a process lock in ``.metricache/locks/`` (see
:mod:`metricache._flock`; the OS releases it when a holder dies, so a killed
process never blocks the next one). A waiter publishes what it waits for and the
names it holds in ``<actor>.wait``, so waiters can follow the wait-for chain and
recognise a cycle that spans threads or processes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ._context import computing, computing_stack
from ._flock import FolderLocks, reset_in_forked_children
from ._layout import LOCK_DIR, ROOT_DIR
from ._safeopen import free_of_holders, read_small, try_hold
from ._store import _HOST, _pid_alive
from .exceptions import CorruptEntryError, LockTimeoutError, MetricCycleError

__all__ = ["LOCK_DIR", "LocalLocks", "LockProvider", "ThreadLocks", "single_flight"]

_POLL = 0.05
#: Largest ``.wait`` record read (they are a few hundred bytes).
_WAIT_MAX = 1 << 16


@runtime_checkable
class LockProvider(Protocol):
    """What a manager needs of a lock: hold one name exclusively, with a timeout.

    ``hold(name, timeout)`` returns a context manager that is entered once *name*
    is held by the caller and releases it on exit; it raises
    :class:`~metricache.LockTimeoutError` when *timeout* seconds (``None``: no
    limit) pass first. It need not be reentrant: a metric that needs itself is
    caught before the lock is asked for.
    """

    def hold(self, name: str, timeout: float | None = None) -> AbstractContextManager[None]:
        """Hold *name* for the duration of the ``with`` block."""
        ...


@contextlib.contextmanager
def single_flight(locks: LockProvider, name: str, timeout: float | None) -> Iterator[None]:
    """Hold *name* through *locks* and mark it as computing in the compute context.

    Raises :class:`MetricCycleError` at once if this context is computing *name*
    already (the lock would wait on itself forever).
    """
    scope = scope_of(locks)
    stack = computing_stack(scope)
    if name in stack:
        raise MetricCycleError([*stack[stack.index(name) :], name])
    with locks.hold(name, timeout), computing(scope, name):
        yield


def scope_of(locks: object) -> str:
    """The compute-context scope of a lock provider (its ``scope``, else its identity)."""
    scope = getattr(locks, "scope", None)
    return scope if isinstance(scope, str) else f"locks-{id(locks)}"


def _actor() -> str:
    return f"{_HOST}-{os.getpid()}-{threading.get_ident()}"


class LocalLocks:
    """The default lock provider: threads of this process, and processes sharing a folder.

    Parameters
    ----------
    folder : str or os.PathLike, optional
        The cache folder whose ``.metricache/locks/`` holds the process locks;
        ``None`` locks between the threads of this process only.
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = None if folder is None else Path(folder)
        # Managers over one folder share a scope however its path is spelled, so a cycle
        # through two of them is still seen in the stack.
        self.scope = os.path.realpath(folder) if folder is not None else f"memory-{id(self)}"
        self._lock_dir_ready = False
        self._folder_locks: FolderLocks | None = None
        self._reset()
        reset_in_forked_children(self)

    def _reset(self) -> None:
        """Start with no thread locks held."""
        self._guard = threading.Lock()
        #: name -> thread lock, only while some thread holds or waits for the name.
        self._locks: dict[str, Any] = {}
        #: name -> the threads holding or waiting for it (who keeps its lock alive).
        self._users: dict[str, set[int]] = {}
        self._holders: dict[str, str] = {}
        self._waiting: dict[str, tuple[str, list[str]]] = {}
        #: Descriptors holding the flock of this process's published ``.wait`` files.
        self._wait_fds: dict[str, int] = {}

    def _after_fork(self) -> None:
        # The child's copies of thread locks held by the parent's other threads
        # would never be released there.
        self._reset()

    def __repr__(self) -> str:
        return f"LocalLocks({None if self.folder is None else str(self.folder)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Locks and threads are rebuilt in the receiving process, never shipped.
        return type(self), (self.folder,)

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float | None = None) -> Iterator[None]:
        """Hold *name*'s lock while the caller computes it.

        Raises :class:`MetricCycleError` if a chain of waiters leads back to this
        context, and :class:`LockTimeoutError` after *timeout* seconds of waiting.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.get_ident()
        users = self._users.get(name)
        if users is not None and me in users:
            raise MetricCycleError([name, name])  # this thread would wait on itself
        # Registered, acquired and released inside the try, and each step undone by
        # what it left (membership, ownership): a KeyboardInterrupt at any point
        # still ends with the name free and, once nobody uses it, forgotten.
        try:
            thread_lock = self._enter(name, me)
            self._wait(name, lambda t: thread_lock.acquire(timeout=t), deadline, timeout)
            with self._file_lock(name, deadline, timeout):
                yield
        finally:
            try:
                self._leave(name, me)
            except BaseException:
                # Interrupted half-way (a second Ctrl-C): leaving is idempotent, so
                # finishing it now leaves nothing behind.
                self._leave(name, me)
                raise

    def _enter(self, name: str, me: int) -> Any:
        """The thread lock of *name*, made on first use, with thread *me* among its users."""
        # An RLock knows its owner (a Lock does not), so an interrupted acquire can be
        # told apart from one that never happened; it is never entered twice.
        with self._guard:
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = threading.RLock()
                self._users[name] = set()
            self._users[name].add(me)
            return lock

    def _leave(self, name: str, me: int) -> None:
        """Release *name* if *me* holds it and drop *me* from its users; the last one
        out forgets the lock (no one holds or waits for it, so no one has it)."""
        with self._guard:
            lock = self._locks.get(name)
            if lock is not None and lock._is_owned():
                lock.release()
            users = self._users.get(name)
            if users is not None:
                users.discard(me)
                if not users:
                    del self._users[name]
                    self._locks.pop(name, None)

    @contextlib.contextmanager
    def _file_lock(
        self, name: str, deadline: float | None, timeout: float | None
    ) -> Iterator[None]:
        holder = _actor()
        if self.folder is None:
            self._holders[name] = holder
            try:
                yield
            finally:
                self._holders.pop(name, None)
            return
        locks = self._process_locks(self.folder)
        try:
            try:
                self._ensure_lock_dir()
                self._wait(name, lambda wait: locks.acquire(name, wait), deadline, timeout)
            except OSError as err:
                if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ELOOP):
                    raise
                # A folder we may not write (or whose .metricache leads elsewhere):
                # nothing can be stored through us anyway, so the thread lock alone
                # is enough (and loads, computes still work).
            self._holders[name] = holder
            yield
        finally:
            self._holders.pop(name, None)
            # Unconditional: this thread holds the name's thread lock, so no other
            # thread here holds its range, and releasing a range not held is a no-op.
            locks.release(name)

    def _process_locks(self, folder: Path) -> FolderLocks:
        with self._guard:
            if self._folder_locks is None:
                self._folder_locks = FolderLocks(folder / LOCK_DIR)
            return self._folder_locks

    def _ensure_lock_dir(self) -> None:
        """Create the lock folder once per instance (not on every miss)."""
        if not self._lock_dir_ready and self.folder is not None:
            if (self.folder / ROOT_DIR).is_symlink():
                raise OSError(errno.ELOOP, f"{self.folder / ROOT_DIR} is a symlink")
            (self.folder / LOCK_DIR).mkdir(parents=True, exist_ok=True)
            self._lock_dir_ready = True

    def _wait(
        self, name: str, acquire: Any, deadline: float | None, timeout: float | None
    ) -> None:
        """Call ``acquire(seconds)`` until it succeeds, checking for cycles and the deadline."""
        if acquire(0):
            return
        me = _actor()
        suspect: list[str] | None = None
        try:
            self._set_waiting(me, name)  # inside the try: an interrupt here still clears it
            while not acquire(_POLL):
                cycle = self._find_cycle(me, name)
                # A cycle must be seen twice in a row: records can be briefly stale.
                if cycle is not None and cycle == suspect:
                    raise MetricCycleError(cycle)
                suspect = cycle
                if deadline is not None and time.monotonic() > deadline:
                    raise LockTimeoutError(
                        f"gave up after waiting {timeout:g} s for metric {name!r}, "
                        f"which {self._describe_holder(name)} is computing; "
                        "raise lock_timeout= or pass lock_timeout=None to wait for it"
                    )
        finally:
            self._set_waiting(me, None)

    def _set_waiting(self, actor: str, name: str | None) -> None:
        """Publish (or clear) what *actor* waits for and its stack, in memory and on disk.

        The ``.wait`` file is published with its flock held for as long as the
        actor waits: a free lock marks the record of an actor that died.
        """
        path = None if self.folder is None else self.folder / LOCK_DIR / f"{actor}.wait"
        if name is None:
            # Memory first: an interrupt during the unlink must not leave the fd listed.
            fd = self._wait_fds.pop(actor, None)
            self._waiting.pop(actor, None)
            try:
                if path is not None:
                    with contextlib.suppress(OSError):
                        path.unlink()
            finally:
                if fd is not None:
                    os.close(fd)
            return
        stack = list(computing_stack(self.scope))
        self._waiting[actor] = (name, stack)
        if path is not None and actor not in self._wait_fds:
            fd = _publish_held(path, {"waiting_for": name, "stack": stack})
            if fd is not None:
                self._wait_fds[actor] = fd

    def _holder_of(self, name: str) -> str | None:
        """The actor holding *name*'s lock, if known: in this process, or a waiter elsewhere.

        Another process is only seen while it waits (its ``.wait`` record lists the
        names it holds), which is all cycle detection needs: in a cycle, all wait.
        """
        holder = self._holders.get(name)
        if holder is not None or self.folder is None:
            return holder
        for actor, (_, stack) in self._waiters_on_disk():
            if name in stack and _actor_alive(actor):
                return actor
        return None

    def _waiters_on_disk(self) -> Iterator[tuple[str, tuple[str, list[str]]]]:
        assert self.folder is not None
        for path in (self.folder / LOCK_DIR).glob("*.wait"):
            actor = path.name[: -len(".wait")]
            if actor not in self._wait_fds and free_of_holders(str(path)):
                # Its waiter died (its lock is free): stale, whatever its pid says now.
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            waiting = _parse_wait(_read_json(path))
            if waiting is not None:
                yield actor, waiting

    def _waiting_of(self, actor: str) -> tuple[str, list[str]] | None:
        """What *actor* waits for, and the names it is computing meanwhile."""
        if actor in self._waiting or self.folder is None:
            return self._waiting.get(actor)
        return _parse_wait(_read_json(self.folder / LOCK_DIR / f"{actor}.wait"))

    def _find_cycle(self, me: str, target: str) -> list[str] | None:
        """Follow holder -> waits-for links from *target*; the path if they lead back to *me*."""
        path, name = [target], target
        for _ in range(64):
            holder = self._holder_of(name)
            if holder is None:
                return None
            if holder == me:
                # Only this very context can release it: waiting would never end.
                mine = list(computing_stack(self.scope))
                return mine[mine.index(name) :] + path if name in mine else [name, *path]
            waiting = self._waiting_of(holder)
            if waiting is None:
                return None
            name, stack = waiting
            if path[-1] in stack:
                path += stack[stack.index(path[-1]) + 1 :]
            path.append(name)
        return None

    def _describe_holder(self, name: str) -> str:
        holder = self._holder_of(name)
        return f"{holder} (host-pid-thread)" if holder else "another thread or process"


def _actor_alive(actor: str) -> bool:
    """False only when *actor* is a process on this host that has exited."""
    host, _, rest = actor.rpartition("-")[0].rpartition("-")
    if host != _HOST:
        return True
    try:
        return _pid_alive(int(rest))
    except ValueError:
        return True


def _publish_held(path: Path, data: dict[str, Any]) -> int | None:
    """Write a small record under *path* with its flock held; the descriptor holding it.

    Written aside and renamed into place already locked, so no reader ever sees a
    live waiter's record unlocked. Best effort: None if the folder refuses it.
    """
    tmp = path.with_name(f"{path.name}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError:
        return None
    try:
        try_hold(fd)
        os.write(fd, json.dumps(data).encode())
        os.replace(tmp, path)
    except BaseException as err:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            return None
        raise
    return fd


def _parse_wait(data: dict[str, Any] | None) -> tuple[str, list[str]] | None:
    """``(waiting_for, stack)`` from a ``.wait`` record, or None if unusable."""
    if not data or "waiting_for" not in data:
        return None
    return str(data["waiting_for"]), [str(s) for s in data.get("stack", [])]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:  # a FIFO or device in its place is refused, never waited on
        return _parse_json(read_small(str(path), str(path.parent), _WAIT_MAX).decode())
    except (OSError, CorruptEntryError, UnicodeDecodeError):
        return None


def _parse_json(text: str) -> dict[str, Any] | None:
    """A JSON object from *text*, or None for anything else (torn, empty, garbage)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class ThreadLocks(LocalLocks):
    """A lock provider for the threads of this process only (no cross-process lock)."""

    def __init__(self) -> None:
        super().__init__(None)

    def __repr__(self) -> str:
        return "ThreadLocks()"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), ()
