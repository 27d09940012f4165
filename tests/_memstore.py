"""An in-memory Store for the tests: what an object store looks like to the entries layer.

Staged bytes are invisible until committed with one assignment (like one S3 PUT);
nothing is ever visible half-written. ``identity`` chooses what the store reports
as the identity of committed bytes: ``"none"`` (no identities at all) or
``"after-commit"`` (a fresh tag known only once the bytes are committed, like an
ETag), so the commit protocol is exercised without inodes.
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from metricache._store import Staged, StatResult, Store

T = TypeVar("T")
_tags = itertools.count(1)


class _Item:
    def __init__(self, data: bytes, identity: str | None) -> None:
        self.data, self.identity, self.mtime = data, identity, time.time()


class _MemoryStaged(Staged[T]):
    def __init__(self, store: MemoryStore, key: str, data: bytes, result: T) -> None:
        self._store, self._key, self._data, self.result = store, key, data, result
        self._done = False

    def commit(self) -> str | None:
        identity = None if self._store.identity == "none" else f"tag-{next(_tags)}"
        self._store.items[self._key] = _Item(self._data, identity)
        self._done = True
        return identity

    def discard(self) -> None:
        self._done = True


class MemoryStore(Store):
    """Keys in a dict; folders are the ``/``-separated prefixes of keys."""

    def __init__(self, identity: str = "none") -> None:
        assert identity in ("none", "after-commit")
        self.identity = identity
        self.items: dict[str, _Item] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(identity={self.identity!r})"

    def open_read(self, key: str) -> BinaryIO:
        try:
            return io.BytesIO(self.items[key].data)
        except KeyError:
            raise FileNotFoundError(key) from None

    def stage(
        self,
        key: str,
        write: Callable[[BinaryIO], T],
        *,
        durable: bool = False,
        size_hint: int | None = None,
    ) -> Staged[T]:
        buffer = io.BytesIO()
        result = write(buffer)
        return _MemoryStaged(self, key, buffer.getvalue(), result)

    def exists(self, key: str) -> bool:
        return key in self.items

    def delete(self, key: str) -> bool:
        return self.items.pop(key, None) is not None

    def list(self, prefix: str = "") -> list[str]:
        base = f"{prefix}/" if prefix else ""
        return [
            k[len(base) :] for k in self.items if k.startswith(base) and "/" not in k[len(base) :]
        ]

    def folders(self, prefix: str = "") -> list[str]:
        base = f"{prefix}/" if prefix else ""
        inside = (k[len(base) :] for k in self.items if k.startswith(base))
        return sorted({rest.split("/", 1)[0] for rest in inside if "/" in rest})

    def stat(self, key: str) -> StatResult:
        try:
            item = self.items[key]
        except KeyError:
            raise FileNotFoundError(key) from None
        return StatResult(len(item.data), item.identity, item.mtime)
