"""Values held in memory cannot be changed behind the cache's back.

Arrays come out of memory as read-only views, lists and dicts as fresh containers,
and memory holds what a later load returns, so the computing process and the next
see the same values and types. ``readonly=False`` restores the seed's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import (
    DatedCacheManager,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
    ParameterizedDatedCacheManager,
    StorageInterface,
    UnsupportedValueError,
)

from ._compare import assert_same
from .conftest import Counter

#: Every way a caller gets a value out of a manager that has ``m``.
ROUTES: dict[str, Callable[[DatedCacheManager], Any]] = {
    "get": lambda CM: CM.get("m"),
    "getitem": lambda CM: CM["m"],
    "metric": lambda CM: CM.m(),
    "compute": lambda CM: CM.compute("m"),
    "load": lambda CM: CM.load("m"),
    "use_stored=False": lambda CM: CM.get("m", use_stored=False),
}


def make(
    folder: Path,
    value: Any,
    storage: type[StorageInterface] = NpzStorageInterface,
    **kwargs: Any,
) -> DatedCacheManager:
    """A quiet manager with the collected metric ``m`` returning *value*."""
    CM = DatedCacheManager(storage(folder), verbose=False, **kwargs)  # type: ignore[call-arg]
    CM.collect(Counter(value), name="m")
    return CM


def route_value(CM: DatedCacheManager, route: str) -> Any:
    """The value of ``m`` got by *route* (``load`` after storing it and forgetting it)."""
    if route == "load":
        CM.save("m")
        CM.clear_cache()
    return ROUTES[route](CM)


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("first", [True, False], ids=["first-call", "memory-hit"])
def test_in_place_change_of_an_array_raises_and_changes_nothing(
    route: str, first: bool, tmp_path: Path
) -> None:
    # The old symptom: `s = CM.spectrum(); s /= s.max()` changed every later CM.spectrum().
    CM = make(tmp_path, np.arange(1.0, 5.0))
    if not first:
        CM.get("m")
    s = route_value(CM, route)
    with pytest.raises(ValueError, match="read-only"):
        s /= s.max()
    with pytest.raises(ValueError, match="read-only"):
        s[0] = 100
    np.testing.assert_array_equal(CM.m(), [1.0, 2.0, 3.0, 4.0])
    mine = s.copy()  # the documented way out
    mine /= mine.max()
    assert mine[-1] == 1.0


def test_the_collect_wrapper_with_cache_true_is_read_only(tmp_path: Path) -> None:
    CM = DatedCacheManager(NpzStorageInterface(tmp_path), verbose=False)

    @CM.collect
    def spectrum() -> np.ndarray:
        return np.arange(3.0)

    for value in (spectrum(cache=True), spectrum(cache=True, use_stored=False)):
        assert not value.flags.writeable
    assert spectrum().flags.writeable  # the original function is unchanged


def test_the_users_own_array_stays_writeable(tmp_path: Path) -> None:
    mine = np.zeros(3)
    CM = make(tmp_path, mine)
    held = CM.get("m")
    assert mine.flags.writeable and not held.flags.writeable
    assert held is not mine and np.shares_memory(held, mine)  # a view, not a copy
    mine[0] = 1  # the user's array is theirs to change


def test_a_memory_hit_is_the_same_object_every_time(tmp_path: Path) -> None:
    # No copy or wrapper on the hot path: the held read-only view is handed out as is.
    CM = make(tmp_path, np.arange(3))
    first = CM.get("m")
    assert CM.get("m") is first and CM["m"] is first and CM.m() is first
    assert CM.cache["m"] is first


def test_zero_dimensional_array_is_read_only(tmp_path: Path) -> None:
    CM = make(tmp_path, np.array(7.0))
    value = CM.m()
    assert type(value) is np.ndarray and value.ndim == 0
    with pytest.raises(ValueError, match="read-only"):
        value[()] = 8.0
    with pytest.raises(ValueError, match="read-only"):
        value += 1
    assert CM.m() == 7.0


@pytest.mark.parametrize("storage", [NpzStorageInterface, NpyStorageInterface])
def test_numpy_scalars_are_handed_out_as_they_are(
    storage: type[StorageInterface], tmp_path: Path
) -> None:
    CM = make(tmp_path, np.float32(1.5), storage)
    assert type(CM.m()) is np.float32 and CM.m() == 1.5
    fresh = make(tmp_path, None, storage)
    assert type(fresh.m()) is np.float32


def test_structured_scalar_cannot_write_into_the_users_array(tmp_path: Path) -> None:
    # A structured scalar taken from an array is a view into it: writable through.
    records = np.zeros(2, dtype=[("x", "f8")])
    CM = make(tmp_path, records[0])
    held = CM.m()
    with pytest.raises(ValueError, match="read-only"):
        held["x"] = 5
    assert records["x"][0] == 0 and CM.m()["x"] == 0


def test_a_returned_list_is_not_a_handle_into_the_cache(tmp_path: Path) -> None:
    CM = make(tmp_path, [np.arange(3), 1.5])
    got = CM.m()
    got.append(1)
    got[1] = "changed"
    assert len(CM.m()) == 2 and CM.m()[1] == 1.5 and CM["m"][1] == 1.5
    with pytest.raises(ValueError, match="read-only"):
        got[0][0] = 9
    np.testing.assert_array_equal(CM.get("m")[0], [0, 1, 2])
    assert CM.m() is not CM.m() and CM.m()[0] is CM.m()[0]  # fresh list, shared arrays


def test_a_returned_dict_is_not_a_handle_into_the_cache(tmp_path: Path) -> None:
    CM = make(tmp_path, {"a": np.arange(2), "b": 3})
    got = CM.get("m")
    got["c"] = 4
    del got["a"]
    assert list(CM.get("m")) == ["a", "b"]
    with pytest.raises(ValueError, match="read-only"):
        CM["m"]["a"][0] = 1
    assert CM.exists("m") and "m" not in CM.cache  # held apart from the hot dict


def test_arrays_inside_a_tuple_are_read_only(tmp_path: Path) -> None:
    CM = make(tmp_path, (np.arange(2), np.arange(3)))
    got = CM.m()
    assert type(got) is tuple and not any(a.flags.writeable for a in got)
    assert CM.m() is got  # a tuple of read-only arrays is safe to share


@pytest.mark.parametrize("route", ["get", "load"])
def test_containers_from_load_are_protected_too(route: str, tmp_path: Path) -> None:
    make(tmp_path, [np.arange(3)]).get("m")
    fresh = make(tmp_path, None)
    got = fresh.get("m") if route == "get" else fresh.load("m")
    got.clear()
    assert len(fresh.m()) == 1 and not fresh.m()[0].flags.writeable


def test_nested_json_containers_are_fresh_all_the_way_down(tmp_path: Path) -> None:
    CM = make(tmp_path, {"rows": [[1, 2], [3]]}, JsonStorageInterface)
    got = CM.m()
    got["rows"][0].append(99)
    got["rows"].append([4])
    assert CM.m() == {"rows": [[1, 2], [3]]}


@pytest.mark.parametrize("route", ["get", "compute"])
def test_json_memory_holds_what_a_later_load_returns(route: str, tmp_path: Path) -> None:
    # The old symptom: the computing process got an ndarray and a tuple, every later
    # process lists.
    value = {"spectrum": np.arange(3), "peak": (np.float32(0.5), 2)}
    CM = make(tmp_path, value, JsonStorageInterface)
    first = CM.get("m") if route == "get" else CM.compute("m")
    CM.save("m")
    later = make(tmp_path, None, JsonStorageInterface).get("m")
    assert_same(later, first)
    assert_same(later, CM.m())
    assert first == {"spectrum": [0, 1, 2], "peak": [0.5, 2]}


@pytest.mark.parametrize("storage", [NpzStorageInterface, NpyStorageInterface])
def test_npz_and_npy_memory_holds_the_computed_types(
    storage: type[StorageInterface], tmp_path: Path
) -> None:
    value = np.arange(4, dtype=np.int16)
    first = make(tmp_path, value, storage).get("m")
    later = make(tmp_path, None, storage).get("m")
    assert_same(later, first)


def test_readonly_false_hands_out_the_held_object_as_the_seed_did(tmp_path: Path) -> None:
    value = np.arange(3)
    CM = make(tmp_path, value, readonly=False)
    got = CM.m()
    assert got is value and got.flags.writeable
    got[0] = 10  # changes what memory holds (only memory: storage keeps the value)
    assert CM.m()[0] == 10 and CM.get("m") is value
    assert make(tmp_path, None, readonly=False).get("m")[0] == 0
    listed = make(tmp_path / "list", [1], readonly=False)
    listed.m().append(2)
    assert listed.m() == [1, 2] and listed.readonly is False and CM.cache["m"] is value


def test_unsupported_value_hands_back_the_functions_own_object(tmp_path: Path) -> None:
    value = [np.arange(2), {"nested": 1}]  # npz stores no nested containers
    CM = make(tmp_path, value)
    with pytest.raises(UnsupportedValueError) as caught:
        CM.get("m")
    assert caught.value.value is value  # type: ignore[attr-defined]
    assert value[0].flags.writeable  # nothing was frozen: nothing is held
    assert not CM.exists("m") and CM.cache == {}


def test_collected_parameterized_values_are_read_only(tmp_path: Path) -> None:
    CM = ParameterizedDatedCacheManager(NpzStorageInterface(tmp_path), verbose=False)

    @CM.collect(params_list=[[1], [2]])
    def scaled(a: int) -> np.ndarray:
        return np.arange(3) * a

    assert not CM.scaled(2).flags.writeable
    assert not any(v.flags.writeable for v in CM.scaled.get_all())


def test_a_nested_metric_gets_a_read_only_dependency(tmp_path: Path) -> None:
    CM = DatedCacheManager(NpzStorageInterface(tmp_path), verbose=False)

    @CM.collect
    def base() -> np.ndarray:
        return np.ones(3)

    @CM.collect
    def normalised() -> np.ndarray:
        values = CM.base().copy()  # the dependency is read-only: copy to change it
        values /= values.sum()
        return values

    np.testing.assert_allclose(CM.normalised(), [1 / 3] * 3)
    np.testing.assert_array_equal(CM.base(), [1, 1, 1])


def test_assigning_the_cache_holds_values_read_only(tmp_path: Path) -> None:
    CM = make(tmp_path, None)
    CM.cache = {"m": np.arange(2), "n": [1]}
    assert not CM.m().flags.writeable
    CM.get("n").append(2)
    assert CM.get("n") == [1]
    CM.cache = {}
    assert not CM.exists("n") and CM.cache == {}


def test_clear_cache_and_delete_forget_held_containers(tmp_path: Path) -> None:
    CM = make(tmp_path, [1, 2])
    CM.get("m")
    CM.clear_cache()
    assert CM.get("m") == [1, 2]  # loaded again, not a stale held copy
    CM.delete("m")
    assert not CM.exists("m")


# -- frames --------------------------------------------------------------------------


def test_a_frame_from_memory_cannot_be_changed_behind_the_caches_back(tmp_path: Path) -> None:
    import pandas as pd
    import polars as pl

    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    series = pd.Series([1, 2, 3], name="s")
    polar = pl.DataFrame({"a": [1, 2]})
    CM = DatedCacheManager(tmp_path, verbose=False)
    CM.set_functions_dict({"f": lambda: frame, "s": lambda: series, "p": lambda: polar})
    got = CM["f"]
    got.iloc[0, 0] = 99.0  # the caller's frame changes ...
    got["c"] = 1
    assert CM["f"].equals(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}))  # ... not memory's
    frame.iloc[1, 0] = -5.0  # nor does changing the frame the function returned
    assert CM["f"].iloc[1, 0] == 2.0
    mine = CM["s"]
    mine.iloc[0] = 7
    assert CM["s"].tolist() == [1, 2, 3]
    p = CM["p"]
    p[0, "a"] = 10
    assert CM["p"]["a"].to_list() == [1, 2]


def test_frames_from_memory_share_their_data_where_pandas_copies_on_write(
    tmp_path: Path,
) -> None:
    import pandas as pd

    CM = DatedCacheManager(tmp_path, verbose=False)
    CM.set_functions_dict({"f": lambda: pd.DataFrame({"a": np.arange(1000.0)})})
    first, second = CM["f"], CM["f"]
    assert first is not second
    shared = np.shares_memory(first["a"].to_numpy(), second["a"].to_numpy())
    assert shared == (int(pd.__version__.split(".")[0]) >= 3)  # no copy per hit there
