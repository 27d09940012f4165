"""(b) Disk hit: a fresh manager (nothing in memory) loads a stored array."""

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
    ReadvLimit,
    Scratch,
    array_of,
    joblib_cached,
    load_npz_member,
    read_tree,
    size_label,
)
from harness import Contender, Table, Target, measure

from metricache import FileStorageInterface, NpyStorageInterface, NpzStorageInterface

BASELINE = "np.load(.npy)"
NPZ_BASELINE = "np.load(.npz) same file"
LIMIT = "limit: preadv into preallocated buffer"


def npy_target(nbytes: int) -> Target:
    """The issue's target for a verified Npy load: 1.1x np.load at 1 MiB, else 1.25x the limit."""
    if nbytes < 4 * MiB:
        return Target("metricache Npy (verify)", 1.1)
    return Target("metricache Npy (verify)", 1.25, LIMIT)


def _stored(
    folder: Path, factory: Callable[[Path], FileStorageInterface], make: Callable[[], object]
) -> FreshManager:
    """Store the entry once, then hand out fresh managers over the same folder."""
    fresh = FreshManager(lambda: factory(folder), "x", make)
    fresh.get()
    return fresh


def run_size(config: Config, scratch: Scratch, nbytes: int, rounds: int) -> Table:
    arr = array_of(nbytes)
    counter = CallCounter()
    make = counter.wrap(arr, "disk_hit")
    base = scratch.folder("disk-numpy")
    np.save(base / "x.npy", arr)
    managers = {
        "metricache Npy (verify)": _stored(scratch.folder("disk-npy"), NpyStorageInterface, make),
        "metricache Npy verify=False": _stored(
            scratch.folder("disk-npy-nv"),
            functools.partial(NpyStorageInterface, verify=False),
            make,
        ),
        "metricache Npy mmap_mode='r'": _stored(
            scratch.folder("disk-npy-mm"),
            functools.partial(NpyStorageInterface, mmap_mode="r"),
            make,
        ),
        "metricache Npz (verify)": _stored(scratch.folder("disk-npz"), NpzStorageInterface, make),
    }
    npz_file = Path(managers["metricache Npz (verify)"].manager.storage_interface.metrics_dir)
    joblib_dir = scratch.folder("disk-joblib")
    joblib_cached(joblib_dir, make)()
    memo = DiskcacheMemo(scratch.folder("disk-diskcache"), make)
    memo.reopen()
    memo.call()
    stores = counter.calls
    read_tree(scratch.root)
    contenders = [
        Contender(LIMIT, ReadvLimit(base / "x.npy"), note="page-aligned, faulted in once"),
        Contender(BASELINE, functools.partial(np.load, base / "x.npy")),
        Contender(
            "np.load(mmap_mode='r')", functools.partial(np.load, base / "x.npy", mmap_mode="r")
        ),
        *(Contender(label, fm.get, fm.setup) for label, fm in managers.items()),
        Contender(NPZ_BASELINE, functools.partial(load_npz_member, npz_file / "x.npz")),
        _joblib_contender(joblib_dir, make),
        Contender("diskcache memoize", lambda: memo.call(), memo.reopen, note="fresh Cache"),
    ]
    rows = measure(contenders, rounds, min_time=config.min_time, max_number=200)
    memo.close()
    if counter.calls != stores:
        raise RuntimeError("a disk hit recomputed its value: the scenario is broken")
    label = size_label(nbytes)
    return Table(
        f"(b) disk hit, fresh manager, {label} float64 array",
        rows,
        BASELINE,
        targets=[
            npy_target(nbytes),
            Target("metricache Npz (verify)", 1.1, NPZ_BASELINE),
        ],
        notes=[
            "page cache warm: every file was read once before timing",
            "limit row: the whole .npy file copied from the page cache, no allocation, no hash",
            "metricache rows: a new storage interface and manager (untimed) before each get()",
            "mmap rows map the file only (O(1)); Npy mmap checks size, not the checksum",
            "Json skipped: a float64 array as JSON text is ~3x larger and ~20x slower to parse",
        ],
    )


def _joblib_contender(location: Path, make: Callable[[], object]) -> Contender:
    """joblib.Memory rebuilt (untimed) before each call, like a fresh process."""
    state: dict[str, Callable[[], object]] = {}

    def setup() -> None:
        state["call"] = joblib_cached(location, make)

    setup()
    return Contender("joblib.Memory", lambda: state["call"](), setup, note="fresh Memory")


def run(config: Config, scratch: Scratch) -> Iterator[Table]:
    for nbytes, rounds in config.sizes:
        yield run_size(config, scratch, nbytes, rounds)
