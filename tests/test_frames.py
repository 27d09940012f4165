"""The frame codec: pandas, polars and Arrow values round trip exactly, checksummed, mappable."""

from __future__ import annotations

import gc
import io
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd

from metricache import (
    AutoStorageInterface,
    CorruptEntryError,
    DatedCacheManager,
    MissingDependencyError,
    UnsupportedValueError,
)
from metricache.codecs import FrameCodec

from ._frames_compare import assert_same_frame

ROOT = Path(__file__).resolve().parent.parent


def roundtrip(value: Any) -> Any:
    """Write *value* with the codec and read it back from an in-memory copy."""
    codec = FrameCodec()
    out = io.BytesIO()
    hint = codec.write(value, out)
    return codec.read(io.BytesIO(out.getvalue()), hint)


def through_folder(value: Any, folder: Path, **options: Any) -> Any:
    """Store *value* with one auto interface, load it with a fresh one."""
    AutoStorageInterface(folder).save("m", value)
    return AutoStorageInterface(folder, **options).load("m")


# -- every dtype family, index kind and label kind ----------------------------------------

N = 4
DTYPE_FAMILIES = {
    "float64": np.array([1.5, np.nan, -0.0, np.inf]),
    "float32": np.arange(N, dtype=np.float32),
    "int8": np.arange(N, dtype=np.int8),
    "uint64": np.array([0, 1, 2, 2**64 - 1], dtype=np.uint64),
    "bool": np.array([True, False, True, True]),
    "Int64": pd.array([1, None, 3, 4], dtype="Int64"),
    "UInt16": pd.array([1, None, 3, 4], dtype="UInt16"),
    "Float64": pd.array([1.5, None, 3.0, 4.0], dtype="Float64"),
    "boolean": pd.array([True, None, False, True], dtype="boolean"),
    "str (default)": pd.array(["a", None, "ü", ""]),
    "string[python]": pd.array(["a", None, "ü", ""], dtype="string[python]"),
    "string[pyarrow]": pd.array(["a", None, "ü", ""], dtype="string[pyarrow]"),
    "bytes objects": np.array([b"a", b"", b"\x00", b"z"], dtype=object),
    "categorical": pd.Categorical(["b", "a", None, "b"], categories=["b", "a", "c"]),
    "ordered categorical": pd.Categorical(["lo", "hi", "lo", "hi"], ordered=True),
    "categorical of ints": pd.Categorical([3, 1, 3, 1]),
    "datetime64[ns]": pd.date_range("2021-03-04", periods=N, freq="h", unit="ns"),
    "datetime64[s]": np.array(["2020-01-01", "NaT", "1900-01-01", "2262-05-01"], "M8[s]"),
    "tz-aware": pd.date_range("2021-03-27", periods=N, freq="12h", tz="Europe/Paris"),
    "timedelta": pd.to_timedelta([1, 2, None, 4], unit="s"),
    "period": pd.period_range("2020-01", periods=N, freq="M"),
    "interval": pd.interval_range(0, N),
}


@pytest.mark.parametrize("family", list(DTYPE_FAMILIES))
def test_every_dtype_family_roundtrips_in_frame_series_and_index(family: str) -> None:
    data = DTYPE_FAMILIES[family]
    frame = pd.DataFrame({"x": data, "y": np.arange(N)})
    assert_same_frame(frame, roundtrip(frame))
    series = pd.Series(data, name="s")
    assert_same_frame(series, roundtrip(series))
    indexed = pd.DataFrame({"y": np.arange(N)}, index=pd.Index(data, name="key"))
    assert_same_frame(indexed, roundtrip(indexed))


INDEXES = {
    "RangeIndex with a step": pd.RangeIndex(10, 2, -2, name="r"),
    "duplicated labels": pd.Index(["a", "a", "b", "c"]),
    "MultiIndex": pd.MultiIndex.from_product([["x", "y"], [1, 2]], names=["k", "n"]),
    "MultiIndex, unnamed level": pd.MultiIndex.from_arrays([["a", "b", "c", "d"], [1, 2, 2, 1]]),
    "DatetimeIndex with freq": pd.date_range("2020-01-01", periods=N, freq="D", name="day"),
    "TimedeltaIndex with freq": pd.timedelta_range(0, periods=N, freq="min"),
    "CategoricalIndex": pd.CategoricalIndex(["q", "r", "q", "s"]),
    "float index": pd.Index([0.5, -1.0, 2.0, np.nan]),
}


@pytest.mark.parametrize("kind", list(INDEXES))
def test_index_kinds_roundtrip(kind: str) -> None:
    frame = pd.DataFrame({"b": range(N), "a": list("wxyz")}, index=INDEXES[kind])
    assert_same_frame(frame, roundtrip(frame))


COLUMNS = {
    "int labels (RangeIndex)": pd.DataFrame([[1, 2, 3]]),
    "int labels, not a range": pd.DataFrame([[1, 2]], columns=[5, 3]),
    "named column index": pd.DataFrame({"a": [1]}).rename_axis(columns="fields"),
    "MultiIndex columns": pd.DataFrame(
        [[1, 2, 3]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y"), ("b", "x")])
    ),
    "order kept, not sorted": pd.DataFrame({"z": [1], "a": [2], "m": [3]}),
    "no columns": pd.DataFrame(index=pd.Index(["r0", "r1"])),
    "empty": pd.DataFrame(),
    "no rows": pd.DataFrame({"a": pd.Series([], dtype="Int8"), "b": pd.Series([], dtype=str)}),
}


@pytest.mark.parametrize("kind", list(COLUMNS))
def test_column_labels_and_order_roundtrip(kind: str) -> None:
    frame = COLUMNS[kind]
    assert_same_frame(frame, roundtrip(frame))


def test_attrs_flags_and_series_names_roundtrip() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    frame.attrs = {"unit": "m", "sources": ["x", "y"], "n": 2, "nested": {"ok": None}}
    assert roundtrip(frame).attrs == frame.attrs
    strict = frame.set_flags(allows_duplicate_labels=False)
    assert roundtrip(strict).flags.allows_duplicate_labels is False
    for name in (None, "s", 0, ("a", "b")):
        series = pd.Series([1, 2], name=name)
        series.attrs = {"k": 1}
        assert_same_frame(series, roundtrip(series))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (pd.DataFrame({"c": [1 + 2j]}), "cannot be stored as Arrow"),
        (pd.DataFrame({"o": [1, "x"]}), "cannot be stored as Arrow"),
        (pd.DataFrame([[1, 2]], columns=["a", "a"]), "duplicate column"),
        (pd.DataFrame({"a": [1]}).rename_axis(5), "index names"),
        (pd.DataFrame({"a": [1]}).set_axis(pd.Index([1], name=("t",))), "index names"),
    ],
)
def test_values_arrow_cannot_keep_are_refused_and_nothing_is_written(
    value: Any, why: str, tmp_path: Path
) -> None:
    storage = AutoStorageInterface(tmp_path)
    with pytest.raises(UnsupportedValueError, match=why):
        storage.save("m", value)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_attrs_that_are_not_json_data_are_refused(tmp_path: Path) -> None:
    for attrs in ({"t": (1, 2)}, {1: "x"}, {"f": object()}, {"nan": float("nan")}):
        frame = pd.DataFrame({"a": [1]})
        frame.attrs = attrs
        with pytest.raises(UnsupportedValueError, match="attrs"):
            AutoStorageInterface(tmp_path).save("m", frame)


# -- generated frames --------------------------------------------------------------------

FRAME_DTYPES = [int, float, bool, "int8", "uint32", "float32", "datetime64[ns]", str]


@st.composite
def data_frames(draw: st.DrawFn) -> pd.DataFrame:
    """Frames of mixed dtypes, with a generated index, any number of rows."""
    names = draw(st.lists(st.text(max_size=4), unique=True, max_size=5))
    columns = [hpd.column(n, dtype=draw(st.sampled_from(FRAME_DTYPES))) for n in names]
    index = st.one_of(
        hpd.range_indexes(max_size=6),
        hpd.indexes(dtype=int, max_size=6),
        hpd.indexes(dtype="datetime64[ns]", max_size=6, unique=True),
        hpd.indexes(elements=st.text(max_size=3), max_size=6),
    )
    return draw(hpd.data_frames(columns, index=index))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=data_frames())
def test_generated_frames_roundtrip_through_codec_and_auto_interface(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    assert_same_frame(frame, roundtrip(frame))
    assert_same_frame(frame, through_folder(frame, tmp_path))
    assert_same_frame(frame, through_folder(frame, tmp_path, mmap_mode="r"))


# -- polars and Arrow ----------------------------------------------------------------------


def polars_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "i": [1, None, 3],
            "s": ["x", None, "ü"],
            "cat": pl.Series(["a", "b", "a"], dtype=pl.Categorical),
            "enum": pl.Series(["lo", "hi", "lo"], dtype=pl.Enum(["lo", "hi"])),
            "t": pl.Series([1, 2, 3]).cast(pl.Datetime("us", "Asia/Tokyo")),
            "list": [[1, 2], [], None],
            "struct": [{"a": 1}, {"a": None}, None],
            "dec": pl.Series([1.25, 2.5, None]).cast(pl.Decimal(10, 2)),
            "u8": pl.Series([1, 2, 3], dtype=pl.UInt8),
        }
    )


def arrow_table() -> pa.Table:
    table = pa.table(
        {
            "i": pa.array([1, None, 3], pa.int16()),
            "d": pa.array(["a", "b", "a"]).dictionary_encode(),
            "ts": pa.array([0, 1, None], pa.timestamp("ms", tz="UTC")),
            "l": pa.array([[1], [], None], pa.list_(pa.int64())),
        },
        metadata={"source": "sensor 7"},
    )
    # Two record batches: the chunking is part of what a table is.
    return pa.concat_tables([table, table.slice(1)])


@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_polars_and_arrow_values_roundtrip(mmap_mode: str | None, tmp_path: Path) -> None:
    for i, value in enumerate([polars_frame(), arrow_table(), pl.DataFrame()]):
        loaded = through_folder(value, tmp_path / str(i), mmap_mode=mmap_mode)
        assert_same_frame(value, loaded)
    table = through_folder(arrow_table(), tmp_path / "chunks", mmap_mode=mmap_mode)
    assert table.column("i").num_chunks == 2


# -- integrity and memory maps ---------------------------------------------------------------


def damage(path: Path, offset: int = -200) -> None:
    """Flip one byte of *path* (by default near its end: data, not the footer's tail)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def big_frame(rows: int = 50_000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.random(rows), "b": rng.integers(0, 9, rows)})


@pytest.mark.parametrize("rows", [10, 50_000])  # an in-memory copy, and the file itself
def test_a_changed_byte_is_caught_by_the_checksum(rows: int, tmp_path: Path) -> None:
    AutoStorageInterface(tmp_path).save("m", big_frame(rows))
    damage(tmp_path / "m.arrow", offset=len((tmp_path / "m.arrow").read_bytes()) // 2)
    with pytest.raises(CorruptEntryError, match="m.arrow"):
        AutoStorageInterface(tmp_path).load("m")


def test_memory_mapped_loads_defer_the_checksum_to_verify(tmp_path: Path) -> None:
    value = pa.table({"a": np.arange(100_000.0)})
    AutoStorageInterface(tmp_path).save("m", value)
    mapped = AutoStorageInterface(tmp_path, mmap_mode="r")
    assert_same_frame(value, mapped.load("m"))
    assert mapped.verify("m") is not None
    damage(tmp_path / "m.arrow", offset=100_000)
    changed = mapped.load("m")  # mapped, not hashed: the damage goes unseen here
    assert not changed.equals(value)
    with pytest.raises(CorruptEntryError):
        mapped.verify("m")
    with pytest.raises(CorruptEntryError):
        AutoStorageInterface(tmp_path).load("m")


def test_a_mapped_table_does_not_copy_the_file(tmp_path: Path) -> None:
    AutoStorageInterface(tmp_path).save("m", pa.table({"a": np.arange(1_000_000.0)}))
    gc.collect()  # buffers of earlier tests freed now, not in the middle of this one
    before = pa.total_allocated_bytes()
    table = AutoStorageInterface(tmp_path, mmap_mode="r").load("m")
    assert pa.total_allocated_bytes() - before < 1 << 20  # the 8 MB column stays in the map
    before = pa.total_allocated_bytes()
    copied = AutoStorageInterface(tmp_path).load("m")
    assert pa.total_allocated_bytes() - before >= 8_000_000
    assert copied.equals(table)


def test_a_missing_pyarrow_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    AutoStorageInterface(tmp_path).save("m", pa.table({"a": [1]}))
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    with pytest.raises(MissingDependencyError, match=r"pip install metricache\[frames\]"):
        AutoStorageInterface(tmp_path).load("m")
    assert AutoStorageInterface(tmp_path).stored_names() == ["m"]  # listing needs no pyarrow


# -- done when: computed once, loaded equal in a new process ------------------------------------

CHILD = """
import sys
import pandas as pd
from metricache import DatedCacheManager

calls = []

def summary():
    calls.append(1)
    frame = pd.DataFrame(
        {"n": pd.array([1, None, 3], dtype="Int64"), "c": pd.Categorical(["a", "b", "a"])},
        index=pd.MultiIndex.from_tuples([("x", 1), ("x", 2), ("y", 1)], names=["k", "i"]),
    )
    frame.attrs = {"unit": "kg"}
    return frame

CM = DatedCacheManager(sys.argv[1], verbose=False)
CM.set_functions_dict({"summary": summary})
CM["summary"].to_pickle(sys.argv[2])
print(len(calls))
"""


def test_a_dataframe_metric_is_computed_once_and_loads_equal_in_a_new_process(
    tmp_path: Path,
) -> None:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    runs = []
    for i in range(2):
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "cache"), str(tmp_path / f"{i}.pkl")],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        runs.append(int(done.stdout))
    assert runs == [1, 0]  # computed by the first process, loaded by the second
    first, second = (pd.read_pickle(tmp_path / f"{i}.pkl") for i in range(2))
    assert_same_frame(first, second)
    assert (tmp_path / "cache" / "summary.arrow").is_file()
    assert DatedCacheManager(tmp_path / "cache", verbose=False).load("summary").attrs == {
        "unit": "kg"
    }


def test_a_frames_value_id_comes_from_its_stored_bytes_not_a_pickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metricache.provenance import values

    monkeypatch.setattr(values, "_pickled", lambda item: pytest.fail("pickled for its id"))
    storage = AutoStorageInterface(tmp_path)
    frame = pd.DataFrame({"a": np.arange(50_000.0), "b": pd.Categorical(["x", "y"] * 25_000)})
    storage.save("m", frame)
    first = storage.info("m").value_id  # type: ignore[union-attr]
    storage.save("m", frame.copy())  # an equal frame: the same id (early cutoff works)
    assert storage.info("m").value_id == first  # type: ignore[union-attr]
    frame.loc[3, "a"] = -1.0
    storage.save("m", frame)
    assert storage.info("m").value_id not in (None, first)  # type: ignore[union-attr]
