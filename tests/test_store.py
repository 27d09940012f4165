"""Housekeeping: opening changes nothing; cleanup() removes dead writers' litter only."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import (
    CorruptEntryError,
    DatedCacheManager,
    NpyStorageInterface,
    NpzStorageInterface,
)
from metricache._flock import FolderLocks
from metricache._locking import LOCK_DIR
from metricache._store import LocalStore

from .conftest import record_file


def test_record_of_a_first_write_that_never_finished_is_removed_by_cleanup(
    tmp_path: Path,
) -> None:
    storage = NpyStorageInterface(tmp_path)
    storage.save("a", np.arange(3))
    os.unlink(tmp_path / "a.npy")  # as if the writer died before its data rename
    reopened = NpyStorageInterface(tmp_path)
    assert record_file(tmp_path, "a", ".npy").exists()  # opening deletes nothing
    assert reopened.cleanup() == 1
    assert not record_file(tmp_path, "a", ".npy").exists()


def test_record_of_a_live_writer_is_kept(tmp_path: Path) -> None:
    storage = NpyStorageInterface(tmp_path)
    storage.save("a", np.arange(3))
    os.unlink(tmp_path / "a.npy")
    (tmp_path / LOCK_DIR).mkdir(parents=True, exist_ok=True)
    writer = FolderLocks(tmp_path / LOCK_DIR)  # a writer between record and rename
    assert writer.acquire("a", 0)
    try:
        assert NpyStorageInterface(tmp_path).cleanup() == 0
        assert record_file(tmp_path, "a", ".npy").exists()
    finally:
        writer.release("a")


def test_orphan_record_does_not_count_as_stored(tmp_path: Path) -> None:
    storage = NpyStorageInterface(tmp_path)
    storage.save("a", np.arange(3))
    os.unlink(tmp_path / "a.npy")
    CM = DatedCacheManager(storage, verbose=False)
    CM.set_functions_dict({"a": lambda: np.arange(5)})
    assert not CM.exists("a")
    np.testing.assert_array_equal(CM["a"], np.arange(5))


def test_put_atomic_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_atomic("sub/key", lambda f: f.write(b"one"))
    store.put_atomic("sub/key", lambda f: f.write(b"two"))
    assert (tmp_path / "sub" / "key").read_bytes() == b"two"
    assert os.listdir(tmp_path / "sub") == ["key"]
    assert store.list("sub") == ["key"]
    assert store.stat("sub/key")[0] == 3


def test_corrupt_entry_without_a_function_raises_and_stays_put(tmp_path: Path) -> None:
    NpyStorageInterface(tmp_path).save("a", np.arange(1000))
    data = bytearray((tmp_path / "a.npy").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "a.npy").write_bytes(bytes(data))
    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    for call in (CM.load, CM.get):
        with pytest.raises(CorruptEntryError, match="no function is defined for 'a'"):
            call("a")
    assert (tmp_path / "a.npy").read_bytes() == bytes(data)
    assert not (tmp_path / ".metricache" / "quarantine").exists()


def test_opening_a_folder_where_nothing_can_be_deleted_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = NpyStorageInterface(tmp_path)
    storage.save("a", np.arange(3))
    storage.save("b", np.arange(4))
    os.unlink(tmp_path / "b.npy")  # an orphan record
    (tmp_path / ".mctmp-elsewhere-1-abc").write_bytes(b"x")  # a foreign writer's temp file
    os.utime(tmp_path / ".mctmp-elsewhere-1-abc", (0, 0))
    denied = PermissionError(errno.EACCES, "read-only folder")

    def refuse(*args: object, **kwargs: object) -> None:
        raise denied

    monkeypatch.setattr(os, "unlink", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)
    monkeypatch.setattr(FolderLocks, "acquire", refuse)
    reopened = NpyStorageInterface(tmp_path)
    np.testing.assert_array_equal(reopened.load("a"), np.arange(3))


def test_data_left_by_a_failed_rename_loads_with_its_own_codec_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = NpyStorageInterface(tmp_path)
    storage.save("x", np.arange(3))  # stored as a plain array
    real_replace = os.replace

    def fail_data_rename(src: str, dst: str) -> None:
        if str(dst).endswith("x.npy"):
            raise OSError(errno.EIO, "the writer died here")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_data_rename)
    with pytest.raises(OSError):
        storage.save("x", 5)  # a Python int: another codec hint, in the record already
    monkeypatch.undo()
    value, info = NpyStorageInterface(tmp_path).read_entry("x")
    assert type(value) is np.ndarray
    np.testing.assert_array_equal(value, np.arange(3))
    assert info is not None and info.hint is None


def test_reader_racing_fast_writers_gets_a_whole_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader, writer = NpyStorageInterface(tmp_path), NpyStorageInterface(tmp_path)
    writer.save("x", np.full(3, 0))
    records = reader._entries.records
    read_record, calls = records.read, []

    def read_while_writers_replace_it(name: str) -> Any:
        calls.append(name)
        record = read_record(name)  # describes generation 0 ...
        if len(calls) == 1:
            writer.save("x", np.full(3, 1))  # ... which three more writes push out of it
            writer.save("x", np.full(3, 2))
            writer.save("x", np.full(3, 3))
        return record

    monkeypatch.setattr(records, "read", read_while_writers_replace_it)
    np.testing.assert_array_equal(reader.load("x"), np.full(3, 3))
    assert len(calls) == 2  # the stale record's mismatch was read again, not a verdict


def test_space_reserved_for_a_write_is_trimmed_to_what_was_written(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_atomic("k", lambda f: f.write(b"x" * 1000), size_hint=4 << 20)
    assert (tmp_path / "k").stat().st_size == 1000
    store.put_atomic("k", lambda f: f.write(b"y" * (2 << 20)), size_hint=2 << 20)
    assert (tmp_path / "k").read_bytes() == b"y" * (2 << 20)


@pytest.mark.parametrize("verify", [True, False])
def test_large_npz_entries_round_trip_and_damage_is_caught(tmp_path: Path, verify: bool) -> None:
    value = {"a": np.arange(100_000.0), "b": [np.ones((300, 300))]}
    storage = NpzStorageInterface(tmp_path, verify=verify)
    storage.save("big", value["a"])
    np.testing.assert_array_equal(
        NpzStorageInterface(tmp_path, verify=verify).load("big"), value["a"]
    )
    data = bytearray((tmp_path / "big.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum or the zip CRC sees it
    (tmp_path / "big.npz").write_bytes(bytes(data))
    # With verify, the checksum catches it; without, the zip member CRC still does.
    with pytest.raises(CorruptEntryError):
        NpzStorageInterface(tmp_path, verify=verify).load("big")


def test_large_legacy_npz_with_a_damaged_member_is_corrupt(tmp_path: Path) -> None:
    np.savez(tmp_path / "old.npz", np.arange(100_000.0))  # a legacy file: no record
    data = bytearray((tmp_path / "old.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "old.npz").write_bytes(bytes(data))
    with pytest.raises(CorruptEntryError):
        NpzStorageInterface(tmp_path).load("old")


def test_a_local_stat_of_an_open_file_describes_it_after_a_replace(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_atomic("k", lambda f: f.write(b"old!"))
    with store.open_read("k") as f:
        store.put_atomic("k", lambda f: f.write(b"newer bytes"))
        opened = store.stat_open(f, "k")
    assert opened.size == 4 and opened.identity != store.stat("k").identity
