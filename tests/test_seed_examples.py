"""Every code snippet of the seed package's page runs on metricache unchanged.

The snippets are copied verbatim from the simple_metrics_manager 0.2.1.1 page; the
only change a user makes is the import line, here ``from metricache import ...``.
Functions the page leaves undefined (``do_something`` and friends) are provided,
counting their calls so the tests can tell computing from loading.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

IMPORT_LINE = (
    "from metricache import DataCacheManager, ParameterizedDataCacheManager, NpyStorageInterface\n"
)

BASIC_USAGE = """
CM = DataCacheManager(NpyStorageInterface(SOME_DIRECTORY))

@CM.collect
def metric_1():
    stuff = do_something()
    return stuff

@CM.collect
def metric_2():
    stuff = do_something_else(CM.metric_1()) # <- use of the cached version here
    other_stuff = convert(stuff)
    return other_stuff
"""

# The page's second decorator reads `params_list=[1, 2], [1, 3], [4, 5]`, a syntax
# error it marks "sic"; the intended list is used here.
PARAMETERIZED_USAGE = """
CM = ParameterizedDataCacheManager(NpyStorageInterface(SOME_DIRECTORY))

@CM.collect(params_list=[[1], [4]])
def poly_X(a):
    return do_something_hard(a)

@CM.collect(params_list=[[1, 2], [1, 3], [4, 5]])
def poly_Y(a, b):
    return CM.poly_X(a) ** 2 + do_something_else(b)
"""

DYNAMIC_MANAGER = """
CM = ParameterizedDataCacheManager(NpyStorageInterface(SOME_DIRECTORY),
                                   dynamic_metric_creation=True)
"""

MANUAL_USAGE = """
METRIC_1 = 'metric_1'
METRIC_2 = 'metric_2'

CM = DataCacheManager(NpyStorageInterface(SOME_DIRECTORY))

def metric_1_function():
    stuff = do_something()
    return stuff

def metric_2_function():
    stuff = do_something_else(CM[METRIC_1])
    other_stuff = convert(stuff)
    return other_stuff

FUNCTIONS_DICT = {
    METRIC_1: metric_1_function,
    METRIC_2: metric_2_function,
}

CM.set_functions_dict(FUNCTIONS_DICT)
"""


def run_snippet(code: str, folder: Path, calls: Counter[str]) -> dict[str, Any]:
    """Execute a seed snippet after the import line; return its namespace."""

    def counted(name: str, result: Any) -> Any:
        def function(*args: Any) -> Any:
            calls[name] += 1
            return result(*args)

        return function

    namespace: dict[str, Any] = {
        "SOME_DIRECTORY": str(folder),
        "do_something": counted("do_something", lambda: np.arange(10.0)),
        "do_something_else": counted("do_something_else", lambda x: np.asarray(x) * 2),
        "convert": counted("convert", lambda x: x + 1),
        "do_something_hard": counted("do_something_hard", lambda a: np.arange(3.0) * a),
    }
    exec(compile(IMPORT_LINE + textwrap.dedent(code), "<seed snippet>", "exec"), namespace)
    return namespace


def test_basic_usage_computes_once_then_loads(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    ns = run_snippet(BASIC_USAGE, tmp_path, calls)
    CM = ns["CM"]
    expected = np.arange(10.0) * 2 + 1
    np.testing.assert_array_equal(CM.metric_2(), expected)
    np.testing.assert_array_equal(CM.metric_1(), np.arange(10.0))
    assert calls == {"do_something": 1, "do_something_else": 1, "convert": 1}

    # A new process would run the same snippet: everything now loads from disk.
    calls.clear()
    ns = run_snippet(BASIC_USAGE, tmp_path, calls)
    np.testing.assert_array_equal(ns["CM"].metric_2(), expected)
    assert calls == {}


def test_basic_usage_cache_keyword_and_original_function(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    ns = run_snippet(BASIC_USAGE, tmp_path, calls)
    metric_1 = ns["metric_1"]
    np.testing.assert_array_equal(metric_1(cache=True), np.arange(10.0))
    np.testing.assert_array_equal(metric_1(cache=True), np.arange(10.0))
    assert calls["do_something"] == 1
    metric_1()  # the original function: skips the cache on purpose
    assert calls["do_something"] == 2
    metric_1(cache=True, use_stored=False)  # recomputes and overwrites
    assert calls["do_something"] == 3


def test_parameterized_usage(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    ns = run_snippet(PARAMETERIZED_USAGE, tmp_path, calls)
    CM = ns["CM"]
    np.testing.assert_array_equal(CM.poly_Y(1, 2), (np.arange(3.0) * 1) ** 2 + 4)
    assert calls == {"do_something_hard": 1, "do_something_else": 1}
    np.testing.assert_array_equal(CM["poly_Y_1_2"], CM.poly_Y(1, 2))
    ns["poly_Y"](1, 3, cache=True)  # reuses the stored poly_X_1
    assert calls == {"do_something_hard": 1, "do_something_else": 2}
    assert sorted(CM.cache) == ["poly_X_1", "poly_Y_1_2", "poly_Y_1_3"]

    values = CM.poly_Y.get_all()
    assert len(values) == 3
    CM.poly_X.get_all()
    assert calls == {"do_something_hard": 2, "do_something_else": 3}


def test_parameterized_undeclared_parameters_fail(tmp_path: Path) -> None:
    ns = run_snippet(PARAMETERIZED_USAGE, tmp_path, Counter())
    with pytest.raises(ValueError, match="poly_Y_12_13"):
        ns["CM"].poly_Y(12, 13)


def test_dynamic_metric_creation(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    ns = run_snippet(DYNAMIC_MANAGER + PARAMETERIZED_USAGE.split("\n", 2)[2], tmp_path, calls)
    CM = ns["CM"]
    np.testing.assert_array_equal(CM.poly_Y(12, 13), (np.arange(3.0) * 12) ** 2 + 26)
    assert "poly_Y_12_13" in CM.functions_dict
    # The original functions are unchanged whatever the setting.
    np.testing.assert_array_equal(ns["poly_X"](7), np.arange(3.0) * 7)


def test_manual_usage(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    ns = run_snippet(MANUAL_USAGE, tmp_path, calls)
    CM = ns["CM"]
    np.testing.assert_array_equal(CM[ns["METRIC_2"]], np.arange(10.0) * 2 + 1)
    np.testing.assert_array_equal(CM[ns["METRIC_1"]], np.arange(10.0))
    assert calls == {"do_something": 1, "do_something_else": 1, "convert": 1}


def test_seed_api_names_exist() -> None:
    import metricache

    assert metricache.DataCacheManager is metricache.DatedCacheManager
    assert metricache.ParameterizedDataCacheManager is metricache.ParameterizedDatedCacheManager
    assert issubclass(metricache.CollectingDatedCacheManager, metricache.DatedCacheManager)
    for name in ("set_functions_dict", "exists", "clear_cache", "compute", "save", "load", "get"):
        assert callable(getattr(metricache.DatedCacheManager, name))
