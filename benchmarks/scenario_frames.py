"""(g) DataFrames: a disk hit and a miss of a 1e6 x 10 frame, against pandas' own files.

The raw readers and writers (Parquet, Feather, pickle) are what a user would call
by hand; the table's baseline is whichever of them is fastest in this run.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import (
    CallCounter,
    Config,
    DiskcacheMemo,
    FreshManager,
    Scratch,
    joblib_cached,
    read_tree,
    remove,
)
from harness import Contender, Row, Table, Target, measure

from metricache import AutoStorageInterface

METRICACHE = "metricache Auto (verify)"
RAW_READERS = ("pd.read_parquet", "pd.read_feather", "pickle.load")
RAW_WRITERS = ("df.to_parquet", "df.to_feather", "pickle.dump")


def frame_of(rows: int) -> pd.DataFrame:
    """Ten columns of the usual kinds: 6 float64, 2 int64, a categorical, a tz-aware time."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{i}": rng.random(rows) for i in range(6)})
    frame["i0"] = rng.integers(0, 1000, rows)
    frame["i1"] = rng.integers(0, 10**9, rows)
    frame["c"] = pd.Categorical(rng.choice(["alpha", "beta", "gamma", "delta"], rows))
    frame["t"] = pd.date_range("2020-01-01", periods=rows, freq="s", tz="UTC")
    return frame


def _pickle_dump(frame: pd.DataFrame, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(frame, f, protocol=pickle.HIGHEST_PROTOCOL)


def _pickle_load(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


def _raw_files(frame: pd.DataFrame, folder: Path) -> dict[str, Callable[[], Any]]:
    """Each raw format written once; its reader, by row label."""
    frame.to_parquet(folder / "x.parquet")
    frame.to_feather(folder / "x.feather")
    _pickle_dump(frame, folder / "x.pkl")
    return {
        "pd.read_parquet": functools.partial(pd.read_parquet, folder / "x.parquet"),
        "pd.read_feather": functools.partial(pd.read_feather, folder / "x.feather"),
        "pickle.load": functools.partial(_pickle_load, folder / "x.pkl"),
    }


def _fastest(rows: list[Row], names: tuple[str, ...]) -> str:
    return min((r for r in rows if r.name in names), key=lambda r: r.median).name


def _fresh_memory(location: Path, make: Callable[[], Any]) -> Contender:
    state: dict[str, Callable[[], Any]] = {}

    def setup() -> None:
        state["call"] = joblib_cached(location, make)

    setup()
    return Contender("joblib.Memory", lambda: state["call"](), setup, note="fresh Memory")


def hit(config: Config, scratch: Scratch, frame: pd.DataFrame, label: str) -> Table:
    counter = CallCounter()
    make = counter.wrap(frame, "frame_hit")
    readers = _raw_files(frame, scratch.folder("frames-raw"))
    auto, mapped = scratch.folder("frames-auto"), scratch.folder("frames-mm")
    managers = {
        METRICACHE: FreshManager(lambda: AutoStorageInterface(auto), "x", make),
        "metricache Auto mmap_mode='r'": FreshManager(
            lambda: AutoStorageInterface(mapped, mmap_mode="r"), "x", make
        ),
    }
    managers[METRICACHE].get()
    managers["metricache Auto mmap_mode='r'"].get()
    joblib_dir = scratch.folder("frames-joblib")
    joblib_cached(joblib_dir, make)()
    memo = DiskcacheMemo(scratch.folder("frames-diskcache"), make)
    memo.reopen()
    memo.call()
    stored = counter.calls
    read_tree(scratch.root)
    contenders = [Contender(name, read) for name, read in readers.items()]
    contenders += [Contender(name, fm.get, fm.setup) for name, fm in managers.items()]
    contenders += [
        _fresh_memory(joblib_dir, make),
        Contender("diskcache memoize", lambda: memo.call(), memo.reopen, note="fresh Cache"),
    ]
    rows = measure(contenders, config.fill_rounds + 3, min_time=config.min_time, max_number=50)
    memo.close()
    if counter.calls != stored:
        raise RuntimeError("a frame hit recomputed its value: the scenario is broken")
    return Table(
        f"(g) frame disk hit, fresh manager, {label}",
        rows,
        _fastest(rows, RAW_READERS),
        targets=[Target(METRICACHE, 1.1)],
        notes=[
            "baseline: the fastest raw reader of this run; page cache warm",
            "metricache: Arrow IPC, xxh3 checksum of the whole file on every load",
            "mmap row: the frame is built from a mapped file; checksum left to verify()",
        ],
    )


def _raw_writer(label: str, target: Path, write: Callable[[Path], None]) -> Contender:
    return Contender(label, lambda: write(target), functools.partial(remove, target))


def _joblib_miss(folder: Path, frame: pd.DataFrame) -> Contender:
    """A new joblib.Memory over an emptied folder before each call."""
    make = CallCounter().wrap(frame, "frame_joblib_miss")
    state: dict[str, Callable[[], Any]] = {}

    def setup() -> None:
        remove(folder)
        folder.mkdir()
        state["call"] = joblib_cached(folder, make)

    return Contender("joblib.Memory", lambda: state["call"](), setup)


def miss(config: Config, scratch: Scratch, frame: pd.DataFrame, label: str) -> Table:
    raw = scratch.folder("frames-write")
    contenders = [
        _raw_writer("df.to_parquet", raw / "x.parquet", frame.to_parquet),
        _raw_writer("df.to_feather", raw / "x.feather", frame.to_feather),
        _raw_writer("pickle.dump", raw / "x.pkl", functools.partial(_pickle_dump, frame)),
    ]
    counter = CallCounter()
    folder = scratch.folder("frames-miss")
    fresh = FreshManager(
        lambda: AutoStorageInterface(folder), "x", counter.wrap(frame, "frame_miss")
    )

    def reset() -> None:
        fresh.manager.storage_interface.delete("x")
        fresh.setup()

    contenders.append(Contender("metricache Auto", fresh.get, reset))
    contenders.append(_joblib_miss(scratch.folder("frames-joblib-miss"), frame))
    memo = DiskcacheMemo(scratch.folder("frames-diskcache-miss"), lambda: frame)

    def diskcache_reset() -> None:
        memo.reopen()
        assert memo.cache is not None
        memo.cache.clear()

    contenders.append(Contender("diskcache memoize", lambda: memo.call(), diskcache_reset))
    rows = measure(contenders, config.fill_rounds + 3, min_time=config.min_time, max_number=20)
    memo.close()
    if counter.calls != next(r.calls for r in rows if r.name == "metricache Auto"):
        raise RuntimeError("a frame miss did not compute: the scenario is broken")
    return Table(
        f"(g) frame miss: trivial compute + store, {label}",
        rows,
        _fastest(rows, RAW_WRITERS),
        targets=[Target("metricache Auto", 1.2)],
        notes=[
            "baseline: the fastest raw writer of this run (defaults: Parquet snappy, Feather lz4)",
            "raw writers write in place; metricache writes a temp file, hashes and renames",
        ],
    )


def run(config: Config, scratch: Scratch) -> Iterator[Table]:
    rows = 20_000 if config.quick else 1_000_000
    frame = frame_of(rows)
    label = f"{rows:,} x 10 DataFrame"
    yield hit(config, scratch, frame, label)
    yield miss(config, scratch, frame, label)
