"""PickleStorageInterface: anything picklable, protocol pinned, versions recorded and compared."""

from __future__ import annotations

import collections
import fractions
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from metricache import (
    CorruptEntryError,
    DatedCacheManager,
    PickleStorageInterface,
    UnsupportedValueError,
)
from metricache.codecs import pickled

from ._compare import assert_same


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no version difference warned about yet."""
    monkeypatch.setattr(pickled, "_warned", set())


def test_anything_picklable_roundtrips_with_its_types(tmp_path: Path) -> None:
    value = {
        "set": {1, 2},
        "fraction": fractions.Fraction(1, 3),
        "ordered": collections.OrderedDict(b=1, a=2),
        "deque": collections.deque([np.arange(3)]),
        (1, 2): "tuple key",
    }
    PickleStorageInterface(tmp_path).save("m", value)
    loaded = PickleStorageInterface(tmp_path).load("m")
    assert type(loaded["ordered"]) is collections.OrderedDict
    assert list(loaded["ordered"]) == ["b", "a"]
    assert_same(value["deque"][0], loaded["deque"][0])
    assert {k: v for k, v in loaded.items() if k != "deque"} == {
        k: v for k, v in value.items() if k != "deque"
    }


def test_the_protocol_is_pinned_and_versions_are_recorded(tmp_path: Path) -> None:
    storage = PickleStorageInterface(tmp_path)
    storage.save("m", [np.zeros(2), fractions.Fraction(1, 2)])
    assert (tmp_path / "m.pkl").read_bytes()[:2] == b"\x80\x05"  # PROTO 5
    info = storage.info("m")
    assert info is not None and info.codec == "pickle" and info.hint is not None
    hint = json.loads(info.hint)
    assert hint["protocol"] == 5
    assert hint["python"] == "{}.{}".format(*sys.version_info[:2])
    assert hint["packages"] == {"numpy": np.__version__}  # fractions is stdlib: no version


def test_unpicklable_values_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    storage = PickleStorageInterface(tmp_path)
    storage.save("m", 1)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for value in (lambda: 1, (i for i in range(2)), [1, lambda: 2]):
        with pytest.raises(UnsupportedValueError, match="cannot pickle"):
            storage.save("m", value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert storage.load("m") == 1


def _other_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process look like another Python and another numpy."""
    monkeypatch.setattr(pickled, "python_version", lambda: "3.99")
    monkeypatch.setattr(np, "__version__", "0.0.1")


def test_a_load_under_other_versions_warns_once_per_difference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    PickleStorageInterface(tmp_path).save("m", np.arange(3))
    PickleStorageInterface(tmp_path).save("n", np.arange(2))
    with caplog.at_level(logging.WARNING, logger="metricache"):
        PickleStorageInterface(tmp_path).load("m")
        assert caplog.records == []  # same versions: silent
        _other_versions(monkeypatch)
        for name in ("m", "n", "m"):
            assert_same(
                np.arange(3 if name == "m" else 2), PickleStorageInterface(tmp_path).load(name)
            )
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert any("Python" in m and "3.99" in m for m in messages)
    assert any("numpy" in m and np.__version__ in m for m in messages)
    assert all(r.name == "metricache" and r.levelno == logging.WARNING for r in caplog.records)


CHILD = """
import sys, fractions
from metricache import DatedCacheManager, PickleStorageInterface

calls = []

def value():
    calls.append(1)
    return {"f": fractions.Fraction(2, 3), "s": frozenset("ab")}

CM = DatedCacheManager(PickleStorageInterface(sys.argv[1]), verbose=False)
CM.set_functions_dict({"m": value})
got = CM["m"]
kinds = type(got["f"]).__name__, type(got["s"]).__name__
print(*kinds, got["f"], "".join(sorted(got["s"])), len(calls))
"""


def test_a_pickle_written_by_one_process_loads_in_a_fresh_one(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    outputs = [
        subprocess.run(
            [sys.executable, str(script), str(tmp_path / "cache")],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.split()
        for _ in range(2)
    ]
    assert outputs[0][-1] == "1" and outputs[1][-1] == "0"  # computed once, then loaded
    assert outputs[0][:-1] == outputs[1][:-1]
    CM = DatedCacheManager(PickleStorageInterface(tmp_path / "cache"), verbose=False)
    assert CM.load("m") == {"f": fractions.Fraction(2, 3), "s": frozenset("ab")}


def test_a_damaged_pickle_is_corrupt_not_unpickled(tmp_path: Path) -> None:
    PickleStorageInterface(tmp_path).save("m", list(range(100)))
    path = tmp_path / "m.pkl"
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptEntryError):
        PickleStorageInterface(tmp_path).load("m")


def test_pickle_is_never_a_default(tmp_path: Path) -> None:
    CM = DatedCacheManager(str(tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: {1, 2}})
    with pytest.raises(UnsupportedValueError, match="PickleStorageInterface"):
        CM["m"]
    assert not list(tmp_path.glob("*.pkl"))


def test_byte_swapped_datetime_arrays_keep_their_byte_order(tmp_path: Path) -> None:
    # numpy itself pickles a '>M8' array as a native one: the codec must not.
    storage = PickleStorageInterface(tmp_path)
    value = [np.array("NaT", dtype=">M8[Y]"), np.zeros((2, 3), dtype=">m8[s]", order="F")]
    storage.save("m", value)
    assert_same(PickleStorageInterface(tmp_path).load("m"), value)
