"""Declaring big grids is cheap, and the cheap way names every call as binding does.

A grid of plain positional values (ints, floats, strings, bools, ``None`` and
tuples of them) is named without binding each parameter set, and each name's
function and owner are made only when something uses them. The property test
declares random grids both ways (the fast way turned off by replacing
``grid_names`` with a function that always declines) and compares everything a
user can see: declared names and their order, owners, errors, and the name every
later spelling of a call resolves to.
"""

from __future__ import annotations

import functools
import math
import pickle
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metricache._parameterized as parameterized
from metricache import (
    DatedCacheManager,
    InvalidMetricNameError,
    MetricacheError,
    MetricNameCollisionError,
    NpzStorageInterface,
)

NAN = float("nan")
# Values that look alike, so near-misses (1 and True, 0.5 and "0p5", -0.0 and
# 0.0, np.float32(0.5) and 0.5) meet often; a few make unusable names; "%s" would
# be a format directive if names were formatted carelessly.
VALUES: list[Any] = [
    0, 1, -1, 2, 10**30, True, False, 1.0, 0.5, -0.0, 0.0, NAN, -NAN, math.inf, -math.inf,
    "a", "b", "a_b", "0p5", "1", "None", "nan", "x y", "a/b", " ", "con", "%s", "5%", "a\nb", None,
    (1, 2), (0.5,), (), ((1,), "a"), (1, (np.int64(2),)), [1, 2],
    np.int64(1), np.uint8(2), np.float64(0.5), np.float64(NAN), np.bool_(True),
    np.float32(0.5), np.str_("a"),
]  # fmt: skip


# Each returns the text of its call, which every storage can hold.
def one(a: Any) -> str:
    return repr(("one", a))


def two(a: Any, b: Any = 2) -> str:
    return repr(("two", a, b))


def three(a: Any, b: Any, c: Any = None) -> str:
    return repr(("three", a, b, c))


def kw_only(a: Any, *, k: Any = 1) -> str:
    return repr(("kw_only", a, k))


FUNCTIONS: list[Callable[..., Any]] = [one, two, three, kw_only]


@contextmanager
def slow_path() -> Iterator[None]:
    """Declare by binding every parameter set (the reference behaviour)."""
    fast = parameterized.grid_names  # type: ignore[attr-defined]
    parameterized.grid_names = lambda *args: None  # type: ignore[attr-defined]
    try:
        yield
    finally:
        parameterized.grid_names = fast  # type: ignore[attr-defined]


def manager(folder: str) -> DatedCacheManager:
    return DatedCacheManager(NpzStorageInterface(folder), verbose=False)


def spellings(item: Any) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Ways a user may call what *item* declares: as declared, with numpy scalars."""
    args = tuple(item) if isinstance(item, (list, tuple)) else (item,)

    def numpy(value: Any) -> Any:
        if type(value) is int and abs(value) < 2**62:
            return np.int64(value)
        if type(value) is float:
            return np.float64(value)
        if type(value) is bool:
            return np.bool_(value)
        return value

    return [(args, {}), (tuple(map(numpy, args)), {}), ((*args, 2), {}), (args[:1], {})]


def outcome(function: Callable[..., Any], items: list[Any], folder: str) -> Any:
    """Everything a user sees of declaring *items* for *function* (then calling them)."""
    CM = manager(folder)
    try:
        CM.collect(function, params_list=items)
    except (MetricacheError, TypeError, ValueError) as err:
        return ("error", type(err), str(err), list(CM.functions_dict))
    front = getattr(CM, function.__name__)
    names = list(front.collected._declared)
    seen = []
    for item in items:
        for args, kwargs in spellings(item):
            try:
                seen.append(front.metric_name(*args, **kwargs))
            except (MetricacheError, TypeError) as err:
                seen.append((type(err), str(err)))
    owners = [(n, CM._owners[n].key, CM._owners[n].shown, str(CM._owners[n])) for n in names]
    calls = [(n, CM.functions_dict[n]()) for n in dict.fromkeys(names)]
    return ("declared", names, list(CM.functions_dict), owners, seen, repr(calls))


PLAIN = [v for v in VALUES if type(v) in (int, float, str, bool, type(None), tuple)]
ARITY: dict[Callable[..., Any], int] = {one: 1, two: 2, three: 3, kw_only: 1}


@st.composite
def declarations(draw: st.DrawFn) -> tuple[Callable[..., Any], list[Any]]:
    """A function and a params_list: mostly plain grids, sometimes anything."""
    function: Callable[..., Any] = draw(st.sampled_from(FUNCTIONS))
    if draw(st.booleans()):
        values = st.sampled_from(PLAIN)
        size = ARITY[function]
        item = st.lists(values, min_size=size, max_size=size).map(tuple)
        if size == 1 and draw(st.booleans()):
            item = values
    else:
        values = st.sampled_from(VALUES)
        item = st.one_of(st.lists(values, min_size=1, max_size=3).map(tuple), values)
    return function, draw(st.lists(item, min_size=1, max_size=8))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(declared=declarations())
def test_fast_declaration_is_the_slow_one(declared: tuple[Callable[..., Any], list[Any]]) -> None:
    function, items = declared
    with tempfile.TemporaryDirectory() as folder:
        fast = outcome(function, items, folder)
        with slow_path():
            slow = outcome(function, items, folder)
    assert repr(fast) == repr(slow)  # repr: NaN != NaN inside keys


@pytest.mark.parametrize(
    "items",
    [
        [(1, 2), (1, 2.0), (1, True), (True, 1), (-0.0, 0.0), (0.0, -0.0)],
        [(NAN, 1), (-NAN, 1), (math.inf, "a"), (None, "b-c")],
        [((1, 2), 3), ((1, (2, 3)), "x"), ((), None)],
        [(i, j / 4) for i in range(30) for j in range(30)],
    ],
)
def test_plain_grids_are_declared_lazily(items: list[Any], tmp_path: Path) -> None:
    CM = manager(str(tmp_path))
    CM.collect(two, params_list=items)
    assert CM.two.collected._lazily
    with slow_path():
        reference = manager(str(tmp_path))
        reference.collect(two, params_list=items)
    assert not reference.two.collected._lazily
    assert list(CM.functions_dict) == list(reference.functions_dict)
    for item in items:
        assert CM.two(*item) == repr(("two", *item))
        assert CM.two.metric_name(*item) == reference.two.metric_name(*item)


def test_a_hundred_thousand_sets_fit_in_twenty_megabytes(tmp_path: Path) -> None:
    items = [(i, j * 0.25) for i in range(1000) for j in range(100)]
    calls: list[tuple[int, float]] = []

    def poly(a: int, b: float) -> float:
        calls.append((a, b))
        return a * b

    CM = manager(str(tmp_path))
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        CM.collect(poly, params_list=items)
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"declaring 100,000 sets took {peak / 2**20:.1f} MiB"
    assert len(CM.functions_dict) == len(items) == len(CM.poly.collected._declared)
    for a, b in (items[0], items[len(items) // 2], items[-1]):
        name = f"poly_{a}_{b}".replace(".", "p")
        assert CM.poly.metric_name(a, b) == name and name in CM.functions_dict
        assert CM.poly(a, b) == a * b and CM.exists(name)
        assert CM.poly(np.int64(a), np.float64(b)) == a * b  # one entry, loaded from memory
        assert CM._owners[name].shown == f"({a}, {b})"
    assert calls == [items[0], items[len(items) // 2], items[-1]]
    assert "poly_1000_0p0" not in CM.functions_dict


def test_a_collision_at_the_end_of_a_big_grid_changes_nothing(tmp_path: Path) -> None:
    CM = manager(str(tmp_path))
    items: list[Any] = [(i,) for i in range(20_000)]
    with pytest.raises(MetricNameCollisionError, match=r"\('7',\)"):
        CM.collect(one, params_list=[*items, ("7",)])
    with pytest.raises(InvalidMetricNameError, match="path separator"):
        CM.collect(one, params_list=[*items, ("a/b",)])
    assert CM.functions_dict == {} and not hasattr(CM, "one")


def test_a_grid_taking_another_metrics_name_is_refused(tmp_path: Path) -> None:
    CM = manager(str(tmp_path))
    CM.set_functions_dict({"one_5": lambda: "manual"})
    with pytest.raises(MetricNameCollisionError, match="one_5"):
        CM.collect(one, params_list=list(range(100)))
    assert list(CM.functions_dict) == ["one_5"] and not hasattr(CM, "one")
    CM.collect(two, params_list=[(i, 0) for i in range(100)])
    with pytest.raises(MetricNameCollisionError, match="two_5_0"):
        CM.collect(
            two,
            base_name="other",
            params_list=[(5, 0)],
            name_generation_function=lambda b, p: "two_5_0",
        )  # noqa: E501
    assert CM["two_5_0"] == "('two', 5, 0)"


def test_lazy_names_behave_like_the_seeds_functions_dict(tmp_path: Path) -> None:
    CM = manager(str(tmp_path))
    CM.collect(two, params_list=[(1, 2), (3, 4)])
    function = CM.functions_dict["two_1_2"]
    assert isinstance(function, functools.partial) and function() == "('two', 1, 2)"
    assert CM.functions_dict["two_1_2"] is function  # made once
    assert {n: f() for n, f in dict(CM.functions_dict).items()} == {
        "two_1_2": "('two', 1, 2)",
        "two_3_4": "('two', 3, 4)",
    }
    CM.set_functions_dict({"manual": lambda: "m"})
    assert sorted(CM.functions_dict) == ["manual", "two_1_2", "two_3_4"]
    assert CM["two_3_4"] == "('two', 3, 4)" and CM["manual"] == "m"
    CM.functions_dict["two_3_4"] = lambda: "replaced"
    assert CM.get("two_3_4", use_stored=False) == "replaced"
    assert str(CM._owners["two_3_4"]) == "'two' with parameters (3, 4)"
    # Declaring again (a re-run notebook cell) keeps every name.
    CM.collect(two, params_list=[(1, 2), (3, 4), (5, 6)])
    assert CM.two(5, 6) == "('two', 5, 6)" and CM.two(1) == "('two', 1, 2)"


def test_a_lazy_grid_pickles_with_its_manager(tmp_path: Path) -> None:
    CM = manager(str(tmp_path))
    CM.collect(two, params_list=[(i, 0.5) for i in range(1000)])
    again = pickle.loads(pickle.dumps(CM))
    assert again.two(999, 0.5) == "('two', 999, 0.5)"
    assert list(again.functions_dict) == list(CM.functions_dict)
    assert again.two.metric_name(3, 0.5) == "two_3_0p5"
