"""The one hashing thread per process, and tasks a Ctrl-C cannot wedge.

A verified read hands work to this thread and waits for it on the caller's
thread, where a KeyboardInterrupt can land at any bytecode. The futures of
:mod:`concurrent.futures` guard their state with a condition whose Python-level
``__enter__`` an interrupt can leave holding its lock; the worker then blocks
forever in ``set_result`` and every later read waits on it (a real SIGINT test
hung that way). A :class:`Pending` task uses only C-level primitives (a lock
acquired without blocking to claim it, a lock released once to finish it, a
``SimpleQueue``), each of which an interrupt leaves either done or not done.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Pending", "submit"]

T = TypeVar("T")
#: Seconds per wait on a task before the waiter looks at its flags again.
_POLL = 0.05


class Pending(Generic[T]):
    """A call queued for the hashing thread: run once, or cancelled before it starts."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn: Callable[[], T] | None = fn
        #: Whoever takes it first (the worker to run, a caller to cancel) owns the task.
        self._claim = threading.Lock()
        #: Held until the task is finished (or cancelled); released exactly once.
        self._done = threading.Lock()
        self._done.acquire()
        self.finished = False
        self._result: T | None = None
        self._error: BaseException | None = None

    @classmethod
    def done(cls, value: T) -> Pending[T]:
        """A task already finished with *value*."""
        task: Pending[T] = cls(lambda: value)
        task._run()
        return task

    def _run(self) -> None:
        """Run the call unless it was cancelled (on the hashing thread)."""
        if not self._claim.acquire(blocking=False):
            return
        fn, self._fn = self._fn, None
        try:
            assert fn is not None
            self._result = fn()
        except BaseException as err:  # noqa: BLE001 - handed to whoever waits
            self._error = err
        self._finish()

    def _finish(self) -> None:
        """Mark the task finished (the flag first: a waiter may look at it without the lock)."""
        self.finished = True
        self._done.release()

    def cancel(self) -> bool:
        """Stop the task from ever running; False if it already started."""
        if not self._claim.acquire(blocking=False):
            return False
        self._fn = None
        self._finish()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task is finished (interruptible); whether it is."""
        waited = 0.0
        while not self.finished and (timeout is None or waited < timeout):
            self._done.acquire(timeout=_POLL)  # held by nobody once finished
            waited += _POLL
        return self.finished

    def result(self, timeout: float | None = None) -> T:
        """The call's return value (its exception re-raised), once finished."""
        if not self.wait(timeout):
            raise TimeoutError(f"the hashing thread did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]  # None only for a None-returning call


class _Worker:
    """A daemon thread running queued tasks in order (it never waits for another task)."""

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[Pending[object]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="metricache-hash", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._tasks.get()._run()

    def put(self, task: Pending[T]) -> None:
        self._tasks.put(task)  # type: ignore[arg-type]


_worker: _Worker | None = None
_start_lock = threading.Lock()


def submit(fn: Callable[[], T]) -> Pending[T]:
    """Queue ``fn()`` for the hashing thread (started on first use)."""
    global _worker
    if _worker is None:
        with _start_lock:
            if _worker is None:
                _worker = _Worker()
    task = Pending(fn)
    _worker.put(task)
    return task


def _forget_worker() -> None:
    """In a forked child: the parent's thread is not there, so start a new one on demand."""
    global _worker, _start_lock
    _worker = None
    _start_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_worker)
