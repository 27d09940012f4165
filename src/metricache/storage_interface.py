"""The seed's ``simple_metrics_manager.storage_interface`` module path.

Code that imports from it keeps working with only the package name changed; the
names are the same objects as those of the top-level :mod:`metricache`.
"""

from __future__ import annotations

from ._filebased import FileBasedStorageInterface
from ._interface import StorageInterface
from .storage import JsonStorageInterface, NpyStorageInterface, NpzStorageInterface

__all__ = [
    "FileBasedStorageInterface",
    "JsonStorageInterface",
    "NpyStorageInterface",
    "NpzStorageInterface",
    "StorageInterface",
]
