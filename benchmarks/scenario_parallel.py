"""(p) Parallel grids: ``get_all`` on worker processes and Dask, and declaring big grids.

Side by side in one run: ``get_all(return_values=False)`` (each round fills a
fresh folder) with ``n_jobs=1``, ``n_jobs=2`` and a Dask ``LocalCluster`` (2
worker processes x 1 thread), against a plain loop computing the same function
without a cache, ``joblib.Parallel(n_jobs=2)`` over a ``joblib.Memory``-cached
function, and ``client.map`` / ``dask.bag`` without caching; over many small
entries, over big (8 MiB) entries, and over CPU-bound entries (>= 50 ms of pure
Python each) whose speedups are the issue's targets. Then the declaration of
100,000 parameter sets (time and tracemalloc peak) and the first lookups of
declared sets.
"""

from __future__ import annotations

import logging
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cloudpickle
import joblib
import numpy as np
from common import Config, MiB, Scratch, remove
from harness import Contender, Table, Target, fmt_bytes, fmt_time, measure

from metricache import DatedCacheManager, NpyStorageInterface

LOOP = "plain loop, no cache"
N1 = "metricache get_all, n_jobs=1"
N2 = "metricache get_all, n_jobs=2"
DASK = "metricache get_all, Dask 2x1"
JOBLIB = "joblib.Parallel(n_jobs=2) + Memory"
CLIENT_MAP = "dask client.map, no cache"
BAG = "dask.bag map, no cache"
#: Pure-Python iterations of one CPU-bound entry, calibrated to ~50 ms at start.
_BURN = [200_000]
#: Words of one big entry (8 MiB, or 1 MiB at --quick sizes).
_BIG = [MiB]


def small(i: int) -> np.ndarray:
    """A trivial metric: 10 float64 values."""
    return np.arange(10.0) + i


def big(i: int) -> np.ndarray:
    """A big metric: an array of ``_BIG[0]`` float64 values."""
    return np.full(_BIG[0], float(i))


def burn(i: int) -> np.ndarray:
    """A CPU-bound metric: ``_BURN[0]`` iterations of pure Python."""
    total = i
    for k in range(_BURN[0]):
        total = (total * 31 + k) & 0xFFFFFFFF
    return np.array([total])


def _calibrate_burn(seconds: float = 0.05) -> None:
    start = time.perf_counter()
    burn(0)
    took = time.perf_counter() - start
    _BURN[0] = max(1000, int(_BURN[0] * seconds / took * 1.1))


class Grid:
    """A fresh folder and manager declaring *function* over *count* parameters per round."""

    def __init__(self, scratch: Scratch, function: Callable[[int], Any], count: int) -> None:
        self.scratch, self.function, self.count = scratch, function, count
        self.folder: Path | None = None
        self.front: Any = None

    def renew(self) -> None:
        if self.folder is not None:
            remove(self.folder)
        self.folder = self.scratch.folder(self.function.__name__)
        manager = DatedCacheManager(NpyStorageInterface(self.folder), verbose=False)
        manager.collect(self.function, params_list=list(range(self.count)))
        self.front = getattr(manager, self.function.__name__)

    def run(self, **options: Any) -> None:
        summary = self.front.get_all(return_values=False, progress=False, **options)
        if summary.computed != self.count:
            raise RuntimeError(f"get_all computed {summary.computed} of {self.count} entries")


class JoblibGrid:
    """``joblib.Parallel(n_jobs=2)`` over a ``joblib.Memory`` in a fresh folder each round."""

    def __init__(self, scratch: Scratch, function: Callable[[int], Any], count: int) -> None:
        self.scratch, self.function, self.count = scratch, function, count
        self.folder: Path | None = None
        self.cached: Any = None

    def renew(self) -> None:
        if self.folder is not None:
            remove(self.folder)
        self.folder = self.scratch.folder("joblib")
        self.cached = joblib.Memory(self.folder, verbose=0).cache(self.function)

    def run(self) -> None:
        parallel = joblib.Parallel(n_jobs=2)
        parallel(joblib.delayed(self.cached)(i) for i in range(self.count))


@contextmanager
def dask_client() -> Iterator[Any]:
    """A LocalCluster of 2 worker processes x 1 thread, and a client of it."""
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def _contenders(
    scratch: Scratch, function: Callable[[int], Any], count: int, client: Any, bag: bool
) -> list[Contender]:
    grids = {name: Grid(scratch, function, count) for name in (N1, N2, DASK)}
    joblib_grid = JoblibGrid(scratch, function, count)
    params = list(range(count))

    def client_map() -> None:
        client.gather(client.map(function, params, pure=False))

    contenders = [
        Contender(LOOP, lambda: [function(i) for i in params], number=1),
        Contender(N1, lambda: grids[N1].run(n_jobs=1), grids[N1].renew, number=1),
        Contender(N2, lambda: grids[N2].run(n_jobs=2), grids[N2].renew, number=1),
        Contender(DASK, lambda: grids[DASK].run(client=client), grids[DASK].renew, number=1),
        Contender(JOBLIB, joblib_grid.run, joblib_grid.renew, number=1),
        Contender(CLIENT_MAP, client_map, number=1),
    ]
    if bag:
        import dask.bag

        def bag_map() -> None:
            dask.bag.from_sequence(params, npartitions=4).map(function).compute()

        contenders.append(Contender(BAG, bag_map, number=1))
    return contenders


def _grid_table(
    title: str,
    scratch: Scratch,
    function: Callable[[int], Any],
    count: int,
    rounds: int,
    client: Any,
    *,
    targets: list[Target],
    bag: bool = False,
) -> Table:
    contenders = _contenders(scratch, function, count, client, bag)
    # n_jobs=1 runs in this process; n_jobs=2 its own pool of loky workers (and joblib
    # loky's reusable executor): the pools start, and Dask gets the code, untimed.
    _warm_up(scratch, {"n_jobs": 1})
    rows = measure(contenders[:2], rounds, warmup=False)
    _warm_up(scratch, {"n_jobs": 2}, {"client": client})
    joblib.Parallel(n_jobs=2)(joblib.delayed(small)(i) for i in range(4))
    rows += measure(contenders[2:], rounds, warmup=False)
    for row in rows:
        row.extra["per entry"] = fmt_time(row.median / count)
    notes = [
        "metricache rows store every entry (one .npy file each) and return a summary; "
        "the loop, client.map and dask.bag store nothing; joblib stores in its Memory",
        "rounds interleave the loop with n_jobs=1, then the others with each other, "
        "after a warm-up that starts every pool",
    ]
    return Table(title, rows, LOOP, "per grid", targets, notes, extra_columns=["per entry"])


def _warm_up(scratch: Scratch, *runs: dict[str, Any]) -> None:
    """Start the worker pools (and ship the code to Dask) untimed: one tiny grid per run."""
    for options in runs:
        grid = Grid(scratch, small, 4)
        grid.renew()
        grid.run(**options)
        assert grid.folder is not None
        remove(grid.folder)


def _declare_table(config: Config, scratch: Scratch) -> Table:
    count = 100_000
    params = [(i, j * 0.25) for i in range(count // 100) for j in range(100)]

    def poly(a: int, b: float) -> float:
        return a * b

    managers: list[DatedCacheManager] = []

    def fresh() -> None:
        managers[:] = [DatedCacheManager(NpyStorageInterface(scratch.folder("declare")))]

    def names_by_hand() -> None:
        {"_".join(["poly", str(a), str(b)]).replace(".", "p"): (a, b) for a, b in params}

    contenders = [
        Contender("a dict of the seed names, by hand", names_by_hand, number=1),
        Contender(
            "metricache collect(params_list=100,000 sets)",
            lambda: managers[0].collect(poly, params_list=params),
            fresh,
            number=1,
        ),
    ]
    rows = measure(contenders, 2 if config.quick else 7, warmup=False)
    peaks = {}
    for row, contender in zip(rows, contenders, strict=True):
        peaks[row.name] = _peak(contender)
        row.extra["tracemalloc peak"] = fmt_bytes(peaks[row.name])
    ours = rows[1]
    time_ok = ours.median < 0.2
    memory_ok = peaks[ours.name] < 20 * MiB
    notes = [
        f"goal: declaring 100,000 sets < 0.2 s: {fmt_time(ours.median)} "
        f"{'PASS' if time_ok else 'MISS'}; < 20 MiB: {fmt_bytes(peaks[ours.name])} "
        f"{'PASS' if memory_ok else 'MISS'} (tracemalloc peak, one untimed run)",
    ]
    return Table(
        "(p) declare 100,000 parameter sets",
        rows,
        contenders[0].name,
        "per declaration",
        notes=notes,
        extra_columns=["tracemalloc peak"],
    )


def _peak(contender: Contender) -> int:
    """Peak traced bytes of one run of *contender* (setup excluded)."""
    if contender.setup is not None:
        contender.setup()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        contender.run()
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()


def _lookup_table(config: Config, scratch: Scratch) -> Table:
    """The first and the repeated lookup of declared sets, 1,000 of them."""
    sets = [(i, j * 0.25) for i in range(100) for j in range(10)]
    managers: list[Any] = []

    def poly(a: int, b: float) -> float:
        return a * b

    def fresh() -> None:
        manager = DatedCacheManager(NpyStorageInterface(scratch.folder("lookup")))
        manager.collect(poly, params_list=[(i, j * 0.25) for i in range(1000) for j in range(100)])
        managers[:] = [manager.poly.metric_name]

    def first() -> None:
        name_of = managers[0]
        for a, b in sets:
            name_of(a, b)

    def by_hand() -> None:
        for a, b in sets:
            "_".join(["poly", str(a), str(b)]).replace(".", "p")

    contenders = [
        Contender("seed name by hand", by_hand, number=1),
        Contender("metricache metric_name(a, b), first lookup", first, fresh, number=1),
        Contender("metricache metric_name(a, b), again", first, number=1),
    ]
    fresh()
    rows = measure(contenders, 2 if config.quick else 5, warmup=False)
    return Table(
        "(p) first lookups of 1,000 declared sets (of 100,000)",
        rows,
        contenders[0].name,
        "per 1,000 sets",
    )


def run(config: Config, scratch: Scratch) -> Iterator[Table]:
    # Workers unpickle these functions by value: this module is not importable there.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    small_count = 100 if config.quick else 10_000
    big_count, _BIG[0] = (4, MiB // 8) if config.quick else (64, 8 * MiB // 8)
    burn_count = 4 if config.quick else 16
    rounds = 1 if config.quick else 3
    _calibrate_burn()
    with dask_client() as client:
        yield _grid_table(
            f"(p) get_all over {small_count:,} small entries",
            scratch, small, small_count, rounds, client, targets=[], bag=True,
        )  # fmt: skip
        yield _grid_table(
            f"(p) get_all over {big_count} x {_BIG[0] * 8 // MiB} MiB entries",
            scratch, big, big_count, rounds, client, targets=[],
        )  # fmt: skip
        yield _grid_table(
            f"(p) get_all over {burn_count} CPU-bound entries (~50 ms each)",
            scratch, burn, burn_count, rounds, client,
            targets=[Target(N2, 1 / 1.7, N1), Target(DASK, 1.5, CLIENT_MAP)],
        )  # fmt: skip
    yield _declare_table(config, scratch)
    yield _lookup_table(config, scratch)
