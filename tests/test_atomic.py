"""Atomic writes: a temp file next to the target, then os.replace; failures leave no trace."""

from __future__ import annotations

import builtins
import errno
import io
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import metricache._store
from metricache import (
    CacheWriteWarning,
    DatedCacheManager,
    JsonStorageInterface,
    NpzStorageInterface,
    StorageInterface,
)

from .conftest import record_file

StorageClass = Callable[..., StorageInterface]
TEMP_PREFIX = ".mctmp-"
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def value_for(storage_class: StorageClass, i: int, size: int = 1000) -> Any:
    """A value of *size* items, every item equal to *i*, that *storage_class* stores."""
    if issubclass(storage_class, JsonStorageInterface):  # type: ignore[arg-type]
        return [i] * size
    if issubclass(storage_class, NpzStorageInterface):  # type: ignore[arg-type]
        return {"a": np.full(size, i, dtype=np.int64), "b": np.full(size // 2, float(i))}
    return np.full(size, i, dtype=np.int64)


def uniform(value: Any) -> set[float]:
    """The distinct items of a value made by :func:`value_for`."""
    if isinstance(value, dict):
        return set(np.unique(value["a"])) | set(np.unique(value["b"]))
    return set(np.unique(np.asarray(value)))


def temp_files(folder: Path) -> list[Path]:
    """Temp files left anywhere below *folder*."""
    return [p for p in folder.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def entries(folder: Path) -> list[tuple[str, int]]:
    """Data and metadata files below *folder* with their sizes (lock files excluded)."""
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file() and "locks" not in p.parts
    )


def assert_intact(storage_class: StorageClass, folder: Path, expected: Any) -> None:
    """A fresh storage instance loads *expected* under ``m`` and its checksum verifies."""
    fresh = storage_class(folder)
    loaded = fresh.load("m")
    assert uniform(loaded) == uniform(expected)
    assert fresh.verify("m") is not None
    assert temp_files(folder) == []


# -- every write is a temp file in the target folder, then os.replace -----------------------


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Record every os.replace and every file opened for writing."""
    seen: dict[str, list[Any]] = {"replace": [], "opened": []}
    real_replace, real_open, real_os_open = os.replace, builtins.open, os.open

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        seen["replace"].append((Path(src), Path(dst)))
        real_replace(src, dst, *args, **kwargs)

    def spy_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wxa+"):
            seen["opened"].append(Path(file))
        return real_open(file, mode, *args, **kwargs)

    def spy_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & WRITE_FLAGS:
            seen["opened"].append(Path(path))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    return seen


def test_every_write_is_a_temp_file_renamed_over_its_target(
    storage_class: StorageClass, tmp_path: Path, writes: dict[str, list[Any]]
) -> None:
    folder = tmp_path / "cache"
    storage = storage_class(folder)
    storage.save("m", value_for(storage_class, 1))
    storage.save("m", value_for(storage_class, 2))
    CM = DatedCacheManager(storage_class(folder), verbose=False)
    CM.set_functions_dict({"n": lambda: value_for(storage_class, 3)})
    CM.get("n")
    CM.get("n", use_stored=False)
    CM.save("n", force=True)

    ext = storage_class(folder).file_ext
    targets = {dst for _, dst in writes["replace"]}
    assert targets == {
        folder / f"m{ext}",
        folder / f"n{ext}",
        record_file(folder, "m", ext),
        record_file(folder, "n", ext),
    }
    for src, dst in writes["replace"]:
        assert src.parent == dst.parent
        assert src.name.startswith(TEMP_PREFIX)
    sources = [src for src, _ in writes["replace"]]
    assert len(set(sources)) == len(sources)  # a fresh temp name for every write
    # Nothing but temp files (and lock bookkeeping) is ever opened for writing.
    assert any(p.name.startswith(TEMP_PREFIX) for p in writes["opened"])
    for path in writes["opened"]:
        if folder in path.parents and "locks" not in path.parts:
            assert path.name.startswith(TEMP_PREFIX), path
    assert temp_files(folder) == []


# -- a failed write leaves the previous value and no temp file ----------------------------------


class CodecFailure(Exception):
    """Raised by a codec that breaks down mid-write."""


def breaking_codec(storage: Any, error: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make *storage*'s codec write some bytes, then raise *error*."""

    def write(value: Any, f: Any) -> None:
        f.write(b"PK\x03\x04" + b"\x00" * 4096)
        raise error

    monkeypatch.setattr(storage.codec, "write", write)


@pytest.mark.parametrize(
    "error", [CodecFailure("codec broke"), KeyboardInterrupt()], ids=["exception", "interrupt"]
)
def test_codec_failing_mid_write(
    storage_class: StorageClass,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
) -> None:
    storage = storage_class(tmp_path)
    storage.save("m", value_for(storage_class, 1))
    before = entries(tmp_path)
    breaking_codec(storage, error, monkeypatch)
    with pytest.raises(type(error)):
        storage.save("m", value_for(storage_class, 2))
    with pytest.raises(type(error)):
        storage.save("other", value_for(storage_class, 2))
    assert entries(tmp_path) == before
    assert_intact(storage_class, tmp_path, value_for(storage_class, 1))


def test_codec_failing_under_the_manager(
    storage_class: StorageClass, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    CM = DatedCacheManager(storage_class(tmp_path), verbose=False)
    values = iter([value_for(storage_class, 1), value_for(storage_class, 2)])
    CM.set_functions_dict({"m": lambda: next(values)})
    CM.get("m")
    before = entries(tmp_path)
    breaking_codec(CM.storage_interface, KeyboardInterrupt(), monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        CM.get("m", use_stored=False)
    assert entries(tmp_path) == before
    assert_intact(storage_class, tmp_path, value_for(storage_class, 1))


class FullDisk:
    """A file that takes *room* more bytes, then fails the way a full disk does."""

    def __init__(self, f: Any, room: int) -> None:
        self._f, self._room = f, room

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if view.nbytes > self._room:
            self._f.write(view[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= view.nbytes
        return int(self._f.write(view))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


@pytest.fixture
def disk_full_on(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """Make the n-th file the store creates (0: data, 1: metadata record) hit ENOSPC."""

    def arm(index: int) -> None:
        created = iter(range(1_000_000))

        def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            f = builtins.open(file, mode, *args, **kwargs)  # noqa: SIM115 - caller closes
            if "x" in mode and next(created) == index:
                return FullDisk(f, room=100)
            return f

        monkeypatch.setattr(metricache._store, "open", fake_open, raising=False)

    return arm


@pytest.mark.parametrize("index", [0, 1], ids=["data", "record"])
def test_disk_full_during_save(
    storage_class: StorageClass,
    tmp_path: Path,
    disk_full_on: Callable[[int], None],
    index: int,
) -> None:
    storage = storage_class(tmp_path)
    storage.save("m", value_for(storage_class, 1))
    before = entries(tmp_path)
    disk_full_on(index)
    with pytest.raises(OSError) as info:
        storage.save("m", value_for(storage_class, 2))
    assert info.value.errno == errno.ENOSPC
    assert entries(tmp_path) == before
    assert_intact(storage_class, tmp_path, value_for(storage_class, 1))


@pytest.mark.parametrize("index", [0, 1], ids=["data", "record"])
def test_disk_full_under_the_manager(
    storage_class: StorageClass,
    tmp_path: Path,
    disk_full_on: Callable[[int], None],
    index: int,
) -> None:
    CM = DatedCacheManager(storage_class(tmp_path), verbose=False)
    values = iter([value_for(storage_class, i) for i in range(1, 4)])
    CM.set_functions_dict({"m": lambda: next(values)})
    CM.get("m")
    before = entries(tmp_path)
    disk_full_on(index)
    # get(): the computed value is returned and kept in memory, with a warning.
    with pytest.warns(CacheWriteWarning, match="'m'"):
        assert uniform(CM.get("m", use_stored=False)) == {2}
    assert uniform(CM["m"]) == {2}
    disk_full_on(index)
    with pytest.raises(OSError) as info:  # save() is explicit: it raises
        CM.save("m", force=True)
    assert info.value.errno == errno.ENOSPC
    assert entries(tmp_path) == before
    assert_intact(storage_class, tmp_path, value_for(storage_class, 1))


def test_failed_data_rename_keeps_the_previous_value(
    storage_class: StorageClass, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The record is committed before the data; a crash between the two renames
    # must leave the old data readable.
    storage = storage_class(tmp_path)
    storage.save("m", value_for(storage_class, 1))
    data_file = tmp_path / f"m{storage.file_ext}"
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst) == data_file:
            raise OSError(errno.EIO, "simulated crash before the data rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated crash"):
        storage.save("m", value_for(storage_class, 2))
    monkeypatch.undo()
    assert_intact(storage_class, tmp_path, value_for(storage_class, 1))
    storage_class(tmp_path).save("m", value_for(storage_class, 3))
    assert_intact(storage_class, tmp_path, value_for(storage_class, 3))


# -- readers never see a partial value ---------------------------------------------------------


def test_concurrent_reader_sees_whole_values(storage_class: StorageClass, tmp_path: Path) -> None:
    size = 20_000 if issubclass(storage_class, JsonStorageInterface) else 500_000  # type: ignore[arg-type]
    rewrites = 50
    writer_storage = storage_class(tmp_path)
    writer_storage.save("m", value_for(storage_class, 0, size))
    done = threading.Event()

    def write() -> None:
        try:
            for i in range(1, rewrites + 1):
                writer_storage.save("m", value_for(storage_class, i, size))
        finally:
            done.set()

    def read() -> list[int]:
        reader = storage_class(tmp_path)
        seen = []
        while not done.is_set() or not seen:
            value = reader.load("m")
            items = uniform(value)
            assert len(items) == 1, f"a mix of writes: {sorted(items)[:5]}"
            if isinstance(value, dict):
                assert value["a"].shape == (size,) and value["b"].shape == (size // 2,)
            else:
                assert len(value) == size
            seen.append(int(items.pop()))
        return seen

    with ThreadPoolExecutor(max_workers=2) as pool:
        reading = pool.submit(read)
        writing = pool.submit(write)
        writing.result()
        seen = reading.result()
    assert seen == sorted(seen)  # never an older value after a newer one
    assert set(seen) <= set(range(rewrites + 1))
    assert_intact(storage_class, tmp_path, value_for(storage_class, rewrites, size))
