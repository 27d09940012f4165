"""(t) Tiny entries (10 float64 each): fill and cold read against diskcache; a million of them.

metricache keeps entries under 64 KiB of a local folder inside one SQLite index
(the packed home); ``packed=False`` writes one file per entry as before. diskcache
stores the same arrays (pickled) in its SQLite file. The full run also fills a
folder with 1,000,000 entries and lists it (``CM.entries()``), with both folders'
disk usage; ``--quick`` skips that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import diskcache
import numpy as np
from common import Config, Scratch, disk_usage, read_tree, remove
from harness import Contender, Row, Table, Target, fmt_bytes, measure

from metricache import AutoStorageInterface, ParameterizedDatedCacheManager

DISKCACHE = "diskcache.Cache set/get"
PACKED = "metricache (packed)"
FILES = "metricache (per-file, packed=False)"
NUMPY = "np.save/np.load per entry"
MILLION = 1_000_000

#: The values, made once: a fill measures storing, not making arrays.
_VALUES: list[np.ndarray] = []


def value(i: int) -> np.ndarray:
    """The metric: 10 float64 values depending on its parameter."""
    return _VALUES[i]


def _values(n: int) -> None:
    if len(_VALUES) < n:
        _VALUES.extend(np.arange(10.0) + i for i in range(len(_VALUES), n))


class Folder:
    """One contender's folder; ``renew`` replaces it by an empty one (untimed)."""

    def __init__(self, scratch: Scratch, prefix: str) -> None:
        self.scratch, self.prefix = scratch, prefix
        self.path = scratch.folder(prefix)

    def renew(self) -> None:
        remove(self.path)
        self.path = self.scratch.folder(self.prefix)


def _manager(folder: Path, n: int, packed: bool | None) -> Any:
    manager = ParameterizedDatedCacheManager(
        AutoStorageInterface(folder, packed=packed), verbose=False
    )
    manager.collect(value, params_list=[[i] for i in range(n)])
    return manager


class MetricacheRun:
    """A fill or read through a fresh manager (built untimed in ``setup``)."""

    def __init__(self, folder: Folder, n: int, packed: bool | None, renew: bool) -> None:
        self.folder, self.n, self.packed, self.renew = folder, n, packed, renew
        self.manager: Any = None

    def setup(self) -> None:
        if self.renew:
            self.folder.renew()
        self.manager = _manager(self.folder.path, self.n, self.packed)

    def each(self) -> None:
        call = self.manager.value
        for i in range(self.n):
            call(i)

    def get_all(self) -> None:
        self.manager.value.get_all()


class DiskcacheRun:
    """``Cache.set``/``Cache.get`` of the same arrays; a new Cache object per sample."""

    def __init__(self, folder: Folder, n: int, renew: bool) -> None:
        self.folder, self.n, self.renew = folder, n, renew
        self.cache: diskcache.Cache | None = None

    def setup(self) -> None:
        self.close()
        if self.renew:
            self.folder.renew()
        self.cache = diskcache.Cache(str(self.folder.path))

    def fill(self) -> None:
        assert self.cache is not None
        for i in range(self.n):
            self.cache.set(f"value_{i}", value(i))

    def read(self) -> None:
        assert self.cache is not None
        for i in range(self.n):
            self.cache.get(f"value_{i}")

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None


def _numpy_fill(folder: Folder, n: int) -> Contender:
    def run() -> None:
        for i in range(n):
            np.save(folder.path / f"value_{i}.npy", value(i))

    return Contender(NUMPY, run, folder.renew, number=1)


def _numpy_read(folder: Folder, n: int) -> Contender:
    def run() -> None:
        for i in range(n):
            np.load(folder.path / f"value_{i}.npy")

    return Contender(NUMPY, run, number=1)


def _per_entry(rows: list[Row], n: int) -> None:
    for row in rows:
        row.samples = [s / n for s in row.samples]


def small_tables(config: Config, scratch: Scratch) -> Iterator[Table]:
    n = 100 if config.quick else 10_000
    _values(n)
    folders = {k: Folder(scratch, k) for k in ("diskcache", "packed", "files", "numpy")}
    packed_fill = MetricacheRun(folders["packed"], n, None, renew=True)
    files_fill = MetricacheRun(folders["files"], n, False, renew=True)
    disk_fill = DiskcacheRun(folders["diskcache"], n, renew=True)
    contenders = [
        Contender(DISKCACHE, disk_fill.fill, disk_fill.setup, number=1),
        Contender(PACKED, packed_fill.each, packed_fill.setup, number=1),
        Contender(FILES, files_fill.each, files_fill.setup, number=1),
        _numpy_fill(folders["numpy"], n),
    ]
    rows = measure(contenders, config.fill_rounds, warmup=False)
    disk_fill.close()
    _per_entry(rows, n)
    for row, key in zip(rows, ("diskcache", "packed", "files", "numpy"), strict=True):
        files, used = disk_usage(folders[key].path)
        row.extra = {"files": f"{files:,}", "disk usage": fmt_bytes(used)}
    yield Table(
        f"(t) fill: {n:,} tiny entries (10 float64), each computed and stored once",
        rows,
        DISKCACHE,
        unit_label="per entry",
        extra_columns=["files", "disk usage"],
        targets=[Target(PACKED, 1.0)],
        notes=["one sample = a new empty folder; manager + collect() built untimed"],
    )
    for folder in folders.values():
        read_tree(folder.path)
    packed_read = MetricacheRun(folders["packed"], n, None, renew=False)
    packed_all = MetricacheRun(folders["packed"], n, None, renew=False)
    files_read = MetricacheRun(folders["files"], n, False, renew=False)
    disk_read = DiskcacheRun(folders["diskcache"], n, renew=False)
    contenders = [
        Contender(DISKCACHE, disk_read.read, disk_read.setup, number=1),
        Contender(PACKED, packed_read.each, packed_read.setup, number=1),
        Contender(f"{PACKED}, get_all", packed_all.get_all, packed_all.setup, number=1),
        Contender(FILES, files_read.each, files_read.setup, number=1),
        _numpy_read(folders["numpy"], n),
    ]
    rows = measure(contenders, 3 if config.quick else config.read_rounds, warmup=False)
    disk_read.close()
    _per_entry(rows, n)
    yield Table(
        f"(t) cold read: {n:,} tiny entries, each read once by a fresh manager",
        rows,
        DISKCACHE,
        unit_label="per entry",
        targets=[Target(PACKED, 1.0), Target(f"{PACKED}, get_all", 1.0)],
        notes=["page cache warm; manager + collect() built untimed; diskcache: a new Cache"],
    )


def _timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def million_table(scratch: Scratch) -> Table:
    """Fill 1,000,000 entries through the storage (no memory tier), list them, measure du."""
    _values(MILLION)
    packed, disk = scratch.folder("million-packed"), scratch.folder("million-diskcache")
    storage = AutoStorageInterface(packed)

    def fill() -> None:
        save = storage.save
        for i in range(MILLION):
            save(f"value_{i}", value(i))

    fill_s = _timed(fill)
    listed: list[Any] = []
    list_s = _timed(lambda: listed.extend(AutoStorageInterface(packed).entries()))
    if len(listed) != MILLION:
        raise RuntimeError(f"listed {len(listed):,} entries, expected {MILLION:,}")
    cache = diskcache.Cache(str(disk))

    def disk_fill() -> None:
        for i in range(MILLION):
            cache.set(f"value_{i}", value(i))

    disk_s = _timed(disk_fill)
    keys: list[Any] = []
    disk_list_s = _timed(lambda: keys.extend(cache.iterkeys()))
    cache.close()
    used = {k: disk_usage(p) for k, p in (("packed", packed), ("disk", disk))}
    rows = [
        Row(f"{DISKCACHE}: fill", [disk_s / MILLION]),
        Row(f"{PACKED}: fill (storage.save)", [fill_s / MILLION]),
        Row("diskcache: list keys (iterkeys)", [disk_list_s / MILLION]),
        Row(f"{PACKED}: list (entries())", [list_s / MILLION]),
    ]
    for row in rows:
        kind = "disk" if row.name.startswith("disk") else "packed"
        files, nbytes = used[kind]
        row.extra = {"total": f"{row.samples[0] * MILLION:.2f} s", "files": f"{files:,}",
                     "disk usage": fmt_bytes(nbytes)}  # fmt: skip
    ratio = used["packed"][1] / max(1, used["disk"][1])
    return Table(
        "(t) 1,000,000 tiny entries: fill, list, disk usage",
        rows,
        f"{DISKCACHE}: fill",
        unit_label="per entry",
        extra_columns=["total", "files", "disk usage"],
        notes=[
            f"disk usage: metricache {ratio:.2f}x diskcache's (goal < 2x); "
            f"list {list_s:.2f} s (goal < 3 s)",
            "one run each; every entry has its full record (checksum, timestamps, codec)",
        ],
    )


def run(config: Config, scratch: Scratch) -> Iterator[Table]:
    yield from small_tables(config, scratch)
    if not config.quick:
        yield million_table(scratch)
