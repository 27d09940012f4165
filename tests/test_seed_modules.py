"""The seed's module layout and its FileBasedStorageInterface, on metricache.

simple_metrics_manager 0.2.1.1 had the modules ``dated_cache_manager`` and
``storage_interface`` (both star-imported by its package), and users extended it by
subclassing ``FileBasedStorageInterface(file_ext, metrics_dir)`` with
``_save(filepath, data)`` / ``_load(filepath)`` hooks.
"""

from __future__ import annotations

import errno
import importlib
import multiprocessing
import os
import pickle
import queue
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import metricache
from metricache import (
    CacheWriteWarning,
    DataCacheManager,
    FileBasedStorageInterface,
    InvalidMetricNameError,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
    ParameterizedDataCacheManager,
    today,
)
from metricache._store import _HOST, TEMP_PREFIX

from . import _seed_workers
from ._seed_workers import PATIENCE, PickleStorageInterface

SPAWN = multiprocessing.get_context("spawn")

_MANAGERS = ("CollectingDatedCacheManager", "DatedCacheManager", "ParameterizedDatedCacheManager")
_STORAGES = (
    "FileBasedStorageInterface",
    "JsonStorageInterface",
    "NpyStorageInterface",
    "NpzStorageInterface",
    "StorageInterface",
)
_HELPERS = ("doublewrap_class_method", "today")
#: The public names of each module of simple_metrics_manager 0.2.1.1 (its package
#: star-imported both submodules, which define no __all__).
SEED_NAMES: dict[str, tuple[str, ...]] = {
    "simple_metrics_manager": (
        *_MANAGERS,
        *_STORAGES,
        *_HELPERS,
        "dated_cache_manager",
        "storage_interface",
    ),
    "simple_metrics_manager.dated_cache_manager": (*_MANAGERS, *_HELPERS),
    "simple_metrics_manager.storage_interface": _STORAGES,
}


def ours(seed_module: str) -> str:
    return seed_module.replace("simple_metrics_manager", "metricache")


# -- the module layout -------------------------------------------------------------------


@pytest.mark.parametrize("seed_module", sorted(SEED_NAMES))
def test_seed_module_path_imports_with_the_seed_names(seed_module: str) -> None:
    module = importlib.import_module(ours(seed_module))
    missing = [name for name in SEED_NAMES[seed_module] if not hasattr(module, name)]
    assert not missing, f"{ours(seed_module)} lacks {missing}"
    for name in SEED_NAMES[seed_module]:
        assert getattr(module, name) is getattr(metricache, name), name


@pytest.mark.parametrize("seed_module", sorted(SEED_NAMES))
def test_star_import_of_a_seed_module_gives_its_names(seed_module: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"from {ours(seed_module)} import *", namespace)
    assert set(SEED_NAMES[seed_module]) <= set(namespace)


def test_seed_import_lines_run_with_only_the_package_name_changed() -> None:
    # A fresh interpreter: a bare `import pkg` must already expose the submodules.
    seed_code = """
import simple_metrics_manager as smm
assert smm.storage_interface.StorageInterface is smm.StorageInterface
assert smm.dated_cache_manager.today is smm.today
import simple_metrics_manager.storage_interface as si
from simple_metrics_manager import DatedCacheManager, NpzStorageInterface, today
from simple_metrics_manager.dated_cache_manager import doublewrap_class_method
from simple_metrics_manager.storage_interface import FileBasedStorageInterface
assert smm.dated_cache_manager.DatedCacheManager is DatedCacheManager
assert si.NpzStorageInterface is NpzStorageInterface
print(si.FileBasedStorageInterface.__name__, callable(doublewrap_class_method), today())
"""
    run = subprocess.run(
        [sys.executable, "-c", ours(seed_code)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[:2] == ["FileBasedStorageInterface", "True"]


def test_seed_private_helpers_some_users_reached_for() -> None:
    from metricache import dated_cache_manager as dcm

    assert dcm._DATE == "_date"
    assert dcm._default_name_generation_function("poly_Y", (1, 0.5)) == "poly_Y_1_0p5"


@pytest.mark.parametrize(
    "cls",
    [NpzStorageInterface, NpyStorageInterface, JsonStorageInterface],
    ids=lambda c: c.__name__,
)
def test_builtin_interfaces_are_file_based_as_in_the_seed(cls: type, tmp_path: Path) -> None:
    assert issubclass(cls, FileBasedStorageInterface)
    assert isinstance(cls(tmp_path), FileBasedStorageInterface)


def test_today_is_the_seeds_local_date_string() -> None:
    # The seed returned time.strftime('%Y-%m-%d'); bracket it in case midnight passes.
    before = time.strftime("%Y-%m-%d")
    value = today()
    assert value in {before, time.strftime("%Y-%m-%d")}
    assert isinstance(value, str)


# -- a user's FileBasedStorageInterface subclass -----------------------------------------


class Calls:
    """A metric function that counts its calls and returns *value*."""

    def __init__(self, value: Any) -> None:
        self.value, self.count = value, 0

    def __call__(self, *args: Any) -> Any:
        self.count += 1
        return self.value


def files_in(folder: Path) -> list[str]:
    """Every file directly in *folder*, hidden temp files included (not the lock folder)."""
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def test_pickle_interface_computes_once_and_reloads_in_a_fresh_manager(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    first = Calls({"rows": [1, 2], "label": "spectrum"})
    CM = DataCacheManager(PickleStorageInterface(folder), verbose=False)
    CM.set_functions_dict({"spectrum": first})
    assert CM["spectrum"] == first.value
    assert CM["spectrum"] == first.value
    assert first.count == 1
    # The seed's layout: the data and its date sidecar, both through the user's hook.
    assert files_in(folder) == ["spectrum.pkl", "spectrum_date.pkl"]

    again = Calls("must not be computed")
    CM2 = DataCacheManager(PickleStorageInterface(folder), verbose=False)
    CM2.set_functions_dict({"spectrum": again})
    assert CM2["spectrum"] == first.value
    assert again.count == 0
    assert CM2["spectrum_date"] == today()
    with open(folder / "spectrum_date.pkl", "rb") as f:
        assert pickle.load(f) == today()


def test_pickle_interface_under_the_parameterized_manager(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    calls: list[tuple[int, int]] = []

    def define(CM: Any) -> None:
        @CM.collect(params_list=[[1, 2], [3, 4]])
        def poly(a: int, b: int) -> dict[str, int]:
            calls.append((a, b))
            return {"a": a, "b": b}

    CM = ParameterizedDataCacheManager(PickleStorageInterface(folder), verbose=False)
    define(CM)
    assert CM.poly(1, 2) == {"a": 1, "b": 2}
    assert calls == [(1, 2)]
    assert (folder / "poly_1_2.pkl").exists() and (folder / "poly_1_2_date.pkl").exists()

    CM2 = ParameterizedDataCacheManager(PickleStorageInterface(folder), verbose=False)
    define(CM2)
    assert CM2.poly(1, 2) == {"a": 1, "b": 2}
    assert CM2.poly(3, 4) == {"a": 3, "b": 4}
    assert calls == [(1, 2), (3, 4)]
    assert CM2["poly_1_2_date"] == today()


def test_folder_written_by_the_old_package_opens_without_recomputation(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    # What the seed's save() left for a pickle interface: data, a dated sidecar, and
    # (after a crash) its own temp file `<name>.tmp<ext>`.
    for file, value in [
        ("counts.pkl", {"a": [1, 2, 3]}),
        ("counts_date.pkl", "2019-05-04"),
        ("poly_1_2.pkl", 5),
        ("poly_1_2_date.pkl", "2019-05-05"),
        ("counts.tmp.pkl", "half-written"),
    ]:
        with open(folder / file, "wb") as f:
            pickle.dump(value, f)
    storage = PickleStorageInterface(folder)
    assert storage.stored_names() == ["counts", "poly_1_2"]

    never = Calls("recomputed")
    CM = ParameterizedDataCacheManager(storage, verbose=False)
    CM.set_functions_dict({"counts": never})

    @CM.collect(params_list=[[1, 2]])
    def poly(a: int, b: int) -> int:
        return never()

    assert CM["counts"] == {"a": [1, 2, 3]}
    assert CM.poly(1, 2) == 5
    assert never.count == 0
    assert CM["counts_date"] == "2019-05-04"
    assert CM["poly_1_2_date"] == "2019-05-05"
    assert CM.info("counts").legacy


def test_hook_failing_midway_keeps_the_old_value_and_leaves_no_litter(tmp_path: Path) -> None:
    class FlakyPickle(PickleStorageInterface):
        fail = False

        def _save(self, filepath: str, data: Any) -> None:
            with open(filepath, "wb") as fid:
                fid.write(pickle.dumps(data)[:3])  # a partial write, then the disk is full
                if self.fail:
                    raise OSError(errno.ENOSPC, "No space left on device")
            super()._save(filepath, data)

    folder = tmp_path / "cache"
    storage = FlakyPickle(folder)
    CM = DataCacheManager(storage, verbose=False)
    values = iter(["old", "new"])
    CM.set_functions_dict({"x": lambda: next(values)})
    assert CM["x"] == "old"

    storage.fail = True
    with pytest.warns(CacheWriteWarning, match="No space left"):
        assert CM.get("x", use_stored=False) == "new"  # computed values are never lost
    with pytest.raises(OSError, match="No space left"):
        storage.save("x", "newer")
    assert files_in(folder) == ["x.pkl", "x_date.pkl"]
    assert DataCacheManager(PickleStorageInterface(folder), verbose=False).load("x") == "old"


def test_temp_file_ends_with_file_ext_so_np_save_appends_nothing(tmp_path: Path) -> None:
    class UserNpy(FileBasedStorageInterface):
        def __init__(self, metrics_dir: Path) -> None:
            super().__init__(".npy", metrics_dir)

        def _save(self, filepath: str, data: Any) -> None:
            np.save(filepath, data)

        def _load(self, filepath: str) -> Any:
            return np.load(filepath)

    storage = UserNpy(tmp_path)
    storage.save("arr", np.arange(3))
    np.testing.assert_array_equal(storage.load("arr"), np.arange(3))
    assert files_in(tmp_path) == ["arr.npy"]


def test_hook_that_writes_elsewhere_fails_clearly(tmp_path: Path) -> None:
    class Misplaced(PickleStorageInterface):
        def _save(self, filepath: str, data: Any) -> None:
            super()._save(filepath + ".bak", data)

    with pytest.raises(FileNotFoundError, match="must write exactly that path"):
        Misplaced(tmp_path).save("x", 1)
    assert not (tmp_path / "x.pkl").exists()


def test_cleanup_removes_dead_writers_temp_files_and_keeps_live_ones(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                           capture_output=True, check=True)  # fmt: skip
    dead = tmp_path / f"{TEMP_PREFIX}{_HOST}-{int(child.stdout)}-0123456789ab.pkl"
    live = tmp_path / f"{TEMP_PREFIX}{_HOST}-{os.getpid()}-0123456789ab.pkl"
    dead.write_bytes(b"abandoned")
    live.write_bytes(b"in progress")
    storage = PickleStorageInterface(tmp_path)
    assert dead.exists()  # opening changes nothing
    assert storage.cleanup() == 1
    assert not dead.exists()
    assert live.exists()


def test_names_are_validated_before_any_file_is_touched(tmp_path: Path) -> None:
    storage = PickleStorageInterface(tmp_path / "cache")
    for bad in ("../escape", "a/b", ".hidden", "con"):
        with pytest.raises(InvalidMetricNameError):
            storage.save(bad, 1)
        with pytest.raises(InvalidMetricNameError):
            storage.exists(bad)
    assert list(tmp_path.iterdir()) == []  # not even the folder: nothing was written


def test_subclass_without_hooks_fails_at_construction(tmp_path: Path) -> None:
    class LoadOnly(FileBasedStorageInterface):
        def _load(self, filepath: str) -> Any:
            return None

    with pytest.raises(TypeError, match=r"implement _save\(\)"):
        LoadOnly(".bin", tmp_path)
    with pytest.raises(TypeError, match=r"implement _save\(\) and _load\(\)"):
        FileBasedStorageInterface(".bin", tmp_path)


def test_subclass_overriding_the_public_methods_needs_no_hooks(tmp_path: Path) -> None:
    class Text(FileBasedStorageInterface):
        """Seed style: public save/load built on the seed's _get_filepath helper."""

        def save(self, name: str, data: Any) -> None:
            Path(self._get_filepath(name)).write_text(str(data))

        def load(self, name: str) -> Any:
            return Path(self._get_filepath(name)).read_text()

    CM = DataCacheManager(Text(".txt", tmp_path), verbose=False)
    CM.set_functions_dict({"x": lambda: "hello"})
    assert CM["x"] == "hello"
    assert (tmp_path / "x.txt").read_text() == "hello"
    assert CM["x_date"] == today()


def test_delete_removes_the_entry_and_its_sidecar_but_no_metric_of_its_own(
    tmp_path: Path,
) -> None:
    storage = PickleStorageInterface(tmp_path)
    CM = DataCacheManager(storage, verbose=False)
    CM.set_functions_dict({"run": lambda: "r", "run_date": lambda: "a metric", "z": lambda: 1})
    assert CM["run_date"] == "a metric"
    assert CM["run"] == "r"  # its sidecar's place is taken: stored undated, not over it
    assert CM["z"] == 1
    assert storage.stored_names() == ["run", "run_date", "z"]

    assert storage.delete("z") and storage.delete("run")
    assert not storage.delete("z")
    assert storage.stored_names() == ["run_date"]
    assert DataCacheManager(PickleStorageInterface(tmp_path), verbose=False).load("run_date") == (
        "a metric"
    )
    assert files_in(tmp_path) == ["run_date.pkl", "run_date_date.pkl"]


# -- across processes --------------------------------------------------------------------


def test_processes_computing_one_missing_metric_compute_it_once(tmp_path: Path) -> None:
    folder, log = tmp_path / "cache", tmp_path / "calls.txt"
    n = 3
    barrier, results = SPAWN.Barrier(n), SPAWN.Queue()
    procs = [
        SPAWN.Process(
            target=_seed_workers.get_slow, args=(str(folder), str(log), barrier, results)
        )
        for _ in range(n)
    ]
    for proc in procs:
        proc.start()
    try:
        found = [results.get(timeout=2 * PATIENCE) for _ in range(n)]
    except queue.Empty:
        pytest.fail(f"workers did not report; exit codes {[p.exitcode for p in procs]}")
    finally:
        for proc in procs:
            proc.join(PATIENCE)
            if proc.is_alive():
                proc.kill()
        results.close()
    assert all(status == "ok" for status, _ in found), found
    assert len(log.read_text().splitlines()) == 1
    assert len({value["computed_by"] for _, value in found}) == 1
