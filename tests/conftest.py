"""Shared fixtures: real folders in tmp_path, one per storage interface."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import metricache
from metricache import (
    AutoStorageInterface,
    DatedCacheManager,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
    PickleStorageInterface,
    StorageInterface,
)
from metricache._homes import ENV_VAR
from metricache._layout import record_key

from ._s3server import S3Server

#: Every built-in single-format storage interface: the suites that find a data file
#: by its interface's ``file_ext`` or swap its ``codec`` (atomicity, corruption,
#: metadata, hostile folders) run against each.
STORAGE_CLASSES: list[type[StorageInterface]] = [
    NpzStorageInterface,
    NpyStorageInterface,
    JsonStorageInterface,
]
#: Every built-in storage interface: the storage contract runs against each. The
#: auto interface has no single format (``file_ext`` is empty), so it joins here only.
CONTRACT_CLASSES: list[type[StorageInterface]] = [
    *STORAGE_CLASSES,
    AutoStorageInterface,
    PickleStorageInterface,
]


def record_file(folder: Path, name: str, ext: str) -> Path:
    """The record of data file ``<name><ext>`` in cache folder *folder*."""
    return folder / record_key(name, ext)


@pytest.fixture(params=STORAGE_CLASSES, ids=lambda c: c.__name__)
def storage_class(request: pytest.FixtureRequest) -> type[StorageInterface]:
    """Each built-in storage interface class in turn."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def storage(storage_class: Callable[[Path], StorageInterface], tmp_path: Path) -> StorageInterface:
    """A storage interface of each kind over a fresh folder."""
    return storage_class(tmp_path / "cache")


@pytest.fixture
def npz_manager(tmp_path: Path) -> DatedCacheManager:
    """A quiet manager over a fresh npz folder."""
    return DatedCacheManager(NpzStorageInterface(tmp_path / "cache"), verbose=False)


class Counter:
    """Counts calls of a metric function, returning a fixed value."""

    def __init__(self, value: Any = 42) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.value


@pytest.fixture
def counter() -> Counter:
    """A call-counting metric function returning 42."""
    return Counter()


@pytest.fixture(autouse=True)
def _per_file_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """New folders get one file per entry: most suites look at the files themselves.

    The suites that prove safety ask for :func:`home` (both homes in turn); the
    packed home's own tests for :func:`detected_home`. Spawned and forked workers
    inherit the choice through the environment.
    """
    monkeypatch.setenv(ENV_VAR, "0")


@pytest.fixture(params=["files", "packed"])
def home(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where new folders keep their entries, each in turn: one file each, or packed."""
    monkeypatch.setenv(ENV_VAR, "1" if request.param == "packed" else "0")
    return str(request.param)


@pytest.fixture
def detected_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """New folders get the home metricache detects (packed on a local disk)."""
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture(autouse=True)
def _quiet_metricache_logger() -> Iterator[None]:
    """Leave the metricache logger as each test found it."""
    logger = logging.getLogger("metricache")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


__all__ = ["CONTRACT_CLASSES", "STORAGE_CLASSES", "Counter", "metricache", "record_file"]


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """A real Dask LocalCluster for the session: 2 worker processes x 1 thread."""
    distributed = pytest.importorskip("distributed")  # `make test` installs the dask extra
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        # Any free port: the default 8787 may be taken, and its "already in use"
        # UserWarning would be an error under filterwarnings = ["error"].
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A real S3-compatible server (moto, server mode) on 127.0.0.1 for the session.

    Tests take buckets of their own with ``s3.bucket()`` and reach the server with
    ``s3.storage_options()`` (picklable, for worker processes) or ``s3.filesystem()``.
    """
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_url(s3: S3Server, request: pytest.FixtureRequest) -> str:
    """``s3://<a fresh bucket>/cache``: an empty cache folder on the test server."""
    return f"s3://{s3.bucket(request.node.name[:30])}/cache"
