"""The seed's ``simple_metrics_manager.dated_cache_manager`` module path.

Code that imports from it keeps working with only the package name changed; the
names are the same objects as those of the top-level :mod:`metricache`.
"""

from __future__ import annotations

from ._interface import DATE_SUFFIX
from ._manager import (
    CollectingDatedCacheManager,
    DataCacheManager,
    DatedCacheManager,
    ParameterizedDataCacheManager,
    ParameterizedDatedCacheManager,
)
from ._names import default_name_generation_function
from ._seedhelpers import doublewrap_class_method, today

__all__ = [
    "CollectingDatedCacheManager",
    "DataCacheManager",
    "DatedCacheManager",
    "ParameterizedDataCacheManager",
    "ParameterizedDatedCacheManager",
    "doublewrap_class_method",
    "today",
]

# Two private names of the seed that its users reached for: a custom
# name_generation_function that extends the default, and the sidecar suffix.
_default_name_generation_function = default_name_generation_function
_DATE = DATE_SUFFIX
