"""The README's idioms in fully typed user code: ``mypy --strict`` accepts this file.

``tests/test_typing.py`` type-checks it; run it to see it work on a temporary folder.
"""

from __future__ import annotations

import tempfile

import numpy as np
import numpy.typing as npt

from metricache import NpzStorageInterface, ParameterizedDataCacheManager

CM = ParameterizedDataCacheManager(NpzStorageInterface(tempfile.mkdtemp()), verbose=False)


@CM.collect
def spectrum() -> npt.NDArray[np.float64]:
    return np.abs(np.fft.rfft(np.sin(np.linspace(0.0, 20.0, 256))))


@CM.collect(params_list=[[1, 2], [1, 3], [4, 5]])
def poly(a: int, b: int) -> npt.NDArray[np.float64]:
    return a * np.linspace(0.0, 1.0, 100) + b


def peak() -> float:
    """User code that calls the cached metrics and uses their values."""
    s: npt.NDArray[np.float64] = CM.spectrum()
    p: npt.NDArray[np.float64] = CM.poly(1, 2)
    again = poly(1, 3, cache=True)  # the decorated function, through the cache
    return float(s.max() + p.max() + again.max() + sum(v.max() for v in CM.poly.get_all()))


if __name__ == "__main__":
    print(f"{peak():.3f}")
