"""Per-name locks and entry infos live only as long as a name is in use or held.

A thread lock exists while some thread holds or waits for its name, and is
dropped by the last one out, with never two locks for one name at once; a
KeyboardInterrupt while waiting or holding leaves nothing behind. The entry
infos of names memory no longer holds are dropped with them, so computing
10,000 names under a small ``max_memory`` keeps O(held) bookkeeping.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import DatedCacheManager, NpyStorageInterface
from metricache._locking import LocalLocks, ThreadLocks


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads every microsecond, so races between them really happen."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def hammer(locks: LocalLocks, names: list[str], threads: int, rounds: int) -> Counter[str]:
    """Threads take random names; return how many ran inside each (asserting one at a time)."""
    inside: Counter[str] = Counter()
    done: Counter[str] = Counter()
    errors: list[BaseException] = []
    count_guard = threading.Lock()

    def work(seed: int) -> None:
        chooser = random.Random(seed)
        try:
            for _ in range(rounds):
                name = chooser.choice(names)
                with locks.hold(name, timeout=60):
                    with count_guard:
                        inside[name] += 1
                        assert inside[name] == 1, f"two threads inside {name!r}"
                    time.sleep(0 if chooser.random() < 0.7 else 0.0005)
                    with count_guard:
                        inside[name] -= 1
                        done[name] += 1
        except BaseException as err:  # noqa: BLE001 - reported to the test thread
            errors.append(err)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == []
    return done


@pytest.mark.parametrize("kind", ["threads", "folder"])
def test_many_threads_on_few_names_one_lock_each_then_none(
    kind: str, tmp_path: Path, fast_switching: None
) -> None:
    locks = ThreadLocks() if kind == "threads" else LocalLocks(tmp_path)
    names = ["a", "b", "c"]
    done = hammer(locks, names, threads=12, rounds=150)
    assert sum(done.values()) == 12 * 150
    assert locks._locks == {} and locks._users == {}
    # Held and waited for again afterwards: a new lock, dropped again.
    with locks.hold("a", timeout=5):
        assert list(locks._locks) == ["a"]
    assert locks._locks == {}


def test_a_name_in_use_keeps_its_one_lock(tmp_path: Path) -> None:
    locks = LocalLocks(tmp_path)
    entered, release = threading.Event(), threading.Event()

    def holder() -> None:
        with locks.hold("m"):
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    assert entered.wait(30)
    first = locks._locks["m"]
    waiter_done = threading.Event()

    def waiter() -> None:
        with locks.hold("m", timeout=30):
            # The waiter got the very lock the holder held: never a second one.
            assert locks._locks["m"] is first
        waiter_done.set()

    second = threading.Thread(target=waiter)
    second.start()
    while len(locks._users.get("m", ())) < 2:
        time.sleep(0.001)
    release.set()
    thread.join(30)
    second.join(30)
    assert waiter_done.is_set() and locks._locks == {} and locks._users == {}


@pytest.mark.timeout(120)
def test_ctrl_c_while_waiting_or_holding_leaves_nothing(tmp_path: Path) -> None:
    """Real SIGINTs at random moments of the main thread's holds, a rival always near."""
    locks = LocalLocks(tmp_path)
    stop = threading.Event()
    inside = [False]
    interrupts = [0]

    def on_sigint(signum: int, frame: Any) -> None:
        if inside[0]:
            inside[0] = False
            raise KeyboardInterrupt

    def rival() -> None:
        while not stop.is_set():
            with locks.hold("m", timeout=30):
                time.sleep(0.002)
            time.sleep(0.0005)

    def firing() -> None:
        for _ in range(80):
            time.sleep(random.uniform(0.0005, 0.01))
            os.kill(os.getpid(), signal.SIGINT)
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    threads = [threading.Thread(target=rival), threading.Thread(target=firing)]
    try:
        for thread in threads:
            thread.start()
        while not stop.is_set():
            try:
                inside[0] = True
                with locks.hold("m", timeout=30):
                    time.sleep(0.001)
                inside[0] = False
            except KeyboardInterrupt:
                interrupts[0] += 1
    finally:
        inside[0] = False
        stop.set()
        for thread in threads:
            thread.join(30)
        signal.signal(signal.SIGINT, previous)
    assert interrupts[0] > 20  # they really landed inside hold()
    assert locks._locks == {} and locks._users == {} and locks._holders == {}
    assert locks._waiting == {} and locks._wait_fds == {}
    assert not list((tmp_path / ".metricache" / "locks").glob("*.wait"))
    with locks.hold("m", timeout=5):  # free here, and for another process's view too
        assert LocalLocks(tmp_path)._locks == {}


def _held(CM: DatedCacheManager) -> set[str]:
    return set(CM._memory.values) | set(CM._memory._makers)


@pytest.mark.parametrize(("bound", "size"), [("8KB", 100), ("100B", 1000)])
def test_ten_thousand_names_under_a_small_bound_keep_o_held_bookkeeping(
    bound: str, size: int, tmp_path: Path
) -> None:
    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False, max_memory=bound)

    @CM.collect(params_list=list(range(10_000)))
    def ramp(i: int) -> np.ndarray[Any, Any]:
        return np.arange(size) + i

    for i in range(10_000):
        assert CM.ramp(i)[0] == i
    held = _held(CM)
    assert len(held) <= 10 and (bound == "100B") == (not held)  # 100 B holds nothing
    assert set(CM._infos) <= held
    assert len(CM._memory.budget._sizes) == len(held)  # type: ignore[union-attr]
    locks = CM.locks
    assert getattr(locks, "_locks", {}) == {} and getattr(locks, "_users", {}) == {}
    # Loading evicted names back keeps it bounded, and infos are read again when asked.
    for i in range(0, 10_000, 97):
        assert CM.ramp(i)[0] == i
    assert set(CM._infos) <= _held(CM) and len(_held(CM)) <= 10
    assert CM.info(CM.ramp.metric_name(5)).name == "ramp_5"


def test_threads_computing_distinct_names_leave_no_locks(tmp_path: Path) -> None:
    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False, max_memory="4KB")
    CM.set_functions_dict({f"n{i}": functools.partial(np.full, 50, i) for i in range(2000)})

    def work(start: int) -> None:
        for i in range(start, 2000, 4):
            assert CM[f"n{i}"][0] == i

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert CM.locks._locks == {}  # type: ignore[attr-defined]
    assert set(CM._infos) <= _held(CM)


def test_a_memory_hit_takes_no_lock(tmp_path: Path) -> None:
    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: np.arange(3)})
    CM["m"]
    entered: list[str] = []
    hold = CM.locks.hold

    def counting(name: str, timeout: float | None = None) -> Any:
        entered.append(name)
        return hold(name, timeout)

    CM.locks.hold = counting  # type: ignore[method-assign]
    for _ in range(100):
        CM["m"]
        CM.get("m")
    assert entered == []
