"""Code that the crash and concurrency tests run in other processes.

Importable as ``tests._workers`` (targets for multiprocessing's spawn context) and
runnable as a script, for the crash tests:

- ``python _workers.py writer KIND FOLDER LOG FIRST_GEN SEED [COUNT]`` reads ``go`` from
  stdin, then saves random entries until it is killed (or COUNT times);
- ``python _workers.py crash KIND FOLDER GEN STEP`` saves generation GEN of the first
  name and SIGKILLs itself at STEP of the commit protocol (see ``CRASH_STEPS``).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from metricache import (
    DatedCacheManager,
    MetricacheError,
    NpyStorageInterface,
    NpzStorageInterface,
)
from metricache._hashio import HashingWriter
from metricache.storage import FileStorageInterface

#: Longest any worker waits for a signal, a barrier or a lock: a bug fails, never hangs.
PATIENCE = 30.0

# -- the crash test's writer -----------------------------------------------------------

STORAGES: dict[str, type[FileStorageInterface]] = {
    "npz": NpzStorageInterface,
    "npy": NpyStorageInterface,
}
#: Entry names the writer cycles through (at random).
NAMES = ("alpha", "beta", "gamma", "delta")
# int64 elements: from 8 bytes to about 4 MB, so kills land in small and big writes.
_LENGTHS = (1, 3, 60, 5_000, 150_000, 500_000)


def value_length(gen: int) -> int:
    """How many elements the value of generation *gen* has."""
    return _LENGTHS[gen % len(_LENGTHS)] + gen % 7


def make_value(kind: str, gen: int) -> Any:
    """The value written at generation *gen*: every element and its length derive from it."""
    fill = np.full(value_length(gen), gen, dtype=np.int64)
    if kind == "npz":
        # A dict exercises npz files with several members.
        return {"gen": np.int64(gen), "fill": fill}
    return fill


def generation_of(kind: str, value: Any) -> int:
    """The generation a loaded value was written at; AssertionError if it is not whole."""
    if kind == "npz":
        assert isinstance(value, dict), f"expected a dict, loaded {type(value)}"
        assert sorted(value) == ["fill", "gen"], f"loaded keys {sorted(value)}"
        gen, fill = int(value["gen"]), value["fill"]
    else:
        fill = value
        assert fill.size, "loaded an empty array"
        gen = int(fill[0])
    assert isinstance(fill, np.ndarray), f"loaded {type(fill)}"
    assert fill.dtype == np.int64, f"loaded dtype {fill.dtype}"
    assert fill.shape == (value_length(gen),), f"generation {gen} with shape {fill.shape}"
    assert (fill == gen).all(), f"generation {gen} holds other numbers"
    return gen


def writer(kind: str, folder: str, log: str, first_gen: int, seed: int, count: int) -> None:
    """Save random entries forever (or *count* times), logging each start and end.

    Log lines are ``S <gen> <name>`` before a write and ``D <gen> <name>`` once it
    returned; each is one unbuffered append, in the kernel before the next step.
    """
    warnings.simplefilter("error")  # a CacheWriteWarning must kill the writer, visibly
    # Started ahead of time, the writer touches nothing until the test says go.
    if sys.stdin.readline() != "go\n":
        return
    rng = random.Random(seed)
    CM = DatedCacheManager(STORAGES[kind](folder), verbose=False)
    current = {"gen": first_gen}
    CM.set_functions_dict({name: lambda: make_value(kind, current["gen"]) for name in NAMES})
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    for gen in range(first_gen, first_gen + count):
        name = rng.choice(NAMES)
        current["gen"] = gen
        os.write(fd, f"S {gen} {name}\n".encode())
        # Both ways a manager writes: an explicit save, and a recompute through get.
        if gen % 2:
            CM.save(name, force=True)
        else:
            CM.get(name, use_stored=False)
        os.write(fd, f"D {gen} {name}\n".encode())
    os.close(fd)


# -- concurrency scenarios: metric definitions shared by threads and processes ---------


def touch(path: Path) -> None:
    """Create *path* (a signal another worker polls for)."""
    path.touch()


def wait_for(path: Path, timeout: float = PATIENCE) -> None:
    """Poll until *path* exists; TimeoutError after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not appear within {timeout:g} s")
        time.sleep(0.002)


def record_call(work: Path, name: str) -> int:
    """Append one line to *name*'s call log; return how many calls it now holds."""
    log = work / f"calls-{name}.txt"
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {threading.get_ident()}\n")
    return len(calls(work, name))


def calls(work: Path, name: str) -> list[str]:
    """The lines of *name*'s call log (one per run of its function)."""
    try:
        return (work / f"calls-{name}.txt").read_text().splitlines()
    except FileNotFoundError:
        return []


def _stamp() -> np.ndarray:
    """A value no two computations share: pid, thread and a random number."""
    return np.array([os.getpid(), threading.get_ident(), random.getrandbits(62)], dtype=np.int64)


def define_slow(CM: DatedCacheManager, work: Path) -> None:
    """``slow``: logs its call and takes 0.3 s, long enough for every asker to pile up."""

    def slow() -> np.ndarray:
        record_call(work, "slow")
        time.sleep(0.3)
        return _stamp()

    CM.set_functions_dict({"slow": slow})


def define_chain(CM: DatedCacheManager, work: Path) -> None:
    """``c`` needs ``b`` needs ``a``, each through the manager."""

    @CM.collect
    def a() -> np.ndarray:
        record_call(work, "a")
        time.sleep(0.05)
        return _stamp()

    @CM.collect
    def b() -> np.ndarray:
        record_call(work, "b")
        return np.concatenate([CM.a(), _stamp()])

    @CM.collect
    def c() -> np.ndarray:
        record_call(work, "c")
        return np.concatenate([CM.b(), _stamp()])


def define_pair(CM: DatedCacheManager, work: Path) -> None:
    """``x`` and ``y``: each finishes only once the other has started."""
    signals = work / "signals"

    def meet(me: str, other: str) -> np.ndarray:
        touch(signals / f"{me}-started")
        wait_for(signals / f"{other}-started")
        return _stamp()

    CM.set_functions_dict({"x": lambda: meet("x", "y"), "y": lambda: meet("y", "x")})


def define_stuck(CM: DatedCacheManager, work: Path) -> None:
    """``stuck``: its first run hangs (until killed); later runs return at once."""
    signals = work / "signals"

    def stuck() -> np.ndarray:
        if record_call(work, "stuck") == 1:
            touch(signals / "stuck-started")
            wait_for(signals / "never")
        return _stamp()

    CM.set_functions_dict({"stuck": stuck})


def define_gated(CM: DatedCacheManager, work: Path) -> None:
    """``gated``: computes until the test creates the ``open`` signal."""
    signals = work / "signals"

    def gated() -> np.ndarray:
        record_call(work, "gated")
        touch(signals / "gated-started")
        wait_for(signals / "open")
        return _stamp()

    CM.set_functions_dict({"gated": gated})


def define_cycle(CM: DatedCacheManager, work: Path) -> None:
    """``a`` needs ``b`` needs ``a``; each first waits until both are computing."""
    signals = work / "signals"

    @CM.collect
    def a() -> Any:
        touch(signals / "a-in")
        wait_for(signals / "b-in")
        return CM.b()

    @CM.collect
    def b() -> Any:
        touch(signals / "b-in")
        wait_for(signals / "a-in")
        return CM.a()


SCENARIOS: dict[str, Callable[[DatedCacheManager, Path], None]] = {
    "slow": define_slow,
    "chain": define_chain,
    "pair": define_pair,
    "stuck": define_stuck,
    "gated": define_gated,
    "cycle": define_cycle,
}


def manager(work: Path, scenario: str, lock_timeout: float | None = None) -> DatedCacheManager:
    """A fresh manager over ``work/cache`` with *scenario*'s metrics defined."""
    CM = DatedCacheManager(
        NpzStorageInterface(work / "cache"), verbose=False, lock_timeout=lock_timeout
    )
    SCENARIOS[scenario](CM, work)
    return CM


def ask(
    work: str,
    scenario: str,
    name: str,
    results: Any,
    barrier: Any = None,
    lock_timeout: float | None = None,
) -> None:
    """Process target: get *name* and put ``(pid, "ok" | "error", value or error)`` in *results*.

    Expected failures (metricache errors, timeouts) are reported; anything else
    kills the process with a traceback, which the test sees as a missing result.
    """
    warnings.simplefilter("error")
    CM = manager(Path(work), scenario, lock_timeout)
    if barrier is not None:
        barrier.wait(timeout=PATIENCE)
    try:
        value = CM.get(name)
    except (MetricacheError, TimeoutError) as err:
        results.put((os.getpid(), "error", err))
    else:
        results.put((os.getpid(), "ok", value))


#: Where ``crash`` kills itself: halfway through writing the data temp file; with both
#: temp files written; after the record's rename; after the data's rename.
CRASH_STEPS = ("staging", "staged", "record-renamed", "data-renamed")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def crash(kind: str, folder: str, gen: int, step: str) -> None:
    """Save generation *gen* of ``NAMES[0]``, dying by SIGKILL at *step* of the commit."""
    if step == "staging":

        def half_then_die(self: HashingWriter, data: Any) -> int:
            view = memoryview(data).cast("B")
            self._raw.write(view[: max(1, view.nbytes // 2)])
            self._raw.flush()
            _die()
            raise AssertionError("unreachable")

        HashingWriter.write = half_then_die  # type: ignore[method-assign]
    # The store publishes the record and then the data, each with one os.replace.
    replace, renames = os.replace, []

    def dying_replace(src: Any, dst: Any) -> None:
        if (step, len(renames)) in (("staged", 0), ("record-renamed", 1)):
            _die()
        replace(src, dst)
        renames.append(dst)
        if step == "data-renamed" and len(renames) == 2:
            _die()

    os.replace = dying_replace
    CM = DatedCacheManager(STORAGES[kind](folder), verbose=False)
    CM.set_functions_dict({NAMES[0]: lambda: make_value(kind, gen)})
    CM.save(NAMES[0], force=True)
    raise AssertionError(f"the save returned without reaching step {step!r}")


def _main(argv: list[str]) -> None:
    command, kind, folder, *rest = argv
    if command == "writer":
        log, first_gen, seed, *count = rest
        limit = int(count[0]) if count else sys.maxsize - int(first_gen)
        writer(kind, folder, log, int(first_gen), int(seed), limit)
    elif command == "crash":
        gen, step = rest
        crash(kind, folder, int(gen), step)
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    _main(sys.argv[1:])
