"""Manager semantics: the seed's API on every manager class, over real folders."""

from __future__ import annotations

import builtins
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import (
    AutoStorageInterface,
    CollectingDatedCacheManager,
    DatedCacheManager,
    MetricNotStoredError,
    NpyStorageInterface,
    NpzStorageInterface,
    ParameterizedDatedCacheManager,
    StorageInterface,
    UnknownMetricError,
)

from .conftest import Counter

MANAGERS = [DatedCacheManager, CollectingDatedCacheManager, ParameterizedDatedCacheManager]


class SpyStorage(NpzStorageInterface):
    """An npz storage interface that counts reads and writes."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.reads = 0
        self.writes = 0

    def read_entry(self, name: str) -> Any:
        self.reads += 1
        return super().read_entry(name)

    def write_entry(self, name: str, value: Any, duration: float | None = None) -> Any:
        self.writes += 1
        return super().write_entry(name, value, duration)


@pytest.fixture(params=MANAGERS, ids=lambda c: c.__name__)
def manager_class(request: pytest.FixtureRequest) -> type[DatedCacheManager]:
    return request.param  # type: ignore[no-any-return]


def test_get_miss_computes_once_and_writes_once(
    manager_class: type[DatedCacheManager], tmp_path: Path, counter: Counter
) -> None:
    spy = SpyStorage(tmp_path)
    CM = manager_class(spy, verbose=False)
    CM.set_functions_dict({"m": counter})
    assert CM.get("m") == 42
    assert (counter.calls, spy.writes) == (1, 1)
    assert CM["m"] == 42 and CM.get("m") == 42
    assert (counter.calls, spy.writes) == (1, 1)


def test_stored_value_is_read_exactly_once(
    manager_class: type[DatedCacheManager], tmp_path: Path, counter: Counter
) -> None:
    DatedCacheManager(NpzStorageInterface(tmp_path), verbose=False).set_functions_dict({})
    first = manager_class(NpzStorageInterface(tmp_path), verbose=False)
    first.set_functions_dict({"m": counter})
    first.get("m")
    spy = SpyStorage(tmp_path)
    second = manager_class(spy, verbose=False)
    second.set_functions_dict({"m": counter})
    assert second.get("m") == 42 and second["m"] == 42
    assert (spy.reads, spy.writes, counter.calls) == (1, 0, 1)


def test_memory_hit_makes_no_filesystem_call(
    npz_manager: DatedCacheManager, counter: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    npz_manager.set_functions_dict({"m": counter})

    @npz_manager.collect
    def collected() -> int:
        return 7

    npz_manager.get("m")
    npz_manager.collected()

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("file system touched on a memory hit")

    for module, name in [(builtins, "open"), (os, "stat"), (os, "open"), (os, "scandir")]:
        monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr(os.path, "exists", forbidden)
    assert npz_manager.get("m") == 42
    assert npz_manager["m"] == 42
    assert npz_manager.collected() == 7
    assert collected(cache=True) == 7


def test_use_stored_false_recomputes_and_overwrites(tmp_path: Path) -> None:
    values = iter([1, 2])
    CM = DatedCacheManager(NpzStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: next(values)})
    assert CM.get("m") == 1
    assert CM.get("m", use_stored=False) == 2
    assert CM.get("m") == 2
    fresh = DatedCacheManager(NpzStorageInterface(tmp_path), verbose=False)
    assert fresh["m"] == 2


def test_compute_is_memory_only(npz_manager: DatedCacheManager, counter: Counter) -> None:
    npz_manager.set_functions_dict({"m": counter})
    assert npz_manager.compute("m") == 42
    assert npz_manager.compute("m") == 42 and counter.calls == 1
    assert npz_manager.compute("m", force=True) == 42 and counter.calls == 2
    assert not npz_manager.storage_interface.exists("m")


def test_save_then_load(npz_manager: DatedCacheManager, counter: Counter) -> None:
    npz_manager.set_functions_dict({"m": counter})
    npz_manager.save("m")
    npz_manager.save("m")  # already stored: nothing to do
    assert counter.calls == 1
    npz_manager.clear_cache()
    assert npz_manager.load("m") == 42
    npz_manager.save("m", force=True)
    assert counter.calls == 2


def test_load_of_never_stored_metric_raises(npz_manager: DatedCacheManager) -> None:
    npz_manager.set_functions_dict({"m": lambda: 1})
    with pytest.raises(MetricNotStoredError, match="'m' is not stored") as info:
        npz_manager.load("m")
    assert isinstance(info.value, LookupError)


def test_exists_means_available_without_computing(
    npz_manager: DatedCacheManager, counter: Counter
) -> None:
    npz_manager.set_functions_dict({"m": counter})
    assert not npz_manager.exists("m")
    npz_manager.compute("m")
    assert npz_manager.exists("m")  # in memory
    npz_manager.clear_cache()
    assert not npz_manager.exists("m")
    npz_manager.get("m")
    npz_manager.clear_cache()
    assert npz_manager.exists("m")  # stored


def test_clear_cache_keeps_stored_values(npz_manager: DatedCacheManager, counter: Counter) -> None:
    npz_manager.set_functions_dict({"m": counter})
    npz_manager.get("m")
    npz_manager.clear_cache()
    assert npz_manager.cache == {}
    assert npz_manager.get("m") == 42 and counter.calls == 1


def test_delete_removes_memory_and_store(npz_manager: DatedCacheManager, counter: Counter) -> None:
    npz_manager.set_functions_dict({"m": counter})
    npz_manager.get("m")
    assert npz_manager.delete("m") is True
    assert not npz_manager.exists("m")
    assert npz_manager.delete("m") is False
    assert npz_manager.get("m") == 42 and counter.calls == 2


def test_unknown_metric_names_the_closest_known(npz_manager: DatedCacheManager) -> None:
    npz_manager.set_functions_dict({"temperature": lambda: 1, "pressure": lambda: 2})
    with pytest.raises(UnknownMetricError, match="'temprature'.*did you mean 'temperature'"):
        npz_manager.get("temprature")
    with pytest.raises(ValueError):
        npz_manager["nothing_like_it"]


def test_failing_metric_stores_nothing_and_propagates(npz_manager: DatedCacheManager) -> None:
    class Boom(Exception):
        pass

    def broken() -> None:
        raise Boom("no data today")

    npz_manager.set_functions_dict({"broken": broken})
    with pytest.raises(Boom, match="no data today") as info:
        npz_manager.get("broken")
    assert type(info.value) is Boom
    if hasattr(info.value, "__notes__"):
        assert any("broken" in note for note in info.value.__notes__)
    assert "broken" not in npz_manager.cache
    assert not npz_manager.storage_interface.exists("broken")
    assert npz_manager.storage_interface.stored_names() == []


def test_dates(tmp_path: Path) -> None:
    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: np.arange(3)})
    before = datetime.now(timezone.utc)
    CM.get("m")
    fresh = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    stamp = fresh.date("m")
    assert stamp.tzinfo is not None
    assert before <= stamp <= datetime.now(timezone.utc)
    assert fresh["m_date"] == stamp.astimezone().strftime("%Y-%m-%d")
    info = fresh.info("m")
    assert info.size == os.path.getsize(tmp_path / "m.npy")
    assert info.checksum and info.checksum.startswith("xxh3_64:")
    with pytest.raises(MetricNotStoredError):
        fresh.date("other")


def test_metrics_can_use_the_manager(npz_manager: DatedCacheManager) -> None:
    CM = npz_manager
    CM.set_functions_dict({"a": lambda: np.arange(4), "b": lambda: CM["a"].sum()})
    assert CM["b"] == 6
    assert sorted(CM.storage_interface.stored_names()) == ["a", "b"]


def test_minimal_storage_interface_subclass_works(tmp_path: Path) -> None:
    class DictStorage(StorageInterface):
        def __init__(self) -> None:
            self.data: dict[str, Any] = {}

        def exists(self, name: str) -> bool:
            return name in self.data

        def save(self, name: str, data: Any) -> None:
            self.data[name] = data

        def load(self, name: str) -> Any:
            return self.data[name]

    storage = DictStorage()
    CM = DatedCacheManager(storage, verbose=False)
    CM.set_functions_dict({"m": lambda: [1, 2]})
    assert CM["m"] == [1, 2]
    assert storage.data["m"] == [1, 2]
    assert storage.data["m_date"] == datetime.now().strftime("%Y-%m-%d")
    CM.clear_cache()
    assert CM["m"] == [1, 2]
    assert CM["m_date"] == storage.data["m_date"]


def test_storage_interface_missing_a_method_fails_at_construction() -> None:
    class Incomplete(StorageInterface):
        def exists(self, name: str) -> bool:
            return False

        def save(self, name: str, data: Any) -> None:
            pass

    with pytest.raises(TypeError, match="load"):
        Incomplete()  # type: ignore[abstract]


def test_metrics_dir_accepts_pathlike_and_its_first_write_creates_parents(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b" / "c"
    storage = NpyStorageInterface(folder)
    assert not (tmp_path / "a").exists()  # opening creates nothing
    assert storage.metrics_dir == str(folder)
    storage.save("m", np.arange(3))
    assert folder.is_dir()
    NpzStorageInterface(str(tmp_path / "as-str")).save("m", 1)
    assert (tmp_path / "as-str" / "m.npz").is_file()


def test_on_corrupt_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_corrupt"):
        DatedCacheManager(NpzStorageInterface(tmp_path), on_corrupt="ignore")  # type: ignore[arg-type]


def test_assigning_the_cache_replaces_its_contents(npz_manager: DatedCacheManager) -> None:
    values = iter([1, 2])

    @npz_manager.collect
    def m() -> int:
        return next(values)

    assert npz_manager.m() == 1
    same = npz_manager.cache
    npz_manager.cache = {}  # as seed code might do to forget values
    assert npz_manager.cache is same and same == {}
    npz_manager.delete("m")
    assert npz_manager.m() == 2  # not a stale memory hit
    npz_manager.cache = {"m": 5}
    assert npz_manager.m() == 5 and npz_manager["m"] == 5


# -- a folder path instead of a storage interface -------------------------------------


@pytest.mark.parametrize("as_type", [str, Path], ids=["str", "PathLike"])
def test_a_folder_path_means_auto_storage_there(as_type: type, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    NpzStorageInterface(folder).save("old", [np.ones(2)])  # a folder of the npz default
    CM = DatedCacheManager(as_type(folder), verbose=False)
    assert type(CM.storage_interface) is AutoStorageInterface
    assert CM.storage_interface.metrics_dir == str(folder)
    CM.set_functions_dict({"m": lambda: np.arange(3), "parts": lambda: [np.zeros(1)]})
    CM.get("m")
    CM.get("parts")
    assert (folder / "m.npy").is_file() and (folder / "parts.npz").is_file()
    again = DatedCacheManager(str(folder), verbose=False)
    np.testing.assert_array_equal(again.load("m"), [0, 1, 2])
    np.testing.assert_array_equal(again.load("old")[0], [1, 1])


@pytest.mark.parametrize("wrong", [42, None, b"cache/", NpzStorageInterface])
def test_anything_else_is_a_type_error_naming_what_was_expected(
    wrong: Any, tmp_path: Path
) -> None:
    with pytest.raises(TypeError, match="StorageInterface.*folder path") as caught:
        DatedCacheManager(wrong)
    assert type(wrong).__qualname__ in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_dropped_manager_frees_its_values_at_once(tmp_path: Path) -> None:
    import gc
    import weakref

    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: np.zeros(1000)})
    held = weakref.ref(CM)
    CM["m"]
    gc.disable()  # no cycle collector: only reference counts may free it
    try:
        del CM
        assert held() is None  # no reference cycle keeps it (and its values) alive
    finally:
        gc.enable()
