"""metricache: compute expensive metrics once, keep them in memory and on disk.

A drop-in successor of ``simple_metrics_manager``: change the import line and the
seed's code runs, its cache folders open without recomputation, and every write
is atomic and verified.
"""

from __future__ import annotations

# The seed's package imported its submodules, so `pkg.storage_interface.X` worked
# after a bare `import pkg`.
from . import dated_cache_manager, storage_interface
from ._filebased import FileBasedStorageInterface
from ._lease import S3LeaseLocks
from ._listing import CheckReport, Damage
from ._locking import LocalLocks, LockProvider, ThreadLocks
from ._manager import (
    CollectingDatedCacheManager,
    DataCacheManager,
    DatedCacheManager,
    ParameterizedDataCacheManager,
    ParameterizedDatedCacheManager,
)
from ._meta import EntryInfo
from ._names import default_name_generation_function
from ._parallel import GridSummary, GridValues
from ._parameterized import CollectedMetric
from ._seedhelpers import doublewrap_class_method, today
from ._version import __version__
from .exceptions import (
    CacheWriteWarning,
    CorruptEntryError,
    GridError,
    InvalidMetricNameError,
    LeaseLostError,
    LockTimeoutError,
    MetricacheError,
    MetricCycleError,
    MetricNameCollisionError,
    MetricNotStoredError,
    MissingDependencyError,
    PickleRequiredError,
    SharedLockWarning,
    StaleMetricError,
    UnknownMetricError,
    UnsupportedValueError,
)
from .provenance.graph import DependencyGraph
from .provenance.staleness import Reason, StaleReport
from .provenance.status import StatusRow, StatusTable
from .storage import (
    AutoStorageInterface,
    FileStorageInterface,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
    PickleStorageInterface,
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
    # filling grids (get_all / get_many)
    "GridSummary",
    "GridValues",
    # storage interfaces
    "AutoStorageInterface",
    "FileBasedStorageInterface",
    "FileStorageInterface",
    "JsonStorageInterface",
    "NpyStorageInterface",
    "NpzStorageInterface",
    "PickleStorageInterface",
    "StorageInterface",
    # locks
    "LocalLocks",
    "LockProvider",
    "S3LeaseLocks",
    "ThreadLocks",
    # metadata, listing and naming
    "CheckReport",
    "Damage",
    "EntryInfo",
    "default_name_generation_function",
    # staleness and provenance
    "DependencyGraph",
    "Reason",
    "StaleReport",
    "StatusRow",
    "StatusTable",
    # exceptions and warnings
    "CacheWriteWarning",
    "CorruptEntryError",
    "GridError",
    "InvalidMetricNameError",
    "LeaseLostError",
    "LockTimeoutError",
    "MetricCycleError",
    "MetricNameCollisionError",
    "MetricNotStoredError",
    "MetricacheError",
    "MissingDependencyError",
    "PickleRequiredError",
    "SharedLockWarning",
    "StaleMetricError",
    "UnknownMetricError",
    "UnsupportedValueError",
    # the seed's helpers and module paths (simple_metrics_manager.dated_cache_manager, ...)
    "dated_cache_manager",
    "doublewrap_class_method",
    "storage_interface",
    "today",
    # version
    "__version__",
]
