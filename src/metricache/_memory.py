"""The memory tier: values a manager holds, which no caller can change in place.

A value is *shareable* when handing the held object to every caller is safe:
read-only array views, scalars, tuples of shareable values, and objects we know
nothing about (those are handed out as they are). Shareable values live in
:attr:`MemoryTier.values`, a plain dict, so a memory hit stays one dict lookup.

Lists and dicts are mutable however they are frozen inside, so they live apart,
as a template plus a function that builds a fresh container of the same type
(with the same read-only arrays) for each caller: ``CM.m().append(1)`` changes
only the caller's copy. DataFrames and Series (pandas, polars) live apart too:
each caller gets its own copy, which costs nothing where pandas copies on write
(pandas >= 3, or its ``copy_on_write`` option) and is a deep copy elsewhere;
the frame held is a copy too, so changing the frame the function returned
changes nothing held.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from ._lru import Budget

__all__ = ["MISSING", "MemoryTier", "freeze"]

#: What :meth:`MemoryTier.lookup` returns for a name it does not hold.
MISSING: Any = object()
_CONTAINERS = (list, dict, tuple)


class _Unfreezable(Exception):
    """A container that contains itself (or nests too deeply) to be frozen."""


def _readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view of *arr*; *arr* itself (maybe the user's) stays writeable."""
    view: np.ndarray = arr.view()
    view.flags.writeable = False
    return view


def _readonly_void(value: np.void) -> np.void:
    """A structured scalar detached from the array it may be a view into."""
    holder = np.array(value)  # a copy: the scalar may write through to the user's array
    holder.flags.writeable = False
    frozen: np.void = holder[()]  # type: ignore[assignment]  # 0-d structured: a void
    return frozen


def _freeze(value: Any, active: set[int]) -> tuple[Any, bool]:
    """``(frozen value, shareable)``; arrays inside containers become read-only views."""
    if isinstance(value, np.ndarray):
        return _readonly(value), True
    if isinstance(value, np.void):
        return _readonly_void(value), True
    kind = type(value)
    if kind not in _CONTAINERS:
        return value, True  # scalars are immutable; other objects are the user's to mind
    if id(value) in active:
        raise _Unfreezable
    active.add(id(value))
    try:
        if kind is dict:
            pairs = [(k, _freeze(v, active)) for k, v in value.items()]
            return {k: f for k, (f, _) in pairs}, False
        items = [_freeze(v, active) for v in value]
    finally:
        active.discard(id(value))
    frozen = [f for f, _ in items]
    if kind is list:
        return frozen, False
    return tuple(frozen), all(shareable for _, shareable in items)


def _fresh(template: Any) -> Any:
    """A new copy of every list, dict and tuple in *template*; leaves are shared."""
    kind = type(template)
    if kind is list:
        return [_fresh(v) if type(v) in _CONTAINERS else v for v in template]
    if kind is dict:
        return {k: _fresh(v) if type(v) in _CONTAINERS else v for k, v in template.items()}
    if kind is tuple:
        return tuple(_fresh(v) if type(v) in _CONTAINERS else v for v in template)
    return template


def _is_flat(template: list[Any] | dict[Any, Any]) -> bool:
    """True if a shallow copy of *template* shares nothing mutable with it."""
    items = template.values() if type(template) is dict else template
    return not any(type(v) in _CONTAINERS and not _shareable_tuple(v) for v in items)


def _shareable_tuple(value: Any) -> bool:
    """True for a tuple whose items are all shareable (frozen ones hold no list/dict)."""
    return type(value) is tuple and all(
        type(v) not in _CONTAINERS or _shareable_tuple(v) for v in value
    )


def _frame_maker(value: Any) -> tuple[Any, Callable[[], Any]] | None:
    """``(held copy, maker of per-caller copies)`` for a pandas or polars frame/Series."""
    top = type(value).__module__.partition(".")[0]
    if top == "pandas" and type(value).__name__ in ("DataFrame", "Series"):
        deep = not _pandas_copies_on_write()
        held = value.copy(deep=deep)
        return held, functools.partial(held.copy, deep=deep)
    if top == "polars" and type(value).__name__ in ("DataFrame", "Series"):
        held = value.clone()  # polars shares the column buffers, copying on write
        return held, held.clone
    return None


def _pandas_copies_on_write() -> bool:
    """Whether pandas copies a shallow copy's data before changing it (no shared writes)."""
    import pandas as pd

    if int(pd.__version__.split(".")[0]) >= 3:
        return True  # always, and the option is deprecated (reading it warns)
    return pd.options.mode.copy_on_write is True


def freeze(value: Any) -> tuple[Any, Callable[[], Any] | None]:
    """Split *value* into ``(shareable, None)`` or ``(template, maker of fresh copies)``.

    Examples
    --------
    >>> import numpy as np
    >>> shared, maker = freeze(np.arange(3))
    >>> shared.flags.writeable, maker
    (False, None)
    >>> template, maker = freeze([np.arange(3)])
    >>> maker() is not maker() and maker()[0].flags.writeable
    False
    """
    frame = _frame_maker(value)
    if frame is not None:
        return frame
    try:
        frozen, shareable = _freeze(value, set())
    except (_Unfreezable, RecursionError):
        return value, None  # a cyclic or very deep container: handed out as it is
    if shareable:
        return frozen, None
    if _is_flat(frozen):
        maker: Callable[[], Any] = frozen.copy
    else:
        maker = functools.partial(_fresh, frozen)
    return frozen, maker


class MemoryTier:
    """Values held in memory by name: shareable ones in :attr:`values`, containers apart.

    Parameters
    ----------
    readonly : bool
        Freeze what is held (read-only arrays, a fresh list/dict per caller).
        False holds and hands out each value itself, as simple_metrics_manager did.
    """

    def __init__(self, readonly: bool = True, max_memory: int | None = None) -> None:
        self.readonly = readonly
        #: name -> value safe to hand out as it is (the hot path reads this dict).
        self.values: dict[str, Any] = {}
        # name -> function returning a fresh copy of a held list/dict.
        self._makers: dict[str, Callable[[], Any]] = {}
        #: The bound on held bytes (None: none), and the sizes held against it.
        self.budget = None if max_memory is None else Budget(max_memory)
        #: Called with each name dropped to stay under the bound, or too large to
        #: hold (the manager drops its entry info).
        self.on_evict: Callable[[str], None] | None = None

    def _admit(self, name: str, value: Any) -> bool:
        """Account *value* against the bound, dropping the oldest names; keep it?"""
        assert self.budget is not None
        keep, victims = self.budget.admit(name, value)
        for victim in victims:
            self.values.pop(victim, None)
            self._makers.pop(victim, None)
            if self.on_evict is not None:
                self.on_evict(victim)
        return keep

    def hold(self, name: str, value: Any) -> Any:
        """Hold *value* under *name*; return what to hand to the caller now.

        Above the bound the oldest values go; a value larger than the bound on its
        own is returned (frozen) but not held.
        """
        if self.budget is not None and not self._admit(name, value):
            self.forget(name)
            if self.on_evict is not None:
                self.on_evict(name)  # not held: nothing about it is kept either
            return freeze(value)[0] if self.readonly else value
        if not self.readonly:
            self.values[name] = value
            return value
        frozen, maker = freeze(value)
        if maker is None:
            self._makers.pop(name, None)
            self.values[name] = frozen
            return frozen
        self.values.pop(name, None)
        self._makers[name] = maker
        return maker()

    def lookup(self, name: str) -> Any:
        """The value to hand out for *name*, or :data:`MISSING`."""
        try:
            value = self.values[name]
        except KeyError:
            pass
        else:
            if self.budget is not None:
                self.budget.touch(name)
            return value
        if self.budget is not None:
            self.budget.touch(name)
        maker = self._makers.get(name)
        return MISSING if maker is None else maker()

    def __contains__(self, name: object) -> bool:
        return name in self.values or name in self._makers

    def forget(self, name: str) -> None:
        """Drop *name* (whether held or not)."""
        self.values.pop(name, None)
        self._makers.pop(name, None)
        if self.budget is not None:
            self.budget.discard(name)

    def clear(self) -> None:
        """Drop everything."""
        self.values.clear()
        self._makers.clear()
        if self.budget is not None:
            self.budget.clear()

    def replace(self, values: dict[str, Any]) -> None:
        """Hold exactly *values* (the ``CM.cache = {...}`` assignment)."""
        if values is self.values:
            return
        incoming = dict(values)  # *values* may be a view of what clear() empties
        self.clear()
        for name, value in incoming.items():
            self.hold(name, value)
