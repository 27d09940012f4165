"""A 3x3 grid on S3 filled by two racers at once: every entry computed exactly once.

The racers are what a team runs: two processes each running ``get_all(n_jobs=2)``
(so four worker processes contend), and two Dask clients on two clusters (two
"machines"). Only the S3 lease locks keep them from computing an entry twice;
afterwards each entry loads, verified against its checksum, without computing.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from metricache import NpzStorageInterface

from . import _lease_workers as workers
from ._s3server import S3Server

CELLS = [(i, j) for i in range(3) for j in range(3)]


def assert_each_cell_once_and_verified(url: str, options: dict[str, Any], log: Path) -> None:
    assert Counter(workers.computes(log)) == Counter(f"cell_{i}_{j}" for i, j in CELLS)
    CM = workers.grid_manager(url, options, str(log))  # a fresh manager: nothing in memory
    for i, j in CELLS:
        assert CM.cell(i, j).tolist() == [i, j, i * j]
    assert len(workers.computes(log)) == 9  # every one of them a verified load
    storage = NpzStorageInterface(url, storage_options=options)
    report = storage.check()
    assert report.ok and sorted(e.name for e in storage.entries()) == sorted(
        f"cell_{i}_{j}" for i, j in CELLS
    )


def test_two_processes_running_get_all_compute_each_cell_once(
    s3: S3Server, s3_url: str, tmp_path: Path
) -> None:
    options, log, start = s3.storage_options(), tmp_path / "log", tmp_path / "start"
    ctx = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"out{k}" for k in range(2)]
    procs = [
        ctx.Process(target=workers.fill_grid, args=(s3_url, options, str(log), str(start), str(o)))
        for o in outs
    ]
    for proc in procs:
        proc.start()
    time.sleep(1.0)
    start.touch()
    for proc in procs:
        proc.join(240)
    summaries = [json.loads(out.read_text()) for out in outs]
    assert all("error" not in s for s in summaries), summaries
    assert all(s["failed"] == 0 for s in summaries)
    assert sum(s["computed"] for s in summaries) == 9  # the rest each loaded
    assert_each_cell_once_and_verified(s3_url, options, log)
    assert s3.filesystem().find(f"{s3_url}/.metricache/locks") == []  # all released


def test_two_dask_clients_on_two_clusters_compute_each_cell_once(
    s3: S3Server, s3_url: str, tmp_path: Path, dask_cluster: Any
) -> None:
    distributed = pytest.importorskip("distributed")
    options, log = s3.storage_options(), tmp_path / "log"
    second = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def fill(cluster: Any) -> None:
        CM = workers.grid_manager(s3_url, options, str(log))
        with distributed.Client(cluster) as client:
            barrier.wait(60)
            results.append(CM.cell.get_all(client=client, return_values=False))

    try:
        threads = [threading.Thread(target=fill, args=(c,)) for c in (dask_cluster, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(240)
    finally:
        second.close()
    assert len(results) == 2 and all(r.failed == 0 for r in results)
    assert sum(r.computed for r in results) == 9
    assert_each_cell_once_and_verified(s3_url, options, log)
    assert s3.filesystem().find(f"{s3_url}/.metricache/locks") == []  # all released
