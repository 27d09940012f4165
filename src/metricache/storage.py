"""Storage interfaces: the seed's public classes, each a store paired with a codec.

:class:`StorageInterface` is the seed's three-method contract (``exists``,
``save``, ``load``); a subclass that implements only those is a working backend.
The managers call a richer, optional API (``write_entry``, ``read_entry``,
``info``, ``delete``, ...) whose defaults fall back on the three methods, and
which :class:`FileStorageInterface` implements with metadata, checksums and the
crash-safe commit protocol described in :mod:`metricache._meta`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._auto import AutoStorageInterface
from ._entries import MmapReader
from ._filestorage import FileStorageInterface
from ._interface import StorageInterface
from ._layout import DATE_SUFFIX
from ._locking import LockProvider
from .codecs import JsonCodec, NpyCodec, NpzCodec, PickleCodec

__all__ = [
    "DATE_SUFFIX",
    "AutoStorageInterface",
    "FileStorageInterface",
    "JsonStorageInterface",
    "NpyStorageInterface",
    "NpzStorageInterface",
    "PickleStorageInterface",
    "StorageInterface",
]


class NpzStorageInterface(FileStorageInterface):
    """Stores each metric as ``<name>.npz``: arrays, scalars, and lists, tuples or dicts of them.

    The container kind is recorded in the file, so a 1-element list comes back as a
    list and a dict with a key ``arr_0`` as a dict. Files written by
    simple_metrics_manager load exactly as they did there.

    Parameters
    ----------
    metrics_dir : str or os.PathLike
        The cache folder (or an fsspec URL: ``"s3://bucket/prefix"``); created when missing.
    compress : bool
        Write deflated members.
    allow_pickle : bool
        Allow object arrays (pickled: may not load under other Python/package versions,
        and loading pickles from untrusted folders can run code).
    list_limit : int, optional
        Refuse lists longer than this (a ``TypeError``), as the seed did.
    durable, verify, locks, storage_options, cache_dir, packed
        See :class:`FileStorageInterface`.
    """

    def __init__(
        self,
        metrics_dir: str | os.PathLike[str],
        compress: bool = False,
        allow_pickle: bool = False,
        list_limit: int | None = None,
        *,
        durable: bool = False,
        verify: bool = True,
        locks: LockProvider | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        packed: bool | None = None,
    ) -> None:
        self.compress, self.allow_pickle, self.list_limit = compress, allow_pickle, list_limit
        codec = NpzCodec(compress=compress, allow_pickle=allow_pickle, list_limit=list_limit)
        super().__init__(
            metrics_dir, codec, durable=durable, verify=verify, locks=locks,
            storage_options=storage_options, cache_dir=cache_dir, packed=packed,
        )  # fmt: skip


class NpyStorageInterface(FileStorageInterface):
    """Stores each metric as ``<name>.npy``: one array or scalar per metric, the fastest format.

    Parameters
    ----------
    metrics_dir : str or os.PathLike
        The cache folder (or an fsspec URL: ``"s3://bucket/prefix"``); created when missing.
    allow_pickle : bool
        Allow object arrays (pickled).
    mmap_mode : {None, "r"}
        ``"r"`` memory-maps arrays on load: O(1) in the array size; the checksum is
        then only checked by an explicit ``verify(name)`` (the size always is). It
        makes ``packed`` default to False: an array packed in the index (when
        ``packed=True``) is read into memory, not mapped.
    durable, verify, locks, storage_options, cache_dir, packed
        See :class:`FileStorageInterface`.
    """

    def __init__(
        self,
        metrics_dir: str | os.PathLike[str],
        allow_pickle: bool = False,
        *,
        mmap_mode: str | None = None,
        durable: bool = False,
        verify: bool = True,
        locks: LockProvider | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        packed: bool | None = None,
    ) -> None:
        if mmap_mode not in (None, "r"):
            raise ValueError(f"mmap_mode must be None or 'r', not {mmap_mode!r}")
        self.allow_pickle, self.mmap_mode = allow_pickle, mmap_mode
        codec = NpyCodec(allow_pickle=allow_pickle)
        super().__init__(
            metrics_dir, codec, durable=durable, verify=verify, locks=locks,
            storage_options=storage_options, cache_dir=cache_dir, packed=packed,
        )  # fmt: skip

    def _mmap_reader(self) -> MmapReader | None:
        if self.mmap_mode is None:
            return None
        codec, store = self.codec, self.store
        assert isinstance(codec, NpyCodec)

        def read(key: str, hint: str | None) -> Any:
            path = store.local_path(key)
            return None if path is None else codec.read_mmap(path, hint)

        return read


class JsonStorageInterface(FileStorageInterface):
    """Stores each metric as ``<name>.json``; numpy arrays and scalars become lists and numbers.

    Parameters
    ----------
    metrics_dir : str or os.PathLike
        The cache folder (or an fsspec URL: ``"s3://bucket/prefix"``); created when missing.
    durable, verify, locks, storage_options, cache_dir, packed
        See :class:`FileStorageInterface`.
    """

    def __init__(
        self,
        metrics_dir: str | os.PathLike[str],
        *,
        durable: bool = False,
        verify: bool = True,
        locks: LockProvider | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        packed: bool | None = None,
    ) -> None:
        super().__init__(
            metrics_dir, JsonCodec(), durable=durable, verify=verify, locks=locks,
            storage_options=storage_options, cache_dir=cache_dir, packed=packed,
        )  # fmt: skip


class PickleStorageInterface(FileStorageInterface):
    """Stores each metric as ``<name>.pkl``: any picklable value. Never a default.

    .. warning::
       Loading a pickle runs code chosen by whoever wrote the file: use this
       interface only on folders that nobody untrusted can write to.

    The pickle protocol is pinned (5). Each entry records the Python version
    (major.minor) and the versions of the packages whose classes the value holds;
    a load under other versions logs one warning per difference and process on the
    ``metricache`` logger, since such a pickle may load differently or not at all.
    Checksums, atomic commits and records work as for every other interface.

    Parameters
    ----------
    metrics_dir : str or os.PathLike
        The cache folder (or an fsspec URL: ``"s3://bucket/prefix"``); created by the
        first write.
    durable, verify, locks, storage_options, cache_dir, packed
        See :class:`FileStorageInterface`.
    """

    def __init__(
        self,
        metrics_dir: str | os.PathLike[str],
        *,
        durable: bool = False,
        verify: bool = True,
        locks: LockProvider | None = None,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        packed: bool | None = None,
    ) -> None:
        super().__init__(
            metrics_dir, PickleCodec(), durable=durable, verify=verify, locks=locks,
            storage_options=storage_options, cache_dir=cache_dir, packed=packed,
        )  # fmt: skip
