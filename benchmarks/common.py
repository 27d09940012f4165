"""Configuration and helpers shared by the scenarios: sizes, folders, baselines, contenders."""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache
import joblib
import numpy as np

from metricache import (
    DatedCacheManager,
    FileStorageInterface,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
)

MiB = 1 << 20

#: The storage interfaces compared, by the label printed in the tables.
STORAGES: dict[str, Callable[..., FileStorageInterface]] = {
    "Npy": NpyStorageInterface,
    "Npz": NpzStorageInterface,
    "Json": JsonStorageInterface,
}


@dataclass(frozen=True)
class Config:
    """Sizes and repetitions of one benchmark run."""

    quick: bool
    #: (array bytes, rounds) for the disk hit and miss scenarios.
    sizes: tuple[tuple[int, int], ...]
    entries: int
    memory_rounds: int
    #: Rounds of the 10,000-entry fill (each round fills a new folder) and of the reads.
    fill_rounds: int
    read_rounds: int
    #: A sample lasts at least this long (seconds), when its call count is calibrated.
    min_time: float

    @classmethod
    def make(cls, quick: bool, entries: int | None = None) -> Config:
        if quick:
            sizes = ((64 << 10, 9), (512 << 10, 7), (2 * MiB, 5))
            return cls(True, sizes, entries or 300, 5, 3, 5, 0.004)
        sizes = ((MiB, 21), (8 * MiB, 11), (100 * MiB, 5))
        return cls(False, sizes, entries or 10_000, 15, 2, 5, 0.02)


class Scratch:
    """Fresh, uniquely named folders under one temp root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, prefix: str) -> Path:
        path = self.root / f"{prefix}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path


def array_of(nbytes: int) -> np.ndarray:
    """Random float64 data of *nbytes* bytes (incompressible, like real results)."""
    return np.random.default_rng(0).random(nbytes // 8)


def size_label(nbytes: int) -> str:
    if nbytes >= MiB:
        return f"{nbytes // MiB} MiB"
    return f"{nbytes >> 10} KiB"


def quiet_manager(storage: FileStorageInterface) -> DatedCacheManager:
    """A manager that logs nothing (logging would dominate small timings)."""
    return DatedCacheManager(storage, verbose=False)


# -- raw numpy baselines -------------------------------------------------------------


def save_atomic(path: Path, arr: np.ndarray, durable: bool = False) -> None:
    """``np.save`` to a temp file then ``os.replace``: the minimum any safe cache must do."""
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as f:
        np.save(f, arr)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


class ReadvLimit:
    """The physical limit of a disk hit: ``os.preadv`` of the whole file into a buffer
    allocated (page-aligned, already faulted in) once, from the page cache."""

    def __init__(self, path: Path) -> None:
        self.path = path
        size = path.stat().st_size
        self.buffer = aligned_empty(size)
        self.buffer[:] = 0  # fault it in: only the copy is timed

    def __call__(self) -> int:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return os.preadv(fd, [self.buffer], 0)
        finally:
            os.close(fd)


def aligned_empty(nbytes: int) -> np.ndarray:
    """Uninitialised bytes starting on a page boundary (a misaligned copy is slower)."""
    raw = np.empty(nbytes + 4096, dtype=np.uint8)
    start = -raw.__array_interface__["data"][0] % 4096
    return raw[start : start + nbytes]


def write_limit(path: Path, arr: np.ndarray) -> None:
    """The physical limit of a miss: ``posix_fallocate``, ``os.write`` of the header and
    the array's memory, then ``os.replace`` (no hashing, no record)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(arr))
    data = memoryview(np.ascontiguousarray(arr)).cast("B")
    tmp = path.with_name(f".tmp-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, len(header.getbuffer()) + data.nbytes)
        os.write(fd, header.getbuffer())
        done = 0
        while done < data.nbytes:
            done += os.write(fd, data[done:])
    finally:
        os.close(fd)
    os.replace(tmp, path)


def savez_atomic(path: Path, arr: np.ndarray) -> None:
    """``np.savez`` (uncompressed) to a temp file then ``os.replace``."""
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as f:
        np.savez(f, arr)
    os.replace(tmp, path)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_npz_member(path: Path, member: str = "arr_0") -> np.ndarray:
    """``np.load`` of an ``.npz`` file, reading one member fully."""
    with np.load(path) as z:
        return z[member]


def read_fully(path: Path) -> None:
    """Pull *path* into the page cache (disk hits are measured page-cache warm)."""
    with open(path, "rb") as f:
        while f.read(16 * MiB):
            pass


def read_tree(folder: Path) -> None:
    """Pull every file under *folder* into the page cache."""
    for dirpath, _, files in os.walk(folder):
        for name in files:
            read_fully(Path(dirpath) / name)


def disk_usage(folder: Path) -> tuple[int, int]:
    """(file count, allocated bytes) under *folder*, like ``du`` (st_blocks * 512)."""
    count = used = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            count += 1
            used += st.st_blocks * 512
    return count, used


def remove(path: Path) -> None:
    """Delete a file or a folder tree if present."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# -- other caches --------------------------------------------------------------------


def joblib_cached(location: Path, function: Callable[..., Any]) -> Callable[..., Any]:
    """*function* memoized by a new ``joblib.Memory`` over *location* (disk only)."""
    return joblib.Memory(location, verbose=0).cache(function)


class DiskcacheMemo:
    """*function* memoized by a ``diskcache.Cache``, reopened on demand like a fresh process."""

    def __init__(self, location: Path, function: Callable[..., Any]) -> None:
        self.location, self.function = location, function
        self.cache: diskcache.Cache | None = None
        self.call: Callable[..., Any] = function

    def reopen(self) -> None:
        self.close()
        self.cache = diskcache.Cache(str(self.location))
        self.call = self.cache.memoize(name=self.function.__name__)(self.function)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None


class FreshManager:
    """A metricache manager rebuilt (new storage object, empty memory) before each call."""

    def __init__(
        self,
        factory: Callable[[], FileStorageInterface],
        name: str,
        function: Callable[[], Any],
    ) -> None:
        self.factory, self.name, self.function = factory, name, function
        self.manager = self.setup()

    def setup(self) -> DatedCacheManager:
        self.manager = quiet_manager(self.factory())
        self.manager.set_functions_dict({self.name: self.function})
        return self.manager

    def get(self) -> Any:
        return self.manager.get(self.name)


class CallCounter:
    """Counts how often a scenario's metric function really ran (a hit must not run it)."""

    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, value: Any, name: str = "make") -> Callable[[], Any]:
        """A zero-argument function named *name* returning *value*, counting its calls."""

        def make() -> Any:
            self.calls += 1
            return value

        make.__name__ = make.__qualname__ = name
        return make
