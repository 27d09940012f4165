"""(c) Miss: a trivial compute (the array already exists) plus storing the result."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from common import (
    CallCounter,
    Config,
    DiskcacheMemo,
    FreshManager,
    MiB,
    Scratch,
    array_of,
    joblib_cached,
    remove,
    save_atomic,
    savez_atomic,
    size_label,
    write_limit,
)
from harness import Contender, Row, Table, Target, measure

from metricache import FileStorageInterface, NpyStorageInterface, NpzStorageInterface

BASELINE = "np.save+os.replace"
FSYNC_BASELINE = "np.save+fsync+os.replace+fsync dir"
LIMIT = "limit: fallocate+os.write+os.replace"


def miss_limit(nbytes: int) -> float:
    """The issue's target for a default Npy miss, by size (1 MB / 8 MB and above)."""
    return 1.3 if nbytes < 4 * MiB else 1.1


class _Counted:
    """A contender whose every timed call must compute once: its own counter and function."""

    def __init__(self, arr: np.ndarray, name: str) -> None:
        self.counter = CallCounter()
        self.make = self.counter.wrap(arr, name)


def _numpy(
    label: str, target: Path, arr: np.ndarray, save: Callable[[Path, np.ndarray], None]
) -> tuple[Contender, _Counted]:
    """A raw numpy writer: the target file is removed (untimed) before each call."""
    counted = _Counted(arr, "miss")
    contender = Contender(
        label, lambda: save(target, counted.make()), functools.partial(remove, target)
    )
    return contender, counted


def _metricache(
    label: str, folder: Path, arr: np.ndarray, factory: Callable[[Path], FileStorageInterface]
) -> tuple[Contender, _Counted]:
    """A fresh manager whose entry was deleted (untimed) before each get()."""
    counted = _Counted(arr, "miss")
    fresh = FreshManager(lambda: factory(folder), "x", counted.make)

    def setup() -> None:
        fresh.manager.storage_interface.delete("x")
        fresh.setup()

    return Contender(label, fresh.get, setup), counted


def _joblib(folder: Path, arr: np.ndarray) -> tuple[Contender, _Counted]:
    """A new joblib.Memory before each call, its stored results removed (its code record kept)."""
    counted = _Counted(arr, "miss")
    state: dict[str, Callable[[], object]] = {}

    def setup() -> None:
        for code_file in folder.rglob("func_code.py"):
            for child in code_file.parent.iterdir():
                if child.is_dir():
                    remove(child)
        state["call"] = joblib_cached(folder, counted.make)

    return Contender("joblib.Memory", lambda: state["call"](), setup), counted


def _diskcache(folder: Path, arr: np.ndarray) -> tuple[Contender, _Counted, DiskcacheMemo]:
    """diskcache reopened and cleared before each call."""
    counted = _Counted(arr, "miss")
    memo = DiskcacheMemo(folder, counted.make)

    def setup() -> None:
        memo.reopen()
        assert memo.cache is not None
        memo.cache.clear()

    return Contender("diskcache memoize", lambda: memo.call(), setup), counted, memo


def run_size(config: Config, scratch: Scratch, nbytes: int, rounds: int) -> Table:
    arr = array_of(nbytes)
    durable_npy = functools.partial(NpyStorageInterface, durable=True)
    pairs = [
        _numpy(LIMIT, scratch.folder("miss-limit") / "x.npy", arr, write_limit),
        _numpy(BASELINE, scratch.folder("miss-numpy") / "x.npy", arr, save_atomic),
        _numpy(
            FSYNC_BASELINE,
            scratch.folder("miss-numpy-fsync") / "x.npy",
            arr,
            functools.partial(save_atomic, durable=True),
        ),
        _numpy("np.savez+os.replace", scratch.folder("miss-savez") / "x.npz", arr, savez_atomic),
        _metricache("metricache Npy", scratch.folder("miss-npy"), arr, NpyStorageInterface),
        _metricache("metricache Npy durable=True", scratch.folder("miss-npy-d"), arr, durable_npy),
        _metricache("metricache Npz", scratch.folder("miss-npz"), arr, NpzStorageInterface),
        _joblib(scratch.folder("miss-joblib"), arr),
    ]
    dc_contender, dc_counted, memo = _diskcache(scratch.folder("miss-diskcache"), arr)
    pairs.append((dc_contender, dc_counted))
    rows = measure([c for c, _ in pairs], rounds, min_time=config.min_time, max_number=100)
    memo.close()
    _check_computed(rows, [counted for _, counted in pairs])
    return Table(
        f"(c) miss: trivial compute + store, {size_label(nbytes)} float64 array",
        rows,
        BASELINE,
        targets=[
            Target("metricache Npy", miss_limit(nbytes)),
            Target("metricache Npy durable=True", 1.1, FSYNC_BASELINE),
        ],
        notes=[
            "every call writes a new file: the previous one is deleted (untimed) before it",
            "limit row: the .npy bytes written with os.write after posix_fallocate, renamed; "
            "no hash, no record, no lookup",
            "metricache rows: get() on a fresh manager; includes the failed lookup first",
        ],
    )


def _check_computed(rows: list[Row], counters: list[_Counted]) -> None:
    """Each timed call must have computed (else the scenario measured a hit)."""
    for row, counted in zip(rows, counters, strict=True):
        if counted.counter.calls != row.calls:
            raise RuntimeError(
                f"{row.name}: {counted.counter.calls} computes for {row.calls} misses"
            )


def run(config: Config, scratch: Scratch) -> Iterator[Table]:
    for nbytes, rounds in config.sizes:
        yield run_size(config, scratch, nbytes, rounds)
