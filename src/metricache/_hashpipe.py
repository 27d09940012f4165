"""Large reads and writes, hashed in order while the bytes move, with a second thread's help.

A verified read must cost about what the copy from the page cache costs, not the
copy plus the hash. :func:`read_hashed` splits a large ``readinto`` into chunks
``preadv``-ed straight into the destination, and feeds each chunk to the
streaming hasher as soon as it lands and while it is still in the CPU cache;
the digest is exactly that of one pass over the same bytes. With *shared*, the
caller and the one hashing thread claim chunks one at a time, and whichever
lands the next chunk in file order feeds it, so both the copy (with the faults
and zeroing of fresh memory) and the hash are split over two cores.

Measured on a 2-core VM (page cache warm, fresh page-aligned destination, machine
shared and loaded; best of 9 at 100 MiB, of 31 at 8 MiB): 100 MiB took 58 ms read
then hashed, 45 ms hashed chunk by chunk on one thread, 48 ms shared by two
threads and 62 ms with one thread reading and the other hashing (``np.load``
40 ms, the copy into a preallocated buffer 19 ms); 8 MiB 1.66 / 1.24 / 1.34 ms
(``np.load`` 1.48). At a quieter moment (load 1, median, into a destination that
was not 64-byte aligned) sharing halved the 100 MiB read (85 -> 45 ms) where one
reader plus one hasher saved 5%: the copy, not the hash, is the long part, so a
pure reader/hasher split cannot approach ``max(read, hash)``. Under load the
second thread is often descheduled while it holds the GIL, which is why sharing
starts only where the copy is long (``_SPLIT_MIN`` in :mod:`metricache._hashio`).
xxhash (4.1.0 here) releases the GIL while it hashes more than 64 KiB, and
``preadv`` while it copies, so the two threads do run at once.

Writes cannot be shared that way (the file system serialises writes to one file),
so :func:`write_hashed` writes on the caller's thread while the hashing thread
hashes the same buffer: ``max(write, hash)``.

The hashing thread is one per process, shared by every reader and writer; its
tasks never wait for one another, so many threads reading at once cannot
deadlock, and a caller whose helper has not started yet does the work alone.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from typing import Any

from ._hashthread import submit

__all__ = ["read_hashed", "write_hashed"]

#: Bytes per chunk of a read: 1, 2 and 4 MiB measured alike at 8 and 100 MiB
#: (256 KiB cost 20% more in handoffs); a chunk is still in the CPU cache when hashed.
READ_CHUNK = 2 << 20
#: Bytes per hasher call when a write is hashed on the hashing thread (one pass
#: over memory feeds both hashers while the piece is in the cache).
WRITE_CHUNK = 1 << 20


class _SharedRead:
    """One region of a file read into a buffer in chunks by two threads, hashed in order."""

    def __init__(
        self, fd: int, view: memoryview, offset: int, feed: Callable[[memoryview], Any], chunk: int
    ) -> None:
        self._fd, self._view, self._offset, self._feed = fd, view, offset, feed
        self._chunk = chunk
        self._count = -(-view.nbytes // chunk)
        # next() of an itertools.count is atomic under the GIL: each chunk is claimed once
        self._claims = itertools.count()
        #: Bytes each chunk got (None: not read yet); short only where the file ends.
        self._got: list[int | None] = [None] * self._count
        #: Chunks fed to the hasher so far, in order; the lock guards it and the hasher.
        self._fed = 0
        self._lock = threading.Lock()
        #: Bytes of the contiguous prefix read, once a short chunk ended it.
        self._end: int | None = None
        self._stop = False
        self._error: BaseException | None = None

    def run(self, shared: bool) -> int:
        """Fill the buffer (with the hashing thread's help if *shared*); the bytes read."""
        if not shared:
            self._work()
            return self._result()
        helper = submit(self._help)
        try:
            self._work()
            if not helper.cancel():
                helper.wait()  # it may still be copying its last chunk
        except BaseException:
            # An interrupt: the helper stops after its chunk (its view keeps the
            # buffer alive meanwhile) and the half-filled buffer is never returned.
            self._stop = True
            helper.cancel()
            raise
        if self._error is not None:
            raise self._error
        with self._lock:
            self._drain_locked()
        return self._result()

    def _result(self) -> int:
        """The bytes read, once every chunk was read and fed."""
        assert self._fed == self._count
        return self._view.nbytes if self._end is None else self._end

    def _help(self) -> None:
        """The hashing thread's share; its errors go to the caller."""
        try:
            self._work()
        except BaseException as err:  # noqa: BLE001 - re-raised on the caller's thread
            self._error = err
            self._stop = True

    def _work(self) -> None:
        """Claim, read and (when next in order) hash chunks until none is left."""
        while not self._stop and (k := next(self._claims)) < self._count:
            start = k * self._chunk
            piece = self._view[start : start + self._chunk]
            self._got[k] = _pread_into(self._fd, piece, self._offset + start)
            self._drain()

    def _drain(self) -> None:
        """Hash the chunks that are next in order, unless the other thread is at it."""
        while self._lock.acquire(blocking=False):
            try:
                self._drain_locked()
            finally:
                self._lock.release()
            # The other thread may have landed the next chunk after we looked and
            # failed to take the lock before we let it go: look again.
            if self._fed >= self._count or self._got[self._fed] is None:
                return

    def _drain_locked(self) -> None:
        """Feed every landed chunk that continues the hashed prefix (lock held)."""
        while self._fed < self._count and (got := self._got[self._fed]) is not None:
            start = self._fed * self._chunk
            if self._end is None:
                self._feed(self._view[start : start + got])
                if got < min(self._chunk, self._view.nbytes - start):
                    self._end = start + got  # the file ended here: later chunks are not data
            self._fed += 1


def read_hashed(
    fd: int,
    view: memoryview,
    offset: int,
    feed: Callable[[memoryview], Any],
    *,
    shared: bool = True,
    chunk: int | None = None,
) -> int:
    """Fill *view* from *fd* at *offset*; feed each piece, in file order, to *feed*.

    Each chunk is fed right after it lands, while it is in the CPU cache; with
    *shared*, the hashing thread reads and feeds chunks too. Returns the bytes
    read: fewer than ``view.nbytes`` only where the file ends, and then exactly
    that prefix was fed. The file position is not used or moved.
    """
    return _SharedRead(fd, view, offset, feed, chunk or READ_CHUNK).run(shared)


def write_hashed(
    write: Callable[[memoryview], Any], view: memoryview, feed: Callable[[memoryview], Any]
) -> None:
    """``write(view)`` on this thread while the hashing thread calls ``feed(view)``.

    Returns once both are done (the caller may then free the buffer). If the
    hashing thread is busy with other work, this thread hashes after writing.
    """
    pending = submit(lambda: feed(view))
    try:
        write(view)
    except BaseException:
        pending.cancel()  # if it started, its view keeps the buffer alive until it is done
        raise
    if pending.cancel():  # the hashing thread did not get to it
        feed(view)
    else:
        pending.result()


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    """Fill *view* from *fd* at *offset*; fewer bytes only where the file ends."""
    done = 0
    while done < view.nbytes and (n := os.preadv(fd, [view[done:]], offset + done)):
        done += n
    return done
