"""Metric names are file names: unsafe ones are refused before any file is touched."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metricache import (
    DatedCacheManager,
    InvalidMetricNameError,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
    StorageInterface,
    default_name_generation_function,
)
from metricache._keys import param_key
from metricache._names import hashed_name, plain_name, seed_faithful, validate_name

SUFFIXES = ["", ".npz", ".npy", ".json"]
# No file a cache folder holds may have a name longer than this many bytes (ext4,
# APFS and NTFS all allow 255).
FS_NAME_BYTES = 255


def listing(folder: Path) -> list[str]:
    """Every file and folder below *folder*, as sorted relative paths."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    "name",
    [
        "m",
        "metric_1",
        "poly_Y_1_0p5",
        "a.b",
        "v1.2.3",
        "data.tar.gz",
        "Grüße",
        "温度_平均",
        "📈-ratio",
        "with space",
        " leading_space",
        "CONSOLE",
        "nullable",
        "com10",
        "lpt",
        "x_date",
        "-dash",
        "_private",
    ],
)
def test_ordinary_names_are_accepted(name: str) -> None:
    for suffix in SUFFIXES:
        assert validate_name(name, suffix) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("a/b", "path separator"),
        ("/abs", "path separator"),
        ("a\\b", "path separator"),
        ("..", "'..'"),
        ("a..b", "'..'"),
        (".hidden", "starts with '.'"),
        (".", "starts with '.'"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("tab\t", "control character"),
        ("esc\x1b", "control character"),
        ("del\x7f", "control character"),
        ("c1\x85", "control character"),
        ("a<b", "Windows forbids"),
        ("a>b", "Windows forbids"),
        ("a:b", "Windows forbids"),
        ('a"b', "Windows forbids"),
        ("a|b", "Windows forbids"),
        ("a?b", "Windows forbids"),
        ("a*b", "Windows forbids"),
        ("CON", "reserved device name"),
        ("nul", "reserved device name"),
        ("Aux", "reserved device name"),
        ("PRN", "reserved device name"),
        ("COM1", "reserved device name"),
        ("LPT9", "reserved device name"),
        ("con.txt", "reserved device name"),
        ("trailing ", "ends with a space or a dot"),
        ("trailing.", "ends with a space or a dot"),
        ("", "empty"),
        ("lone\ud800surrogate", "surrogate"),
    ],
)
def test_unsafe_names_are_rejected_saying_why(name: str, problem: str) -> None:
    with pytest.raises(InvalidMetricNameError) as info:
        validate_name(name, ".npz")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert problem in message
    assert repr(name) in message  # the offending name is shown


@pytest.mark.parametrize("name", [1, None, b"bytes", ("a",), ["a"], Path("a"), 1.5])
def test_non_str_names_are_rejected(name: Any) -> None:
    with pytest.raises(InvalidMetricNameError, match=f"must be str, not {type(name).__name__}"):
        validate_name(name, ".npz")


def longest_accepted(suffix: str) -> int:
    """The length in bytes of the longest ASCII name accepted with *suffix*."""
    n = 1
    while True:
        try:
            validate_name("a" * (n + 1), suffix)
        except InvalidMetricNameError:
            return n
        n += 1


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_length_limit_leaves_room_for_extension_and_date_sidecar(suffix: str) -> None:
    limit = longest_accepted(suffix)
    # The seed's sidecar <name>_date<ext> is the longest file a name owns.
    assert limit + len(f"_date{suffix}") <= FS_NAME_BYTES
    # ...and the limit is not needlessly tight.
    assert limit >= FS_NAME_BYTES - 20
    with pytest.raises(InvalidMetricNameError, match=f"{limit + 1} bytes long") as info:
        validate_name("a" * (limit + 1), suffix)
    assert f"limit is {limit} bytes" in str(info.value)


@pytest.mark.parametrize("char", ["é", "€", "📈"])
@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_length_limit_counts_utf8_bytes_not_characters(char: str, suffix: str) -> None:
    limit = longest_accepted(suffix)
    width = len(char.encode())
    count, pad = divmod(limit, width)
    exact = char * count + "a" * pad
    assert len(exact.encode()) == limit
    assert validate_name(exact, suffix) == exact
    one_over = char * count + "a" * (pad + 1)
    with pytest.raises(InvalidMetricNameError, match="bytes long"):
        validate_name(one_over, suffix)
    # Fewer characters than the limit, more bytes: still too long.
    wide = char * (count + 1)
    assert len(wide) < limit < len(wide.encode())
    with pytest.raises(InvalidMetricNameError, match="bytes long"):
        validate_name(wide, suffix)


@pytest.mark.parametrize(
    "storage_class", [NpzStorageInterface, NpyStorageInterface, JsonStorageInterface]
)
def test_longest_multibyte_name_works_on_a_real_folder(
    storage_class: Callable[[Path], StorageInterface], tmp_path: Path
) -> None:
    ext = storage_class(tmp_path / "probe").file_ext
    limit = longest_accepted(ext)
    name = "€" * (limit // 3) + "a" * (limit % 3)
    CM = DatedCacheManager(storage_class(tmp_path / "cache"), verbose=False)
    CM.set_functions_dict({name: lambda: 7})
    assert CM[name] == 7
    fresh = DatedCacheManager(storage_class(tmp_path / "cache"), verbose=False)
    assert fresh.load(name) == 7
    assert fresh[name + "_date"] == fresh.date(name).astimezone().strftime("%Y-%m-%d")
    # A legacy sidecar for the longest name fits on the file system too.
    sidecar = tmp_path / "cache" / f"{name}_date{ext}"
    sidecar.write_bytes(b"")
    assert sidecar.exists()


@pytest.mark.parametrize(
    ("base", "params", "expected"),
    [
        ("poly_Y", (1, 2), "poly_Y_1_2"),
        ("poly_Y", (1, 0.5), "poly_Y_1_0p5"),
        ("poly_X", (1,), "poly_X_1"),
        ("m", (), "m"),
        ("v1.0", (2.5,), "v1p0_2p5"),
        ("f", ("a.b.c",), "f_apbpc"),
        ("f", (-1, 1e-05), "f_-1_1e-05"),
        ("f", (None, True), "f_None_True"),
        ("f", ("x", 3), "f_x_3"),
    ],
)
def test_default_name_generation_follows_the_seed(
    base: str, params: tuple[Any, ...], expected: str
) -> None:
    assert default_name_generation_function(base, params) == expected


def test_default_params_list_gives_the_plain_name(npz_manager: DatedCacheManager) -> None:
    @npz_manager.collect(params_list=((),))
    def plain() -> int:
        return 3

    assert list(npz_manager.functions_dict) == ["plain"]
    assert npz_manager.plain() == 3


BAD_NAMES = ["../escape", "a/b", "sub\\x", "..", ".hidden", "nul", "x\x00", "x" * 300, 12]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
@pytest.mark.parametrize(
    "call",
    [
        lambda CM, n: CM.get(n),
        lambda CM, n: CM[n],
        lambda CM, n: CM.get(n, use_stored=False),
        lambda CM, n: CM.exists(n),
        lambda CM, n: CM.delete(n),
        lambda CM, n: CM.save(n),
        lambda CM, n: CM.load(n),
        lambda CM, n: CM.compute(n),
    ],
    ids=["get", "getitem", "get-recompute", "exists", "delete", "save", "load", "compute"],
)
def test_rejected_names_touch_no_file(
    name: Any, call: Callable[[DatedCacheManager, Any], Any], tmp_path: Path
) -> None:
    folder = tmp_path / "cache"
    CM = DatedCacheManager(NpzStorageInterface(folder), verbose=False)
    CM.set_functions_dict({"ok": lambda: np.arange(3)})
    CM.get("ok")  # a populated folder, so "unchanged" is not trivially "empty"
    # Define the bad name as a metric too, so only validation can stop it.
    if isinstance(name, str):
        CM.functions_dict[name] = lambda: np.arange(5)
    before = listing(tmp_path)
    with pytest.raises(InvalidMetricNameError):
        call(CM, name)
    assert listing(tmp_path) == before
    assert os.listdir(tmp_path) == ["cache"]
    assert name not in CM.cache


def test_rejected_name_in_functions_dict_is_refused(npz_manager: DatedCacheManager) -> None:
    npz_manager.set_functions_dict({"first": lambda: 0})
    with pytest.raises(InvalidMetricNameError, match="path separator"):
        npz_manager.set_functions_dict({"ok": lambda: 1, "../up": lambda: 2})
    assert list(npz_manager.functions_dict) == ["first"]


@given(
    base=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True),
    values=st.lists(
        st.one_of(st.text(), st.floats(), st.integers(), st.binary(), st.none()), max_size=4
    ),
    keywords=st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.text(), max_size=2),
)
def test_hashed_names_are_always_safe_file_names(
    base: str, values: list[Any], keywords: dict[str, Any]
) -> None:
    name = hashed_name(base, values, sorted(keywords.items()), "0123456789abcdef")
    for suffix in SUFFIXES:
        assert validate_name(name, suffix) == name
    assert name.endswith("~0123456789abcdef")


PLAINISH = st.one_of(
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.sampled_from(
        ["a", "b", "a-b", "ab", "None", "True", "nan", "inf", "1", "a_b", "apb", "a.b"]
    ),
    st.integers(-3, 3).map(np.int64),
    st.floats(width=32).map(np.float32),
    st.floats().map(np.float64),
)


@given(st.lists(PLAINISH, max_size=3), st.lists(PLAINISH, max_size=3))
def test_plain_names_tell_every_call_apart(a: list[Any], b: list[Any]) -> None:
    # Calls with different arguments never share a plain name (so no other process
    # can store a different call under it).
    name_a, name_b = plain_name("f", a, ()), plain_name("f", b, ())
    if name_a is not None and name_a == name_b:
        assert list(map(param_key, a)) == list(map(param_key, b))


@pytest.mark.parametrize(
    ("value", "faithful"),
    [
        (np.array([1, 2, 3]), True),
        (np.array([0.1, 0.2]), True),
        (np.array([0.1000000001, 0.2]), False),  # printed as [0.1 0.2]
        (np.arange(2000), False),  # printed with '...'
        (np.arange(40.0), False),  # printed on two lines
        (np.eye(2), False),
        (np.array([True, False]), True),
        ("any string", True),
        ([np.array([1]), 2], True),
        ((np.arange(2000),), False),
    ],
    ids=repr,
)
def test_declared_values_keep_the_seed_name_only_when_it_is_faithful(
    value: Any, faithful: bool
) -> None:
    assert seed_faithful(value) is faithful


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (["a", "b"], ["a_b"]),
        ([0.5], ["0p5"]),
        ([0.5], ["0.5"]),
        (["a.b"], ["apb"]),
        ([1], ["1"]),
        ([1], [1.0]),
        ([1], [True]),
        ([True], ["True"]),
        ([None], ["None"]),
        ([float("nan")], ["nan"]),
        ([float("inf")], ["inf"]),
        ([0.1], [np.float32(0.1)]),
        ([0.0], [-0.0]),
    ],
    ids=repr,
)
def test_calls_the_seed_named_alike_get_different_plain_names(a: list[Any], b: list[Any]) -> None:
    # The seed's rule makes one name of each pair; at most one of them keeps it.
    name_a, name_b = plain_name("f", a, ()), plain_name("f", b, ())
    assert name_a is None or name_a != name_b
