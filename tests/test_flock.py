"""Process locks: exclusive across descriptions, processes and forks; freed when a holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pytest

from metricache import _flock as flock
from metricache._flock import FolderLocks
from metricache._locking import LocalLocks


def in_forked_child(check: object) -> str:
    """Run ``check()`` in a forked child; return what it returned (as text)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads; the child only
        # makes system calls and exits, which is safe.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write_end, str(check()).encode())  # type: ignore[operator]
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read().decode()
    os.waitpid(pid, 0)
    return result


def test_two_instances_exclude_each_other_per_name(tmp_path: Path) -> None:
    first, second = FolderLocks(tmp_path), FolderLocks(tmp_path)
    assert first.acquire("a", 0)
    assert not second.acquire("a", 0)
    assert second.acquire("b", 0)  # other names stay free
    first.release("a")
    assert second.acquire("a", 0)
    second.release("a")
    second.release("b")


def test_a_forked_child_does_not_inherit_the_parents_locks(tmp_path: Path) -> None:
    locks = FolderLocks(tmp_path)
    assert locks.acquire("a", 0)
    try:
        assert in_forked_child(lambda: locks.acquire("a", 0)) == "False"
        assert in_forked_child(lambda: locks.acquire("b", 0)) == "True"
    finally:
        locks.release("a")
    assert in_forked_child(lambda: locks.acquire("a", 0)) == "True"


def test_a_killed_holder_frees_its_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from metricache._flock import FolderLocks
                locks = FolderLocks(Path({str(tmp_path)!r}))
                assert locks.acquire("a", 0)
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        locks = FolderLocks(tmp_path)
        assert not locks.acquire("a", 0)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert locks.acquire("a", 5)
        locks.release("a")
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_acquire_waits_up_to_its_bound(tmp_path: Path) -> None:
    first, second = FolderLocks(tmp_path), FolderLocks(tmp_path)
    assert first.acquire("a", 0)
    assert not second.acquire("a", 0.05)
    first.release("a")
    assert second.acquire("a", 0.05)
    second.release("a")


def test_a_forked_child_can_compute_what_a_parent_thread_held(tmp_path: Path) -> None:
    locks = LocalLocks(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with locks.hold("a", timeout=10):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    threading.Timer(0.3, release.set).start()

    def child_computes() -> str:
        with locks.hold("a", timeout=10):  # waits for the parent's process lock, then gets it
            return "computed"

    try:
        assert in_forked_child(child_computes) == "computed"
    finally:
        release.set()
        holder.join(10)


def test_per_name_lock_files_where_ofd_locks_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flock, "_OFD", False)
    first, second = FolderLocks(tmp_path), FolderLocks(tmp_path)
    assert first.acquire("a", 0)
    assert not second.acquire("a", 0)
    assert second.acquire("b", 0)
    first.release("a")
    assert second.acquire("a", 0.05)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.lock", "b.lock"]
