"""Module-level metrics a spawned worker rebuilds a pickled manager with (provenance tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metricache import DatedCacheManager, NpyStorageInterface

EXPECTED_TOTAL = 10
_managers: list[DatedCacheManager] = []


def numbers() -> np.ndarray:
    return np.arange(5)


def total() -> int:
    return int(_managers[-1]["numbers"].sum())


def make(folder: Path) -> DatedCacheManager:
    """A manager of ``numbers`` and ``total`` (which reads ``numbers``)."""
    CM = DatedCacheManager(NpyStorageInterface(folder), verbose=False)
    CM.set_functions_dict({"numbers": numbers, "total": total})
    return CM


def get_in_worker(manager: DatedCacheManager, name: str) -> Any:
    """In a worker: the rebuilt manager computes *name* (and records what it read)."""
    _managers.append(manager)
    return manager.get(name)
