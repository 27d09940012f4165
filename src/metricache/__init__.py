"""metricache: compute expensive metrics once, keep them in memory and on disk.

A drop-in successor of ``simple_metrics_manager``: change the import line and the
seed's code runs, its cache folders open without recomputation, and every write
is atomic and verified.
"""

from __future__ import annotations

from ._manager import (
    CollectingDatedCacheManager,
    DataCacheManager,
    DatedCacheManager,
    ParameterizedDataCacheManager,
    ParameterizedDatedCacheManager,
)
from ._meta import EntryInfo
from ._names import default_name_generation_function
from ._parameterized import CollectedMetric
from ._version import __version__
from .exceptions import (
    CacheWriteWarning,
    CorruptEntryError,
    InvalidMetricNameError,
    LockTimeoutError,
    MetricacheError,
    MetricCycleError,
    MetricNameCollisionError,
    MetricNotStoredError,
    MissingDependencyError,
    UnknownMetricError,
    UnsupportedValueError,
)
from .storage import (
    FileStorageInterface,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
    StorageInterface,
)

__all__ = [
    # managers (and the seed's alternative names)
    "CollectingDatedCacheManager",
    "DataCacheManager",
    "DatedCacheManager",
    "ParameterizedDataCacheManager",
    "ParameterizedDatedCacheManager",
    "CollectedMetric",
    # storage interfaces
    "FileStorageInterface",
    "JsonStorageInterface",
    "NpyStorageInterface",
    "NpzStorageInterface",
    "StorageInterface",
    # metadata and naming
    "EntryInfo",
    "default_name_generation_function",
    # exceptions and warnings
    "CacheWriteWarning",
    "CorruptEntryError",
    "InvalidMetricNameError",
    "LockTimeoutError",
    "MetricCycleError",
    "MetricNameCollisionError",
    "MetricNotStoredError",
    "MetricacheError",
    "MissingDependencyError",
    "UnknownMetricError",
    "UnsupportedValueError",
    # version
    "__version__",
]
