"""The memory bound: sizes of held values, and which names to drop above ``max_memory``.

Recency is what the manager sees: a value becomes the most recent when it is
loaded, computed or handed out through a slow path. A plain memory hit stays one
dict lookup and does not move it (watching hits would cost every hit a call).
"""

from __future__ import annotations

import re
import sys
from typing import Any

import numpy as np

__all__ = ["Budget", "parse_bytes", "size_of"]

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
}  # fmt: skip
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*")
#: Items of a container sized one by one; beyond this the rest are estimated.
_SAMPLE = 1000


def parse_bytes(value: int | float | str | None) -> int | None:
    """A byte count from ``2_000_000``, ``"2GB"``, ``"512 MiB"`` (None stays None).

    >>> parse_bytes("2GB"), parse_bytes("1.5 KiB"), parse_bytes(10)
    (2000000000, 1536, 10)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"max_memory must be a byte count or a string like '2GB', not {value!r}")
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(
                f"max_memory {value!r} is not a size: write bytes, or e.g. '500MB', '2GiB'"
            )
        value = float(match.group(1)) * _UNITS[unit]
    if value < 0:
        raise ValueError(f"max_memory must not be negative, not {value!r}")
    return int(value)


def size_of(value: Any, depth: int = 0) -> int:
    """About how many bytes *value* keeps alive (arrays by their data)."""
    if isinstance(value, np.ndarray):
        base = value.base if isinstance(value.base, np.ndarray) else value
        return int(max(value.nbytes, base.nbytes)) + 112
    kind = type(value)
    if kind in (list, tuple) and depth < 8:
        items = value[:_SAMPLE]
        sized = sum(size_of(v, depth + 1) for v in items)
        extra = sized * (len(value) - len(items)) // max(1, len(items))
        return sys.getsizeof(value) + sized + extra
    if kind is dict and depth < 8:
        return sys.getsizeof(value) + sum(
            size_of(k, depth + 1) + size_of(v, depth + 1) for k, v in value.items()
        )
    usage = getattr(value, "memory_usage", None) or getattr(value, "estimated_size", None)
    if callable(usage) and type(value).__module__.partition(".")[0] in ("pandas", "polars"):
        total = usage()
        return int(total.sum() if hasattr(total, "sum") else total)
    return sys.getsizeof(value)


class Budget:
    """Sizes of the held names in recency order (oldest first), against a bound."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._sizes: dict[str, int] = {}  # insertion order is recency order

    def admit(self, name: str, value: Any) -> tuple[bool, list[str]]:
        """Account *value* under *name*: ``(keep it, names to drop to make room)``."""
        self.discard(name)
        size = size_of(value)
        if size > self.limit:
            return False, []
        self._sizes[name] = size
        self.total += size
        victims = []
        while self.total > self.limit:
            oldest = next(iter(self._sizes))
            victims.append(oldest)
            self.discard(oldest)
        return True, victims

    def touch(self, name: str) -> None:
        """Make *name* the most recently used."""
        size = self._sizes.pop(name, None)
        if size is not None:
            self._sizes[name] = size

    def discard(self, name: str) -> None:
        """Stop accounting *name*."""
        self.total -= self._sizes.pop(name, 0)

    def clear(self) -> None:
        """Stop accounting everything."""
        self._sizes.clear()
        self.total = 0
