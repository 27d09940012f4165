"""One entry per distinct call: canonical parameter keys, binding and names.

"Equal arguments" is defined here, independently of metricache's code, by
:func:`oracle`: integers by value whatever their type; ``float``/``np.float64``
by their exact bits (every NaN one value, ``-0.0`` apart from ``0.0``); other
numpy floats by dtype and bits; strings and ``None`` by value; arrays by dtype, shape and
bytes. The property tests check that two calls share an entry exactly when their
bound arguments are equal, and that a call always returns what the original
function returns for it.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import struct
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from metricache import DatedCacheManager, MetricNameCollisionError, NpzStorageInterface
from metricache._keys import call_digest, param_key

NAN = float("nan")
BASE = np.arange(40.0)
CHANGED = BASE.copy()
CHANGED[20] = -1.0
# Families of values that look alike; each example draws its values from one or
# two families, so near-misses (0.5 and np.float32(0.5), -0.0 and 0.0) meet often.
FAMILIES: list[list[Any]] = [
    [1, True, np.int64(1), np.int8(1), np.uint16(1), 1.0, np.float64(1.0), "1", np.bool_(True)],
    [0.5, np.float64(0.5), np.float32(0.5), np.float16(0.5), "0p5", "0.5"],
    [0.1, np.float64(0.1), np.float32(0.1), 0.1 + 1e-17, 0.30000000000000004],
    [0.0, -0.0, np.float64(-0.0), np.float32(-0.0), NAN, -NAN, np.float64(NAN), math.inf],
    [BASE, BASE.copy(), CHANGED, BASE.astype(np.float32), np.arange(40), BASE.reshape(4, 10)],
    [np.array([NAN, 1.0]), np.array([-NAN, 1.0]), np.array([0.1, 0.2]), np.array([0.1 + 1e-9, 0.2])],  # noqa: E501
    ["a", "b", "a_b", "a.b", "apb", "nan", "None", None, False, 0],
]  # fmt: skip


def oracle(value: Any) -> Any:
    """The test's own definition of argument equality (see the module docstring)."""
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if isinstance(value, (int, np.integer)):
        return ("int", int(value))
    if type(value) in (float, np.float64):
        return ("float", b"nan" if value != value else struct.pack(">d", value))
    if isinstance(value, np.floating):
        return ("np", value.dtype.name, b"nan" if np.isnan(value) else value.tobytes())
    if isinstance(value, np.ndarray):
        clean = np.where(np.isnan(value), np.nan, value) if value.dtype.kind == "f" else value
        return ("array", value.dtype.str, value.shape, clean.astype(value.dtype).tobytes())
    if value is None:
        return ("none",)
    assert isinstance(value, str)
    return ("str", value)


def fingerprint(arguments: dict[str, Any]) -> str:
    """What each generated function returns: a digest of its arguments' equality class."""
    canonical = repr([(name, oracle(v)) for name, v in arguments.items()])
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@st.composite
def signatures(draw: st.DrawFn, values: list[Any]) -> inspect.Signature:
    """Positional parameters (some with defaults) and keyword-only ones."""
    kind = inspect.Parameter
    params: list[inspect.Parameter] = []
    defaulted = False
    for i in range(draw(st.integers(0, 3))):
        defaulted = defaulted or draw(st.booleans())
        default = draw(st.sampled_from(values)) if defaulted else kind.empty
        params.append(kind(f"p{i}", kind.POSITIONAL_OR_KEYWORD, default=default))
    for i in range(draw(st.integers(0, 2))):
        default = draw(st.sampled_from(values)) if draw(st.booleans()) else kind.empty
        params.append(kind(f"k{i}", kind.KEYWORD_ONLY, default=default))
    return inspect.Signature(params)


def make_function(signature: inspect.Signature, calls: list[str]) -> Any:
    """A real ``def`` with *signature* that records and returns its fingerprint."""
    parts, names = [], []
    for p in signature.parameters.values():
        if p.kind is p.KEYWORD_ONLY and "*" not in parts:
            parts.append("*")
        parts.append(p.name if p.default is p.empty else f"{p.name}=d_{p.name}")
        names.append(f"{p.name!r}: {p.name}")
    source = f"def f({', '.join(parts)}):\n    return record({{{', '.join(names)}}})\n"

    def record(arguments: dict[str, Any]) -> str:
        calls.append(fingerprint(arguments))
        return fingerprint(arguments)

    namespace: dict[str, Any] = {"record": record}
    namespace.update({f"d_{p.name}": p.default for p in signature.parameters.values()})
    exec(compile(source, "<generated>", "exec"), namespace)
    return namespace["f"]


@st.composite
def spellings(
    draw: st.DrawFn, signature: inspect.Signature, values: list[Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A call of *signature*: each parameter given or defaulted, positionally or by name."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    by_name = False
    for p in signature.parameters.values():
        if p.default is not p.empty and draw(st.booleans()):
            by_name = True  # skipped: later positional parameters must go by name
            continue
        value = draw(st.sampled_from(values))
        if p.kind is p.KEYWORD_ONLY or by_name or draw(st.booleans()):
            by_name = by_name or p.kind is not p.KEYWORD_ONLY
            kwargs[p.name] = value
        else:
            args.append(value)
    return tuple(args), kwargs


def bound_class(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return fingerprint(dict(bound.arguments))


def declaration(
    signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """A ``params_list`` item for a call: a list if positional only, else a dict by name."""
    if not kwargs:
        return list(args)
    return {**dict(zip(signature.parameters, args, strict=False)), **kwargs}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_calls_share_an_entry_iff_their_arguments_are_equal(data: st.DataObject) -> None:
    families = data.draw(st.lists(st.sampled_from(FAMILIES), min_size=1, max_size=2))
    values = [v for family in families for v in family]
    signature = data.draw(signatures(values))
    calls = data.draw(st.lists(spellings(signature, values), min_size=1, max_size=8))
    declared = [
        declaration(signature, *c) for c in data.draw(st.lists(st.sampled_from(calls), max_size=2))
    ]
    with tempfile.TemporaryDirectory() as folder:
        computed: list[str] = []
        function = make_function(signature, computed)

        def manager() -> DatedCacheManager:
            CM = DatedCacheManager(
                NpzStorageInterface(folder), verbose=False, dynamic_metric_creation=True
            )
            try:
                CM.collect(function, params_list=declared)
            except MetricNameCollisionError:  # two declared sets with one seed name
                assume(False)
            return CM

        CM = manager()
        names: dict[str, str] = {}
        for args, kwargs in calls:
            expected = bound_class(signature, args, kwargs)
            assert CM.f(*args, **kwargs) == expected == function(*args, **kwargs)
            name = CM.f.metric_name(*args, **kwargs)
            assert names.setdefault(expected, name) == name  # equal arguments: one entry
        assert len(set(names.values())) == len(names)  # different arguments: different entries
        assert len(computed) == len(calls) + len(names)  # each entry computed once

        # A fresh manager on the folder (the next process) names and loads the same.
        computed.clear()
        fresh = manager()
        for args, kwargs in calls:
            expected = bound_class(signature, args, kwargs)
            assert fresh.f.metric_name(*args, **kwargs) == names[expected]
            assert fresh.f(*args, **kwargs) == expected
        assert computed == []


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (3, np.int64(3)),
        (3, np.uint8(3)),
        (0.5, np.float64(0.5)),
        (float("nan"), np.float64("nan")),
        (float("nan"), -float("nan")),
        (True, np.bool_(True)),
        ("a", np.str_("a")),
        (np.arange(3.0), np.arange(3.0).astype(">f8")),
        (np.array([np.nan]), np.array([-np.nan])),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ((1, [2.0]), (np.int16(1), [np.float64(2.0)])),
    ],
    ids=repr,
)
def test_equal_arguments(a: Any, b: Any) -> None:
    assert param_key(a) == param_key(b)
    assert call_digest("f", (param_key(a),)) == call_digest("f", (param_key(b),))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1, True),
        (1, 1.0),
        (1, "1"),
        (0.0, -0.0),
        (0.1, np.float32(0.1)),
        (0.5, np.float32(0.5)),  # np.float32(0.5) / 3 != 0.5 / 3
        (np.float32(0.5), np.float16(0.5)),
        (np.arange(3), np.arange(3.0)),
        (np.arange(4), np.arange(4).reshape(2, 2)),
        (BASE, CHANGED),
        (np.array([0.1, 0.2]), np.array([0.1000000001, 0.2])),
        ((1, 2), [1, 2]),
        (None, "None"),
        (b"a", "a"),
    ],
    ids=repr,
)
def test_different_arguments(a: Any, b: Any) -> None:
    assert param_key(a) != param_key(b)


def test_digest_is_the_same_in_every_process() -> None:
    # Sets and dicts hash their str members differently per process (PYTHONHASHSEED).
    script = (
        "import numpy as np; from metricache._keys import call_digest, param_key; "
        "print(call_digest('f', tuple(map(param_key, "
        "({'b', 'a', 'c'}, {'y': 1, 'x': np.arange(5)}, np.float32(0.1))))))"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1
