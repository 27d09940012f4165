"""File wrappers that checksum every byte passing through them (xxh3-64).

Hashing (xxh3) runs inline for small transfers. A large ``readinto`` of a file is
read in chunks hashed as they land (shared with the hashing thread when very
large), a large write is hashed on that thread while it is written (see
:mod:`metricache._hashpipe`), and a whole file a seeking codec reads is hashed
there meanwhile. Below a few MiB, waking that thread and handing the GIL back and
forth measured slower than working inline.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import xxhash

from ._hashpipe import read_hashed, write_hashed
from ._hashthread import Pending, submit

__all__ = [
    "HashingReader",
    "HashingWriter",
    "checksum_bytes",
    "format_checksum",
    "hash_fd_in_background",
]

_ALGORITHM = "xxh3_64"
#: A ``readinto`` of a plain file at least this large is read and hashed in chunks,
#: each hashed while it is in the CPU cache (see :mod:`metricache._hashpipe`).
_CHUNKED_MIN = 2 << 20
#: From this size on the hashing thread shares those chunks. Smaller arrays are
#: mostly recycled heap memory, which one thread fills at the page cache's speed
#: (8 MiB: 1.24 ms alone, 1.34 ms shared, best of 31; 2 MiB: 0.28 vs 0.40 ms,
#: median); larger ones are fresh memory the kernel faults in and zeroes, work a
#: second core splits.
_SPLIT_MIN = 32 << 20
#: A single write at least this large is hashed on the hashing thread while it is
#: written; a smaller one is hashed right after it is written (still in the CPU
#: cache). At 8 MiB (both the checksum and a value id hash every byte), hashing
#: meanwhile measured 1.24x ``np.save`` (best of 31), hashing right after the write
#: 1.53x and before it 1.61x; at 1 MiB the handoff cost more (1.51x vs 1.12x).
_WRITE_PIPELINE_MIN = 4 << 20
#: Files at least this large are hashed by :func:`hash_fd_in_background` on the
#: background thread; smaller ones at once, which measured faster (the thread's
#: wake-up and the GIL handoffs cost more than hashing a MiB).
_FD_BACKGROUND_MIN = 2 << 20
#: Bytes per ``pread`` there: few GIL handoffs, still cache-sized.
_FD_CHUNK = 1 << 20
#: Bytes per read when :meth:`HashingReader.finish` drains what a codec left.
_DRAIN_CHUNK = 64 << 10


def format_checksum(digest: str) -> str:
    """Return the stored form of a hex digest, naming its algorithm."""
    return f"{_ALGORITHM}:{digest}"


def checksum_bytes(data: bytes | bytearray | memoryview) -> str:
    """Checksum of an in-memory buffer, in stored form."""
    return format_checksum(xxhash.xxh3_64_hexdigest(data))


def hash_fd_in_background(fd: int) -> Pending[tuple[int, str]] | None:
    """Checksum a whole open file: ``(size, checksum)``, on the background thread.

    The file is read with ``pread`` through a duplicate of *fd*, so the caller may
    go on reading (and seeking) the same file meanwhile, and may close *fd* at any
    time; the bytes hashed are the file's from offset 0 to its end. A file under
    ``_FD_BACKGROUND_MIN`` bytes is hashed at once and the task returned done.
    Returns None where the platform has no ``pread`` (Windows).
    """
    if not hasattr(os, "pread"):
        return None
    size = os.fstat(fd).st_size
    if size < _FD_BACKGROUND_MIN:
        return Pending.done(_hash_fd(fd, size))
    return submit(functools.partial(_hash_dup, os.dup(fd), size))


def _hash_dup(fd: int, size_guess: int) -> tuple[int, str]:
    """:func:`_hash_fd`, then close *fd*."""
    try:
        return _hash_fd(fd, size_guess)
    finally:
        os.close(fd)


def _hash_fd(fd: int, size_guess: int) -> tuple[int, str]:
    """Size and checksum of the file behind *fd*, from offset 0 to its end."""
    digest = xxhash.xxh3_64()
    size = 0
    for chunk in _pread_chunks(fd, size_guess):
        digest.update(chunk)
        size += chunk.nbytes
    return size, format_checksum(digest.hexdigest())


def _pread_chunks(fd: int, size_guess: int) -> Iterator[memoryview]:
    """The file's bytes from offset 0 in ``_FD_CHUNK`` pieces, reusing one buffer if it can."""
    offset = 0
    if hasattr(os, "preadv"):
        # sized to the file: zero-filling a large buffer for a small file costs more
        # than reading it (the loop still reads to the end if the guess is short)
        buffer = bytearray(min(max(size_guess, 1), _FD_CHUNK))
        view = memoryview(buffer)
        while n := os.preadv(fd, [buffer], offset):
            yield view[:n]
            offset += n
    else:  # macOS before 11
        while data := os.pread(fd, _FD_CHUNK, offset):
            yield memoryview(data)
            offset += len(data)


class HashingWriter(io.RawIOBase):
    """A write-only, non-seekable stream that hashes and counts what it forwards."""

    def __init__(self, raw: BinaryIO, tap: Callable[[memoryview], Any] | None = None) -> None:
        super().__init__()
        self._raw = raw
        self._hash = xxhash.xxh3_64()
        #: Given each buffer written, returns a second hasher to feed it to (or
        #: None): how a value id takes an array's bytes from this same pass.
        self._tap = tap
        self.size = 0

    def writable(self) -> bool:
        return True

    def _update(self, view: memoryview) -> None:
        """Hash *view*, and feed it to the tap's hasher chunk by chunk (one pass over memory)."""
        second = None if self._tap is None else self._tap(view)
        if second is None:
            self._hash.update(view)
            return
        for start in range(0, view.nbytes, _FD_CHUNK):
            chunk = view[start : start + _FD_CHUNK]
            self._hash.update(chunk)
            second.update(chunk)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if view.nbytes < _WRITE_PIPELINE_MIN:
            self._raw.write(view)
            self._update(view)
        else:
            write_hashed(self._raw.write, view, self._update)
        self.size += view.nbytes
        return view.nbytes

    def checksum(self) -> str:
        """Checksum of everything written so far, in stored form."""
        return format_checksum(self._hash.hexdigest())


class HashingReader(io.RawIOBase):
    """A read-only, non-seekable stream that hashes and counts what it returns."""

    def __init__(self, raw: BinaryIO, hashing: bool = True) -> None:
        super().__init__()
        # Any: typing.BinaryIO does not declare readinto(), which real files have.
        self._raw: Any = raw
        self._hash = xxhash.xxh3_64() if hashing else None
        # Split reads pread at offsets: only for an unbuffered file, whose position
        # is the stream's.
        self._fd: int | None = None
        if isinstance(raw, io.FileIO) and hasattr(os, "preadv"):
            self._fd = raw.fileno()
        #: The raw stream has reported its end (an empty read).
        self._at_end = False
        self.size = 0

    def readable(self) -> bool:
        return True

    def bytes_left(self) -> int | None:
        """Bytes of the file not read yet, when the file can tell (bounds a declared size)."""
        if isinstance(self._raw, io.BytesIO):
            return len(self._raw.getbuffer()) - self._raw.tell()
        try:
            left: int = os.fstat(self._raw.fileno()).st_size - self._raw.tell()
        except (AttributeError, OSError, ValueError):
            return None
        return left

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._fd is not None and view.nbytes >= min(_CHUNKED_MIN, _SPLIT_MIN):
            return self._readinto_chunked(view, self._fd)
        n = self._raw.readinto(view) or 0
        self._consume(view[:n], view.nbytes)
        return n

    def _readinto_chunked(self, view: memoryview, fd: int) -> int:
        """Fill *view* chunk by chunk, hashing each in order as it lands.

        The stream position ends after the last byte read, as for one ``readinto``.
        """
        start = self._raw.tell()
        feed = self._hash.update if self._hash is not None else _ignore
        got = read_hashed(fd, view, start, feed, shared=view.nbytes >= _SPLIT_MIN)
        self._raw.seek(start + got)
        self.size += got
        self._at_end = self._at_end or not got
        return got

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            data = self._raw.read() or b""
            self._at_end = True
        else:
            data = self._raw.read(size) or b""
        self._consume(memoryview(data), size or 0)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def _consume(self, view: memoryview, asked: int) -> None:
        """Count and hash *view*, the answer to a read of *asked* bytes."""
        if not view.nbytes:
            self._at_end = self._at_end or asked != 0
            return
        self.size += view.nbytes
        if self._hash is not None:
            self._hash.update(view)

    def finish(self) -> tuple[int, str | None]:
        """Read whatever the consumer left, then return ``(size, checksum)``."""
        # A codec that checked for trailing bytes already saw the end; otherwise a
        # one-byte probe finds it without allocating a large read buffer.
        if not self._at_end and self.read(1):
            while self.read(_DRAIN_CHUNK):
                pass
        if self._hash is None:
            return self.size, None
        return self.size, format_checksum(self._hash.hexdigest())


def _ignore(view: memoryview) -> None:
    """Feed nothing (a reader that does not hash)."""
