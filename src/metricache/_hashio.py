"""File wrappers that checksum every byte passing through them (xxh3-64).

Hashing (xxh3, ~40 GB/s on data in the CPU cache) runs inline, except for large
transfers, where one background thread shares the work: it hashes a large write
while the caller writes the same buffer, preads the second half of a large read
while the caller reads and hashes the first, or hashes a whole file a seeking codec
reads meanwhile. Below a few MiB, waking that thread and handing the GIL back and
forth measured slower than doing the work inline.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

import xxhash

__all__ = [
    "HashingReader",
    "HashingWriter",
    "checksum_bytes",
    "format_checksum",
    "hash_fd_in_background",
]

_ALGORITHM = "xxh3_64"
#: A ``readinto`` of a plain file at least this large is split in two (see
#: :meth:`HashingReader._readinto_split`); the npy codec reads an array's data with
#: one ``readinto``. Two threads copying from the page cache (and faulting in fresh
#: memory) measured 0.8x of one at 8 MiB and 100 MiB; break-even was ~4 MiB.
_SPLIT_MIN = 4 << 20
#: A single write at least this large is hashed on the background thread while it
#: is written (one handoff); smaller ones measured faster hashed inline.
_WRITE_PIPELINE_MIN = 16 << 20
#: Files at least this large are hashed by :func:`hash_fd_in_background` on the
#: background thread; smaller ones at once, which measured faster (the thread's
#: wake-up and the GIL handoffs cost more than hashing a MiB).
_FD_BACKGROUND_MIN = 2 << 20
#: Bytes per ``pread`` there: few GIL handoffs, still cache-sized.
_FD_CHUNK = 1 << 20
#: Bytes per read when :meth:`HashingReader.finish` drains what a codec left.
_DRAIN_CHUNK = 64 << 10
_PAGE = 4096
_executor: ThreadPoolExecutor | None = None


def format_checksum(digest: str) -> str:
    """Return the stored form of a hex digest, naming its algorithm."""
    return f"{_ALGORITHM}:{digest}"


def checksum_bytes(data: bytes | bytearray | memoryview) -> str:
    """Checksum of an in-memory buffer, in stored form."""
    return format_checksum(xxhash.xxh3_64_hexdigest(data))


def _hash_pool() -> ThreadPoolExecutor:
    """The one background hashing thread, started on first use."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metricache-hash")
    return _executor


def _forget_pool() -> None:
    """In a forked child: the parent's thread is not there, so start a new one on demand."""
    global _executor
    _executor = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def hash_fd_in_background(fd: int) -> Future[tuple[int, str]] | None:
    """Checksum a whole open file: ``(size, checksum)``, on the background thread.

    The file is read with ``pread`` through a duplicate of *fd*, so the caller may
    go on reading (and seeking) the same file meanwhile, and may close *fd* at any
    time; the bytes hashed are the file's from offset 0 to its end. A file under
    ``_FD_BACKGROUND_MIN`` bytes is hashed at once and the future returned done.
    Returns None where the platform has no ``pread`` (Windows).
    """
    if not hasattr(os, "pread"):
        return None
    size = os.fstat(fd).st_size
    if size < _FD_BACKGROUND_MIN:
        done: Future[tuple[int, str]] = Future()
        done.set_result(_hash_fd(fd, size))
        return done
    return _hash_pool().submit(_hash_dup, os.dup(fd), size)


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
            self._update(view)
            self._raw.write(view)
        else:
            # Hash and write the same (read-only) buffer at once: one handoff.
            pending = _hash_pool().submit(self._update, view)
            try:
                self._raw.write(view)
            finally:
                pending.result()  # the caller may free the buffer once we return
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
        if self._fd is not None and view.nbytes >= _SPLIT_MIN:
            return self._readinto_split(view, self._fd)
        n = self._raw.readinto(view) or 0
        self._consume(view[:n], view.nbytes)
        return n

    def _readinto_split(self, view: memoryview, fd: int) -> int:
        """Fill *view*: the background thread preads its second half meanwhile.

        This thread reads, then hashes, the first half; the stream position ends
        after the last byte read, as for one ``readinto``.
        """
        half = view.nbytes // 2 // _PAGE * _PAGE  # both halves stay page-aligned
        start = self._raw.tell()
        tail = _hash_pool().submit(_pread_into, fd, view[half:], start + half)
        try:
            head = _read_into(self._raw, view[:half])
            self._consume(view[:head], half)
        finally:
            got = tail.result()
        if head < half:  # the file ended in the first half; the tail read nothing
            return head
        self._raw.seek(start + half + got)
        self._consume(view[half : half + got], view.nbytes - half)
        return half + got

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


def _read_into(raw: Any, view: memoryview) -> int:
    """Fill *view* from *raw*; fewer bytes only where the file ends."""
    done = 0
    while done < view.nbytes and (n := raw.readinto(view[done:])):
        done += n
    return done


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill *view* from *fd* at *offset* (the file position is not used or moved)."""
    done = 0
    while done < view.nbytes and (n := os.preadv(fd, [view[done:]], offset + done)):
        done += n
    return done
