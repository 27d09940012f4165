"""Naming a grid of plain parameter sets at once, as binding each set would name it.

A declared grid whose every set is plain positional values (ints, floats,
strings, bools, ``None`` and tuples of them) gets the seed's names from a few
C-level joins per chunk instead of one signature binding per set; the names are
exactly those :mod:`metricache._parameterized` gives by binding (a property test
compares both), and anything else is left to binding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import numpy as np

from ._keys import param_key
from ._names import default_name_generation_function

__all__ = ["canonical_plain", "grid_names"]

#: Parameter sets named per C-level pass (bounds the temporary texts).
_CHUNK = 8192
# Exact types whose seed text and canonical key agree: equal keys, equal text.
_PLAIN_TYPES = frozenset({int, float, str, bool, type(None)})
_NUMPY_PLAIN: dict[type, Callable[[Any], Any]] = {
    np.float64: float,
    np.bool_: bool,
    np.str_: str,
    **{t: int for t in np.sctypeDict.values() if issubclass(t, np.integer)},
}


def grid_names(
    base: str, items: Sequence[Any], arity: int
) -> tuple[list[str], dict[str, Any], str] | None:
    """The seed's names of *items*, each a call of *arity* plain positional values.

    Returns the name of every item in order, ``{name: first item}`` and the names
    joined by line breaks (for :func:`~metricache._names.all_valid`), or ``None``
    when an item is anything else (keywords, other types, another count, a mix of
    scalars and sequences) or two different calls make one name: the caller then
    binds each item through the signature, which gives the same names (and the
    errors). Names are made a chunk at a time by one C-level ``%`` formatting (its
    ``%s`` is ``str``, as the seed's rule).
    """
    if not _plain_grid(items, arity):
        return None
    prefix = default_name_generation_function(base, ()).replace("%", "%%")
    row = prefix + "_" + "_".join(["%s"] * arity) + "\n"
    flat = arity > 1 or _sequences(items)
    names: list[str] = []
    texts: list[str] = []
    for start in range(0, len(items), _CHUNK):
        chunk = items[start : start + _CHUNK]
        values = tuple(chain.from_iterable(chunk)) if flat else tuple(chunk)
        text = ((row * len(chunk)) % values).replace(".", "p")
        made = text.split("\n")
        if len(made) != len(chunk) + 1:  # a value's text has a line break: not a usable name
            return None
        made.pop()  # after the last line break
        names += made
        texts.append(text)
    declared = dict(zip(names, items, strict=True))
    if len(declared) < len(items) and not _first_wins(names, items, declared):
        return None
    return names, declared, "".join(texts)[:-1]


def _plain_grid(items: Sequence[Any], arity: int) -> bool:
    """Whether *items* are all sequences of *arity* plain values, or all plain scalars."""
    kinds = set(map(type, items))
    if kinds <= {tuple, list}:
        if set(map(len, items)) != {arity}:
            return False
        values = set(map(type, chain.from_iterable(items)))
    elif arity == 1 and kinds <= _PLAIN_TYPES - {tuple}:
        values = kinds
    else:
        return False
    return values <= _PLAIN_TYPES or (values <= _PLAIN_TYPES | {tuple} and _nested_plain(items))


def _sequences(items: Sequence[Any]) -> bool:
    return bool(items) and type(items[0]) in (tuple, list)


def _nested_plain(items: Sequence[Any]) -> bool:
    """Whether every tuple among the values holds only plain values (recursively)."""
    return all(_plain(item if type(item) in (tuple, list) else (item,)) for item in items)


def _first_wins(names: list[str], items: Sequence[Any], declared: dict[str, Any]) -> bool:
    """Keep each repeated name's first item; False if two of its items are different calls."""
    first: dict[str, Any] = {}
    for name, item in zip(names, items, strict=True):
        kept = first.setdefault(name, item)
        if kept is not item and _grid_key(kept) != _grid_key(item):
            return False
    declared.update(first)
    return True


def _plain(values: Sequence[Any]) -> bool:
    """Whether every value is a plain scalar or a tuple of them (recursively)."""
    return all(type(v) in _PLAIN_TYPES or (type(v) is tuple and _plain(v)) for v in values)


def _grid_key(item: Any) -> Any:
    values = item if type(item) in (tuple, list) else (item,)
    return tuple(map(param_key, values))


def canonical_plain(values: Sequence[Any]) -> tuple[Any, ...] | None:
    """*values* as the plain builtins of equal keys (numpy scalars converted), else None.

    A call's seed name from these is the name :func:`grid_names` gave a declared
    call with equal keys.
    """
    out = []
    for value in values:
        kind = type(value)
        if kind in _PLAIN_TYPES:
            out.append(value)
        elif kind in _NUMPY_PLAIN:
            out.append(_NUMPY_PLAIN[kind](value))
        elif kind is tuple:
            inner = canonical_plain(value)
            if inner is None:
                return None
            out.append(inner)
        else:
            return None
    return tuple(out)
