"""Managers and storage interfaces pickle to a small description other processes rebuild."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import (
    DatedCacheManager,
    LocalLocks,
    NpyStorageInterface,
    NpzStorageInterface,
    ParameterizedDatedCacheManager,
    UnknownMetricError,
)

from . import _portable_metrics as metrics
from ._compare import assert_same


def build(folder: Path) -> ParameterizedDatedCacheManager:
    CM = ParameterizedDatedCacheManager(
        NpzStorageInterface(folder), verbose=False, lock_timeout=30, on_corrupt="raise"
    )
    CM.set_functions_dict({"plain": metrics.plain, "pid": metrics.pid, "anon": lambda: 1})
    CM.collect(metrics.power.__wrapped__, params_list=[[1], [2]])  # type: ignore[attr-defined]
    return CM


def in_child(blob: bytes, name: str, *args: Any) -> Any:
    """Unpickle a manager in this (spawned) process and get one metric through it."""
    CM = pickle.loads(blob)
    return getattr(CM, name)(*args) if args else CM[name]


def run_spawned(function: Any, *args: Any) -> Any:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def test_a_pickled_manager_is_a_small_description(tmp_path: Path) -> None:
    CM = build(tmp_path)
    CM.set_functions_dict({**CM.functions_dict, "big": lambda: np.zeros(1 << 20)})
    CM["big"]
    CM.power(2)
    blob = pickle.dumps(CM)
    assert len(blob) < 4000  # values in memory, locks and threads stay home
    copy = pickle.loads(blob)
    assert copy.cache == {} and copy.lock_timeout == 30 and copy.on_corrupt == "raise"
    assert copy.storage_interface.metrics_dir == str(tmp_path)
    assert_same(copy.power(2), np.arange(5.0) ** 2)
    assert copy.power.params_list == [[1], [2]]
    assert copy["plain"] == 7


def test_a_rebuilt_manager_in_another_process_shares_the_store(tmp_path: Path) -> None:
    CM = build(tmp_path)
    blob = pickle.dumps(CM)
    child_pid = run_spawned(in_child, blob, "pid")
    assert CM["pid"] == child_pid  # computed there, loaded here
    assert_same(run_spawned(in_child, blob, "power", 1), np.arange(5.0))
    assert CM.info("power_1").duration is not None  # the child stored it


def test_a_metric_whose_function_does_not_pickle_says_so(tmp_path: Path) -> None:
    copy = pickle.loads(pickle.dumps(build(tmp_path)))
    with pytest.raises(UnknownMetricError, match="could not be pickled"):
        copy["anon"]


def test_a_custom_lock_provider_travels_and_default_locks_are_rebuilt(tmp_path: Path) -> None:
    custom = LocalLocks(tmp_path)
    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False, locks=custom)
    copy = pickle.loads(pickle.dumps(CM))
    assert isinstance(copy.locks, LocalLocks) and copy.locks is not custom
    plain = pickle.loads(pickle.dumps(DatedCacheManager(NpyStorageInterface(tmp_path))))
    assert isinstance(plain.locks, LocalLocks)
