"""The compute context: which metrics the current thread or task is computing.

A :class:`~contextvars.ContextVar` holds a stack of ``(scope, name)`` pairs,
outermost first; a *scope* is a lock provider's identity (for a local folder, its
real path), so managers sharing a folder share a stack however its path is spelled.
Lock providers read it to catch a metric that needs itself (a cycle in one thread);
later, provenance reads it to record which metric used which.

Threads started inside a metric see the stack only when started through
``contextvars.copy_context().run``, as with any context variable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["computing", "computing_stack"]

_stack: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("metricache_stack", default=())


def computing_stack(scope: str) -> tuple[str, ...]:
    """Names being computed in the current context for *scope*, outermost first."""
    return tuple(name for s, name in _stack.get() if s == scope)


@contextlib.contextmanager
def computing(scope: str, name: str) -> Iterator[None]:
    """Mark *name* (of *scope*) as being computed by the current context."""
    token = _stack.set((*_stack.get(), (scope, name)))
    try:
        yield
    finally:
        _stack.reset(token)
