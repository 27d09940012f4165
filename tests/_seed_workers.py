"""A user's pickle storage interface, as the seed page suggests, and process targets for it.

Importable as ``tests._seed_workers``, so spawned processes can run its functions.
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

from metricache import DataCacheManager
from metricache.storage_interface import FileBasedStorageInterface

#: Longest any worker waits for the others: a bug fails, never hangs.
PATIENCE = 30.0


class PickleStorageInterface(FileBasedStorageInterface):
    """Written exactly as a simple_metrics_manager user would have written it."""

    def __init__(self, metrics_dir: Any) -> None:
        FileBasedStorageInterface.__init__(self, file_ext=".pkl", metrics_dir=metrics_dir)

    def _load(self, filepath: str) -> Any:
        with open(filepath, "rb") as fid:
            return pickle.load(fid)

    def _save(self, filepath: str, data: Any) -> None:
        with open(filepath, "wb") as fid:
            pickle.dump(data, fid)


def get_slow(folder: str, log: str, barrier: Any, results: Any) -> None:
    """Get the missing metric ``slow`` once every worker is ready; report the value.

    ``slow`` appends this process's id to *log* and takes 0.3 s, so every worker
    asks while the first one still computes.
    """

    def slow() -> dict[str, int]:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.3)
        return {"computed_by": os.getpid()}

    CM = DataCacheManager(PickleStorageInterface(folder), verbose=False)
    CM.set_functions_dict({"slow": slow})
    barrier.wait(PATIENCE)
    try:
        results.put(("ok", CM["slow"]))
    except Exception as err:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(("error", repr(err)))
