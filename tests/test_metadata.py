"""Entry metadata: the record file, EntryInfo, dates, durable writes and legacy entries."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash

import metricache
from metricache import (
    DatedCacheManager,
    EntryInfo,
    JsonStorageInterface,
    MetricNotStoredError,
    NpyStorageInterface,
    NpzStorageInterface,
    StorageInterface,
)

from .conftest import Counter, record_file

CODEC_NAMES = {
    NpzStorageInterface: "npz",
    NpyStorageInterface: "npy",
    JsonStorageInterface: "json",
}


def make_manager(storage: StorageInterface, functions: dict[str, Any]) -> DatedCacheManager:
    """A quiet manager over *storage* defining *functions*."""
    CM = DatedCacheManager(storage, verbose=False)
    CM.set_functions_dict(functions)
    return CM


def slow_metric() -> np.ndarray:
    """A metric that takes a measurable (lower-bounded) time."""
    time.sleep(0.02)
    return np.arange(50.0)


def test_record_file_holds_every_field(
    storage_class: type[StorageInterface], tmp_path: Path
) -> None:
    folder = tmp_path / "cache"
    CM = make_manager(storage_class(folder), {"m": slow_metric})
    before = datetime.now(timezone.utc)
    start = time.perf_counter()
    CM.save("m")
    elapsed = time.perf_counter() - start
    after = datetime.now(timezone.utc)

    record_path = record_file(folder, "m", CM.storage_interface.file_ext)
    assert record_path.is_file()
    record = json.loads(record_path.read_text())
    assert record["format"] == 1
    current = record["current"]
    data = (folder / f"m{CM.storage_interface.file_ext}").read_bytes()
    stamp = datetime.fromisoformat(current["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert before <= stamp <= after
    # The duration is the metric function's own time: at least its sleep, at most the call.
    assert 0.02 <= current["duration"] <= elapsed
    assert current["size"] == len(data)
    assert current["checksum"] == f"xxh3_64:{xxhash.xxh3_64(data).hexdigest()}"
    assert current["codec"] == CODEC_NAMES[storage_class]
    assert current["storage"] == storage_class.__name__
    assert current["version"] == metricache.__version__
    assert current["name"] == "m" and current["legacy"] is False
    assert record["previous"] == []


def test_info_is_a_frozen_entry_info_matching_the_record(
    storage_class: type[StorageInterface], tmp_path: Path
) -> None:
    folder = tmp_path / "cache"
    CM = make_manager(storage_class(folder), {"m": lambda: np.arange(5)})
    CM.get("m")
    info = CM.info("m")
    assert isinstance(info, EntryInfo)
    record_path = record_file(folder, "m", CM.storage_interface.file_ext)
    current = json.loads(record_path.read_text())["current"]
    assert info.timestamp == datetime.fromisoformat(current["timestamp"])
    assert (info.duration, info.size, info.checksum) == (
        current["duration"],
        current["size"],
        current["checksum"],
    )
    assert (info.codec, info.storage, info.version) == (
        CODEC_NAMES[storage_class],
        storage_class.__name__,
        metricache.__version__,
    )
    assert info.legacy is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.size = 0  # type: ignore[misc]
    # A fresh manager reads the same record back from disk.
    fresh = make_manager(storage_class(folder), {})
    assert fresh.info("m") == info


def test_date_is_the_info_timestamp_in_utc(
    storage_class: type[StorageInterface], tmp_path: Path
) -> None:
    CM = make_manager(storage_class(tmp_path / "cache"), {"m": lambda: 7})
    CM.get("m")
    stamp = CM.date("m")
    assert stamp == CM.info("m").timestamp
    assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
    # The seed's '<name>_date' alias still answers, as the local calendar date.
    assert CM["m_date"] == stamp.astimezone().strftime("%Y-%m-%d")


def test_info_of_an_unstored_metric_raises(tmp_path: Path) -> None:
    CM = make_manager(NpzStorageInterface(tmp_path), {"m": lambda: 1})
    with pytest.raises(MetricNotStoredError, match="'m'"):
        CM.info("m")
    with pytest.raises(MetricNotStoredError):
        CM.date("m")


def test_record_remembers_the_previous_entries(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    values = iter([np.arange(3), np.arange(4), np.arange(5), np.arange(6)])
    CM = make_manager(NpyStorageInterface(folder), {"m": lambda: next(values)})
    checksums = []
    for _ in range(4):
        CM.get("m", use_stored=False)
        checksums.append(CM.info("m").checksum)
    record = json.loads(record_file(folder, "m", ".npy").read_text())
    assert record["current"]["checksum"] == checksums[-1]
    # Exactly the entry whose file the new data replaces: the one a crash between
    # the record and the data rename would leave on disk.
    assert [p["checksum"] for p in record["previous"]] == [checksums[2]]


class FsyncSpy:
    """Counts os.fsync calls (by inode) and os.replace calls, in order; both still run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, Any]] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd: int) -> None:
            self.events.append(("fsync", os.fstat(fd).st_ino))
            real_fsync(fd)

        def replace(src: Any, dst: Any, **kwargs: Any) -> None:
            real_replace(src, dst, **kwargs)
            self.events.append(("replace", os.stat(dst).st_ino))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def fsynced(self) -> list[int]:
        """Inodes passed to fsync, in call order."""
        return [ino for kind, ino in self.events if kind == "fsync"]

    def index(self, event: tuple[str, int]) -> int:
        """Position of *event*; fails the test if it never happened."""
        assert event in self.events, f"{event} not in {self.events}"
        return self.events.index(event)


def test_durable_fsyncs_data_record_and_folders(
    storage_class: Callable[..., StorageInterface],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "cache"
    storage = storage_class(folder, durable=True)
    CM = make_manager(storage, {"m": lambda: np.arange(100)})
    spy = FsyncSpy(monkeypatch)
    CM.get("m")
    data = folder / f"m{storage.file_ext}"
    record = record_file(folder, "m", storage.file_ext)
    ino = {p: os.stat(p).st_ino for p in (data, record, folder, record.parent)}
    # Each file is synced before the rename that publishes it, each folder after it.
    assert spy.index(("fsync", ino[data])) < spy.index(("replace", ino[data]))
    assert spy.index(("replace", ino[data])) < spy.index(("fsync", ino[folder]))
    assert spy.index(("fsync", ino[record])) < spy.index(("replace", ino[record]))
    assert spy.index(("replace", ino[record])) < spy.index(("fsync", ino[record.parent]))
    # And the durable entry reads back.
    assert np.array_equal(make_manager(storage_class(folder), {}).load("m"), np.arange(100))


def test_default_writes_never_fsync(
    storage_class: type[StorageInterface], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    CM = make_manager(storage_class(tmp_path / "cache"), {"m": lambda: np.arange(100)})
    spy = FsyncSpy(monkeypatch)
    CM.get("m")
    CM.get("m", use_stored=False)
    CM.save("m", force=True)
    assert spy.fsynced() == []
    assert [kind for kind, _ in spy.events].count("replace") >= 6  # the writes did happen


# -- legacy entries (written by simple_metrics_manager: data + '<name>_date' sidecar) --


def _legacy_npy(folder: Path, value: np.ndarray) -> None:
    np.save(folder / "m.npy", value)
    np.save(folder / "m_date.npy", np.array("2020-05-17"))


def _legacy_npz(folder: Path, value: np.ndarray) -> None:
    np.savez(folder / "m.npz", value)
    np.savez(folder / "m_date.npz", np.array("2020-05-17"))


def _legacy_json(folder: Path, value: np.ndarray) -> None:
    (folder / "m.json").write_text(json.dumps(value.tolist()))
    (folder / "m_date.json").write_text(json.dumps("2020-05-17"))


LEGACY_WRITERS = {
    NpyStorageInterface: _legacy_npy,
    NpzStorageInterface: _legacy_npz,
    JsonStorageInterface: _legacy_json,
}


def test_legacy_entry_loads_with_its_sidecar_date(
    storage_class: type[StorageInterface], tmp_path: Path, counter: Counter
) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    LEGACY_WRITERS[storage_class](folder, np.arange(6))
    CM = make_manager(storage_class(folder), {"m": counter})
    assert np.array_equal(CM.get("m"), np.arange(6))
    assert counter.calls == 0
    info = CM.info("m")
    assert info.legacy is True
    assert (info.checksum, info.size, info.version) == (None, None, None)
    assert info.date == "2020-05-17"
    assert CM.date("m") == info.timestamp
    assert CM.date("m").astimezone().date() == date(2020, 5, 17)
    assert CM["m_date"] == "2020-05-17"
    # No record was invented for it: the folder still reads as the old package wrote it.
    assert not (folder / ".metricache").exists()


def test_legacy_entry_without_sidecar_is_dated_by_mtime(tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", np.arange(3))
    stamp = datetime(2021, 3, 4, 12, 0, tzinfo=timezone.utc)
    os.utime(tmp_path / "m.npy", (stamp.timestamp(), stamp.timestamp()))
    CM = make_manager(NpyStorageInterface(tmp_path), {})
    info = CM.info("m")
    assert (info.legacy, info.checksum, info.version) == (True, None, None)
    assert CM.date("m") == stamp


def test_recomputing_a_legacy_entry_gives_it_a_record(tmp_path: Path) -> None:
    _legacy_npy(tmp_path, np.arange(6))
    CM = make_manager(NpyStorageInterface(tmp_path), {"m": lambda: np.arange(9)})
    CM.get("m", use_stored=False)
    info = make_manager(NpyStorageInterface(tmp_path), {}).info("m")
    assert info.legacy is False
    assert (
        info.checksum == f"xxh3_64:{xxhash.xxh3_64((tmp_path / 'm.npy').read_bytes()).hexdigest()}"
    )
