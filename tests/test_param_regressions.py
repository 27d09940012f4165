"""Every wrong value issue 7 found in parameterized metrics, with its old symptom."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import (
    DatedCacheManager,
    InvalidMetricNameError,
    NpzStorageInterface,
    UnknownMetricError,
)

Factory = Callable[..., DatedCacheManager]


@pytest.fixture
def make(tmp_path: Path) -> Factory:
    """Quiet managers over one folder (each a fresh process's view of it)."""

    def build(dynamic: bool = False) -> DatedCacheManager:
        storage = NpzStorageInterface(tmp_path / "cache")
        return DatedCacheManager(storage, verbose=False, dynamic_metric_creation=dynamic)

    return build


def test_a_keyword_past_a_default_is_not_the_positional_call(make: Factory) -> None:
    # Old: CM.r(1, b=2) returned r(1, 2), i.e. x=1 a=2 b=0.
    for dynamic in (False, True):
        CM = make(dynamic)

        @CM.collect(params_list=[[1, 2]])
        def r(x: int, a: int = 0, b: int = 0) -> tuple[int, int, int]:
            return (x, a, b)

        assert CM.r(1, 2) == (1, 2, 0)
        if not dynamic:
            with pytest.raises(UnknownMetricError, match="r_1_0_2"):
                CM.r(1, b=2)
        else:
            assert CM.r(1, b=2) == (1, 0, 2) == r(1, b=2)
            assert CM.r.metric_name(1, b=2) == "r_1_0_2" != CM.r.metric_name(1, 2)


def test_keyword_only_parameters_are_told_apart_and_declarable(make: Factory) -> None:
    # Old: CM.q(1, lo=5) and CM.q(1, hi=5) shared the entry q_1_5.
    CM = make(dynamic=True)

    @CM.collect(params_list=[{"x": 1, "hi": 5}, [2]])
    def q(x: int, *, lo: int = 0, hi: int = 0) -> tuple[int, int, int]:
        return (x, lo, hi)

    assert CM.q(1, lo=5) == (1, 5, 0)
    assert CM.q(1, hi=5) == (1, 0, 5)
    assert CM.q.get_all() == [(1, 0, 5), (2, 0, 0)]
    assert "q_1_lo=0_hi=5" in CM.functions_dict and "q_2" in CM.functions_dict
    fixed = make()  # a declared keyword-only set needs no dynamic creation
    fixed.collect(q, params_list=[{"x": 1, "hi": 5}])
    assert fixed.q(x=1, hi=5) == (1, 0, 5)


def test_arrays_that_differ_in_one_element_are_two_entries(make: Factory) -> None:
    # Old: matched by repr(), which elides the middle of a 2,000-element array.
    a = np.arange(2000.0)
    b = a.copy()
    b[1000] = -1.0

    def by_content(base: str, params: Any) -> str:
        return base + "_" + hashlib.sha1(params[0].tobytes()).hexdigest()[:12]

    for generator in (None, by_content):
        CM = make(dynamic=True)
        CM.collect(
            lambda v: float(v.sum()),
            base_name="total",
            params_list=[],
            name_generation_function=generator,
        )
        assert CM.total(a) == a.sum() and CM.total(b) == b.sum()
        assert CM.total.metric_name(a) != CM.total.metric_name(b)


def test_arrays_with_one_rounded_repr_are_two_declared_entries(make: Factory) -> None:
    # Old: both became 'scaled_[0p1 0p2]' and the second silently took the first's value.
    first, second = np.array([0.1, 0.2]), np.array([0.1000000001, 0.2])
    CM = make()

    @CM.collect(params_list=[[first], [second]])
    def scaled(v: np.ndarray) -> np.ndarray:
        return v * 10

    np.testing.assert_array_equal(CM.scaled(second), second * 10)
    np.testing.assert_array_equal(CM.scaled(first), first * 10)
    assert CM.scaled.metric_name(first) == "scaled_[0p1 0p2]"  # the seed's name, kept
    assert CM.scaled.metric_name(second).startswith("scaled_float64[2]~")


def test_float32_is_its_own_call_and_float64_is_python_float(make: Factory) -> None:
    # Old: np.float32(0.1) got the value computed for 0.1 (numpy 2), or a collision
    # error naming two identical-looking parameter sets (numpy 1.24).
    CM = make()

    @CM.collect(params_list=[[0.1]])
    def f(x: float) -> str:
        return repr(x)

    assert CM.f(np.float64(0.1)) == "0.1"
    with pytest.raises(UnknownMetricError, match=r"np\.float32\(0\.1\)"):
        CM.f(np.float32(0.1))
    dynamic = make(dynamic=True)
    dynamic.collect(f, params_list=[[0.1]])
    assert dynamic.f(np.float32(0.1)) == repr(np.float32(0.1))
    assert dynamic.f(np.float32(0.5)) == repr(np.float32(0.5)) != dynamic.f(0.5)
    assert dynamic.f(0.1) == "0.1"


def test_nan_parameters_are_one_call(make: Factory) -> None:
    # Old: a second CM.f(nan) raised MetricNameCollisionError "already used by 'f'
    # with parameters (nan,)"; a declared NaN raised "unknown ... did you mean 'k_nan'?".
    calls: list[float] = []
    CM = make(dynamic=True)

    @CM.collect(params_list=[[float("nan")]])
    def k(x: float) -> float:
        calls.append(x)
        return 7.0

    assert CM.k(float("nan")) == CM.k(float("nan")) == CM.k(np.nan) == CM.k(np.float64("nan"))
    assert len(calls) == 1 and list(CM.functions_dict) == ["k_nan"]
    assert CM.k(-0.0) == CM.k(0.0) and CM.k.metric_name(-0.0) != CM.k.metric_name(0.0)


def test_suggestions_name_each_metric_once(make: Factory) -> None:
    error = UnknownMetricError("g_3", ["g_1", "g_1", "g_2", "g_2"])
    assert str(error).count("'g_1'") == 1 and str(error).count("'g_2'") == 1
    CM = make()

    @CM.collect(params_list=[[1], [1, 2], [4]])  # [1] and [1, 2] are one call
    def g(a: int, b: int = 2) -> int:
        return a + b

    with pytest.raises(UnknownMetricError) as info:
        CM.g(5)
    assert str(info.value).count("'g_1'") == 1
    assert CM.g.get_all() == [3, 3, 6] and sorted(CM.functions_dict) == ["g_1", "g_4"]


def test_a_call_binding_to_a_declared_set_is_that_metric(make: Factory) -> None:
    calls: list[tuple[int, int]] = []
    CM = make()

    @CM.collect(params_list=[[1]])
    def g(a: int, b: int = 2) -> int:
        calls.append((a, b))
        return a * 10 + b

    assert CM.g(1) == CM.g(1, 2) == CM.g(a=1) == CM.g(b=2, a=1) == 12
    assert calls == [(1, 2)] and list(CM.functions_dict) == ["g_1"]


def test_parameters_named_like_the_wrappers_options_reach_the_function(make: Factory) -> None:
    # Old: cache, use_stored and verbose were taken by the wrappers.
    CM = make(dynamic=True)
    seen: list[tuple[Any, ...]] = []

    @CM.collect(params_list=[[1]])
    def f(x: int, cache: int = 0, use_stored: int = 0, verbose: str = "") -> tuple[Any, ...]:
        seen.append((x, cache, use_stored, verbose))
        return (x, cache, use_stored, verbose)

    assert f(1, cache=5, use_stored=6, verbose="v") == (1, 5, 6, "v")  # the original
    assert CM.f(1, use_stored=6, verbose="v") == (1, 0, 6, "v")
    assert CM.f(1) == (1, 0, 0, "") and len(seen) == 3
    # The manager's options stay reachable: by name, through CM.get.
    assert CM.get(CM.f.metric_name(1), use_stored=False) == (1, 0, 0, "")
    assert len(seen) == 4


def test_the_options_still_work_when_not_shadowed(make: Factory) -> None:
    calls: list[int] = []
    CM = make()

    @CM.collect(params_list=[[1]])
    def h(x: int) -> int:
        calls.append(x)
        return x

    assert h(1, cache=True) == 1 and h(1, cache=True, use_stored=False) == 1
    assert CM.h(1, use_stored=False, verbose=False) == 1 and calls == [1, 1, 1]


def test_params_list_is_the_object_passed(make: Factory) -> None:
    CM = make()
    declared = [[2, 3], [4, 5]]

    @CM.collect(params_list=declared)
    def sample(a: int, b: int) -> int:
        return a + b

    @CM.collect
    def plain() -> int:
        return 0

    assert CM.sample.params_list is declared and declared == [[2, 3], [4, 5]]
    assert CM.plain.params_list == ((),)


def test_seed_names_are_kept_for_declared_positional_sets(make: Factory) -> None:
    CM = make()

    @CM.collect(params_list=[[1, 2], [1, 0.5], ["train_set", None], [np.int64(3), True]])
    def poly_Y(a: Any, b: Any) -> str:
        return f"{a}{b}"

    CM.poly_Y.get_all()
    names = ["poly_Y_1_2", "poly_Y_1_0p5", "poly_Y_train_set_None", "poly_Y_3_True"]
    assert list(CM.functions_dict) == names
    assert sorted(CM.storage_interface.stored_names()) == sorted(names)


def test_a_dynamic_call_never_takes_a_declared_name_of_another_call(make: Factory) -> None:
    CM = make(dynamic=True)

    @CM.collect(params_list=[["a_b"]])
    def h(x: str, y: str = "") -> str:
        return x + "|" + y

    assert CM.h("a", "b") == "a|b" and CM.h("a_b") == "a_b|"
    assert CM.h.metric_name("a_b") == "h_a_b" != CM.h.metric_name("a", "b")


def test_a_lambda_without_a_name_says_how_to_name_it(make: Factory) -> None:
    with pytest.raises(InvalidMetricNameError, match="name=") as info:
        make().collect(lambda: 1)
    assert "<lambda>" in str(info.value)


def test_an_unusable_generated_name_shows_a_short_value_and_the_fix(make: Factory) -> None:
    big = np.arange(5000)
    with pytest.raises(InvalidMetricNameError, match="name_generation_function=") as info:
        make().collect(
            lambda v: v, base_name="f", params_list=[[big]], name_generation_function=repr_name
        )
    message = str(info.value)
    assert len(message) < 500 and "..." in message
    with pytest.raises(InvalidMetricNameError, match="name_generation_function=") as info:
        make().collect(lambda f: f(), base_name="g", params_list=[[lambda: 1]])
    assert "<lambda>" in str(info.value) and len(str(info.value)) < 400


def repr_name(base: str, params: Any) -> str:
    """A careless name generator: the repr of the parameters (with newlines)."""
    return base + repr(params)


def test_a_custom_generator_names_values_without_a_key(make: Factory) -> None:
    CM = make(dynamic=True)

    def by_function_name(base: str, params: Any) -> str:
        return f"{base}_{params[0].__name__}"

    def one() -> int:
        return 1

    CM.collect(
        lambda f: f() * 10,
        base_name="ten",
        params_list=[],
        name_generation_function=by_function_name,
    )
    assert CM.ten(one) == 10 and "ten_one" in CM.functions_dict
