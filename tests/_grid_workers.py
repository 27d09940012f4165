"""Metric functions for the grid tests: each appends its name to a log (``O_APPEND``)
so a test counts computes across processes; ``stall`` files make one entry wait."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import numpy as np

from metricache import ParameterizedDatedCacheManager


def note(log: str, name: str) -> None:
    """Append one line to *log* in a single write (lines never interleave)."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name}\n".encode())
    finally:
        os.close(fd)


def computes(log: Path) -> list[str]:
    """The names logged so far, in order."""
    return log.read_text().split() if log.exists() else []


def square(i: int, log: str = "", fail: int = -1, stall: str = "") -> np.ndarray:
    """``[i*i] * 4``; raises for *fail*; waits while a ``<stall>-<i>`` file exists."""
    note(log, f"square_{i}")
    marker = Path(f"{stall}-{i}")
    if stall and marker.exists():
        Path(f"{stall}-{i}.pid").write_text(str(os.getpid()))
        while marker.exists():
            time.sleep(0.02)
    if i == fail:
        raise ValueError(f"no square for {i}")
    return np.full(4, float(i * i))


def build(
    folder: Path, log: Path, n: int = 6, fail: int = -1, stall: str = "", **options: object
) -> ParameterizedDatedCacheManager:
    """A manager over *folder* with ``square`` declared for ``0..n-1``."""
    CM = ParameterizedDatedCacheManager(str(folder), verbose=False, **options)  # type: ignore[arg-type]
    metric = functools.partial(square, log=str(log), fail=fail, stall=stall)
    CM.collect(metric, name="square", params_list=[[i] for i in range(n)])
    return CM
