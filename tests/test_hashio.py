"""Checksumming streams: every byte hashed once and in order, inline or on the hash thread."""

from __future__ import annotations

import _thread
import errno
import multiprocessing
import os
import threading
import warnings
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pytest

from metricache import _hashio, _hashthread
from metricache._hashio import HashingReader, HashingWriter, checksum_bytes, hash_fd_in_background

DATA = np.random.default_rng(7).bytes(300_000)


@pytest.fixture
def small_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send anything over a few KiB to the background thread, in small pieces."""
    monkeypatch.setattr(_hashio, "_SPLIT_MIN", 4096)
    monkeypatch.setattr(_hashio, "_WRITE_PIPELINE_MIN", 4096)
    monkeypatch.setattr(_hashio, "_FD_BACKGROUND_MIN", 4096)
    monkeypatch.setattr(_hashio, "_FD_CHUNK", 10_000)


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    """A file holding DATA."""
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    return path


def _read_in_chunks(reader: HashingReader, total: int, chunk: int) -> bytes:
    """Consume *total* bytes through readinto, as the npy codec does."""
    buffer = bytearray(total)
    view = memoryview(buffer)
    done = 0
    while done < total:
        got = reader.readinto(view[done : done + chunk])
        assert got
        done += got
    return bytes(buffer)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("consumed", [0, 1000, len(DATA)])
def test_reader_hashes_what_was_read_and_what_finish_drains(
    data_file: Path, monkeypatch: pytest.MonkeyPatch, split: bool, consumed: int
) -> None:
    if split:  # reads of 50,000 bytes take the two-thread path
        monkeypatch.setattr(_hashio, "_SPLIT_MIN", 4096)
    with open(data_file, "rb", buffering=0) as f:
        reader = HashingReader(cast(BinaryIO, f))
        assert _read_in_chunks(reader, consumed, 50_000) == DATA[:consumed]
        if consumed == len(DATA):
            assert reader.read(1) == b""  # a codec's check for trailing bytes
        assert reader.finish() == (len(DATA), checksum_bytes(DATA))


@pytest.mark.parametrize("size", [3, 10_000, 150_000, 250_000, len(DATA) - 1])
def test_split_read_of_a_short_file_stops_at_its_end(
    tmp_path: Path, small_thresholds: None, size: int
) -> None:
    # the file ends before, in the first half of, in the second half of, or just
    # before the end of one large readinto
    path = tmp_path / "short.bin"
    path.write_bytes(DATA[:size])
    buffer = bytearray(len(DATA))
    with open(path, "rb", buffering=0) as f:
        reader = HashingReader(cast(BinaryIO, f))
        assert reader.read(3) == DATA[:3]
        assert _fill(reader, memoryview(buffer)[: len(DATA) - 3]) == size - 3
        assert buffer[: size - 3] == DATA[3:size]
        assert reader.finish() == (size, checksum_bytes(DATA[:size]))


def test_split_read_leaves_the_position_after_what_it_read(
    data_file: Path, small_thresholds: None
) -> None:
    with open(data_file, "rb", buffering=0) as f:
        reader = HashingReader(cast(BinaryIO, f))
        buffer = bytearray(100_001)
        assert reader.readinto(buffer) == len(buffer)
        assert buffer == DATA[: len(buffer)]
        assert reader.read(5) == DATA[100_001:100_006]
        assert reader.finish() == (len(DATA), checksum_bytes(DATA))


def _fill(reader: HashingReader, view: memoryview) -> int:
    """readinto until *view* is full or the stream ends; the bytes read."""
    done = 0
    while done < view.nbytes and (n := reader.readinto(view[done:])):
        done += n
    return done


def test_reader_without_hashing_still_counts(data_file: Path) -> None:
    with open(data_file, "rb", buffering=0) as f:
        reader = HashingReader(cast(BinaryIO, f), hashing=False)
        assert reader.read(10) == DATA[:10]
        assert reader.finish() == (len(DATA), None)


def test_reader_read_all_then_finish(data_file: Path, small_thresholds: None) -> None:
    with open(data_file, "rb", buffering=0) as f:
        reader = HashingReader(cast(BinaryIO, f))
        assert reader.read() == DATA
        assert reader.finish() == (len(DATA), checksum_bytes(DATA))


@pytest.mark.parametrize("pipelined", [False, True])
def test_writer_forwards_and_hashes_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pipelined: bool
) -> None:
    if pipelined:
        monkeypatch.setattr(_hashio, "_WRITE_PIPELINE_MIN", 4096)
    pieces = [DATA[:100], memoryview(DATA)[100:200_000], np.frombuffer(DATA[200_000:], np.uint8)]
    path = tmp_path / "out.bin"
    with open(path, "wb") as f:
        writer = HashingWriter(cast(BinaryIO, f))
        for piece in pieces:
            writer.write(piece)
    assert path.read_bytes() == DATA
    assert (writer.size, writer.checksum()) == (len(DATA), checksum_bytes(DATA))


class _FullDisk:
    """A sink whose writes fail like a full disk."""

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("size", [100, 100_000])
def test_writer_passes_write_errors_on(small_thresholds: None, size: int) -> None:
    writer = HashingWriter(cast(BinaryIO, _FullDisk()))
    with pytest.raises(OSError, match="No space"):
        writer.write(DATA[:size])


@pytest.mark.parametrize("size", [0, 1, 1000, len(DATA)])
def test_hash_fd_matches_the_bytes(tmp_path: Path, small_thresholds: None, size: int) -> None:
    path = tmp_path / "part.bin"
    path.write_bytes(DATA[:size])
    with open(path, "rb", buffering=0) as f:
        pending = hash_fd_in_background(f.fileno())
    assert pending is not None  # on a system with pread
    assert pending.result(timeout=60) == (size, checksum_bytes(DATA[:size]))


def test_hash_fd_leaves_the_callers_file_position_alone(
    data_file: Path, small_thresholds: None
) -> None:
    # the codec reads the same file (seeking around) while the checksum is computed
    with open(data_file, "rb", buffering=0) as f:
        f.seek(5000)
        pending = hash_fd_in_background(f.fileno())
        assert pending is not None
        pieces = [f.read(20_000) for _ in range(10)]
        f.seek(123)
        head = f.read(10)
        result = pending.result(timeout=60)
        assert f.tell() == 133
    assert b"".join(pieces) == DATA[5000:205_000]
    assert head == DATA[123:133]
    assert result == (len(DATA), checksum_bytes(DATA))


def _child_hashes(path: str, out: Any) -> None:
    """In a forked child: hash *path* on the (new) hash thread and report it."""
    with open(path, "rb", buffering=0) as f:
        pending = hash_fd_in_background(f.fileno())
        assert pending is not None
        out.put(pending.result(timeout=30))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_its_own_hash_thread(data_file: Path, small_thresholds: None) -> None:
    # the parent's hash thread exists before the fork; the child must not wait on it
    with open(data_file, "rb", buffering=0) as f:
        pending = hash_fd_in_background(f.fileno())
    assert pending is not None and pending.result(timeout=60)[0] == len(DATA)
    ctx = multiprocessing.get_context("fork")
    out = ctx.SimpleQueue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        child = ctx.Process(target=_child_hashes, args=(str(data_file), out))
        child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung waiting for its parent's hash thread")
    assert child.exitcode == 0
    assert out.get() == (len(DATA), checksum_bytes(DATA))


def test_a_task_cancelled_before_it_starts_never_runs() -> None:
    gate = threading.Event()
    ran: list[str] = []
    blocker = _hashthread.submit(lambda: gate.wait(30))  # keeps the hashing thread busy
    queued = _hashthread.submit(lambda: ran.append("ran"))
    assert queued.cancel() and queued.finished
    assert not queued.cancel()  # once only
    gate.set()
    assert blocker.result(timeout=30) is True
    assert _hashthread.submit(lambda: 7).result(timeout=30) == 7  # later tasks still run
    assert ran == []


def test_a_tasks_error_reaches_whoever_waits() -> None:
    def boom() -> None:
        raise OSError(errno.EIO, "Input/output error")

    task = _hashthread.submit(boom)
    with pytest.raises(OSError, match="Input/output"):
        task.result(timeout=30)
    assert _hashthread.submit(lambda: "next").result(timeout=30) == "next"


def test_ctrl_c_while_waiting_leaves_the_task_and_the_thread_usable() -> None:
    # The interrupt lands in wait() on the main thread, as a SIGINT would.
    release = threading.Event()
    task = _hashthread.submit(lambda: release.wait(30) and "done")
    timer = threading.Timer(0.05, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            task.wait()
    finally:
        timer.join()
    assert not task.cancel()  # it had started: it finishes on its own
    release.set()
    assert task.result(timeout=30) == "done"
    assert _hashthread.submit(lambda: 1).result(timeout=30) == 1
