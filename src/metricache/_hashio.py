"""File wrappers that checksum every byte passing through them (xxh3-64)."""

from __future__ import annotations

import io
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

import xxhash

__all__ = ["HashingReader", "HashingWriter", "checksum_bytes", "format_checksum"]

_ALGORITHM = "xxh3_64"
# Below this a chunk is hashed inline: handing it to a thread costs more than hashing.
_PIPELINE_MIN = 1 << 20
_executor: ThreadPoolExecutor | None = None


def format_checksum(digest: str) -> str:
    """Return the stored form of a hex digest, naming its algorithm."""
    return f"{_ALGORITHM}:{digest}"


def checksum_bytes(data: bytes | bytearray | memoryview) -> str:
    """Checksum of an in-memory buffer, in stored form."""
    return format_checksum(xxhash.xxh3_64_hexdigest(data))


def _hash_pool() -> ThreadPoolExecutor:
    """One background thread; xxhash releases the GIL, so hashing overlaps reading."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metricache-hash")
    return _executor


class HashingWriter(io.RawIOBase):
    """A write-only, non-seekable stream that hashes and counts what it forwards."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._hash = xxhash.xxh3_64()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._hash.update(view)
        self._raw.write(view)
        self.size += view.nbytes
        return view.nbytes

    def checksum(self) -> str:
        """Checksum of everything written so far, in stored form."""
        return format_checksum(self._hash.hexdigest())


class HashingReader(io.RawIOBase):
    """A read-only, non-seekable stream that hashes and counts what it returns.

    Large ``readinto`` chunks are hashed on a background thread while the caller
    reads the next chunk, so verification costs little more than the read itself.
    """

    def __init__(self, raw: BinaryIO, hashing: bool = True) -> None:
        super().__init__()
        # Any: typing.BinaryIO does not declare readinto(), which real files have.
        self._raw: Any = raw
        self._hash = xxhash.xxh3_64() if hashing else None
        self._pending: Future[None] | None = None
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = self._raw.readinto(view) or 0
        self._consume(view[:n])
        return n

    def read(self, size: int | None = -1) -> bytes:
        data = self._raw.read(-1 if size is None else size) or b""
        self._consume(memoryview(data))
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def _consume(self, view: memoryview) -> None:
        """Hash *view*, on the background thread when it is large."""
        self._wait()
        self.size += view.nbytes
        if self._hash is None or not view.nbytes:
            return
        if view.nbytes >= _PIPELINE_MIN:
            self._pending = _hash_pool().submit(self._hash.update, view)
        else:
            self._hash.update(view)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def finish(self) -> tuple[int, str | None]:
        """Read whatever the consumer left, then return ``(size, checksum)``."""
        while self.read(1 << 20):
            pass
        self._wait()
        if self._hash is None:
            return self.size, None
        return self.size, format_checksum(self._hash.hexdigest())
