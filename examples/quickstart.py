"""metricache quickstart: the seed's basic and parameterized examples, run twice.

The first run computes every metric (slowly) and stores it; the second run, with a
brand-new manager over the same folder, loads everything from disk in a fraction
of the time. Run it with ``make demo``; pass a folder to keep the cache elsewhere.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from metricache import DataCacheManager, NpyStorageInterface, ParameterizedDataCacheManager

WORK = 0.4  # seconds each metric pretends to compute


def do_something() -> np.ndarray:
    time.sleep(WORK)
    return np.linspace(0.0, 1.0, 1_000_000)


def do_something_hard(a: int) -> np.ndarray:
    time.sleep(WORK)
    return np.arange(5.0) * a


def run_basic(folder: Path) -> None:
    """The seed's "Basic usage", verbatim but for the import."""
    CM = DataCacheManager(NpyStorageInterface(folder / "basic"))

    @CM.collect
    def metric_1():
        stuff = do_something()
        return stuff

    @CM.collect
    def metric_2():
        stuff = np.cumsum(CM.metric_1())  # <- use of the cached version here
        return stuff[-1:]

    timed("CM.metric_2()", CM.metric_2)
    timed("CM.metric_1()", CM.metric_1)


def run_parameterized(folder: Path) -> None:
    """The seed's "Parameterized usage" (with the intended params_list)."""
    CM = ParameterizedDataCacheManager(NpyStorageInterface(folder / "parameterized"))

    @CM.collect(params_list=[[1], [4]])
    def poly_X(a):
        return do_something_hard(a)

    @CM.collect(params_list=[[1, 2], [1, 3], [4, 5]])
    def poly_Y(a, b):
        return CM.poly_X(a) ** 2 + b

    timed("CM.poly_Y(1, 2)", lambda: CM.poly_Y(1, 2))
    timed("CM.poly_Y.get_all()", CM.poly_Y.get_all)


def timed(label: str, call: object) -> None:
    start = time.perf_counter()
    value = call()  # type: ignore[operator]
    elapsed = time.perf_counter() - start
    print(f"    {label:<22} {elapsed * 1e3:9.1f} ms   -> {summary(value)}")


def summary(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array{value.shape} {np.array2string(value[:3], precision=3)}..."
    if isinstance(value, list):
        return f"list of {len(value)} arrays"
    return repr(value)


def main() -> None:
    # metricache reports what it computes, saves and loads on the "metricache" logger.
    logging.basicConfig(level=logging.INFO, format="    | %(message)s", stream=sys.stdout)
    keep = len(sys.argv) > 1
    folder = Path(sys.argv[1]) if keep else Path(tempfile.mkdtemp(prefix="metricache-demo-"))
    print(f"cache folder: {folder}")
    try:
        for run in ("first run: computes and stores", "second run: new managers, loads"):
            print(f"\n== {run}")
            start = time.perf_counter()
            run_basic(folder)
            run_parameterized(folder)
            print(f"   total {time.perf_counter() - start:.2f} s")
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
