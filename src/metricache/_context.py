"""The compute context: which metrics the current thread or task is computing, and what they read.

A :class:`~contextvars.ContextVar` holds a stack of frames ``(scope, name, reads)``,
outermost first; a *scope* is a lock provider's identity (for a local folder, its
real path), so managers sharing a folder share a stack however its path is spelled.
Lock providers read it to catch a metric that needs itself (a cycle in one thread);
provenance reads it to record which metric used which: every value a manager hands
out while a metric of its scope computes is noted in the innermost frame's *reads*
(name -> value id), which become the entry's dependencies.

Threads started inside a metric see the stack only when started through
``contextvars.copy_context().run`` (as with any context variable); they then note
their reads into the same frame, so a thread pool inside a metric records its
dependencies when its tasks are submitted as ``pool.submit(ctx.run, fn)`` with
``ctx = contextvars.copy_context()``. A process (or a Dask worker) computes with
its own manager, which records the dependencies of what it computes itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["computing", "computing_stack", "current_reads", "note_read"]

#: name -> the value id it was read with (None: not known)
Reads = dict[str, "str | None"]
_Frame = tuple[str, str, Reads]

_stack: ContextVar[tuple[_Frame, ...]] = ContextVar("metricache_stack", default=())


def computing_stack(scope: str) -> tuple[str, ...]:
    """Names being computed in the current context for *scope*, outermost first."""
    return tuple(frame[1] for frame in _stack.get() if frame[0] == scope)


@contextlib.contextmanager
def computing(scope: str, name: str) -> Iterator[None]:
    """Mark *name* (of *scope*) as being computed by the current context.

    Interrupt-safe: the stack is restored to what it was on entry however the
    block ends, even by a ``KeyboardInterrupt`` right after the push (a name left
    on the stack would read as a dependency cycle the next time).
    """
    outer = _stack.get()
    try:
        _stack.set((*outer, (scope, name, {})))
        yield
    finally:
        _stack.set(outer)


def note_read(scope: str, name: str, value_id: str | None) -> None:
    """Record that the metric computing innermost in this context read *name*.

    Only a metric of the same *scope* records it (another folder's entries are not
    this folder's dependencies), and never itself.
    """
    stack = _stack.get()
    if stack:
        frame_scope, computing_name, reads = stack[-1]
        if frame_scope == scope and computing_name != name:
            reads[name] = value_id


def current_reads(scope: str, name: str) -> Reads | None:
    """What the innermost frame (computing *name* of *scope*) has read so far."""
    stack = _stack.get()
    if stack and stack[-1][0] == scope and stack[-1][1] == name:
        return stack[-1][2]
    return None
