"""Single-flight, dependencies, lock timeouts and cycles across real threads and processes."""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import (
    DatedCacheManager,
    LockTimeoutError,
    MetricCycleError,
    NpyStorageInterface,
    NpzStorageInterface,
)
from metricache._locking import LOCK_DIR, LocalLocks, LockProvider, ThreadLocks

from . import _workers
from ._workers import PATIENCE, calls, manager, touch

#: The safety properties hold in both homes: one file per entry, and packed.
pytestmark = pytest.mark.usefixtures("home")

SPAWN = multiprocessing.get_context("spawn")

Result = tuple[int, str, Any]


class Processes:
    """Spawned worker processes that report ``(pid, status, payload)`` on one queue."""

    def __init__(self, work: Path) -> None:
        self.work = work  # the folder every worker shares
        self.results: Any = SPAWN.Queue()
        self.procs: list[Any] = []

    def ask(
        self, scenario: str, name: str, barrier: Any = None, lock_timeout: float | None = None
    ) -> Any:
        """Start a process that gets *name* of *scenario* (see ``_workers.ask``)."""
        args = (str(self.work), scenario, name, self.results, barrier, lock_timeout)
        proc = SPAWN.Process(target=_workers.ask, args=args, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def collect(self, n: int) -> list[Result]:
        """Wait for *n* results; fail on a hang or on workers that died without one."""
        found: list[Result] = []
        deadline = time.monotonic() + 2 * PATIENCE
        while len(found) < n:
            assert time.monotonic() < deadline, f"only {len(found)} of {n} results: a hang"
            everyone_exited = not any(p.is_alive() for p in self.procs)
            try:
                found.append(self.results.get(timeout=1 if everyone_exited else 0.1))
            except queue.Empty:
                # A worker that crashed (its traceback is on stderr) never reports.
                exits = [p.exitcode for p in self.procs]
                assert not everyone_exited, f"{len(found)} of {n} results; exit codes {exits}"
        return found

    def close(self) -> None:
        """Stop any worker still running (only after a failure) and reap them all."""
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
            proc.join(PATIENCE)
        self.results.close()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The shared folder: ``cache/`` for the manager, ``signals/`` for the workers."""
    (tmp_path / "signals").mkdir()
    return tmp_path


@pytest.fixture
def processes(work: Path) -> Iterator[Processes]:
    """A pool-less set of spawned workers over *work*, cleaned up after the test."""
    procs = Processes(work)
    yield procs
    procs.close()


def run_threads(targets: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    """Run each target in its own thread; return ``("ok", value)`` or ``("error", exc)``."""
    results: list[tuple[str, Any]] = [("missing", None)] * len(targets)

    def run(i: int) -> None:
        try:
            results[i] = ("ok", targets[i]())
        except Exception as err:  # noqa: BLE001 - handed to the test, which asserts on it
            results[i] = ("error", err)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(targets))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 2 * PATIENCE
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    return results


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll *condition* until true; fail after the patience."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.002)


def waiters(work: Path) -> list[Path]:
    """The wait records of threads and processes blocked on a metric's lock."""
    return list((work / "cache" / LOCK_DIR).glob("*.wait"))


def values_of(results: list[Any]) -> list[Any]:
    """The values of successful results; fail on any error."""
    assert all(r[-2] == "ok" for r in results), results
    return [r[-1] for r in results]


def assert_all_equal(values: list[Any]) -> None:
    """Every value equals the first (arrays compared element-wise)."""
    for value in values[1:]:
        np.testing.assert_array_equal(value, values[0])


# -- single-flight ---------------------------------------------------------------------


def test_eight_processes_compute_a_missing_metric_once(work: Path, processes: Processes) -> None:
    barrier = SPAWN.Barrier(8)
    for _ in range(8):
        processes.ask("slow", "slow", barrier)
    values = values_of(processes.collect(8))
    assert len(calls(work, "slow")) == 1
    assert_all_equal(values)


@pytest.mark.parametrize("shared", [True, False], ids=["one-manager", "manager-per-thread"])
def test_eight_threads_compute_a_missing_metric_once(work: Path, shared: bool) -> None:
    barrier = threading.Barrier(8)
    one = manager(work, "slow")

    def ask() -> Any:
        CM = one if shared else manager(work, "slow")
        barrier.wait(PATIENCE)
        return CM.get("slow")

    values = values_of(run_threads([ask] * 8))
    assert len(calls(work, "slow")) == 1
    assert_all_equal(values)


# -- different metrics do not wait for each other --------------------------------------


def test_different_metrics_compute_concurrently_in_processes(
    work: Path, processes: Processes
) -> None:
    # x finishes only after y started and y only after x started: serialised, both time out.
    processes.ask("pair", "x")
    processes.ask("pair", "y")
    values_of(processes.collect(2))


def test_different_metrics_compute_concurrently_in_threads(work: Path) -> None:
    CM = DatedCacheManager(NpzStorageInterface(work / "cache"), verbose=False)
    started = {"x": threading.Event(), "y": threading.Event()}

    def meet(me: str, other: str) -> int:
        started[me].set()
        if not started[other].wait(PATIENCE):
            raise TimeoutError(f"{other} never started while {me} was computing")
        return 1

    CM.set_functions_dict({"x": lambda: meet("x", "y"), "y": lambda: meet("y", "x")})
    assert values_of(run_threads([lambda: CM.get("x"), lambda: CM.get("y")])) == [1, 1]


# -- metrics that use other metrics ----------------------------------------------------

ENTRY_POINTS = ["c", "b", "a", "c"]


def check_chain(work: Path, values: list[Any], asked: list[str]) -> None:
    """Each of a, b, c ran once, and every asker got the one shared value of its metric."""
    assert [len(calls(work, name)) for name in "abc"] == [1, 1, 1]
    full = max(values, key=len)  # c's value extends b's, which extends a's
    for name, value in zip(asked, values, strict=True):
        np.testing.assert_array_equal(value, full[: 3 * (ord(name) - ord("a") + 1)])


def test_nested_metrics_do_not_deadlock_in_processes(work: Path, processes: Processes) -> None:
    barrier = SPAWN.Barrier(len(ENTRY_POINTS))
    pids = [processes.ask("chain", name, barrier).pid for name in ENTRY_POINTS]
    by_pid = {pid: value for pid, _, value in processes.collect(len(ENTRY_POINTS))}
    check_chain(work, [by_pid[pid] for pid in pids], ENTRY_POINTS)


def test_nested_metrics_do_not_deadlock_in_threads(work: Path) -> None:
    CM = manager(work, "chain")
    barrier = threading.Barrier(len(ENTRY_POINTS))

    def asker(name: str) -> Callable[[], Any]:
        def ask() -> Any:
            barrier.wait(PATIENCE)
            return CM.get(name)

        return ask

    values = values_of(run_threads([asker(name) for name in ENTRY_POINTS]))
    check_chain(work, values, ENTRY_POINTS)


# -- holders that die or take long -----------------------------------------------------


def test_holder_killed_while_computing_does_not_block_the_next(
    work: Path, processes: Processes
) -> None:
    holder = processes.ask("stuck", "stuck")
    wait_until((work / "signals" / "stuck-started").exists, "the holder computes")
    waiter = processes.ask("stuck", "stuck")
    wait_until(lambda: bool(waiters(work)), "the second process waits for the lock")
    holder.kill()  # SIGKILL, inside the metric function, holding the lock
    holder.join(PATIENCE)
    assert holder.exitcode == -signal.SIGKILL
    [(pid, status, value)] = processes.collect(1)
    assert (pid, status) == (waiter.pid, "ok")
    assert value[0] == waiter.pid  # it computed the value itself
    assert len(calls(work, "stuck")) == 2


def test_lock_timeout_gives_up_on_a_long_holder(work: Path, processes: Processes) -> None:
    processes.ask("gated", "gated")
    wait_until((work / "signals" / "gated-started").exists, "the holder computes")
    impatient = manager(work, "gated", lock_timeout=0.5)
    with pytest.raises(LockTimeoutError, match="'gated'") as caught:
        impatient.get("gated")
    assert isinstance(caught.value, TimeoutError)
    # The same across processes, reported from a worker with its own manager.
    processes.ask("gated", "gated", lock_timeout=0.5)
    [(_, status, err)] = processes.collect(1)
    assert status == "error" and isinstance(err, LockTimeoutError), err
    assert "'gated'" in str(err)
    assert len(calls(work, "gated")) == 1


def test_default_waits_for_the_holder_and_loads_its_value(
    work: Path, processes: Processes
) -> None:
    holder = processes.ask("gated", "gated")
    wait_until((work / "signals" / "gated-started").exists, "the holder computes")
    waiter = processes.ask("gated", "gated")
    wait_until(lambda: bool(waiters(work)), "the second process waits for the lock")
    touch(work / "signals" / "open")
    by_pid = {pid: (status, value) for pid, status, value in processes.collect(2)}
    assert by_pid[holder.pid][0] == by_pid[waiter.pid][0] == "ok"
    np.testing.assert_array_equal(by_pid[waiter.pid][1], by_pid[holder.pid][1])
    assert by_pid[waiter.pid][1][0] == holder.pid
    assert len(calls(work, "gated")) == 1


def test_lock_timeout_and_waiting_in_threads(work: Path) -> None:
    CM = manager(work, "gated")
    holder = threading.Thread(target=CM.get, args=("gated",), daemon=True)
    holder.start()
    got: list[Any] = []
    patient = threading.Thread(target=lambda: got.append(CM.get("gated")), daemon=True)
    try:
        wait_until((work / "signals" / "gated-started").exists, "the holder computes")
        with pytest.raises(LockTimeoutError, match="'gated'"):
            manager(work, "gated", lock_timeout=0.5).get("gated")
        # Without a timeout, a waiter sharing the manager waits and gets the holder's value.
        patient.start()
        wait_until(lambda: bool(waiters(work)), "the second thread waits for the lock")
    finally:
        touch(work / "signals" / "open")
        holder.join(PATIENCE)
    patient.join(PATIENCE)
    assert len(got) == 1
    np.testing.assert_array_equal(got[0], CM.cache["gated"])
    assert len(calls(work, "gated")) == 1


# -- cycles ----------------------------------------------------------------------------


def test_cycle_in_one_thread_raises_at_once_and_releases_its_locks(tmp_path: Path) -> None:
    CM = DatedCacheManager(NpzStorageInterface(tmp_path / "cache"), verbose=False)
    CM.set_functions_dict({"a": lambda: CM.get("b"), "b": lambda: CM.get("a")})
    with pytest.raises(MetricCycleError) as caught:
        CM.get("a")
    assert "a -> b -> a" in str(caught.value)
    assert caught.value.path == ("a", "b", "a")
    assert not CM.exists("a") and not CM.exists("b")
    # Nothing stays locked: fixed definitions compute at once.
    CM.set_functions_dict({"a": lambda: 1, "b": lambda: CM.get("a") + 1})
    assert CM.get("b") == 2


def check_cycle_errors(outcomes: dict[str, tuple[str, Any]]) -> None:
    """Each asker failed with a cycle error showing the path from the metric it asked."""
    for name, other in (("a", "b"), ("b", "a")):
        status, err = outcomes[name]
        assert status == "error" and isinstance(err, MetricCycleError), (name, err)
        assert f"{name} -> {other} -> {name}" in str(err)


def test_cycle_across_processes_raises_in_both(work: Path, processes: Processes) -> None:
    # a's function waits until b's started (and vice versa): each holds its own lock.
    pids = {processes.ask("cycle", name).pid: name for name in "ab"}
    outcomes = {pids[pid]: (status, value) for pid, status, value in processes.collect(2)}
    check_cycle_errors(outcomes)


def test_cycle_across_threads_raises_in_both(work: Path) -> None:
    CM = manager(work, "cycle")
    a, b = run_threads([lambda: CM.get("a"), lambda: CM.get("b")])
    check_cycle_errors({"a": a, "b": b})


def test_cycle_across_threads_with_a_manager_each(work: Path) -> None:
    a, b = run_threads([lambda n=n: manager(work, "cycle").get(n) for n in "ab"])
    check_cycle_errors({"a": a, "b": b})


def test_cycle_through_two_managers_of_one_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two spellings of one folder: the locks are the same files, so must the stack be.
    monkeypatch.chdir(tmp_path)
    CM1 = DatedCacheManager(NpzStorageInterface("cache"), verbose=False)
    CM2 = DatedCacheManager(NpzStorageInterface(tmp_path / "cache"), verbose=False)
    CM1.set_functions_dict({"a": lambda: CM2.get("b")})
    CM2.set_functions_dict({"b": lambda: CM1.get("a")})
    [(status, err)] = run_threads([lambda: CM1.get("a")])
    assert status == "error" and isinstance(err, MetricCycleError), err
    assert "a -> b -> a" in str(err)


# -- the hot path ----------------------------------------------------------------------


class CountingLocks:
    """A lock provider (the narrow protocol) that records every name it is asked to hold."""

    def __init__(self, inner: LockProvider) -> None:
        self.inner, self.held, self.timeouts = inner, [], []  # type: ignore[var-annotated]

    def hold(self, name: str, timeout: float | None = None) -> AbstractContextManager[None]:
        self.held.append(name)
        self.timeouts.append(timeout)
        return self.inner.hold(name, timeout)


def test_memory_hit_takes_no_lock(tmp_path: Path) -> None:
    locks = CountingLocks(LocalLocks(tmp_path / "cache"))
    CM = DatedCacheManager(NpzStorageInterface(tmp_path / "cache"), verbose=False, locks=locks)

    @CM.collect
    def answer() -> np.ndarray:
        return np.arange(3)

    CM.get("answer")
    assert locks.held == ["answer"]  # the miss computes under the lock
    for hit in (lambda: CM.get("answer"), lambda: CM["answer"], CM.answer):
        np.testing.assert_array_equal(hit(), np.arange(3))
    CM.compute("answer")
    CM.load("answer")
    assert locks.held == ["answer"]


def test_a_custom_lock_provider_serialises_threads_and_gets_the_timeout(tmp_path: Path) -> None:
    locks = CountingLocks(ThreadLocks())
    CM = DatedCacheManager(
        NpyStorageInterface(tmp_path), verbose=False, locks=locks, lock_timeout=20
    )
    ran: list[int] = []

    def slow() -> int:
        ran.append(1)
        time.sleep(0.2)
        return 5

    CM.set_functions_dict({"slow": slow})
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda _: CM["slow"], range(8))) == [5] * 8
    assert ran == [1] and set(locks.timeouts) == {20}
    assert CM.locks is locks
