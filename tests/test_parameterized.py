"""Parameterized metrics: the seed's ``collect(params_list=...)`` on every manager class."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import (
    CollectedMetric,
    CollectingDatedCacheManager,
    DatedCacheManager,
    InvalidMetricNameError,
    MetricNameCollisionError,
    NpzStorageInterface,
    ParameterizedDatedCacheManager,
    UnknownMetricError,
    default_name_generation_function,
)

MANAGERS = [DatedCacheManager, CollectingDatedCacheManager, ParameterizedDatedCacheManager]
Factory = Callable[..., DatedCacheManager]


@pytest.fixture(params=MANAGERS, ids=lambda c: c.__name__)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Build a quiet manager of each class over one cache folder."""

    def build(**kwargs: Any) -> DatedCacheManager:
        storage = NpzStorageInterface(tmp_path / "cache")
        return request.param(storage, verbose=False, **kwargs)  # type: ignore[no-any-return]

    return build


@pytest.fixture
def CM(make: Factory) -> DatedCacheManager:
    """A quiet manager of each class."""
    return make()


def declare_poly_y(CM: DatedCacheManager, calls: list[tuple[Any, ...]]) -> Callable[..., Any]:
    """The seed's poly_Y, recording each real computation in *calls*."""

    @CM.collect(params_list=[[1, 2], [1, 3]], base_name=None, name_generation_function=None)
    def poly_Y(a: int, b: int) -> np.ndarray:
        """The seed's second parameterized metric."""
        calls.append((a, b))
        return np.array([a, b]) ** 2

    return poly_Y


def test_params_list_declares_one_metric_per_parameter_set(CM: DatedCacheManager) -> None:
    calls: list[tuple[Any, ...]] = []
    poly_Y = declare_poly_y(CM, calls)
    assert sorted(CM.functions_dict) == ["poly_Y_1_2", "poly_Y_1_3"]
    np.testing.assert_array_equal(CM.poly_Y(1, 2), [1, 4])
    np.testing.assert_array_equal(CM.poly_Y(1, 2), [1, 4])
    assert calls == [(1, 2)]
    np.testing.assert_array_equal(poly_Y(1, 3, cache=True), [1, 9])
    assert calls == [(1, 2), (1, 3)]
    np.testing.assert_array_equal(CM["poly_Y_1_2"], [1, 4])
    assert sorted(CM.storage_interface.stored_names()) == ["poly_Y_1_2", "poly_Y_1_3"]


def test_use_stored_false_recomputes(CM: DatedCacheManager) -> None:
    calls: list[tuple[Any, ...]] = []
    poly_Y = declare_poly_y(CM, calls)
    CM.poly_Y(1, 2)
    CM.poly_Y(1, 2, use_stored=False)
    poly_Y(1, 2, cache=True, use_stored=False)
    assert calls == [(1, 2)] * 3
    poly_Y(1, 2, cache=True)
    assert len(calls) == 3


def test_values_persist_for_a_fresh_manager(make: Factory) -> None:
    calls: list[tuple[Any, ...]] = []
    first = make()
    declare_poly_y(first, calls)
    first.poly_Y(1, 3)
    second = make()
    declare_poly_y(second, calls)
    np.testing.assert_array_equal(second.poly_Y(1, 3), [1, 9])
    assert calls == [(1, 3)]


def test_default_params_list_gives_the_plain_name(CM: DatedCacheManager) -> None:
    @CM.collect()
    def metric_1() -> int:
        return 11

    assert list(CM.functions_dict) == ["metric_1"]
    assert CM.metric_1() == 11 and metric_1(cache=True) == 11
    assert CM.metric_1.params_list == ((),)  # the seed's default, as passed
    assert CM.storage_interface.stored_names() == ["metric_1"]


def test_get_all_follows_params_list_order_and_passes_use_stored(make: Factory) -> None:
    calls: list[tuple[Any, ...]] = []
    order = [[3, 1], [1, 2], [2, 0]]

    def declare(CM: DatedCacheManager) -> None:
        @CM.collect(params_list=order)
        def f(a: int, b: int) -> int:
            calls.append((a, b))
            return 10 * a + b

    CM = make()
    declare(CM)
    assert CM.f.get_all() == [31, 12, 20]
    assert calls == [(3, 1), (1, 2), (2, 0)]
    assert CM.f.get_all() == [31, 12, 20]
    assert len(calls) == 3
    assert CM.f.get_all(use_stored=False) == [31, 12, 20]
    assert len(calls) == 6
    fresh = make()
    declare(fresh)
    assert fresh.f.get_all() == [31, 12, 20]
    assert len(calls) == 6  # loaded, in order, without computing


def test_collected_metric_attributes(CM: DatedCacheManager) -> None:
    @CM.collect(params_list=[[1], [4]])
    def poly_X(a: int) -> int:
        return a + 1

    poly_Y = declare_poly_y(CM, [])
    assert CM.parameterized_metrics == [CM.poly_X, CM.poly_Y]
    metric = CM.poly_Y
    assert isinstance(metric.collected, CollectedMetric)
    assert metric.original_function is poly_Y.__wrapped__
    np.testing.assert_array_equal(metric.original_function(2, 5), [4, 25])
    assert metric.base_name == "poly_Y"
    assert [tuple(p) for p in metric.params_list] == [(1, 2), (1, 3)]
    assert metric.name_generation_function is default_name_generation_function
    assert callable(metric.get_all)
    assert [tuple(p) for p in CM.poly_X.params_list] == [(1,), (4,)]


def test_keyword_arguments_bind_through_the_signature(CM: DatedCacheManager) -> None:
    calls: list[tuple[Any, ...]] = []
    poly_Y = declare_poly_y(CM, calls)
    first = CM.poly_Y(1, b=2)
    for value in (CM.poly_Y(1, 2), CM.poly_Y(a=1, b=2), CM.poly_Y(b=2, a=1)):
        np.testing.assert_array_equal(value, first)
    np.testing.assert_array_equal(poly_Y(1, b=3, cache=True), [1, 9])
    assert calls == [(1, 2), (1, 3)]
    assert sorted(CM.functions_dict) == ["poly_Y_1_2", "poly_Y_1_3"]
    with pytest.raises(TypeError, match="poly_Y"):
        CM.poly_Y(1, c=2)


def test_undeclared_parameters_raise_unless_dynamic(make: Factory) -> None:
    calls: list[tuple[Any, ...]] = []
    CM = make()
    declare_poly_y(CM, calls)
    with pytest.raises(UnknownMetricError, match="poly_Y_12_13") as info:
        CM.poly_Y(12, 13)
    assert isinstance(info.value, ValueError)
    assert "dynamic_metric_creation" in str(info.value)
    assert calls == [] and "poly_Y_12_13" not in CM.functions_dict

    dynamic = make(dynamic_metric_creation=True)
    declare_poly_y(dynamic, calls)
    np.testing.assert_array_equal(dynamic.poly_Y(12, 13), [144, 169])
    np.testing.assert_array_equal(dynamic.poly_Y(12, b=13), [144, 169])
    assert calls == [(12, 13)]
    assert "poly_Y_12_13" in dynamic.functions_dict
    assert "poly_Y_12_13" in dynamic.storage_interface.stored_names()


def test_custom_name_generation_function_and_base_name(CM: DatedCacheManager) -> None:
    def dashed(base: str, params: Any) -> str:
        return base + "-" + "x".join(map(str, params))

    @CM.collect(params_list=[[1, 2], [3, 4]], base_name="pY", name_generation_function=dashed)
    def poly_Y(a: int, b: int) -> int:
        return a * b

    assert sorted(CM.functions_dict) == ["pY-1x2", "pY-3x4"]
    assert CM.pY(3, 4) == 12 and poly_Y(1, 2, cache=True) == 2
    assert CM.pY.name_generation_function is dashed and CM.pY.base_name == "pY"
    assert not hasattr(CM, "poly_Y")
    assert sorted(CM.storage_interface.stored_names()) == ["pY-1x2", "pY-3x4"]


def test_decorated_function_without_cache_runs_like_the_original(CM: DatedCacheManager) -> None:
    calls: list[tuple[Any, ...]] = []

    @CM.collect(params_list=[[1, 2]])
    def scaled(a: int, b: int = 10, *, offset: int = 0) -> int:
        """Docstring kept."""
        calls.append((a, b, offset))
        return a * b + offset

    assert scaled(1, 2) == 2
    assert scaled(1, 2) == 2
    assert scaled(3) == 30
    assert scaled(3, offset=1) == 31
    assert scaled(a=2, b=5) == 10
    assert calls == [(1, 2, 0), (1, 2, 0), (3, 10, 0), (3, 10, 1), (2, 5, 0)]
    assert CM.cache == {} and CM.storage_interface.stored_names() == []
    assert scaled.__name__ == "scaled" and scaled.__doc__ == "Docstring kept."
    with pytest.raises(TypeError):
        scaled()  # the original's own errors, unchanged


def test_base_name_collision_raises_and_overwrites_nothing(CM: DatedCacheManager) -> None:
    @CM.collect(params_list=[[1, 2]], base_name="a")
    def first(x: int, y: int) -> str:
        return "first"

    with pytest.raises(MetricNameCollisionError, match="'a_1_2'") as info:

        @CM.collect(params_list=[[2]], base_name="a_1")
        def second(x: int) -> str:
            return "second"

    assert isinstance(info.value, ValueError)
    assert list(CM.functions_dict) == ["a_1_2"]
    assert CM["a_1_2"] == "first"
    assert not hasattr(CM, "a_1")
    assert CM.parameterized_metrics == [CM.a]


def test_base_name_collision_in_the_other_order(CM: DatedCacheManager) -> None:
    @CM.collect(params_list=[[2], [3]], base_name="a_1")
    def first(x: int) -> str:
        return "first"

    with pytest.raises(MetricNameCollisionError, match="'a_1_2'"):

        @CM.collect(params_list=[[0, 0], [1, 2]], base_name="a")
        def second(x: int, y: int) -> str:
            return "second"

    # The declaration failed as a whole: not even its first, free name exists.
    assert sorted(CM.functions_dict) == ["a_1_2", "a_1_3"]
    assert CM["a_1_2"] == "first"
    assert not hasattr(CM, "a")


def test_dynamic_creation_cannot_take_another_metrics_name(make: Factory) -> None:
    CM = make(dynamic_metric_creation=True)

    @CM.collect(params_list=[[2]], base_name="a_1")
    def first(x: int) -> str:
        return "first"

    @CM.collect(params_list=[[5, 5]], base_name="a")
    def second(x: int, y: int) -> str:
        return "second"

    assert CM.a(7, 7) == "second"  # dynamic creation works...
    with pytest.raises(MetricNameCollisionError, match="'a_1_2'"):
        CM.a(1, 2)  # ...but not onto a_1's name
    assert CM["a_1_2"] == "first"
    assert CM.a_1(2) == "first"


def test_collected_name_equal_to_a_manual_name(CM: DatedCacheManager) -> None:
    def manual() -> str:
        return "manual"

    CM.set_functions_dict({"m": manual})
    with pytest.raises(MetricNameCollisionError, match="'m'"):

        @CM.collect
        def m() -> str:
            return "collected"

    assert CM.functions_dict["m"] is manual
    assert CM["m"] == "manual"
    assert not hasattr(CM, "m")


def test_manual_name_equal_to_a_collected_name(CM: DatedCacheManager) -> None:
    @CM.collect
    def m() -> str:
        return "collected"

    registered = CM.functions_dict["m"]
    with pytest.raises(MetricNameCollisionError, match="'m'"):
        CM.set_functions_dict({"other": lambda: "other", "m": lambda: "manual"})
    assert CM.functions_dict["m"] is registered and "other" not in CM.functions_dict
    assert CM["m"] == "collected"
    # Other manual names are fine, and collected metrics stay defined.
    CM.set_functions_dict({"other": lambda: "other"})
    assert CM["other"] == "other" and CM.m() == "collected"


def test_two_parameter_sets_generating_one_name(CM: DatedCacheManager) -> None:
    with pytest.raises(MetricNameCollisionError, match="'f_0p5'"):

        @CM.collect(params_list=[[0.5], ["0p5"]])
        def f(x: Any) -> Any:
            return x

    assert CM.functions_dict == {} and CM.parameterized_metrics == []
    assert not hasattr(CM, "f")


@pytest.mark.parametrize("base", ["get", "collect", "save", "cache", "functions_dict", "verbose"])
def test_base_name_that_would_shadow_the_manager(CM: DatedCacheManager, base: str) -> None:
    before = getattr(CM, base)
    with pytest.raises(MetricNameCollisionError, match=f"'{base}'"):

        @CM.collect(base_name=base)
        def f() -> int:
            return 1

    after = getattr(CM, base)
    assert not hasattr(after, "collected") and after == before
    assert CM.functions_dict == {} and CM.parameterized_metrics == []


def test_function_named_like_a_manager_attribute(CM: DatedCacheManager) -> None:
    with pytest.raises(MetricNameCollisionError, match="base_name="):

        @CM.collect
        def cache() -> int:
            return 1

    assert isinstance(CM.cache, dict)


@pytest.mark.parametrize("bad", ["a/b", "x\x00", "\\", "a:b"])
def test_unsafe_generated_names_fail_at_collect(CM: DatedCacheManager, bad: str) -> None:
    with pytest.raises(InvalidMetricNameError):

        @CM.collect(params_list=[["ok"], [bad]])
        def f(x: str) -> str:
            return x

    assert CM.functions_dict == {} and CM.parameterized_metrics == []
    assert not hasattr(CM, "f")


def test_unsafe_dynamic_parameters_fail_and_write_nothing(make: Factory, tmp_path: Path) -> None:
    CM = make(dynamic_metric_creation=True)
    calls: list[Any] = []

    @CM.collect(params_list=[["ok"]])
    def f(x: str) -> str:
        calls.append(x)
        return x

    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InvalidMetricNameError, match="path separator"):
        CM.f("../../escape")
    assert calls == [] and sorted(tmp_path.rglob("*")) == before
    assert list(CM.functions_dict) == ["f_ok"]


def test_recollecting_the_same_function_replaces_it(CM: DatedCacheManager) -> None:
    # A notebook cell run twice, the second time with an edited body.
    @CM.collect(params_list=[[1], [2]])
    def g(x: int) -> int:
        return x

    assert CM.g(1) == 1
    old = CM.g

    @CM.collect(params_list=[[1], [2]])
    def g(x: int) -> int:  # noqa: F811 - the re-run is the point
        return 100 * x

    assert CM.g is not old
    assert CM.parameterized_metrics == [CM.g]
    assert CM.g(2) == 200
    assert CM.g(1, use_stored=False) == 100
    assert g(3) == 300


def test_numpy_parameters_find_the_declared_metric(CM: DatedCacheManager) -> None:
    calls: list[tuple[Any, ...]] = []
    declare_poly_y(CM, calls)
    first = CM.poly_Y(np.int64(1), np.int32(2))
    np.testing.assert_array_equal(first, CM.poly_Y(1, 2))
    np.testing.assert_array_equal(CM.poly_Y(np.int64(1), b=np.uint8(3)), [1, 9])
    assert calls == [(1, 2), (1, 3)]
    assert sorted(CM.functions_dict) == ["poly_Y_1_2", "poly_Y_1_3"]

    @CM.collect(params_list=[[0.5]])
    def half(x: float) -> float:
        return x

    assert CM.half(np.float64(0.5)) == 0.5
    assert list(CM.functions_dict).count("half_0p5") == 1


@pytest.mark.parametrize("manager_class", MANAGERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("style", ["bare", "called"])
def test_bare_and_called_collect(
    manager_class: type[DatedCacheManager], style: str, tmp_path: Path
) -> None:
    CM = manager_class(NpzStorageInterface(tmp_path), verbose=False)
    counted: list[int] = []

    def metric_1() -> int:
        counted.append(1)
        return 5

    decorate = CM.collect if style == "bare" else CM.collect()
    wrapped = decorate(metric_1)
    assert wrapped.__name__ == "metric_1"
    assert CM.metric_1() == 5 and wrapped(cache=True) == 5
    assert counted == [1]
    assert wrapped() == 5 and counted == [1, 1]
    assert wrapped(cache=True, use_stored=False) == 5 and counted == [1, 1, 1]


def test_custom_generator_making_an_unsafe_name_fails_at_collect(CM: DatedCacheManager) -> None:
    with pytest.raises(InvalidMetricNameError, match="'..'"):

        @CM.collect(params_list=[[1]], name_generation_function=lambda b, p: f"{b}..{p[0]}")
        def f(x: int) -> int:
            return x

    assert CM.functions_dict == {} and not hasattr(CM, "f")
