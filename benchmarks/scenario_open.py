"""(f) Opening a cache folder that holds many entries, and listing it.

Opening must cost about as much with 100,000 entries as with none (nothing is
listed or cleaned at open); listing reads one small record per entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import diskcache
import joblib
import numpy as np
from common import Config, Scratch, quiet_manager
from harness import Contender, Table, Target, fmt_time, measure

from metricache import NpyStorageInterface

BASELINE = "diskcache.Cache open + close"


def _fill_metricache(folder: Path, entries: int) -> None:
    storage = NpyStorageInterface(folder)
    for i in range(entries):
        storage.save(f"small_{i}", np.arange(10.0) + i)


def _fill_diskcache(folder: Path, entries: int) -> None:
    with diskcache.Cache(str(folder)) as cache:
        for i in range(entries):
            cache.set(f"small_{i}", np.arange(10.0) + i)


def _open_metricache(folder: Path) -> None:
    manager = quiet_manager(NpyStorageInterface(folder))
    manager.set_functions_dict({"small_0": lambda: None})


def _open_diskcache(folder: Path) -> None:
    diskcache.Cache(str(folder)).close()


def open_table(config: Config, scratch: Scratch, entries: int) -> Table:
    full_mc, empty_mc = scratch.folder("open-mc"), scratch.folder("open-mc-empty")
    full_dc, empty_dc = scratch.folder("open-dc"), scratch.folder("open-dc-empty")
    _fill_metricache(full_mc, entries)
    _fill_diskcache(full_dc, entries)
    _open_diskcache(empty_dc)
    contenders = [
        Contender(BASELINE, lambda: _open_diskcache(full_dc)),
        Contender("diskcache, empty folder", lambda: _open_diskcache(empty_dc)),
        Contender("metricache storage + manager", lambda: _open_metricache(full_mc)),
        Contender("metricache, empty folder", lambda: _open_metricache(empty_mc)),
        Contender("joblib.Memory", lambda: joblib.Memory(full_mc, verbose=0)),
    ]
    rows = measure(contenders, config.read_rounds, min_time=config.min_time)
    return Table(
        f"(f) open a folder of {entries:,} entries (nothing read yet)",
        rows,
        BASELINE,
        targets=[Target("metricache storage + manager", 2.0)],
        notes=["joblib.Memory opened over the metricache folder: it lists nothing either"],
    )


def list_table(config: Config, scratch: Scratch, entries: int) -> Table:
    folder, dc_folder = scratch.folder("list-mc"), scratch.folder("list-dc")
    _fill_metricache(folder, entries)
    _fill_diskcache(dc_folder, entries)
    storage = NpyStorageInterface(folder)
    cache = diskcache.Cache(str(dc_folder))
    contenders = [
        Contender("diskcache iterkeys", lambda: sum(1 for _ in cache.iterkeys()), number=1),
        Contender("metricache entries()", lambda: sum(1 for _ in storage.entries()), number=1),
        Contender("metricache stored_names()", storage.stored_names, number=1),
    ]
    rows = measure(contenders, config.read_rounds, warmup=True)
    cache.close()
    whole = next(r for r in rows if r.name == "metricache entries()").median
    return Table(
        f"(f) list a folder of {entries:,} entries",
        rows,
        "diskcache iterkeys",
        notes=[
            "entries() reads every record (an EntryInfo with date, size, checksum, codec "
            f"per entry): {fmt_time(whole / entries)} per entry",
            "diskcache lists keys only, from its SQLite index",
        ],
    )


def run(config: Config, scratch: Scratch) -> Iterator[Table]:
    entries = 2_000 if config.quick else 100_000
    yield open_table(config, scratch, entries)
    yield list_table(config, scratch, entries)
