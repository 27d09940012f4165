"""Verified reads hashed chunk by chunk as the bytes land, alone or shared by two threads.

The thresholds are shrunk so that arrays of a few hundred KiB take the paths that
large ones take (chunks of 10,000 bytes: never a multiple of an item's size, and
the .npy header shifts every boundary further). Every test runs the one-thread
and the two-thread read.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pytest

from metricache import NpyStorageInterface, NpzStorageInterface, _hashio, _hashpipe, _hashthread
from metricache._hashio import HashingReader, checksum_bytes
from metricache.codecs.npy import NpyCodec
from metricache.exceptions import CorruptEntryError

CHUNK = 10_000
ROWS = np.random.default_rng(3).random((300, 101))  # 242,400 bytes: 25 chunks, the last partial


def _shrink(monkeypatch: pytest.MonkeyPatch, shared: bool, chunk: int = CHUNK) -> None:
    """Send reads over 4 KiB through the chunked path (and the shared one if *shared*)."""
    monkeypatch.setattr(_hashio, "_CHUNKED_MIN", 4096)
    monkeypatch.setattr(_hashio, "_SPLIT_MIN", 4096 if shared else 1 << 60)
    monkeypatch.setattr(_hashpipe, "READ_CHUNK", chunk)
    monkeypatch.setattr(_hashio, "_WRITE_PIPELINE_MIN", 4096)


@pytest.fixture(params=["one thread", "two threads"])
def shared(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both read paths, thresholds shrunk."""
    on = request.param == "two threads"
    _shrink(monkeypatch, on)
    return on


def _stored(folder: Path, value: Any, name: str = "m") -> Path:
    """Save *value* as an npy entry; the path of its data file."""
    NpyStorageInterface(folder).save(name, value)
    path = folder / f"{name}.npy"
    assert path.stat().st_size > 4 * CHUNK  # really a multi-chunk file (not packed)
    return path


def _same(a: Any, b: np.ndarray) -> bool:
    return type(a) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize(
    "where",
    ["first chunk", "second chunk", "middle chunk", "last full chunk", "partial last chunk"],
)
def test_a_flipped_byte_in_any_chunk_is_caught(tmp_path: Path, shared: bool, where: str) -> None:
    path = _stored(tmp_path, ROWS)
    size = path.stat().st_size
    last_full = (size // CHUNK - 1) * CHUNK
    offset = {
        "first chunk": 200,  # just past the 128-byte header
        "second chunk": CHUNK,  # the first byte of a chunk
        "middle chunk": size // 2,
        "last full chunk": last_full + CHUNK - 1,  # the last byte of a chunk
        "partial last chunk": size - 1,
    }[where]
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptEntryError, match="checksum"):
        NpyStorageInterface(tmp_path).load("m")
    path.write_bytes(bytes(raw[:offset]) + bytes([raw[offset] ^ 0x01]) + bytes(raw[offset + 1 :]))
    assert _same(NpyStorageInterface(tmp_path).load("m"), ROWS)  # restored: loads again


def _read_file(path: Path) -> tuple[np.ndarray, int, str | None]:
    """Decode *path* through a hashing reader: ``(array, size, checksum)``."""
    with open(path, "rb", buffering=0) as f:
        reader = HashingReader(cast(BinaryIO, f))
        arr = NpyCodec().read(cast(BinaryIO, reader))
        size, checksum = reader.finish()
    return arr, size, checksum


def _after_first_chunk(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> list[int]:
    """Run *action* once, right after the first chunk of a chunked read lands."""
    real = _hashpipe._pread_into
    calls: list[int] = []

    def pread_then_act(fd: int, view: memoryview, offset: int) -> int:
        got = real(fd, view, offset)
        calls.append(got)
        if len(calls) == 1:
            action()
        return got

    monkeypatch.setattr(_hashpipe, "_pread_into", pread_then_act)
    return calls


def test_a_file_truncated_while_it_is_read_is_truncated_not_a_value(
    tmp_path: Path, shared: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _stored(tmp_path, ROWS)
    cut = path.stat().st_size // 2 + 7  # mid-chunk, mid-item

    def cut_file() -> None:
        os.truncate(path, cut)

    calls = _after_first_chunk(monkeypatch, cut_file)
    with pytest.raises(CorruptEntryError, match="truncated"):
        _read_file(path)
    assert len(calls) > 2  # the read went on in chunks after the cut


def test_a_file_grown_while_it_is_read_fails_its_checksum(
    tmp_path: Path, shared: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _stored(tmp_path, ROWS)
    stored = path.read_bytes()

    def grow() -> None:
        with open(path, "ab") as f:
            f.write(b"\0" * 3 * CHUNK)

    _after_first_chunk(monkeypatch, grow)
    with pytest.raises(CorruptEntryError, match="unexpected data after"):
        _read_file(path)
    # Through the storage: the size no longer matches the record, nothing is returned.
    path.write_bytes(stored)
    _after_first_chunk(monkeypatch, grow)
    with pytest.raises(CorruptEntryError):
        NpyStorageInterface(tmp_path).load("m")


@pytest.mark.parametrize(
    "value",
    [
        ROWS,
        np.asfortranarray(ROWS),
        ROWS[:, ::2],  # not contiguous: stored as its C-ordered copy
        ROWS.astype(">f8"),  # big-endian
        np.asfortranarray(ROWS.astype(">c16")),
        np.repeat((ROWS * 1000).astype(np.int16), 2, axis=0),  # 2-byte items
        np.zeros(30_011, dtype=[("a", "<i4"), ("b", ">f8")]),  # 12-byte records
        np.frombuffer(np.random.default_rng(5).bytes(7 * 14_285), dtype="S7"),  # odd item size
    ],
    ids=["c", "fortran", "strided", "big-endian", "fortran-big-complex", "int16", "records", "S7"],
)
def test_arrays_of_every_layout_read_back_exactly(
    tmp_path: Path, shared: bool, value: np.ndarray
) -> None:
    path = _stored(tmp_path, value)
    arr, size, checksum = _read_file(path)
    assert (size, checksum) == (path.stat().st_size, checksum_bytes(path.read_bytes()))
    assert arr.dtype == value.dtype and np.array_equal(arr, value)
    expected_f = value.flags.f_contiguous and not value.flags.c_contiguous
    assert arr.flags.f_contiguous == expected_f or arr.ndim < 2
    assert np.array_equal(NpyStorageInterface(tmp_path).load("m"), value)
    np.testing.assert_array_equal(np.load(path), value)  # still a standard .npy file


@pytest.mark.parametrize("chunk", [1, 7, 4096, 65_536, 1 << 20])
def test_any_chunk_size_hashes_the_whole_file_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    _shrink(monkeypatch, shared=True, chunk=chunk)
    value = ROWS[:100] if chunk < 100 else ROWS  # over 64 KiB: its own data file
    NpyStorageInterface(tmp_path).save("m", value)
    arr, size, checksum = _read_file(tmp_path / "m.npy")
    data = (tmp_path / "m.npy").read_bytes()
    assert (size, checksum) == (len(data), checksum_bytes(data))
    assert np.array_equal(arr, value)


def test_an_npz_member_is_read_and_verified_through_the_same_paths(
    tmp_path: Path, shared: bool
) -> None:
    storage = NpzStorageInterface(tmp_path)
    value = {"a": ROWS, "b": ROWS.astype(">f4")}
    storage.save("z", value)
    out = NpzStorageInterface(tmp_path).load("z")
    assert set(out) == {"a", "b"} and all(_same(out[k], value[k]) for k in value)


def test_many_threads_reading_many_entries_get_each_their_own_bytes(
    tmp_path: Path, shared: bool
) -> None:
    values = {f"e{i}": ROWS + i for i in range(6)}
    for name, value in values.items():
        _stored(tmp_path, value, name)
    raw = bytearray((tmp_path / "e3.npy").read_bytes())
    raw[len(raw) // 3] ^= 0x10
    (tmp_path / "e3.npy").write_bytes(bytes(raw))
    storage = NpyStorageInterface(tmp_path)

    def load(name: str) -> str:
        try:
            got = storage.load(name)
        except CorruptEntryError:
            return "corrupt"
        return "ok" if _same(got, values[name]) else "WRONG"

    names = [f"e{i % 6}" for i in range(96)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(load, names, timeout=240))  # a deadlock fails here
    assert all(
        r == ("corrupt" if n == "e3" else "ok") for n, r in zip(names, results, strict=True)
    )
    idle = _hashthread.submit(lambda: "idle")
    assert idle.result(timeout=30) == "idle"  # the hashing thread is free again


def test_an_error_on_the_helper_thread_reaches_the_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _shrink(monkeypatch, shared=True)
    path = _stored(tmp_path, ROWS)
    real = _hashpipe._pread_into

    def failing_off_the_main_thread(fd: int, view: memoryview, offset: int) -> int:
        if threading.current_thread() is not threading.main_thread():
            raise OSError(5, "Input/output error")
        time.sleep(0.001)  # let the helper claim a chunk
        return real(fd, view, offset)

    monkeypatch.setattr(_hashpipe, "_pread_into", failing_off_the_main_thread)
    try:
        arr, size, _ = _read_file(path)
    except OSError as err:
        assert err.errno == 5  # the helper's error, re-raised here
    else:  # the helper never got a chunk: the caller read them all
        assert np.array_equal(arr, ROWS) and size == path.stat().st_size


# -- a real Ctrl-C in the middle of reads -----------------------------------------------


_armed = False


def _interrupt_when_armed(signum: int, frame: Any) -> None:
    """SIGINT raises KeyboardInterrupt only inside a load (the bookkeeping is not tested)."""
    if _armed:
        raise KeyboardInterrupt


def _one_load(storage: NpyStorageInterface, expected: np.ndarray, report: dict[str, Any]) -> None:
    """Load the entry once; count a whole load, or where an interrupt landed."""
    global _armed
    try:
        _armed = True
        value = storage.load("big")
        _armed = False
    except KeyboardInterrupt as err:
        _armed = False
        report["interrupts"] += 1
        frames = traceback.extract_tb(err.__traceback__)
        report["in_read"] += any(f.filename.endswith("_hashpipe.py") for f in frames)
        return
    report["loads"] += 1
    report["wrong"] += not np.array_equal(value, expected)


def interrupted_reads(folder: str, expected_file: str, out: str, shared: bool) -> None:
    """In a spawned process: load one entry over and over while SIGINTs arrive."""
    _hashio._CHUNKED_MIN = 4096
    _hashio._SPLIT_MIN = 4096 if shared else 1 << 60
    _hashpipe.READ_CHUNK = 64 << 10
    expected = np.load(expected_file)
    storage = NpyStorageInterface(folder)
    report: dict[str, Any] = {"loads": 0, "interrupts": 0, "in_read": 0, "wrong": 0}
    storage.load("big")  # starts whatever threads a load starts
    before = sorted(t.name for t in threading.enumerate())
    signal.signal(signal.SIGINT, _interrupt_when_armed)
    Path(out + ".ready").write_text("ready")
    stop = Path(out + ".stop")
    while not stop.exists():
        _one_load(storage, expected, report)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Afterwards: the hashing thread is idle (no helper left running), the next load
    # is whole, and no thread but the hashing one was left behind.
    report["threads_before"] = before
    report["threads"] = sorted(t.name for t in threading.enumerate())
    report["idle"] = _hashthread.submit(lambda: True).result(timeout=30)
    report["after"] = bool(np.array_equal(storage.load("big"), expected))
    Path(out).write_text(json.dumps(report))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("shared_read", [False, True], ids=["one thread", "two threads"])
def test_sigint_during_reads_hands_out_no_partial_array(tmp_path: Path, shared_read: bool) -> None:
    folder = tmp_path / "cache"
    big = np.random.default_rng(9).random(1 << 20)  # 8 MiB: 128 chunks of 64 KiB
    NpyStorageInterface(folder).save("big", big)
    np.save(tmp_path / "expected.npy", big)
    out = tmp_path / "report.json"
    ctx = multiprocessing.get_context("spawn")
    args = (str(folder), str(tmp_path / "expected.npy"), str(out), shared_read)
    child = ctx.Process(target=interrupted_reads, args=args)
    child.start()
    try:
        deadline = time.monotonic() + 120
        while not Path(str(out) + ".ready").exists():
            assert time.monotonic() < deadline and child.is_alive(), "the reader never started"
            time.sleep(0.01)
        assert child.pid is not None
        rng = np.random.default_rng(11)
        for _ in range(40):
            time.sleep(float(rng.uniform(0.002, 0.02)))
            os.kill(child.pid, signal.SIGINT)
        Path(str(out) + ".stop").write_text("stop")
        child.join(120)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    report = json.loads(out.read_text())
    assert report["wrong"] == 0, report  # every load returned was the whole, right array
    assert report["in_read"] >= 1, report  # interrupts did land mid-read
    assert report["idle"] and report["after"], report  # and left everything usable
    assert report["threads"] == report["threads_before"], report  # no thread left behind
