"""Metrics defined at module level, as users define them, for the pickling tests.

A spawned process unpickles a manager built here by importing this module, which
declares the same metrics on its own manager (``CM``): exactly what happens with a
user's analysis module.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from metricache import ParameterizedDatedCacheManager

CM = ParameterizedDatedCacheManager(tempfile.mkdtemp(prefix="metricache-portable-"), verbose=False)


@CM.collect(params_list=[[1], [2]])
def power(k: int) -> np.ndarray:
    """A collected family: the module attribute becomes the decorated function."""
    return np.arange(5.0) ** k


def plain() -> int:
    """A set_functions_dict metric, pickled by reference."""
    return 7


def pid() -> int:
    """Which process computed it."""
    return os.getpid()
