"""Opening files of a cache folder without trusting what is there.

A cache folder may hold anything a user, a sync tool or an attacker put there: a
FIFO (an ``open`` blocks until a writer appears), a device such as ``/dev/zero``
(reads never end), a symlink out of the folder, a directory where a file should
be. Only regular files inside the folder are read: files are opened with
``O_NOFOLLOW | O_NONBLOCK`` (a FIFO opens at once and is then refused) and
``fstat``-ed before a byte is read. A symlink is followed only when its target
lies inside the folder (and is a regular file itself).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys

from .exceptions import CorruptEntryError

if sys.platform != "win32":
    import fcntl

__all__ = ["RECORD_MAX", "free_of_holders", "open_regular", "read_small", "try_hold"]

#: Largest record (or other small metadata file) read: records are under a KiB;
#: anything near this size is not one (a sparse file, a device, garbage).
RECORD_MAX = 1 << 20
_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
_FLAGS |= getattr(os, "O_CLOEXEC", 0)
_READ_CHUNK = 1 << 16


def open_regular(path: str, root: str) -> int:
    """A read-only descriptor of the regular file *path*, which lies in folder *root*.

    See :func:`open_regular_stat`.
    """
    return open_regular_stat(path, root)[0]


def open_regular_stat(path: str, root: str) -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file *path* in folder *root*, and its stat.

    Raises ``FileNotFoundError`` if it is absent, and ``CorruptEntryError`` (naming
    the file) if it is not a regular file or is a symlink leading out of *root*.
    """
    try:
        fd = os.open(path, _FLAGS)
    except OSError as err:
        if err.errno not in (errno.ELOOP, errno.EMLINK):  # EMLINK: FreeBSD's O_NOFOLLOW
            raise
        fd = _open_link(path, root)
    try:
        st = os.fstat(fd)
        mode = st.st_mode
        if not stat.S_ISREG(mode):
            raise CorruptEntryError(
                f"{path} is not a regular file ({_kind(mode)}); metricache reads only "
                "regular files"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _open_link(path: str, root: str) -> int:
    """Open the target of symlink *path* if it lies inside *root*."""
    target = os.path.realpath(path)
    base = os.path.realpath(root)
    if os.path.commonpath([target, base]) != base:
        raise CorruptEntryError(
            f"{path} is a symlink to {target}, outside the cache folder; it is not followed"
        )
    # The resolved path has no symlink left; O_NOFOLLOW refuses one swapped in since.
    return os.open(target, _FLAGS)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def read_small(path: str, root: str, limit: int = RECORD_MAX) -> bytes:
    """The whole content of the small regular file *path* (at most *limit* bytes).

    ``CorruptEntryError`` if it is larger: a record is never that large.
    """
    fd, st = open_regular_stat(path, root)
    try:
        size = st.st_size
        if size > limit:
            raise CorruptEntryError(f"{path} is {size} bytes, too large for a record")
        chunk = os.read(fd, max(size, _READ_CHUNK))
        if len(chunk) < _READ_CHUNK:
            return chunk  # a short read of a regular file is its end: one syscall
        chunks, total = [chunk], len(chunk)
        while chunk := os.read(fd, _READ_CHUNK):
            total += len(chunk)
            if total > limit:  # it grew while read
                raise CorruptEntryError(f"{path} is over {limit} bytes, too large for a record")
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def try_hold(fd: int) -> bool:
    """Take the exclusive ``flock`` on *fd* without waiting; whether it was free."""
    if sys.platform == "win32":  # pragma: no cover - no flock: liveness by pid there
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def free_of_holders(path: str) -> bool | None:
    """Whether no process holds the ``flock`` of the file *path* (None if it is gone).

    A writer holds the lock on its own file while it lives, so a free lock means
    it is gone, whatever PID namespace it ran in.
    """
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        return None
    except OSError:
        return False  # not ours to judge (a symlink, no permission): keep it
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        free = try_hold(fd)
        if free and sys.platform != "win32":
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        return free
    finally:
        os.close(fd)
