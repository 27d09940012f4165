"""Stores: where bytes live, and how they get there atomically.

A store is a small set of primitives over keys (``/``-separated relative paths).
Writes are *staged* (written where no reader can see them) and then *committed*
in one atomic step, so a reader never sees a partial file and a crash leaves
either the old bytes or the new ones.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

__all__ = ["TEMP_PREFIX", "LocalStore", "Staged", "Store"]

T = TypeVar("T")

#: Prefix of every temp file; never a valid metric name (names cannot start with '.').
TEMP_PREFIX = ".mctmp-"
#: Temp files of writers on other hosts are only removed once this old (seconds).
FOREIGN_TEMP_AGE = 24 * 3600
#: Files at least this large get their space reserved before they are written.
_RESERVE_MIN = 1 << 20
_HOST = "".join(c if c.isalnum() or c == "-" else "_" for c in socket.gethostname())[:40] or "host"


class Staged(ABC, Generic[T]):
    """Bytes written but not yet visible under their key."""

    #: What the writer function returned.
    result: T
    #: What :meth:`Store.stat` will report as the identity once committed (None: unknown).
    identity: str | None = None

    @abstractmethod
    def commit(self) -> None:
        """Make the bytes visible under the key, atomically replacing older ones."""

    @abstractmethod
    def discard(self) -> None:
        """Drop the staged bytes (idempotent)."""


class Store(ABC):
    """The primitives every store provides."""

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """Open *key* for binary reading; ``FileNotFoundError`` if absent."""

    @abstractmethod
    def stage(
        self,
        key: str,
        write: Callable[[BinaryIO], T],
        *,
        durable: bool = False,
        size_hint: int | None = None,
    ) -> Staged[T]:
        """Run ``write(f)`` into hidden storage for *key*; nothing is visible yet.

        *size_hint*, the expected byte count when known, lets a store reserve space.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether *key* holds bytes."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove *key*; return whether it existed."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Names of the files directly inside folder *prefix* (``""`` is the root)."""

    def put_atomic(
        self,
        key: str,
        write: Callable[[BinaryIO], T],
        *,
        durable: bool = False,
        size_hint: int | None = None,
    ) -> T:
        """Write *key* atomically: readers see the old bytes or the new, never a mix."""
        staged = self.stage(key, write, durable=durable, size_hint=size_hint)
        staged.commit()
        return staged.result

    def read_bytes(self, key: str) -> bytes:
        """The whole content of a small *key* (records); ``FileNotFoundError`` if absent."""
        with self.open_read(key) as f:
            return f.read()

    def move(self, key: str, dest: str) -> None:
        """Move *key* to *dest* (used to quarantine corrupt entries)."""
        with self.open_read(key) as f:
            data = f.read()
        self.put_atomic(dest, lambda out: out.write(data))
        self.delete(key)

    def local_path(self, key: str) -> Path | None:
        """A local file path for *key*, when the store has one (enables mmap)."""
        return None

    def stat(self, key: str) -> tuple[int, str | None]:
        """``(size, identity)`` of *key*; identity (e.g. an inode) survives a commit's rename.

        ``FileNotFoundError`` if absent. The default reads the bytes; stores override it.
        """
        with self.open_read(key) as f:
            return len(f.read()), None

    def cleanup(self, folders: tuple[str, ...] = ("",)) -> int:
        """Remove litter dead writers left in *folders*; return how many files went."""
        return 0


class _LocalStaged(Staged[T]):
    """A temp file next to its target, renamed over it on commit."""

    def __init__(self, tmp: Path, target: Path, result: T, durable: bool) -> None:
        self._tmp, self._target, self.result, self._durable = tmp, target, result, durable
        self.identity = str(tmp.stat().st_ino)

    def commit(self) -> None:
        os.replace(self._tmp, self._target)
        if self._durable:
            _fsync_dir(self._target.parent)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


class LocalStore(Store):
    """A folder on a local (or locally mounted) file system; ``os`` calls only."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / key

    def open_read(self, key: str) -> BinaryIO:
        # Unbuffered: codecs readinto() straight into array memory, no extra copy.
        return open(self.root / key, "rb", buffering=0)  # noqa: SIM115 - caller closes

    def stage(
        self,
        key: str,
        write: Callable[[BinaryIO], T],
        *,
        durable: bool = False,
        size_hint: int | None = None,
    ) -> Staged[T]:
        target = self.root / key
        tmp = target.parent / f"{TEMP_PREFIX}{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            f = open(tmp, "xb")  # noqa: SIM115 - closed below, before the rename
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            f = open(tmp, "xb")  # noqa: SIM115
        try:
            with f:
                reserved = _reserve(f, size_hint)
                result = write(f)
                if reserved and f.tell() != size_hint:
                    f.truncate()  # the hint was off: drop the reserved tail
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
        except BaseException:
            # Any failure, even KeyboardInterrupt, must not leave the temp file behind.
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return _LocalStaged(tmp, target, result, durable)

    def read_bytes(self, key: str) -> bytes:
        # Plain os calls: half the cost of a file object for a record read on every load.
        fd = os.open(self.root / key, os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def exists(self, key: str) -> bool:
        return os.path.exists(self.root / key)

    def delete(self, key: str) -> bool:
        try:
            os.unlink(self.root / key)
        except FileNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        try:
            with os.scandir(self.root / prefix) as it:
                return [e.name for e in it if e.is_file()]
        except FileNotFoundError:
            return []

    def move(self, key: str, dest: str) -> None:
        target = self.root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / key, target)

    def local_path(self, key: str) -> Path | None:
        return self.root / key

    def stat(self, key: str) -> tuple[int, str | None]:
        st = os.stat(self.root / key)
        return st.st_size, str(st.st_ino)

    def cleanup(self, folders: tuple[str, ...] = ("",)) -> int:
        removed = 0
        for folder in folders:
            for path in _temp_files(self.root / folder):
                if _writer_is_dead(path):
                    # Gone already (another cleaner) or a read-only folder: both fine.
                    with contextlib.suppress(OSError):
                        path.unlink()
                        removed += 1
        return removed


def _reserve(f: BinaryIO, size: int | None) -> bool:
    """Allocate *size* bytes up front for a large file, as ``ndarray.tofile`` does.

    Writing into reserved blocks measured 25-30% faster at 8 and 100 MiB on ext4.
    Only where the OS has ``posix_fallocate``; failures (unsupported) are harmless.
    """
    if size is None or size < _RESERVE_MIN or not hasattr(os, "posix_fallocate"):
        return False
    try:
        os.posix_fallocate(f.fileno(), 0, size)
    except OSError:
        return False
    return True


def _temp_files(folder: Path) -> Iterator[Path]:
    """Temp files directly inside *folder*."""
    try:
        with os.scandir(folder) as it:
            yield from (Path(e.path) for e in it if e.name.startswith(TEMP_PREFIX))
    except FileNotFoundError:
        return


def _writer_is_dead(path: Path) -> bool:
    """Whether the process that owns temp file *path* can no longer finish it."""
    host, _, rest = path.name[len(TEMP_PREFIX) :].rpartition("-")[0].rpartition("-")
    if host != _HOST:
        try:
            return time.time() - path.stat().st_mtime > FOREIGN_TEMP_AGE
        except FileNotFoundError:
            return False
    try:
        return not _pid_alive(int(rest))
    except ValueError:
        return False


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM
    return True


def _fsync_dir(folder: Path) -> None:
    """Persist a rename by syncing the directory entry (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
