"""Code fingerprints: stable under what does not change behaviour, sensitive to what does."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import DatedCacheManager, NpyStorageInterface
from metricache.provenance import fingerprint as fp_module
from metricache.provenance.fingerprint import fingerprint
from metricache.provenance.values import value_id

FIXTURE = Path(__file__).parent / "_fp_fixtures" / "fpmod.py"
SOURCE = FIXTURE.read_text()


def load(folder: Path, source: str, name: str = "fpmod") -> types.ModuleType:
    """Write *source* as ``<folder>/<name>.py`` and import it fresh (as a new process would)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def variant(tmp_path: Path) -> Callable[[str, str], dict[str, str]]:
    """Fingerprint of function *attr* of the fixture module rewritten as *source*."""
    counter = iter(range(1000))

    def take(source: str, attr: str = "metric") -> dict[str, str]:
        module = load(tmp_path / f"v{next(counter)}", source)
        return dict(fingerprint(getattr(module, attr)))

    yield take
    sys.modules.pop("fpmod", None)


def edited(old: str, new: str) -> str:
    assert old in SOURCE
    return SOURCE.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    # a comment\n", "    # another comment\n    # and more\n"),
        ('    """The metric."""\n', '    """Docs rewritten entirely."""\n'),
        ('    """The metric."""\n', ""),
        (
            "    return helper(a) + ping(3) + int(np.sum(TABLE))",
            "    return (\n        helper(a)+ping( 3 )\n"
            "        + int(np.sum(TABLE))  # same\n    )",
        ),
        ("def deep(x):\n", "\n\n\ndef unrelated():\n    return 0\n\n\ndef deep(x):\n"),
    ],
    ids=["comment", "docstring", "no-docstring", "formatting", "moved"],
)
def test_fingerprint_ignores_what_does_not_change_behaviour(
    variant: Callable[[str], dict[str, str]], old: str, new: str
) -> None:
    assert variant(edited(old, new)) == variant(SOURCE)


def test_moving_the_function_to_the_end_of_its_file_changes_nothing(
    variant: Callable[[str], dict[str, str]],
) -> None:
    start = SOURCE.index("def metric(")
    end = SOURCE.index("def make_closure(")
    moved = SOURCE[:start] + SOURCE[end:] + "\n\n" + SOURCE[start:end]
    assert variant(moved) == variant(SOURCE)


@pytest.mark.parametrize(
    ("old", "new", "attr", "part"),
    [
        ("ping(3) + int", "ping(4) + int", "metric", "code"),
        ("return x * SCALE", "return x * SCALE * 1", "metric", "helper:fpmod:deep"),
        ("return 1 if n <= 0", "return 2 if n <= 0", "metric", "helper:fpmod:pong"),
        ("SCALE = 3", "SCALE = 4", "metric", "constant:fpmod:SCALE"),
        ("TABLE = np.arange(4)", "TABLE = np.arange(4)[::-1].copy()", "uses_array", None),
        ("make_closure(5)", "make_closure(6)", "closed", "closure:k"),
        ("def metric(a=2)", "def metric(a=3)", "metric", "default:a"),
        ("partial(_power, 3, 2)", "partial(_power, 3, 3)", "squared", "partial"),
    ],
    ids=[
        "body",
        "helper-two-deep",
        "mutual-recursion",
        "constant",
        "array",
        "closure",
        "default",
        "partial",
    ],  # fmt: skip
)
def test_fingerprint_sees_every_change_that_matters(
    variant: Callable[[str, str], dict[str, str]],
    old: str,
    new: str,
    attr: str,
    part: str | None,
) -> None:
    before, after = variant(SOURCE, attr), variant(edited(old, new), attr)
    assert before != after
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    if part is not None:
        assert part in changed  # and nothing but it, unless the edit changed the AST too
        assert changed <= {part, "code"}


def test_helpers_are_the_users_code_only(variant: Callable[[str], dict[str, str]]) -> None:
    parts = variant(SOURCE)
    helpers = {k for k in parts if k.startswith("helper:")}
    # np.sum is an installed package's: not a helper; the mutual recursion is found once each.
    assert helpers == {
        "helper:fpmod:helper",
        "helper:fpmod:deep",
        "helper:fpmod:ping",
        "helper:fpmod:pong",
    }
    assert {"constant:fpmod:SCALE", "constant:fpmod:TABLE", "default:a"} <= parts.keys()


def test_our_decorator_is_dropped_and_others_count(
    variant: Callable[[str, str], dict[str, str]], tmp_path: Path
) -> None:
    header = (
        "from metricache import DatedCacheManager\nCM = DatedCacheManager({!r}, verbose=False)\n"
    )
    source = header.format(str(tmp_path / "cache")) + SOURCE
    plain = variant(source, "decorated_plain")
    ours = source.replace("def decorated_plain", "@CM.collect\ndef decorated_plain")
    theirs = source.replace("def decorated_plain", "@functools.lru_cache\ndef decorated_plain")
    assert variant(ours, "decorated_plain")["code"] == plain["code"]
    assert variant(theirs, "decorated_plain")["code"] != plain["code"]


def test_lambdas_are_fingerprinted_by_their_ast() -> None:
    one, same, other = (lambda: 1), (lambda: 1), (lambda: 2)  # noqa: E731
    assert dict(fingerprint(one))["code"] == dict(fingerprint(same))["code"]
    assert dict(fingerprint(one))["code"] != dict(fingerprint(other))["code"]


def test_no_source_is_an_unknown_part_never_equal_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    namespace: dict[str, Any] = {}
    exec("def f():\n    return 1\n\ndef g():\n    return 1\n", namespace)  # no file behind
    with caplog.at_level(logging.INFO, logger="metricache"):
        first, again, other = (
            fingerprint(namespace["f"]),
            fingerprint(namespace["f"]),
            fingerprint(namespace["g"]),
        )
    assert [k for k, _ in first] == ["algorithm", "unknown:?:f"]
    assert first == again  # computed once per process
    assert dict(first)["unknown:?:f"] != dict(other)["unknown:?:g"]
    assert fingerprint(len) != fingerprint(len.__call__)
    assert sum("no source for ?:f" in r.getMessage() for r in caplog.records) == 1


def test_computed_once_per_function_however_often_the_metric_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    real = fp_module._compute
    monkeypatch.setattr(fp_module, "_compute", lambda f: calls.append(f) or real(f))

    def answer() -> np.ndarray:
        return np.arange(3)

    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"answer": answer})
    for _ in range(3):
        CM.get("answer", use_stored=False)
    assert CM.get("answer").tolist() == [0, 1, 2]
    assert calls == [answer]


def test_the_same_in_a_fresh_process(tmp_path: Path) -> None:
    module = load(tmp_path / "here", SOURCE)
    here = fingerprint(module.metric)
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(tmp_path / 'here')!r})\n"
        "import fpmod\n"
        "from metricache.provenance.fingerprint import fingerprint\n"
        "print(json.dumps(fingerprint(fpmod.metric)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert [tuple(p) for p in json.loads(out.stdout)] == list(here)
    sys.modules.pop("fpmod", None)


def test_value_ids_tell_types_shapes_and_orders_apart() -> None:
    a = np.arange(6.0).reshape(2, 3)
    values = [1, 1.0, "1", b"1", [1], (1,), {1: 1}, {"1": 1}, np.int64(1), np.float64(1),
              True, a, a.reshape(3, 2), a.T, np.asfortranarray(a), a.astype(np.float32), [[1]],
              None]  # fmt: skip
    assert len({value_id(v) for v in values}) == len(values)
    assert value_id(a) == value_id(a.copy()) and value_id(a[:, ::2]) == value_id(a[:, ::2].copy())


def test_value_ids_have_no_depth_limit() -> None:
    deep: list[Any] = []
    for _ in range(sys.getrecursionlimit() * 3):
        deep = [deep]
    assert value_id(deep) != value_id([])
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    assert value_id(cyclic) == value_id(cyclic)
