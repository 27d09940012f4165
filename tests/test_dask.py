"""get_all on a real Dask LocalCluster: task keys, two clients, a killed worker."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ._grid_workers import build, computes

distributed = pytest.importorskip("distributed")


def test_get_all_on_a_cluster_stores_every_entry_and_returns_statuses(
    dask_cluster: Any, tmp_path: Path
) -> None:
    CM = build(tmp_path / "c", tmp_path / "log", n=5, fail=4)
    with distributed.Client(dask_cluster) as client:
        summary = CM.square.get_all(client=client, return_values=False, on_error="return")
        assert (summary.computed, summary.failed) == (4, 1)
        assert isinstance(summary.errors["square_4"], ValueError)
        values = CM.square.get_all(client=client, on_error="skip")
    assert [v[0] for v in values] == [0.0, 1.0, 4.0, 9.0]
    assert CM.check().ok


def test_two_clients_compute_each_entry_once(dask_cluster: Any, tmp_path: Path) -> None:
    log = tmp_path / "log"
    results: list[Any] = []

    def fill() -> None:
        CM = build(tmp_path / "c", log, n=9)
        with distributed.Client(dask_cluster.scheduler_address) as client:
            results.append(CM.square.get_all(client=client, return_values=False))

    threads = [threading.Thread(target=fill) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 2 and all(r.failed == 0 for r in results)
    assert Counter(computes(log)) == Counter(f"square_{i}" for i in range(9))
    # A task both clients submitted (one key) reports "computed" to both.
    assert all(r.computed + r.loaded == 9 for r in results)


def test_a_killed_dask_worker_costs_one_recompute(dask_cluster: Any, tmp_path: Path) -> None:
    stall, log = str(tmp_path / "stall"), tmp_path / "log"
    Path(f"{stall}-2").touch()
    CM = build(tmp_path / "c", log, n=4, stall=stall)
    pid_file = Path(f"{stall}-2.pid")
    with distributed.Client(dask_cluster) as client:
        worker_pids = set(client.run(os.getpid).values())

        def kill() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not pid_file.exists():
                time.sleep(0.02)
            pid = int(pid_file.read_text())
            assert pid in worker_pids  # it is a Dask worker that dies
            Path(f"{stall}-2").unlink()
            os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill)
        killer.start()
        first = CM.square.get_all(client=client, return_values=False, on_error="return")
        killer.join()
        # Dask reran the lost task elsewhere; a rerun has nothing left to do.
        rerun = CM.square.get_all(client=client, return_values=False)
        client.wait_for_workers(2, timeout=60)
    assert first.failed == 0 and (rerun.computed, rerun.loaded) == (0, 4)
    counted = Counter(computes(log))
    assert counted.pop("square_2") == 2 and set(counted.values()) == {1}
    assert CM.check().ok
