"""Hostile files in a cache folder: each is corruption (recomputed), never a hang or a
memory blow-up; I/O errors stay I/O errors; symlinks never lead out of the folder.

The scenarios that could hang or exhaust memory run ``get`` in a spawned process
under an address-space limit, a join timeout and a peak-RSS bound.
"""

from __future__ import annotations

import errno
import fcntl
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import metricache.codecs.npz
from metricache import (
    CacheWriteWarning,
    DatedCacheManager,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
)
from metricache._layout import LOCK_DIR, record_key
from metricache._store import _HOST, LocalStore
from metricache.exceptions import CorruptEntryError

from ._race_workers import bounded_get, hold_temp_file

NEW = [1.0, 2.0, 3.0]
RSS_MIB = 400
STORAGES = {"npz": NpzStorageInterface, "npy": NpyStorageInterface, "json": JsonStorageInterface}


def _stored(folder: Path, kind: str = "npz", value: Any = None) -> tuple[Path, Path]:
    """A valid entry of *kind*; its (data, record) paths."""
    storage = STORAGES[kind](folder)
    storage.save("m", np.array([9.0, 9.0, 9.0]) if value is None else value)
    return folder / f"m.{kind}", folder / record_key("m", f".{kind}")


def _bounded_get(folder: Path, kind: str, timeout: float = 60) -> dict[str, Any]:
    out = folder.parent / f"{folder.name}-report.json"
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=bounded_get, args=(kind, str(folder), json.dumps(NEW), str(out)))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail(f"get() hung for {timeout} s")
    assert p.exitcode == 0
    report: dict[str, Any] = json.loads(out.read_text())
    assert report["rss_mib"] < RSS_MIB, report
    return report


def _recomputed(report: dict[str, Any]) -> None:
    assert report["error"] is None, report
    assert json.loads(report["value"]) == NEW


def _replace(path: Path, make: Any) -> None:
    path.unlink()
    make(path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("which", ["record", "data"])
def test_a_fifo_in_place_of_a_file_is_corruption_not_a_hang(tmp_path: Path, which: str) -> None:
    data, record = _stored(tmp_path)
    _replace(record if which == "record" else data, os.mkfifo)
    _recomputed(_bounded_get(tmp_path, "npz"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("which", ["record", "data"])
def test_a_symlink_to_dev_zero_is_not_read(tmp_path: Path, which: str) -> None:
    data, record = _stored(tmp_path, "json", NEW)
    _replace(record if which == "record" else data, lambda p: p.symlink_to("/dev/zero"))
    _recomputed(_bounded_get(tmp_path, "json"))


@pytest.mark.timeout(120)
def test_a_sparse_one_gib_record_is_not_read_whole(tmp_path: Path) -> None:
    _, record = _stored(tmp_path)
    with open(record, "r+b") as f:
        f.truncate(1 << 30)
    _recomputed(_bounded_get(tmp_path, "npz"))


def _deflate_bomb(path: Path, inflated: int) -> None:
    """An npz whose one deflated member inflates to *inflated* bytes of zeros."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (inflated // 8,)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf,
        zf.open("arr_0.npy", "w", force_zip64=True) as m,
    ):
        np.lib.format.write_array_header_1_0(m, header)
        chunk = bytes(1 << 22)
        for _ in range(inflated // len(chunk)):
            m.write(chunk)


@pytest.mark.timeout(180)
def test_a_decompression_bomb_is_caught_by_its_size_before_decoding(tmp_path: Path) -> None:
    healthy = tmp_path / "healthy"
    _stored(healthy)
    baseline = _bounded_get(healthy, "npz")["rss_mib"]  # what the same get costs normally
    data, _ = _stored(tmp_path)
    _deflate_bomb(data, 256 << 20)  # the record names another size: never inflated
    start = time.monotonic()
    report = _bounded_get(tmp_path, "npz")
    _recomputed(report)
    assert time.monotonic() - start < 30
    assert report["rss_mib"] < baseline + 100  # 256 MiB were never inflated


@pytest.mark.timeout(120)
@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "legacy"])
def test_a_shape_bomb_is_refused_before_allocating(tmp_path: Path, recorded: bool) -> None:
    data, record = _stored(tmp_path, "npy")
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (2**40,)
    with open(data, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(64))
    if not recorded:
        shutil.rmtree(tmp_path / ".metricache")
    with pytest.raises(CorruptEntryError, match="declares"):
        NpyStorageInterface(tmp_path).load("m") if not recorded else _legacy_load(data)
    _recomputed(_bounded_get(tmp_path, "npy"))


def _legacy_load(data: Path) -> Any:
    """Decode the data file as a legacy file (bypassing the record's size check)."""
    storage = NpyStorageInterface(data.parent)
    return storage._entries.decode_legacy(data.name)


@pytest.mark.timeout(120)
def test_a_record_nested_100000_deep_is_corruption(tmp_path: Path) -> None:
    _, record = _stored(tmp_path)
    record.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CorruptEntryError, match=str(record)):
        NpzStorageInterface(tmp_path).load("m")
    _recomputed(_bounded_get(tmp_path, "npz"))


@pytest.mark.timeout(120)
def test_a_directory_in_place_of_the_record_is_corruption(tmp_path: Path) -> None:
    _, record = _stored(tmp_path)
    _replace(record, Path.mkdir)
    with pytest.raises(CorruptEntryError, match="directory"):
        NpzStorageInterface(tmp_path).load("m")
    _recomputed(_bounded_get(tmp_path, "npz"))


def test_a_record_timestamp_at_the_edge_of_datetime_is_corruption(tmp_path: Path) -> None:
    _, record = _stored(tmp_path)
    raw = json.loads(record.read_text())
    raw["current"]["timestamp"] = "9999-12-31T23:59:59+00:00"
    record.write_text(json.dumps(raw))
    CM = DatedCacheManager(NpzStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: np.array(NEW)})
    with pytest.raises(CorruptEntryError, match="out of range"):
        CM.storage_interface.read_entry("m")
    np.testing.assert_array_equal(CM.get("m"), NEW)  # recomputed, not an OverflowError
    assert CM["m_date"] == CM.info("m").date


# -- symlinks ---------------------------------------------------------------------------


def test_a_legacy_symlink_out_of_the_folder_is_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    (tmp_path / "outside.json").write_text(json.dumps("secret"))
    (folder / "a.json").symlink_to("../outside.json")
    with pytest.raises(CorruptEntryError, match="outside the cache folder"):
        JsonStorageInterface(folder).load("a")
    CM = DatedCacheManager(JsonStorageInterface(folder), verbose=False)
    CM.set_functions_dict({"a": lambda: "computed"})
    assert CM.get("a") == "computed"
    assert json.loads((tmp_path / "outside.json").read_text()) == "secret"


def test_a_symlink_inside_the_folder_is_followed(tmp_path: Path) -> None:
    np.save(tmp_path / "real.npy", np.arange(3))
    (tmp_path / "a.npy").symlink_to("real.npy")
    np.testing.assert_array_equal(NpyStorageInterface(tmp_path).load("a"), np.arange(3))


def test_a_metricache_symlink_sends_nothing_elsewhere(tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    _stored(folder)
    shutil.move(folder / ".metricache", elsewhere)
    (folder / ".metricache").symlink_to(elsewhere)
    before = sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*"))
    CM = DatedCacheManager(NpzStorageInterface(folder), verbose=False)
    CM.set_functions_dict({"m": lambda: np.array(NEW)})
    with pytest.warns(CacheWriteWarning):
        np.testing.assert_array_equal(CM.get("m"), NEW)
    assert sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*")) == before


# -- I/O errors versus corruption ---------------------------------------------------------


def test_eio_reading_an_npz_is_an_io_error_and_quarantines_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, record = _stored(tmp_path)

    def failing_zip(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(metricache.codecs.npz.zipfile, "ZipFile", failing_zip)
    CM = DatedCacheManager(NpzStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: np.array(NEW)})
    with pytest.raises(OSError) as caught:
        CM.get("m")
    assert caught.value.errno == errno.EIO
    assert not isinstance(caught.value, CorruptEntryError)
    assert data.exists() and record.exists()
    assert not (tmp_path / ".metricache" / "quarantine").exists()


def test_a_corrupt_entry_in_a_read_only_folder_is_recomputed_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = _stored(tmp_path)
    raw = bytearray(data.read_bytes())
    raw[-30] ^= 0xFF
    data.write_bytes(bytes(raw))

    def read_only(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(LocalStore, "move", read_only)
    monkeypatch.setattr(LocalStore, "stage", read_only)
    CM = DatedCacheManager(NpzStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: np.array(NEW)})
    with pytest.warns(CacheWriteWarning, match="Read-only"):
        np.testing.assert_array_equal(CM.get("m"), NEW)


# -- item 1: a recomputed legacy file is never accepted by its size ---------------------


def test_a_recomputed_legacy_entry_of_the_same_size_still_detects_corruption(
    tmp_path: Path,
) -> None:
    np.save(tmp_path / "m.npy", np.arange(10.0))  # the seed's file: no record
    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: np.arange(10.0) + 1})
    CM.get("m", use_stored=False)
    record = json.loads((tmp_path / record_key("m", ".npy")).read_text())
    assert all(e["checksum"] for e in [record["current"], *record["previous"]])
    data = tmp_path / "m.npy"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0x01  # same size, one flipped bit
    data.write_bytes(bytes(raw))
    storage = NpyStorageInterface(tmp_path)
    with pytest.raises(CorruptEntryError):
        storage.load("m")
    with pytest.raises(CorruptEntryError):
        storage.verify("m")


def test_one_corrupt_entry_is_decoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, _ = _stored(tmp_path, "npy")
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0x01
    data.write_bytes(bytes(raw))
    storage = NpyStorageInterface(tmp_path)
    decode, calls = storage._entries._decode_open, []
    monkeypatch.setattr(
        storage._entries, "_decode_open", lambda *a, **k: calls.append(1) or decode(*a, **k)
    )
    with pytest.raises(CorruptEntryError):
        storage.load("m")
    assert len(calls) == 1


def test_verify_retries_while_another_writer_rewrites(tmp_path: Path) -> None:
    storage = NpyStorageInterface(tmp_path)
    storage.save("m", np.zeros(1000))
    ctx = multiprocessing.get_context("spawn")
    stop = tmp_path / "stop"
    from ._race_workers import contender

    rival = ctx.Process(target=contender, args=(str(tmp_path), str(stop)))
    try:
        rival.start()
        checked = 0
        deadline = time.monotonic() + 3
        npz = NpzStorageInterface(tmp_path)
        while time.monotonic() < deadline:
            npz.verify("m")  # neither a false corruption nor a FileNotFoundError
            checked += 1
    finally:
        stop.write_text("stop")
        rival.join(30)
    assert checked > 10


# -- liveness by lock, not pid ------------------------------------------------------------


def test_cleanup_keeps_a_temp_file_whose_writer_holds_its_lock(tmp_path: Path) -> None:
    # A pid no process here has (a writer in another PID namespace looks like that).
    tmp = tmp_path / f".mctmp-{_HOST}-{2**22 + 12345}-abcdef123456"
    ready, release = tmp_path / "ready", tmp_path / "release"
    ctx = multiprocessing.get_context("spawn")
    p = ctx.Process(target=hold_temp_file, args=(str(tmp), str(ready), str(release)))
    p.start()
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert NpyStorageInterface(tmp_path).cleanup() == 0
        assert tmp.exists()
    finally:
        release.write_text("go")
        p.join(30)
    assert NpyStorageInterface(tmp_path).cleanup() == 1  # dead now: removed
    assert not tmp.exists()


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_a_writer_in_another_pid_namespace_keeps_its_temp_file(tmp_path: Path) -> None:
    ready, release = tmp_path / "ready", tmp_path / "release"
    worker = Path(__file__).with_name("_race_workers.py")
    cmd = ["unshare", "--pid", "--fork", sys.executable, str(worker), "stage"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    p = subprocess.Popen([*cmd, str(tmp_path), str(ready), str(release)], env=env)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if p.poll() is not None:
                pytest.skip("unshare --pid is not permitted here")
            assert time.monotonic() < deadline
            time.sleep(0.01)
        temps = list(tmp_path.glob(".mctmp-*"))
        assert len(temps) == 1  # its pid is 1 or 2 in its namespace: alive here or not
        NpyStorageInterface(tmp_path).cleanup()
        assert temps[0].exists()
    finally:
        release.write_text("go")
        p.wait(30)


def test_a_stale_wait_record_of_a_dead_waiter_is_removed(tmp_path: Path) -> None:
    from metricache._locking import LocalLocks

    lock_dir = tmp_path / LOCK_DIR
    lock_dir.mkdir(parents=True)
    # Its pid is alive (ours): only the free lock tells that its waiter is gone.
    stale = lock_dir / f"{_HOST}-{os.getpid()}-1.wait"
    stale.write_text(json.dumps({"waiting_for": "a", "stack": ["b"]}))
    locks, other = LocalLocks(tmp_path), LocalLocks(tmp_path)
    import threading

    held, release = threading.Event(), threading.Event()

    def holder() -> None:  # another provider: seen only through the folder, like a process
        with other.hold("b"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    try:
        from metricache.exceptions import LockTimeoutError

        with pytest.raises(LockTimeoutError), locks.hold("b", timeout=0.3):
            pass  # a timeout, not a false MetricCycleError
    finally:
        release.set()
        t.join(10)
    assert not stale.exists()


def test_a_wait_record_of_a_live_waiter_is_held(tmp_path: Path) -> None:
    from metricache._locking import _publish_held

    path = tmp_path / "x.wait"
    fd = _publish_held(path, {"waiting_for": "a"})
    assert fd is not None
    other = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(other)
        os.close(fd)
