"""Managers that pickle: a small description other processes rebuild them from.

A pickled manager carries its storage interface (itself a description: folder,
codec and options), its options, and the metrics it defines, as far as their
functions pickle: ``set_functions_dict`` functions by reference, collected
functions with their declarations (``params_list``, names), re-collected on the
other side. Memory, locks and threads are never shipped: each process builds its
own. A metric whose function does not pickle (a lambda, a closure) is named in the
description, so asking the rebuilt manager for it says why it is missing.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Description", "blank", "describe", "rebuild", "rebuild_into", "shipping_with"]

# How the manager being pickled will be shipped (plain pickle unless a grid ships it
# with cloudpickle), and which managers are being described, per thread.
_local = threading.local()


@dataclass
class Collected:
    """One collected metric family: what ``collect`` was given."""

    function: Callable[..., Any]
    base_name: str
    params_list: Any
    name_generation_function: Callable[..., str] | None
    #: *function* is the decorated function ``collect`` returned (the original is
    #: its ``__wrapped__``).
    decorated: bool = False


@dataclass
class Description:
    """Everything needed to rebuild a manager in another process."""

    cls: type
    storage: Any
    options: dict[str, Any]
    functions: dict[str, Callable[[], Any]] = field(default_factory=dict)
    collected: list[Collected] = field(default_factory=list)
    #: Metrics left behind because their functions do not pickle.
    unshipped: list[str] = field(default_factory=list)


@contextlib.contextmanager
def shipping_with(dumps: Callable[[Any], bytes]) -> Iterator[None]:
    """Describe managers pickled in this block as *dumps* (e.g. cloudpickle's) ships them.

    What pickles depends on the pickler: cloudpickle ships lambdas and functions
    of ``__main__`` by value, so a description made for it keeps them.
    """
    previous = getattr(_local, "dumps", None)
    _local.dumps = dumps
    try:
        yield
    finally:
        _local.dumps = previous


@contextlib.contextmanager
def prepared(manager: Any, options: dict[str, Any]) -> Iterator[None]:
    """Describe *manager* now; pickling it in this block reuses that description."""
    description = describe(manager, options)
    table: dict[int, Description] = _local.__dict__.setdefault("prepared", {})
    table[id(manager)] = description
    try:
        yield
    finally:
        table.pop(id(manager), None)


def _by_value() -> bool:
    """Whether functions are shipped by value where they cannot go by reference."""
    return getattr(_local, "dumps", None) is not None


def _pickles(obj: Any) -> bool:
    dumps = getattr(_local, "dumps", None) or pickle.dumps
    try:
        dumps(obj)
    except (pickle.PicklingError, AttributeError, TypeError, ValueError, RecursionError):
        return False
    return True


def _by_reference(function: Any) -> bool:
    """Whether *function* pickles by reference (by value it would carry its closure)."""
    if _by_value() and getattr(function, "__module__", None) == "__main__":
        return False  # cloudpickle ships __main__ by value, whatever plain pickle says
    try:
        pickle.dumps(function)
    except (pickle.PicklingError, AttributeError, TypeError, ValueError):
        return False
    return True


def _shippable_function(original: Callable[..., Any]) -> tuple[Callable[..., Any] | None, bool]:
    """The function to ship for a collected metric, and whether it is the decorated one.

    ``@CM.collect`` rebinds the module attribute to the decorated function, so the
    original no longer pickles by reference (pickle finds another object under its
    name); the decorated one does, and holds the original as ``__wrapped__``.
    """
    if _by_reference(original):
        return original, False
    found: Any = sys.modules.get(getattr(original, "__module__", ""), None)
    for part in getattr(original, "__qualname__", "<none>").split("."):
        found = getattr(found, part, None)
    if getattr(found, "__wrapped__", None) is original and _by_reference(found):
        return found, True
    # By value (cloudpickle): the original itself, never the decorated function,
    # whose closure holds the front and its memory.
    if _by_value() and _pickles(original):
        return original, False
    return None, False


def describe(manager: Any, options: dict[str, Any]) -> Description:
    """A :class:`Description` of *manager* (with its constructor *options*)."""
    prepared: Description | None = _local.__dict__.get("prepared", {}).get(id(manager))
    if prepared is not None:
        return prepared  # made before the pickler started: no trial pickle nests in it
    describing: set[int] = _local.__dict__.setdefault("describing", set())
    if id(manager) in describing:
        # A function shipped by value refers to this manager (its global ``CM``): the
        # trial pickle in _pickles only needs to succeed; the real pickle meets the
        # manager in its memo.
        return Description(type(manager), manager.storage_interface, options)
    describing.add(id(manager))
    try:
        return _describe(manager, options)
    finally:
        describing.discard(id(manager))


def _describe(manager: Any, options: dict[str, Any]) -> Description:
    description = Description(type(manager), manager.storage_interface, options)
    collected_names = set(manager._owners)
    for front in manager.parameterized_metrics:
        function, decorated = _shippable_function(front.original_function)
        declared = (front.params_list, front.name_generation_function)
        if function is None or not _pickles(declared):
            description.unshipped.append(front.base_name)
            continue
        description.collected.append(Collected(function, front.base_name, *declared, decorated))
    for name, function in manager.functions_dict.items():
        if name in collected_names:
            continue
        if _pickles(function):
            description.functions[name] = function
        else:
            description.unshipped.append(name)
    return description


def blank(cls: type[Any]) -> Any:
    """An uninitialised manager of *cls*, which :func:`rebuild_into` then builds.

    Pickling a manager as "blank, then its description as state" lets a function
    shipped by value inside the description refer back to the manager.
    """
    return object.__new__(cls)


def rebuild(description: Description) -> Any:
    """The manager *description* describes, with empty memory and its own locks."""
    return rebuild_into(blank(description.cls), description)


def rebuild_into(manager: Any, description: Description) -> Any:
    """Initialise the blank *manager* as *description* describes."""
    type(manager).__init__(manager, description.storage, **description.options)
    manager.set_functions_dict(dict(description.functions))
    for spec in description.collected:
        function = spec.function.__wrapped__ if spec.decorated else spec.function  # type: ignore[attr-defined]
        manager.collect(
            function,
            base_name=spec.base_name,
            params_list=spec.params_list,
            name_generation_function=spec.name_generation_function,
        )
    manager._unshipped = frozenset(description.unshipped)
    return manager
