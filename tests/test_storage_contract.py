"""The storage contract, written once and run against every storage interface.

A new backend adopts it by joining ``CONTRACT_CLASSES`` in ``conftest.py`` and, if
it stores values of its own kind, adding a value strategy to ``VALUES`` below.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.extra import pandas as hpd

from metricache import (
    AutoStorageInterface,
    DatedCacheManager,
    JsonStorageInterface,
    MetricNotStoredError,
    NpyStorageInterface,
    NpzStorageInterface,
    PickleStorageInterface,
    StorageInterface,
    UnsupportedValueError,
)
from metricache._homes import ENV_VAR

from ._compare import assert_same
from .conftest import CONTRACT_CLASSES

StorageClass = Callable[..., StorageInterface]


def listing(folder: Path) -> list[tuple[str, int]]:
    """Every path below *folder* with its size (0 for folders), sorted."""
    return sorted(
        (str(p.relative_to(folder)), p.stat().st_size if p.is_file() else 0)
        for p in folder.rglob("*")
    )


# -- where the folders are: a local folder, fsspec's memory://, and S3 ------------------


class Place:
    """A cache folder (local path or URL) and how to open storages on it."""

    def __init__(self, folder: str | Path, options: dict[str, Any] | None = None) -> None:
        self.folder, self.options = folder, options

    def open(self, storage_class: StorageClass, **kwargs: Any) -> StorageInterface:
        """A storage of *storage_class* on this folder."""
        if self.options is not None:
            kwargs["storage_options"] = self.options
        return storage_class(self.folder, **kwargs)

    def fresh(self) -> Place:
        """A new, empty folder inside this one."""
        if isinstance(self.folder, Path):
            return Place(Path(tempfile.mkdtemp(dir=self.folder)), self.options)
        return Place(f"{self.folder}/{uuid.uuid4().hex[:12]}", self.options)

    def listing(self) -> list[tuple[str, int]]:
        """Every file below the folder with its size (folders, which S3 lacks, left out)."""
        if isinstance(self.folder, Path):
            return [(p, n) for p, n in listing(self.folder) if (self.folder / p).is_file()]
        fs, root = fsspec.core.url_to_fs(self.folder, **(self.options or {}))
        fs.invalidate_cache()
        found = fs.find(root, detail=True)
        return sorted((k[len(root.rstrip("/")) + 1 :], v["size"]) for k, v in found.items())


@pytest.fixture(params=["local", "packed", "memory", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    """The folder of a contract test: local (per-file, then packed), ``memory://``, S3."""
    if request.param in ("local", "packed"):
        monkeypatch = request.getfixturevalue("monkeypatch")
        monkeypatch.setenv(ENV_VAR, "1" if request.param == "packed" else "0")
        return Place(tmp_path)
    if request.param == "memory":
        return Place(f"memory://{uuid.uuid4().hex}/cache")
    s3 = request.getfixturevalue("s3")
    return Place(f"s3://{s3.bucket('contract')}/cache", s3.storage_options())


# -- value strategies, per storage interface ------------------------------------------

dtypes = st.one_of(
    hnp.scalar_dtypes(),  # bool, ints, floats, complex, datetime64, timedelta64
    hnp.integer_dtypes(endianness=">"),
    hnp.floating_dtypes(endianness=">", sizes=(32, 64)),
    hnp.complex_number_dtypes(),
    hnp.unicode_string_dtypes(max_len=5),
    hnp.byte_string_dtypes(max_len=5),
    hnp.datetime64_dtypes(),
    hnp.array_dtypes(max_size=3),  # structured
)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """Arrays of any non-object dtype, 0-d to 3-d, empty sides included, C or Fortran."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    arr = draw(hnp.arrays(draw(dtypes), shape))
    if arr.ndim >= 2 and draw(st.booleans()):
        return np.asfortranarray(arr)
    return arr


numpy_scalars = hnp.arrays(dtypes, ()).map(lambda a: a[()])
python_scalars = st.one_of(
    st.booleans(), st.integers(), st.floats(), st.complex_numbers(), st.text(), st.binary()
)
items = st.one_of(arrays(), numpy_scalars, python_scalars)
keys = st.one_of(st.just("arr_0"), st.sampled_from(["arr_1", "a", ""]), st.text(max_size=5))
containers = st.one_of(
    st.lists(items, min_size=1, max_size=3),
    st.lists(items, max_size=3).map(tuple),
    st.dictionaries(keys, items, max_size=3),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)

frame_columns = st.lists(
    st.sampled_from([int, float, bool, "uint8", "datetime64[ns]", str]), max_size=4
).map(lambda dtypes: [hpd.column(f"c{i}", dtype=d) for i, d in enumerate(dtypes)])
frames = frame_columns.flatmap(
    lambda cols: st.one_of(
        hpd.data_frames(cols, index=hpd.range_indexes(max_size=5)),
        hpd.data_frames(cols, index=hpd.indexes(dtype=int, max_size=5)),
    )
)
series = st.sampled_from([int, float, str]).flatmap(
    lambda d: hpd.series(dtype=d, index=hpd.range_indexes(max_size=5))
)
#: Arbitrary picklable values: everything above, and what no other format holds.
picklable = st.recursive(
    st.one_of(items, st.none(), st.frozensets(st.integers(), max_size=3)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(st.one_of(st.integers(), st.text(max_size=3)), children, max_size=3),
    ),
    max_leaves=8,
)

VALUES: dict[type[StorageInterface], st.SearchStrategy[Any]] = {
    NpzStorageInterface: st.one_of(items, containers),
    NpyStorageInterface: st.one_of(arrays(), numpy_scalars, python_scalars),
    JsonStorageInterface: json_values,
    # json_values that npz holds (flat lists and dicts) go to npz, exactly
    AutoStorageInterface: st.one_of(items, containers, json_values, frames, series),
    PickleStorageInterface: st.one_of(picklable, frames),
}

# Cases the contract must always cover, not only when hypothesis happens on them.
EDGE_FRAMES = [
    pd.DataFrame({"b": pd.array([1, None], dtype="Int64"), "a": pd.Categorical(["x", "y"])}),
    pd.DataFrame(
        {"t": pd.date_range("2021", periods=2, tz="UTC")},
        index=pd.MultiIndex.from_tuples([("k", 1), ("k", 2)], names=["key", "n"]),
    ),
    pd.Series(["s", None], dtype="string[python]", name="s"),
    pa.table({"a": [1, None]}, metadata={"m": "v"}),
    pl.DataFrame({"a": [1, None], "e": pl.Series(["x", "y"], dtype=pl.Enum(["x", "y"]))}),
]
EDGE_CASES: dict[type[StorageInterface], list[Any]] = {
    NpzStorageInterface: [
        np.array(3.5),
        np.zeros((0, 3), dtype=np.int8),
        np.array(["α", "βγ"]),
        np.array(["2021-03-04T05:06", "NaT"], dtype="M8[m]"),
        np.array([1 + 2j, -0.0j], dtype=np.complex64),
        np.array([(1, 2.5, "x")], dtype=[("i", "<i4"), ("f", ">f8"), ("s", "<U2")]),
        np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        np.float32(1.5),
        np.datetime64("2020-01-01"),
        2**100,
        -0.0,
        "text",
        b"bytes",
        [np.zeros(2)],
        (np.zeros(2),),
        [],
        (),
        {},
        {"arr_0": np.arange(2), "b": np.ones(1)},
        {"arr_1": np.arange(2), "arr_0": np.ones(1)},
        {"": np.zeros(1), "a/b": 1, "ключ": "value"},
        [np.full(i + 1, i) for i in range(12)],
        [1, 2.0, "x", np.arange(2), np.int8(3)],
    ],
    NpyStorageInterface: [
        np.array(3.5),
        np.zeros((0, 3), dtype=np.int8),
        np.array(["α", "βγ"]),
        np.array(["2021-03-04T05:06", "NaT"], dtype="M8[m]"),
        np.array([(1, 2.5, "x")], dtype=[("i", "<i4"), ("f", ">f8"), ("s", "<U2")]),
        np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        np.uint16(7),
        True,
        2**100,
        float("nan"),
        1 - 1j,
        "text",
        b"bytes",
    ],
    JsonStorageInterface: [
        None,
        True,
        2**100,
        -0.0,
        float("inf"),
        "ünïcode",
        [],
        {},
        [1, [2, [3, {"a": None}]]],
        {"arr_0": [1.5], "b": {"c": "d"}},
    ],
}
EDGE_CASES[AutoStorageInterface] = [
    *EDGE_CASES[NpzStorageInterface],
    *EDGE_CASES[NpyStorageInterface],
    *EDGE_CASES[JsonStorageInterface],
    *EDGE_FRAMES,
]
EDGE_CASES[PickleStorageInterface] = [
    *EDGE_CASES[NpzStorageInterface],
    *EDGE_FRAMES,
    None,
    {1, 2},
    {(1, 2): np.zeros(2)},
    [[np.zeros(2)]],
    np.array([{"a": 1}], dtype=object)[:0],
]

UNSUPPORTED: dict[type[StorageInterface], list[Any]] = {
    NpzStorageInterface: [
        object(),
        (i for i in range(3)),
        np.array([object()], dtype=object),
        [[np.zeros(2)]],
        {"a": {"b": np.zeros(1)}},
        {1: np.zeros(2)},
        {1, 2},
        None,
        np.ma.array([1, 2], mask=[0, 1]),
    ],
    NpyStorageInterface: [
        object(),
        (i for i in range(3)),
        np.array([object()], dtype=object),
        [1, 2],
        {"a": np.zeros(1)},
        None,
    ],
    JsonStorageInterface: [
        object(),
        (i for i in range(3)),
        {1: 2},
        {1, 2},
        b"bytes",
        1 + 2j,
        np.array(["2020-01-01"], dtype="M8[D]"),
    ],
    AutoStorageInterface: [
        object(),
        (i for i in range(3)),
        {1, 2},
        {1: np.zeros(2)},
        np.array([object()], dtype=object),
        np.ma.array([1, 2], mask=[0, 1]),
        pd.DataFrame({"c": [1 + 2j]}),
    ],
    PickleStorageInterface: [lambda: 0, (i for i in range(3))],
}


def strategy_for(storage_class: StorageClass, table: dict[type[StorageInterface], Any]) -> Any:
    """The entry of *table* for *storage_class* (or its closest base class)."""
    for cls in getattr(storage_class, "__mro__", ()):
        if cls in table:
            return table[cls]
    pytest.fail(f"no contract values for {storage_class!r}; add them to this module's tables")


@pytest.fixture(params=CONTRACT_CLASSES, ids=lambda c: c.__name__)
def storage_class(request: pytest.FixtureRequest) -> type[StorageInterface]:
    """Each built-in storage interface class in turn (single-format or not)."""
    return request.param  # type: ignore[no-any-return]


# -- the seed's API ------------------------------------------------------------------


def test_exists_save_load_delete(storage_class: StorageClass, place: Place) -> None:
    storage = place.open(storage_class)
    assert not storage.exists("m")
    storage.save("m", 1.5)
    assert storage.exists("m")
    assert_same(1.5, storage.load("m"))
    assert storage.delete("m") is True
    assert not storage.exists("m")
    assert storage.delete("m") is False
    with pytest.raises(MetricNotStoredError):
        storage.load("m")


def test_save_replaces(storage_class: StorageClass, place: Place) -> None:
    storage = place.open(storage_class)
    storage.save("m", 1.5)
    storage.save("m", 2.5)
    assert_same(2.5, storage.load("m"))
    assert_same(2.5, place.open(storage_class).load("m"))
    assert storage.stored_names() == ["m"]


def test_load_of_a_missing_name(storage_class: StorageClass, place: Place) -> None:
    storage = place.open(storage_class)
    storage.save("present", 1)
    with pytest.raises(MetricNotStoredError, match="'absent'") as info:
        storage.load("absent")
    assert isinstance(info.value, LookupError)


def test_stored_names(storage_class: StorageClass, place: Place) -> None:
    storage = place.open(storage_class)
    assert storage.stored_names() == []
    for name in ["b", "a.b", "Ω", "a"]:
        storage.save(name, 1)
    storage.delete("b")
    assert place.open(storage_class).stored_names() == sorted(["a.b", "Ω", "a"])


def test_info_dates_each_entry(storage_class: StorageClass, place: Place) -> None:
    storage = place.open(storage_class)
    storage.save("m", 1)
    info = place.open(storage_class).info("m")
    assert info is not None and info.name == "m" and info.timestamp.tzinfo is not None
    assert storage.info("never") is None


# -- type-faithful round trips ---------------------------------------------------------


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_roundtrip_through_a_fresh_instance(
    storage_class: StorageClass, place: Place, data: st.DataObject
) -> None:
    value = data.draw(strategy_for(storage_class, VALUES), label="value")
    # The place is shared by every example: each gets its own folder inside it.
    folder = place.fresh()
    folder.open(storage_class).save("m", value)
    assert_same(value, folder.open(storage_class).load("m"))


def test_edge_cases_roundtrip(storage_class: StorageClass, place: Place) -> None:
    for i, value in enumerate(strategy_for(storage_class, EDGE_CASES)):
        place.open(storage_class).save(f"v{i}", value)
        loaded = place.open(storage_class).load(f"v{i}")
        assert_same(value, loaded)
        if isinstance(value, np.ndarray) and value.ndim == 2 and not value.flags.c_contiguous:
            assert loaded.flags.f_contiguous


def test_unsupported_values_write_nothing(storage_class: StorageClass, place: Place) -> None:
    storage = place.open(storage_class)
    storage.save("m", 1)
    before = place.listing()
    for value in strategy_for(storage_class, UNSUPPORTED):
        with pytest.raises(UnsupportedValueError) as info:
            storage.save("m", value)
        assert isinstance(info.value, TypeError)
        with pytest.raises(UnsupportedValueError):
            storage.save("new", value)
        assert place.listing() == before, value
    assert_same(1, place.open(storage_class).load("m"))


def test_unsupported_computed_value_is_not_stored(
    storage_class: StorageClass, place: Place
) -> None:
    CM = DatedCacheManager(place.open(storage_class), verbose=False)
    bad = strategy_for(storage_class, UNSUPPORTED)[0]
    CM.set_functions_dict({"bad": lambda: bad})
    with pytest.raises(UnsupportedValueError) as info:
        CM["bad"]
    assert info.value.value is bad  # type: ignore[attr-defined]
    assert "bad" not in CM.cache
    # Only the lock taken to compute it may remain: no data, no metadata, no temp file.
    assert [p for p, _ in place.listing() if "locks" not in p] == []


# -- options ---------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False])
def test_npz_compress(compress: bool, tmp_path: Path) -> None:
    value = {"zeros": np.zeros(10_000), "ramp": np.arange(100)}
    NpzStorageInterface(tmp_path, compress=compress).save("m", value)
    with zipfile.ZipFile(tmp_path / "m.npz") as archive:
        methods = {info.compress_type for info in archive.infolist()}
    assert methods == {zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED}
    if compress:
        assert os.path.getsize(tmp_path / "m.npz") < 10_000
    assert_same(value, NpzStorageInterface(tmp_path).load("m"))


def test_npz_list_limit(tmp_path: Path) -> None:
    storage = NpzStorageInterface(tmp_path, list_limit=3)
    storage.save("ok", [np.zeros(1)] * 3)
    storage.save("mapping", {str(i): np.zeros(1) for i in range(5)})  # the seed limits lists
    before = listing(tmp_path)
    for value in ([np.zeros(1)] * 4, (1, 2, 3, 4)):
        with pytest.raises(TypeError, match="limit"):
            storage.save("long", value)
    assert listing(tmp_path) == before
    assert len(NpzStorageInterface(tmp_path).load("ok")) == 3


def test_npy_mmap_mode(tmp_path: Path) -> None:
    value = np.arange(1000.0).reshape(10, 100)
    NpyStorageInterface(tmp_path).save("m", value)
    loaded = NpyStorageInterface(tmp_path, mmap_mode="r").load("m")
    assert isinstance(loaded, np.memmap)
    assert not loaded.flags.writeable
    assert_same(value, np.asarray(loaded))


def test_durable_fsyncs_and_roundtrips(
    storage_class: StorageClass, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    storage_class(tmp_path / "plain").save("m", 1)
    assert synced == []
    durable = storage_class(tmp_path / "durable", durable=True)
    durable.save("m", 1)
    # Data file, record file and their folder entries at least.
    assert len(synced) >= 3
    assert_same(1, storage_class(tmp_path / "durable", durable=True).load("m"))
    durable.save("m", 2)
    assert_same(2, storage_class(tmp_path / "durable").load("m"))
