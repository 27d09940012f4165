"""Dependency capture, value ids, staleness, on_stale policies, explain and invalidate."""

from __future__ import annotations

import contextvars
import json
import logging
import multiprocessing
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
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
    StaleMetricError,
)
from metricache.provenance.values import value_id


def deps(CM: DatedCacheManager, name: str) -> dict[str, str | None]:
    """The dependencies recorded in *name*'s record, read as a new process would."""
    info = DatedCacheManager(CM.storage_interface, verbose=False).info(name)
    return dict(info.dependencies or ())


@pytest.fixture
def CM(tmp_path: Path) -> DatedCacheManager:
    return DatedCacheManager(NpzStorageInterface(tmp_path / "cache"), verbose=False)


class Runs(dict[str, int]):
    """How often each metric ran: an object, not data, so not part of the code."""

    def __reduce__(self) -> Any:
        raise TypeError("not data")


def chain(CM: DatedCacheManager, upstream: Any = 1) -> Runs:
    """``b`` reads ``a``; returns how often each ran (a closure value is part of the code,
    so the counter is an object that has no value to hash)."""
    runs = Runs(a=0, b=0)

    def a() -> np.ndarray:
        runs["a"] += 1
        return np.arange(3) * upstream

    def b() -> np.ndarray:
        runs["b"] += 1
        return CM["a"] + 1

    CM.set_functions_dict({"a": a, "b": b})
    return runs


# -- capture ---------------------------------------------------------------------------


def test_a_compute_records_what_it_read_with_its_value_id(CM: DatedCacheManager) -> None:
    chain(CM)
    CM.get("b")  # a is computed inside b
    assert deps(CM, "b") == {"a": CM.info("a").value_id}
    assert CM.info("a").value_id == value_id(np.arange(3))
    assert deps(CM, "a") == {}


def test_memory_and_disk_hits_are_recorded_too(CM: DatedCacheManager) -> None:
    chain(CM)
    CM.get("a")  # now in memory
    CM.get("b")
    assert set(deps(CM, "b")) == {"a"}  # a memory hit, through CM["a"]
    fresh = DatedCacheManager(CM.storage_interface, verbose=False)
    chain(fresh)
    fresh.get("b", use_stored=False)  # a is a disk hit here
    assert set(deps(fresh, "b")) == {"a"}


def test_every_way_of_reading_records(tmp_path: Path) -> None:
    CM = ParameterizedDatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)

    @CM.collect
    def base() -> int:
        return 1

    @CM.collect(params_list=[[1], [2]])
    def poly(a: int) -> int:
        return a

    @CM.collect
    def top() -> int:
        return int(CM.base() + CM.poly(1) + CM.get("poly_2") + CM["base"])

    CM.base(), CM.poly(1), CM.poly(2)  # all in memory: fast paths
    CM.top()
    assert set(deps(CM, "top")) == {"base", "poly_1", "poly_2"}


def test_threads_record_through_copy_context(CM: DatedCacheManager) -> None:
    CM.set_functions_dict({"x": lambda: 1, "y": lambda: 2})

    def fan_out() -> int:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(contextvars.copy_context().run, CM.get, n) for n in "xy"]
            return sum(f.result() for f in futures)

    CM.set_functions_dict({"x": lambda: 1, "y": lambda: 2, "z": fan_out})
    assert CM.get("z") == 3
    assert set(deps(CM, "z")) == {"x", "y"}


def test_a_worker_process_records_through_its_own_manager(tmp_path: Path) -> None:
    from . import _provenance_workers as shipped

    manager = shipped.make(tmp_path / "cache")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(shipped.get_in_worker, (manager, "total")) == shipped.EXPECTED_TOTAL
    assert set(deps(manager, "total")) == {"numbers"}


def test_reads_outside_a_compute_record_nothing(CM: DatedCacheManager) -> None:
    chain(CM)
    CM.get("a")
    CM.get("b")
    CM.get("a")
    assert deps(CM, "a") == {}


# -- value ids and early cutoff --------------------------------------------------------


@pytest.mark.parametrize(
    ("interface", "value"),
    [
        (NpyStorageInterface, np.arange(1 << 17, dtype=np.float64)),  # taken from the writes
        (NpyStorageInterface, np.asfortranarray(np.ones((300, 300)))),
        (NpzStorageInterface, [np.arange(1 << 16), np.ones(3)]),
        (NpzStorageInterface, {"k": np.arange(1 << 16), "j": 2.5}),
        (NpzStorageInterface, np.arange(10)),
        (JsonStorageInterface, {"a": [1, 2.5, "x"]}),
    ],
)
def test_the_recorded_value_id_is_the_values(tmp_path: Path, interface: Any, value: Any) -> None:
    CM = DatedCacheManager(interface(tmp_path), verbose=False)
    CM.set_functions_dict({"v": lambda: value})
    CM.get("v")
    assert CM.info("v").value_id == value_id(value)


def test_an_identical_recompute_keeps_dependants_fresh(CM: DatedCacheManager) -> None:
    chain(CM)
    CM.get("b")
    CM.get("a", use_stored=False)  # same value again: early cutoff
    assert not CM.explain("b").stale
    chain(CM, upstream=2)
    CM.get("a", use_stored=False)
    report = CM.explain("b")
    assert report.stale and [r.kind for r in report.reasons] == ["dependency"]
    assert "dependency a was recomputed on " in str(report) and "with a new value" in str(report)


# -- policies --------------------------------------------------------------------------


def stale_b(CM: DatedCacheManager) -> dict[str, int]:
    """A stored ``b`` whose dependency ``a`` changed since; a fresh manager to read it."""
    chain(CM)
    CM.get("b")
    chain(CM, upstream=5)
    CM.get("a", use_stored=False)
    fresh = DatedCacheManager(CM.storage_interface, verbose=False)
    return chain_into(fresh, CM)


def chain_into(fresh: DatedCacheManager, CM: DatedCacheManager) -> dict[str, int]:
    runs = chain(fresh, upstream=5)
    CM.__dict__["_fresh"] = fresh
    return runs


def test_warn_returns_the_stored_value_and_logs_once(
    CM: DatedCacheManager, caplog: pytest.LogCaptureFixture
) -> None:
    runs = stale_b(CM)
    fresh = CM.__dict__["_fresh"]
    with caplog.at_level(logging.WARNING, logger="metricache"):
        assert fresh.get("b").tolist() == [1, 2, 3]  # the stored value
        fresh.clear_cache()
        fresh.get("b")
    assert runs["b"] == 0
    warned = [r for r in caplog.records if "b is stale" in r.getMessage()]
    assert len(warned) == 1 and "dependency a was recomputed" in warned[0].getMessage()


def test_ignore_recompute_and_raise(CM: DatedCacheManager) -> None:
    runs = stale_b(CM)
    fresh = CM.__dict__["_fresh"]
    assert fresh.get("b", on_stale="ignore").tolist() == [1, 2, 3]
    fresh.clear_cache()
    with pytest.raises(StaleMetricError, match="dependency a was recomputed") as raised:
        fresh.get("b", on_stale="raise")
    assert raised.value.report.stale and isinstance(raised.value, RuntimeError)
    assert fresh.get("b", on_stale="recompute").tolist() == [1, 6, 11]
    assert runs["b"] == 1 and not fresh.explain("b").stale


def test_the_managers_policy_and_a_block(tmp_path: Path) -> None:
    CM = DatedCacheManager(NpzStorageInterface(tmp_path), verbose=False, on_stale="raise")
    runs = stale_b(CM)
    fresh = CM.__dict__["_fresh"]
    fresh.on_stale = "raise"
    with pytest.raises(StaleMetricError):
        fresh.get("b")
    with fresh.stale_policy("recompute"):
        assert fresh.get("b").tolist() == [1, 6, 11]
    assert runs["b"] == 1
    with pytest.raises(ValueError, match="on_stale must be one of"):
        fresh.stale_policy("sometimes")


def test_collected_metrics_and_get_all_take_on_stale(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    for offset in (0, 10):
        CM = ParameterizedDatedCacheManager(NpyStorageInterface(folder), verbose=False)

        @CM.collect(params_list=[[1], [2]], version=str(offset))
        def shifted(a: int) -> int:
            return a + offset  # noqa: B023 - each manager its own

        @CM.collect(version=str(offset))
        def plain() -> int:
            return offset  # noqa: B023 - each manager its own

        if offset == 0:
            assert CM.shifted.get_all() == [1, 2] and CM.plain() == 0
    with pytest.raises(StaleMetricError, match="version of shifted_1 changed from '0' to '10'"):
        CM.shifted(1, on_stale="raise")
    assert CM.shifted.get_all(on_stale="recompute") == [11, 12]
    assert CM.plain(on_stale="recompute") == 10
    with pytest.raises(TypeError, match="takes no positional arguments"):
        CM.plain(False)


def test_entries_without_provenance_are_unknown_and_fresh(CM: DatedCacheManager) -> None:
    CM.storage_interface.save("old", np.arange(2))  # written as the seed's code would
    CM.set_functions_dict({"old": lambda: np.arange(5)})
    assert CM.get("old", on_stale="raise").tolist() == [0, 1]
    report = CM.explain("old")
    assert not report.stale and report.status == "unknown"


# -- explain ---------------------------------------------------------------------------

MODULE = """
import numpy as np
from metricache import DatedCacheManager, NpyStorageInterface

LIMIT = {limit}

def smooth(x):
    return x * {factor}  # the helper

def prepare(x):
    return smooth(x) + 1

CM = DatedCacheManager(NpyStorageInterface({folder!r}), verbose=False)

@CM.collect
def base():
    return np.arange(LIMIT)

@CM.collect
def derived():
    return prepare(CM.base()){extra}
"""


def module_manager(tmp_path: Path, tag: str, **changes: Any) -> DatedCacheManager:
    """The metrics of MODULE (with *changes*), imported fresh as a new process would."""
    from .test_fingerprint import load

    fields = {"limit": 3, "factor": 2, "extra": "", "folder": str(tmp_path / "cache")} | changes
    module = load(tmp_path / tag, MODULE.format(**fields), name="stalemod")
    return module.CM  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("changes", "kind", "wording"),
    [
        ({"extra": " + 0"}, "code", "derived is stale: code of derived changed"),
        ({"factor": 3}, "helper", "derived is stale: helper smooth() in stalemod.py changed"),
        ({"limit": 4}, "constant", "constant LIMIT in stalemod.py changed (through base)"),
    ],
)
def test_explain_names_the_root_cause(
    tmp_path: Path, changes: dict[str, Any], kind: str, wording: str
) -> None:
    module_manager(tmp_path, "v1").derived()
    CM = module_manager(tmp_path, "v2", **changes)
    report = CM.explain("derived")
    assert report.stale and [r.kind for r in report.reasons] == [kind]
    assert wording in str(report)
    assert report.to_dict()["reasons"][0]["kind"] == kind
    assert module_manager(tmp_path, "v3").explain("derived").stale is False  # reverted


def test_explain_missing_dependency_invalidated_and_unknown(tmp_path: Path) -> None:
    module_manager(tmp_path, "v1").derived()
    CM = module_manager(tmp_path, "v2")
    CM.delete("base")
    assert [r.kind for r in CM.explain("derived").reasons] == ["missing-dependency"]
    assert "dependency base is no longer stored" in str(CM.explain("derived"))
    CM.get("base")
    CM.invalidate("derived", downstream=False)
    report = CM.explain("derived")
    assert [r.kind for r in report.reasons] == ["invalidated"]
    assert str(report).startswith("derived is stale: derived was invalidated on ")
    namespace: dict[str, Any] = {}
    exec("def nosource():\n    return 1\n", namespace)
    CM.set_functions_dict({"ns": namespace["nosource"]})
    CM.get("ns")
    other: dict[str, Any] = {}
    exec("def nosource():\n    return 1\n", other)  # the same code, in "another process"
    CM.set_functions_dict({"ns": other["nosource"]})
    unknown = CM.explain("ns")
    assert unknown.stale and [r.kind for r in unknown.reasons] == ["unknown"]


# -- invalidate ------------------------------------------------------------------------


def test_invalidate_marks_downstream_and_a_recompute_clears_it(CM: DatedCacheManager) -> None:
    runs = chain(CM)
    CM.get("b")
    assert CM.invalidate("a") == ["a", "b"]
    assert CM.exists("a") and CM.explain("a").stale and CM.explain("b").stale
    CM.get("a", on_stale="recompute")  # the same value as before...
    assert not CM.explain("a").stale
    assert CM.explain("b").stale  # ...but b was marked itself
    assert CM.get("b", on_stale="recompute").tolist() == [1, 2, 3]
    assert not CM.explain("b").stale and runs == {"a": 2, "b": 2}


def test_invalidate_without_downstream_relies_on_early_cutoff(CM: DatedCacheManager) -> None:
    chain(CM)
    CM.get("b")
    assert CM.invalidate("a", downstream=False) == ["a"]
    reasons = CM.explain("b").reasons
    assert [(r.kind, r.via) for r in reasons] == [("invalidated", ("a",))]
    CM.get("a", on_stale="recompute")
    assert not CM.explain("b").stale


# -- the "done when", as a new user would try it --------------------------------

DONE_METRICS = """
import numpy as np
from metricache import DatedCacheManager, NpyStorageInterface
from analysis.steps import prepare

CM = DatedCacheManager(NpyStorageInterface("cache"), verbose=False)

@CM.collect
def result():
    return prepare(np.arange(4))
"""
DONE_STEPS = '''
def smooth(x):
    """Two calls below the metric."""
    return x * 2  # the factor


def prepare(x):
    return smooth(x) + 1
'''
DONE_RUN = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from metrics import CM
report = CM.explain("result") if CM.exists("result") else None
value = CM.result(on_stale=sys.argv[1]) if len(sys.argv) > 1 else CM.result()
print(json.dumps({"report": str(report), "value": value.tolist()}))
"""


def test_done_when_a_helper_two_calls_down_changes_in_its_file(tmp_path: Path) -> None:
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "__init__.py").write_text("")
    steps = tmp_path / "analysis" / "steps.py"
    steps.write_text(DONE_STEPS)
    (tmp_path / "metrics.py").write_text(DONE_METRICS)
    (tmp_path / "run.py").write_text(DONE_RUN)

    def run(*args: str) -> tuple[dict[str, Any], str]:
        done = subprocess.run(
            [sys.executable, "run.py", *args],
            cwd=tmp_path, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        return json.loads(done.stdout), done.stderr

    assert run()[0]["value"] == [1, 3, 5, 7]
    steps.write_text(DONE_STEPS.replace("# the factor", "# a comment, edited"))
    out, err = run()
    assert out["report"] == "result is fresh" and "stale" not in err
    steps.write_text(DONE_STEPS.replace("x * 2", "x * 3"))
    out, err = run()
    assert out["report"] == "result is stale: helper smooth() in analysis/steps.py changed"
    assert out["value"] == [1, 3, 5, 7] and "result is stale" in err  # warned, stored value
    out, _ = run("recompute")
    assert out["value"] == [1, 4, 7, 10]
    assert textwrap.dedent(run()[0]["report"]) == "result is fresh"


def test_a_large_arrays_bytes_are_hashed_once_while_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metricache.provenance import values

    direct: list[int] = []
    real = values._raw_digest
    monkeypatch.setattr(values, "_raw_digest", lambda a: direct.append(a.nbytes) or real(a))
    big = np.arange(1 << 18, dtype=np.float64)
    for interface in (NpyStorageInterface, NpzStorageInterface):
        CM = DatedCacheManager(interface(tmp_path / interface.__name__), verbose=False)
        CM.set_functions_dict({"big": lambda: big})
        CM.get("big")
    assert direct == []  # the digest came from the writes, for npy and npz alike
    assert CM.info("big").value_id == value_id(big)
