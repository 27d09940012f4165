"""(d) Many small parameterized entries: fill and cold read; (e) ``get_all`` over them."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    STORAGES,
    Config,
    DiskcacheMemo,
    Scratch,
    disk_usage,
    joblib_cached,
    read_tree,
    remove,
    save_atomic,
)
from harness import Contender, Row, Table, Target, fmt_bytes, fmt_time, measure

from metricache import ParameterizedDatedCacheManager

FILL_BASELINE = "np.save per entry (temp+os.replace)"
READ_BASELINE = "np.load per entry"
WARM_BASELINE = "lru_cache per entry"


#: How often ``small`` ran: fills must compute every entry, reads none.
COMPUTES = [0]


def small(i: int) -> np.ndarray:
    """The metric: 10 float64 values depending on its parameter (a trivial compute)."""
    COMPUTES[0] += 1
    return np.arange(10.0) + i


def _expect_computes(before: int, expected: int, what: str) -> None:
    """Fail loudly if a scenario computed more or less than it claims to measure."""
    if COMPUTES[0] - before != expected:
        raise RuntimeError(f"{what}: {COMPUTES[0] - before} computes, expected {expected}")


@dataclass
class Filler:
    """One contender's fill: a new folder per round; the last one is kept for reading."""

    scratch: Scratch
    prefix: str
    entries: int
    folder: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder = self.scratch.folder(self.prefix)

    def renew(self) -> Path:
        remove(self.folder)
        self.folder = self.scratch.folder(self.prefix)
        # Flush the previous round's writes and deletions (untimed), so that no
        # contender pays for another's writeback (or, with a discard mount, trims).
        os.sync()
        return self.folder


def manager_over(storage: Callable[[Path], Any], folder: Path, entries: int) -> Any:
    """A fresh parameterized manager with ``small`` declared for every parameter."""
    manager = ParameterizedDatedCacheManager(storage(folder), verbose=False)
    manager.collect(small, params_list=[[i] for i in range(entries)])
    return manager


def _loop(call: Callable[[int], Any], entries: int) -> None:
    for i in range(entries):
        call(i)


# -- contenders ----------------------------------------------------------------------


def _numpy_fill(filler: Filler, atomic: bool) -> Contender:
    def run() -> None:
        folder = filler.folder
        for i in range(filler.entries):
            path = folder / f"small_{i}.npy"
            if atomic:
                save_atomic(path, small(i))
            else:
                np.save(path, small(i))

    name = FILL_BASELINE if atomic else "np.save per entry (in place)"
    return Contender(name, run, filler.renew, number=1)


class MetricacheRun:
    """Fill or read through a metricache manager built (untimed) in ``setup``."""

    def __init__(self, storage: Callable[[Path], Any], folder: Callable[[], Path], n: int) -> None:
        self.storage, self.folder, self.entries = storage, folder, n
        self.manager: Any = None

    def setup(self) -> None:
        self.manager = manager_over(self.storage, self.folder(), self.entries)

    def each(self) -> None:
        _loop(self.manager.small, self.entries)

    def get_all(self) -> None:
        self.manager.small.get_all()


class OtherCacheRun:
    """The same loop through joblib.Memory or diskcache, rebuilt (untimed) in ``setup``."""

    def __init__(self, kind: str, folder: Callable[[], Path], entries: int) -> None:
        self.kind, self.folder, self.entries = kind, folder, entries
        self.memo: DiskcacheMemo | None = None
        self.call: Callable[[int], Any] = small

    def setup(self) -> None:
        if self.kind == "joblib":
            self.call = joblib_cached(self.folder(), small)
            return
        if self.memo is not None:
            self.memo.close()
        self.memo = DiskcacheMemo(self.folder(), small)
        self.memo.reopen()
        self.call = self.memo.call

    def each(self) -> None:
        _loop(self.call, self.entries)

    def close(self) -> None:
        if self.memo is not None:
            self.memo.close()


# -- tables --------------------------------------------------------------------------


@dataclass
class Fills:
    """Every contender's filler, so the read tables reuse the filled folders."""

    numpy: Filler
    metricache: dict[str, Filler]
    others: dict[str, Filler]


def _cache_contenders(
    fills: Fills, entries: int, folder_of: Callable[[Filler], Callable[[], Path]]
) -> tuple[list[Contender], list[OtherCacheRun]]:
    """metricache (each storage), joblib and diskcache over their fillers' folders."""
    contenders = []
    for label, filler in fills.metricache.items():
        mc = MetricacheRun(STORAGES[label], folder_of(filler), entries)
        contenders.append(Contender(f"metricache {label}", mc.each, mc.setup, number=1))
    runs = [OtherCacheRun(kind, folder_of(f), entries) for kind, f in fills.others.items()]
    for other in runs:
        name = "joblib.Memory" if other.kind == "joblib" else "diskcache memoize"
        contenders.append(Contender(name, other.each, other.setup, number=1))
    return contenders, runs


def _current(filler: Filler) -> Callable[[], Path]:
    """The filler's folder as it is when called (the last fill's)."""
    return lambda: filler.folder


def _renewed(filler: Filler) -> Callable[[], Path]:
    return filler.renew


def fill_table(config: Config, scratch: Scratch) -> tuple[Table, Fills]:
    n = config.entries
    fills = Fills(
        Filler(scratch, "many-numpy", n),
        {label: Filler(scratch, f"many-{label.lower()}", n) for label in STORAGES},
        {kind: Filler(scratch, f"many-{kind}", n) for kind in ("joblib", "diskcache")},
    )
    in_place = Filler(scratch, "many-numpy-inplace", n)
    contenders = [_numpy_fill(fills.numpy, atomic=True), _numpy_fill(in_place, atomic=False)]
    caches, runs = _cache_contenders(fills, n, _renewed)
    contenders += caches
    before = COMPUTES[0]
    rows = measure(contenders, config.fill_rounds, warmup=False)
    _expect_computes(before, n * config.fill_rounds * len(contenders), "fill")
    for other in runs:
        other.close()
    folders = {
        FILL_BASELINE: fills.numpy.folder,
        "np.save per entry (in place)": in_place.folder,
        **{f"metricache {k}": f.folder for k, f in fills.metricache.items()},
        "joblib.Memory": fills.others["joblib"].folder,
        "diskcache memoize": fills.others["diskcache"].folder,
    }
    for row in rows:
        _per_entry(row, n)
        files, used = disk_usage(folders[row.name])
        row.extra = {"files": f"{files:,}", "disk usage": fmt_bytes(used)}
    table = Table(
        f"(d) fill: {n:,} parameterized entries of 10 float64 (first call computes + stores)",
        rows,
        FILL_BASELINE,
        unit_label="per entry",
        extra_columns=["files", "disk usage"],
        targets=[Target("metricache Npy", 2.0), Target("metricache Npy", 1.0, "joblib.Memory")],
        notes=[
            "one sample = filling a new empty folder (after an untimed os.sync()); "
            "manager + collect() built untimed",
            "disk usage = sum of st_blocks * 512 over every file (like du)",
        ],
    )
    return table, fills


def read_table(config: Config, fills: Fills) -> Table:
    n = config.entries
    for filler in [fills.numpy, *fills.metricache.values(), *fills.others.values()]:
        read_tree(filler.folder)
    baseline = functools.partial(_load_each, fills.numpy.folder, n)
    caches, runs = _cache_contenders(fills, n, _current)
    contenders = [Contender(READ_BASELINE, baseline, number=1), *caches]
    before = COMPUTES[0]
    rows = measure(contenders, config.read_rounds, warmup=False)
    _expect_computes(before, 0, "cold read")
    for other in runs:
        other.close()
    for row in rows:
        _per_entry(row, n)
    return Table(
        f"(d) cold read: {n:,} entries, each read once by a fresh manager",
        rows,
        READ_BASELINE,
        unit_label="per entry",
        targets=[Target("metricache Npy", 1.5), Target("metricache Npy", 1.0, "joblib.Memory")],
        notes=[
            "page cache warm; manager + collect() (declaring every parameter) built untimed",
        ],
    )


def get_all_tables(config: Config, fills: Fills) -> Iterator[Table]:
    n = config.entries
    cold_contenders = [
        Contender(READ_BASELINE, functools.partial(_load_each, fills.numpy.folder, n), number=1)
    ]
    lru = functools.lru_cache(maxsize=None)(small)
    _loop(lru, n)
    warm_contenders = [Contender(WARM_BASELINE, functools.partial(_loop, lru, n), number=1)]
    declare_times = {}
    for label, filler in fills.metricache.items():
        folder = _current(filler)
        cold = MetricacheRun(STORAGES[label], folder, n)
        cold_contenders.append(
            Contender(f"metricache {label}", cold.get_all, cold.setup, number=1)
        )
        start = time.perf_counter()
        warm = MetricacheRun(STORAGES[label], folder, n)
        warm.setup()
        declare_times[label] = time.perf_counter() - start
        warm.get_all()
        warm_contenders.append(Contender(f"metricache {label}", warm.get_all, number=1))
    declared = ", ".join(f"{k} {fmt_time(t)}" for k, t in declare_times.items())
    for kind, contenders, baseline in (
        ("cold (fresh manager, page cache warm)", cold_contenders, READ_BASELINE),
        ("warm (every value in memory)", warm_contenders, WARM_BASELINE),
    ):
        before = COMPUTES[0]
        rows = measure(contenders, config.read_rounds, warmup=False)
        _expect_computes(before, 0, "get_all")
        for row in rows:
            _per_entry(row, n)
        yield Table(
            f"(e) get_all over the {n:,} entries, {kind}",
            rows,
            baseline,
            unit_label="per entry",
            notes=[
                f"untimed setup per manager: new manager + collect() of {n:,} parameter "
                f"sets took {declared}",
                "joblib and diskcache have no get_all (nor a memory tier): see the cold read",
            ],
        )


def _load_each(folder: Path, entries: int) -> None:
    for i in range(entries):
        np.load(folder / f"small_{i}.npy")


def _per_entry(row: Row, entries: int) -> None:
    """Report per-entry times (a sample timed the whole loop)."""
    row.samples = [s / entries for s in row.samples]


def run(config: Config, scratch: Scratch) -> Iterator[Table]:
    table, fills = fill_table(config, scratch)
    yield table
    yield read_table(config, fills)
    yield from get_all_tables(config, fills)
