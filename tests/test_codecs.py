"""Codecs in isolation: faithful round trips over unseekable streams, legacy files, damage."""

from __future__ import annotations

import enum
import io
import json
import math
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from tokenize import TokenError
from typing import Any, BinaryIO, cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from metricache import _hashio
from metricache._hashio import HashingReader, checksum_bytes
from metricache.codecs import Codec, JsonCodec, NpyCodec, NpzCodec, _npyformat, codec_registry
from metricache.codecs._npyformat import encode_array
from metricache.exceptions import CorruptEntryError, PickleRequiredError, UnsupportedValueError

from ._compare import assert_same

# -- streams shaped like the storage layer's -------------------------------------------


class WriteOnlyStream:
    """A write-only, unseekable sink without tell(), like a hashing writer."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()

    def write(self, data: Any) -> int:
        return self._buf.write(data)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def getvalue(self) -> bytes:
        return self._buf.getvalue()


class ReadOnlyStream:
    """A forward-only source with read(n)/readinto; *step* forces short reads."""

    def __init__(self, data: bytes, step: int | None = None) -> None:
        self._buf = io.BytesIO(data)
        self._step = step

    def _size(self, n: int) -> int:
        if self._step is None:
            return n
        return self._step if n < 0 else min(n, self._step)

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(self._size(n))

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        return self._buf.readinto(view[: self._size(len(view))])

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def rest(self) -> bytes:
        return self._buf.read()


def encode(codec: Codec, value: Any) -> tuple[bytes, str | None]:
    """Validate and write *value* through an unseekable sink."""
    codec.validate(value)
    sink = WriteOnlyStream()
    hint = codec.write(value, cast(BinaryIO, sink))
    return sink.getvalue(), hint


def decode(codec: Codec, data: bytes, hint: str | None = None, step: int | None = None) -> Any:
    """Read *data* the way the storage layer hands it to *codec*."""
    if not codec.sequential:
        return codec.read(io.BytesIO(data), hint)
    source = ReadOnlyStream(data, step)
    value = codec.read(source, hint)  # type: ignore[arg-type]
    assert source.rest() == b"", "a sequential codec must consume its whole file"
    return value


def roundtrip(codec: Codec, value: Any, step: int | None = None) -> Any:
    """Write then read *value*."""
    data, hint = encode(codec, value)
    return decode(codec, data, hint, step)


# -- strategies ------------------------------------------------------------------------

FAST = settings(max_examples=60, deadline=None)

dtypes = st.one_of(
    hnp.scalar_dtypes(),
    hnp.floating_dtypes(sizes=(16, 32, 64, 128)),
    hnp.complex_number_dtypes(sizes=(64, 128, 256)),
    hnp.unicode_string_dtypes(max_len=4),
    hnp.byte_string_dtypes(max_len=4),
    hnp.array_dtypes(max_size=3),
    hnp.nested_dtypes(max_itemsize=64),
)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    """Arrays of any non-object dtype and shape, in C, Fortran or strided layout."""
    shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
    arr = draw(hnp.arrays(draw(dtypes), shape))
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    if layout == "F":
        return np.asfortranarray(arr)
    if layout == "strided" and arr.ndim:
        return arr[::2]
    return arr


numpy_scalars = st.builds(lambda a: a[()], hnp.arrays(dtypes, ()))
python_scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.floats(),
    st.complex_numbers(),
    st.text(),
    st.binary(),
)
items = st.one_of(arrays(), numpy_scalars, python_scalars)
containers = st.one_of(
    st.lists(items, max_size=4),
    st.lists(items, max_size=4).map(tuple),
    st.dictionaries(st.text(), items, max_size=4),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)

# -- property tests ----------------------------------------------------------------------


@FAST
@given(arrays())
def test_npy_roundtrips_any_array(arr: np.ndarray) -> None:
    out = roundtrip(NpyCodec(), arr, step=7)
    assert_same(arr, out)
    # Type-faithful: what memory holds for a computed value is the value itself.
    assert NpyCodec().memory_form(arr) is arr
    if arr.ndim >= 2 and arr.flags.f_contiguous and not arr.flags.c_contiguous:
        assert out.flags.f_contiguous


@FAST
@given(st.one_of(numpy_scalars, python_scalars))
def test_npy_roundtrips_any_scalar(value: Any) -> None:
    assert_same(value, roundtrip(NpyCodec(), value))
    assert NpyCodec().memory_form(value) is value


@FAST
@given(st.one_of(items, containers), st.booleans())
def test_npz_roundtrips_arrays_scalars_and_containers(value: Any, compress: bool) -> None:
    assert_same(value, roundtrip(NpzCodec(compress=compress), value))
    assert NpzCodec().memory_form(value) is value


@FAST
@given(arrays())
def test_npy_files_are_standard(arr: np.ndarray) -> None:
    data, _ = encode(NpyCodec(), arr)
    assert_same(arr, np.load(io.BytesIO(data)))
    saved = io.BytesIO()
    with warnings.catch_warnings():  # numpy warns when it needs format 3.0
        warnings.simplefilter("ignore", UserWarning)
        np.save(saved, arr)
    assert_same(arr, decode(NpyCodec(), saved.getvalue()))


@FAST
@given(json_values)
def test_json_roundtrips_native_values(value: Any) -> None:
    assert_same(value, roundtrip(JsonCodec(), value, step=5))


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2**40


class Label(str):
    """A str subclass: JSON stores its text, a load gives a plain str."""


class Ratio(float):
    """A float subclass: JSON stores its value, a load gives a plain float."""


#: dtypes JSON stores (as lists of Python numbers, bools or strings).
json_dtypes = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(sizes=(16, 32, 64)),
    hnp.unicode_string_dtypes(max_len=3),
)
json_convertible = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(),
        st.sampled_from(list(Level)),
        st.text().map(Label),
        st.floats().map(Ratio),
        st.builds(lambda a: a[()], hnp.arrays(json_dtypes, ())),
        hnp.arrays(json_dtypes, hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)),
    ),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text() | st.text().map(Label), children, max_size=4)
    ),
    max_leaves=20,
)


@FAST
@given(json_convertible)
def test_json_memory_form_is_exactly_what_a_load_returns(value: Any) -> None:
    codec = JsonCodec()
    memory = codec.memory_form(value)
    assert_same(roundtrip(codec, value), memory)  # types included: list, int, str, float
    if isinstance(value, (list, tuple, dict)):
        assert memory is not value  # new containers: nothing aliases the caller's value


def test_json_memory_form_converts_what_json_cannot_keep() -> None:
    value = (np.arange(3), np.float32(0.5), Level.HIGH, {Label("k"): Ratio(1.5)})
    memory = JsonCodec().memory_form(value)
    assert memory == [[0, 1, 2], 0.5, 2**40, {"k": 1.5}]
    assert type(memory[2]) is int and type(memory[3]["k"]) is float
    assert type(next(iter(memory[3]))) is str


# -- npy ----------------------------------------------------------------------------------


def test_registry_lists_the_three_codecs() -> None:
    assert codec_registry["npy"] is NpyCodec
    assert (NpyCodec.suffix, NpzCodec.suffix, JsonCodec.suffix) == (".npy", ".npz", ".json")
    assert NpyCodec.sequential and JsonCodec.sequential and not NpzCodec.sequential


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        2**63 - 1,
        -(2**63),
        2**63,
        -(2**200),
        10**5000,
        1.5,
        -0.0,
        math.nan,
        math.inf,
        True,
        False,
        1 + 2j,
        "",
        "héllo",
        "a\x00",
        "\x00",
        "\ud800",
        b"",
        b"ab",
        b"a\x00\x00",
    ],
    ids=lambda value: type(value).__name__,
)
def test_python_scalars_keep_their_exact_type(value: Any) -> None:
    for codec in (NpyCodec(), NpzCodec()):
        assert_same(value, roundtrip(codec, value))


def test_python_scalar_hints() -> None:
    assert encode(NpyCodec(), 3)[1] == "py:int"
    assert encode(NpyCodec(), 3.0)[1] == "py:float"
    assert encode(NpyCodec(), np.float32(1.5))[1] == "np:scalar"
    assert encode(NpyCodec(), np.zeros(3))[1] is None


def test_numpy_scalar_stays_a_scalar() -> None:
    out = roundtrip(NpyCodec(), np.float32(1.5))
    assert type(out) is np.float32 and out == 1.5
    zero_d = roundtrip(NpyCodec(), np.array(1.5, dtype=np.float32))
    assert type(zero_d) is np.ndarray and zero_d.shape == ()


def test_fortran_array_keeps_its_order_and_is_written_without_copy() -> None:
    arr = np.asfortranarray(np.arange(24.0).reshape(2, 3, 4))
    pieces = encode_array(arr)
    assert np.shares_memory(np.frombuffer(pieces[-1], dtype=np.uint8), arr)
    out = roundtrip(NpyCodec(), arr)
    assert out.flags.f_contiguous and not out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)


def test_non_contiguous_array_is_stored_as_its_c_copy() -> None:
    arr = np.arange(20).reshape(4, 5)[::2, ::2]
    out = roundtrip(NpyCodec(), arr)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr)


def test_header_too_big_for_format_1_uses_format_2() -> None:
    dtype = np.dtype([(f"field_{i:05d}", "<i2") for i in range(4000)])
    arr = np.zeros(2, dtype=dtype)
    data, _ = encode(NpyCodec(), arr)
    assert data[6] == 2
    assert_same(arr, decode(NpyCodec(), data))


def test_unicode_field_names_use_format_3() -> None:
    arr = np.zeros(3, dtype=[("temps", "<f4"), ("δ", "<i8")])
    data, _ = encode(NpyCodec(), arr)
    assert data[6] == 3
    assert_same(arr, decode(NpyCodec(), data, step=3))


class _Subclass(np.ndarray):
    """An ndarray subclass (np.matrix warns on creation, so use our own)."""


@pytest.mark.parametrize(
    "value",
    [np.arange(3).view(_Subclass), np.ma.masked_array([1, 2], mask=[False, True])],
    ids=["subclass", "masked"],
)
def test_ndarray_subclasses_are_rejected(value: Any) -> None:
    for codec in (NpyCodec(), NpzCodec()):
        with pytest.raises(UnsupportedValueError, match="subclass"):
            codec.validate(value)


def test_dtypes_outside_the_npy_format_are_rejected() -> None:
    string_dtype = getattr(getattr(np, "dtypes", None), "StringDType", None)
    if string_dtype is None:
        pytest.skip("StringDType needs numpy >= 2.0")
    strings = np.array(["a", "bcd"], dtype=string_dtype())
    for codec in (NpyCodec(allow_pickle=True), NpzCodec(allow_pickle=True)):
        with pytest.raises(UnsupportedValueError, match="astype"):
            codec.validate(strings)
    assert roundtrip(JsonCodec(), strings) == ["a", "bcd"]


def test_memmap_is_stored_as_plain_array(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.arange(5))
    out = roundtrip(NpyCodec(), np.load(path, mmap_mode="r"))
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, np.arange(5))


@pytest.mark.parametrize("value", [[1, 2], (np.zeros(2),), {"a": np.zeros(2)}])
def test_npy_rejects_containers_pointing_to_npz(value: Any) -> None:
    with pytest.raises(UnsupportedValueError, match="NpzStorageInterface"):
        NpyCodec().validate(value)


def _generator() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    "value",
    [None, _generator(), object(), {1, 2}, np.int64, Path("x")],
    ids=["None", "generator", "object", "set", "type", "path"],
)
def test_unsupported_values_are_rejected_before_writing(value: Any) -> None:
    codecs = (
        (NpyCodec(), NpzCodec(), JsonCodec()) if value is not None else (NpyCodec(), NpzCodec())
    )
    for codec in codecs:
        sink = WriteOnlyStream()
        with pytest.raises(UnsupportedValueError):
            codec.validate(value)
        with pytest.raises(UnsupportedValueError):
            codec.write(value, cast(BinaryIO, sink))
        assert sink.getvalue() == b""


def _object_array() -> np.ndarray:
    arr = np.empty(3, dtype=object)
    arr[:] = [{"a": 1}, [1, 2], "text"]
    return arr


def test_object_arrays_need_allow_pickle() -> None:
    with pytest.raises(UnsupportedValueError, match=r"allow_pickle=True to NpyStorageInterface"):
        NpyCodec().validate(_object_array())
    with pytest.raises(UnsupportedValueError, match=r"allow_pickle=True to NpzStorageInterface"):
        NpzCodec().validate([np.zeros(2), _object_array()])
    assert roundtrip(NpyCodec(allow_pickle=True), _object_array()).tolist() == [
        {"a": 1},
        [1, 2],
        "text",
    ]
    out = roundtrip(NpzCodec(allow_pickle=True), {"obj": _object_array()})
    assert out["obj"].tolist() == _object_array().tolist()


def test_unpicklable_object_array_writes_nothing() -> None:
    arr = np.empty(1, dtype=object)
    arr[0] = lambda: None
    for codec in (NpyCodec(allow_pickle=True), NpzCodec(allow_pickle=True)):
        sink = WriteOnlyStream()
        with pytest.raises(UnsupportedValueError, match="pickle"):
            value = [np.zeros(3), arr] if isinstance(codec, NpzCodec) else arr
            codec.write(value, cast(BinaryIO, sink))
        assert sink.getvalue() == b""


def test_read_mmap(tmp_path: Path) -> None:
    codec = NpyCodec(allow_pickle=True)
    arr = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    for value in (arr, np.zeros((0, 3)), np.array(2.5), 7, np.float32(2), _object_array()):
        data, hint = encode(codec, value)
        path = tmp_path / "v.npy"
        path.write_bytes(data)
        out = codec.read_mmap(path, hint)
        if hint is None and value.dtype != object:  # type: ignore[union-attr]
            assert isinstance(out, np.memmap) and not out.flags.writeable
            assert out.flags.f_contiguous == value.flags.f_contiguous  # type: ignore[union-attr]
            np.testing.assert_array_equal(out, value)
        elif hint is None:
            assert out.tolist() == value.tolist()  # type: ignore[union-attr]
        else:
            assert_same(value, out)
        del out  # release the mapping before the file is rewritten
    path.write_bytes(encode(codec, arr)[0][:-8])
    with pytest.raises(CorruptEntryError):
        codec.read_mmap(path, None)


# -- npz containers -------------------------------------------------------------------------


def test_containers_keep_their_kind() -> None:
    codec = NpzCodec()
    one = roundtrip(codec, [np.arange(3)])
    assert type(one) is list and len(one) == 1
    assert roundtrip(codec, []) == []
    assert roundtrip(codec, ()) == ()
    assert roundtrip(codec, {}) == {}
    pair = roundtrip(codec, (np.zeros(2), 1.5))
    assert type(pair) is tuple and type(pair[1]) is float
    only = roundtrip(codec, {"arr_0": np.arange(3)})
    assert type(only) is dict and list(only) == ["arr_0"]
    single = roundtrip(codec, np.arange(3))
    assert type(single) is np.ndarray


def test_dict_keys_of_any_text_survive_in_order() -> None:
    keys = ["arr_1", "arr_0", "", "a/b", "../x", "ключ", "12", "__metricache__", "a.npy", "\ud800"]
    value = {key: np.full(2, i) for i, key in enumerate(keys)}
    out = roundtrip(NpzCodec(), value)
    assert list(out) == keys
    assert_same(value, out)


def test_non_str_dict_keys_are_rejected() -> None:
    with pytest.raises(UnsupportedValueError, match="str keys"):
        NpzCodec().validate({1: np.zeros(2)})


@pytest.mark.parametrize(
    "value",
    [[[1, 2], [3]], [np.zeros(2), [1]], [{"a": 1}], {"a": [1, 2]}, ([1],)],
    ids=["ragged", "list-in-list", "dict-in-list", "list-in-dict", "list-in-tuple"],
)
def test_nested_containers_are_rejected(value: Any) -> None:
    with pytest.raises(UnsupportedValueError, match="nested"):
        NpzCodec().validate(value)


def test_container_subclasses_are_rejected() -> None:
    from collections import OrderedDict, namedtuple

    point = namedtuple("point", "x y")
    for value in (OrderedDict(a=1), point(1, 2)):
        with pytest.raises(UnsupportedValueError, match="plain"):
            NpzCodec().validate(value)


def test_list_limit() -> None:
    codec = NpzCodec(list_limit=3)
    codec.validate([1, 2, 3])
    with pytest.raises(UnsupportedValueError, match=r"list of 4 items exceeds list_limit=3"):
        codec.validate([1, 2, 3, 4])
    with pytest.raises(TypeError):
        codec.validate((1, 2, 3, 4))
    codec.validate({str(i): i for i in range(10)})


def test_compress_writes_deflated_members() -> None:
    value = {"a": np.zeros(10_000), "b": np.arange(100)}
    plain, _ = encode(NpzCodec(), value)
    packed, _ = encode(NpzCodec(compress=True), value)
    with zipfile.ZipFile(io.BytesIO(packed)) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}
    with zipfile.ZipFile(io.BytesIO(plain)) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
    assert len(packed) < len(plain)
    assert_same(value, decode(NpzCodec(), packed))


def test_npz_files_are_readable_by_numpy_and_deterministic() -> None:
    value = [np.arange(3), 2.5]
    data, _ = encode(NpzCodec(), value)
    assert data == encode(NpzCodec(), value)[0]
    with np.load(io.BytesIO(data)) as npz:
        assert {"arr_0", "arr_1", "__metricache__"} == set(npz.files)
        np.testing.assert_array_equal(npz["arr_0"], np.arange(3))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:  # streamed: sizes follow the data
        assert all(info.flag_bits & 0x08 for info in zf.infolist())


def test_large_members_get_zip64_records(monkeypatch: pytest.MonkeyPatch) -> None:
    # members over 2 GiB need ZIP64 even though an unseekable writer cannot go back
    # and patch the local header; shrink zipfile's limit to exercise that path
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    value = {"big": np.arange(5000.0), "small": np.arange(3)}
    for compress in (False, True):
        data, _ = encode(NpzCodec(compress=compress), value)
        assert_same(value, decode(NpzCodec(), data))


# -- legacy files ------------------------------------------------------------------------------


def _savez(*args: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, *args, **kwargs)
    return buf.getvalue()


def test_legacy_npz_single_array() -> None:
    out = decode(NpzCodec(), _savez(np.arange(4)))
    assert_same(np.arange(4), out)


def test_legacy_npz_list_is_ordered_numerically() -> None:
    arrays = {f"arr_{i}": np.full(2, i) for i in range(12)}
    # lexicographic member order (arr_0, arr_1, arr_10, arr_11, arr_2, ...)
    data = _savez(**{key: arrays[key] for key in sorted(arrays)})
    out = decode(NpzCodec(), data)
    assert type(out) is list
    assert [int(a[0]) for a in out] == list(range(12))


def test_legacy_npz_dict() -> None:
    out = decode(NpzCodec(), _savez(x=np.arange(2), y=np.float32(3)))
    assert list(out) == ["x", "y"]
    assert_same(np.arange(2), out["x"])
    assert_same(np.array(3, dtype=np.float32), out["y"])


def test_legacy_npz_compressed_and_empty() -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.ones(3))
    assert list(decode(NpzCodec(), buf.getvalue())) == ["a"]
    assert decode(NpzCodec(), _savez()) == {}


def test_legacy_npy_and_json() -> None:
    buf = io.BytesIO()
    np.save(buf, np.arange(6).reshape(2, 3))
    assert_same(np.arange(6).reshape(2, 3), decode(NpyCodec(), buf.getvalue()))
    text = json.dumps({"a": [1, 2.5, None], "b": "é"})
    assert decode(JsonCodec(), text.encode()) == {"a": [1, 2.5, None], "b": "é"}


# -- damaged files -------------------------------------------------------------------------------


def _npy() -> bytes:
    return encode(NpyCodec(), np.arange(100.0))[0]


@pytest.mark.parametrize("cut", [0, 3, 9, 40, 127, 128, 500])
def test_truncated_npy_is_corrupt(cut: int) -> None:
    with pytest.raises(CorruptEntryError):
        decode(NpyCodec(), _npy()[:cut])


def test_npy_with_trailing_bytes_is_corrupt() -> None:
    with pytest.raises(CorruptEntryError, match="after the end"):
        decode(NpyCodec(), _npy() + b"x")


def test_npy_with_garbage_header_is_corrupt() -> None:
    data = bytearray(_npy())
    data[10:20] = b"!!!!!!!!!!"
    with pytest.raises(CorruptEntryError):
        decode(NpyCodec(), bytes(data))


def test_random_bytes_are_corrupt() -> None:
    junk = np.random.default_rng(0).bytes(300)
    for codec in (NpyCodec(), NpzCodec(), JsonCodec()):
        with pytest.raises(CorruptEntryError):
            decode(codec, junk)
        with pytest.raises(CorruptEntryError):
            decode(codec, b"")


def test_npz_that_is_json_or_truncated_is_corrupt() -> None:
    with pytest.raises(CorruptEntryError):
        decode(NpzCodec(), b'{"a": [1, 2]}')
    data, _ = encode(NpzCodec(), {"a": np.arange(1000)})
    for cut in (10, len(data) // 2, len(data) - 10):
        with pytest.raises(CorruptEntryError):
            decode(NpzCodec(), data[:cut])


def test_npz_with_damaged_member_is_corrupt() -> None:
    for compress in (False, True):
        data = bytearray(encode(NpzCodec(compress=compress), {"a": np.arange(1000)})[0])
        data[len(data) // 2] ^= 0xFF
        with pytest.raises(CorruptEntryError):
            decode(NpzCodec(), bytes(data))


def test_npy_file_in_npy_codec_but_json_garbage_is_corrupt() -> None:
    with pytest.raises(CorruptEntryError):
        decode(JsonCodec(), b'{"a": ')
    with pytest.raises(CorruptEntryError):
        decode(JsonCodec(), b"\xff\xfe\x00garbage")


# -- pickles are never loaded without allow_pickle ----------------------------------------------


def _touch(path: str) -> str:
    Path(path).write_text("pwned")
    return path


class _Exploit:
    """Unpickling this runs _touch(marker)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.marker,))


def _exploit_array(marker: Path) -> np.ndarray:
    arr = np.empty(1, dtype=object)
    arr[0] = _Exploit(marker)
    return arr


def test_crafted_pickle_in_npz_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    data = _savez(_exploit_array(marker))
    for payload in (data, encode(NpzCodec(allow_pickle=True), [_exploit_array(marker)])[0]):
        with pytest.raises(PickleRequiredError, match="allow_pickle") as caught:
            decode(NpzCodec(), payload)
        # A policy refusal, not damage: storage must not quarantine the file for it.
        assert not isinstance(caught.value, CorruptEntryError)
        assert "member 'arr_0.npy'" in str(caught.value)
        assert not marker.exists()
    decode(NpzCodec(allow_pickle=True), data)  # the payload really is live
    assert marker.exists()


def test_crafted_pickle_in_npy_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    buf = io.BytesIO()
    np.save(buf, _exploit_array(marker), allow_pickle=True)
    with pytest.raises(PickleRequiredError, match="allow_pickle"):
        decode(NpyCodec(), buf.getvalue())
    path = tmp_path / "x.npy"
    path.write_bytes(buf.getvalue())
    with pytest.raises(PickleRequiredError, match="allow_pickle"):
        NpyCodec().read_mmap(path, None)
    assert not marker.exists()


def test_pickle_required_is_a_value_error_not_corruption() -> None:
    assert issubclass(PickleRequiredError, ValueError)
    assert not issubclass(PickleRequiredError, CorruptEntryError)


def test_format_3_object_array_needs_pickle_not_corrupt() -> None:
    # A non-latin-1 field name makes numpy write format 3.0, read by numpy's own reader.
    arr = np.zeros(2, dtype=[("\u20ac", object)])
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # numpy notes the 3.0 format
        np.save(buf, arr, allow_pickle=True)
    assert buf.getvalue()[6:8] == b"\x03\x00"
    with pytest.raises(PickleRequiredError, match="allow_pickle=True to"):
        decode(NpyCodec(), buf.getvalue())
    assert decode(NpyCodec(allow_pickle=True), buf.getvalue()).dtype == arr.dtype


def test_legacy_npz_dict_with_object_member_needs_pickle() -> None:
    # simple_metrics_manager saved a dict with np.savez(**dict): object values pickle.
    buf = io.BytesIO()
    np.savez(buf, ok=np.arange(2), labels=np.array([{"a": 1}], dtype=object))
    with pytest.raises(PickleRequiredError, match="member 'labels.npy'"):
        decode(NpzCodec(), buf.getvalue())
    loaded = decode(NpzCodec(allow_pickle=True), buf.getvalue())
    assert loaded["labels"][0] == {"a": 1}


# -- json --------------------------------------------------------------------------------------


def test_json_coerces_numpy_everywhere_and_tuples_to_lists() -> None:
    value = {
        "arr": np.arange(3),
        "nested": [{"x": np.float32(1.5), "f": np.asfortranarray(np.eye(2))}],
        "tuple": (1, np.int8(2), "a"),
        "strs": np.array(["a", "b"]),
        "flag": np.bool_(True),
    }
    out = roundtrip(JsonCodec(), value)
    assert out == {
        "arr": [0, 1, 2],
        "nested": [{"x": 1.5, "f": [[1.0, 0.0], [0.0, 1.0]]}],
        "tuple": [1, 2, "a"],
        "strs": ["a", "b"],
        "flag": True,
    }
    assert type(out["nested"][0]["x"]) is float


def test_json_keeps_nan_inf_and_unicode() -> None:
    value = [math.nan, math.inf, -math.inf, -0.0, "ünï\ud800", 10**300]
    assert_same(value, roundtrip(JsonCodec(), value))
    assert "ü".encode() in encode(JsonCodec(), ["ü"])[0]


@pytest.mark.parametrize(
    "value, where",
    [
        ({"a": [1, 2j]}, r"value\['a'\]\[1\]"),
        ({"a": b"x"}, "bytes"),
        ([{1, 2}], "set"),
        ({1: "a"}, "dict key"),
        ({"g": _generator()}, "generator"),
        ([object()], "object"),
        (np.array([1 + 1j]), "complex"),
        (np.array(["2020-01-01"], dtype="M8[ns]"), "date"),
        (np.datetime64("2020-01-01"), "date"),
    ],
)
def test_json_rejects_non_json_values(value: Any, where: str) -> None:
    sink = WriteOnlyStream()
    with pytest.raises(UnsupportedValueError, match=where):
        JsonCodec().write(value, cast(BinaryIO, sink))
    assert sink.getvalue() == b""


def test_json_rejects_cycles() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.raises(UnsupportedValueError, match="cycle"):
        JsonCodec().validate(loop)
    shared = [1]
    assert roundtrip(JsonCodec(), [shared, shared]) == [[1], [1]]


# -- npy headers: numpy's own bytes, and exactly numpy's strictness ------------------------


def _numpy_header(arr: np.ndarray) -> bytes:
    """The format 1.0 header numpy's writer produces for *arr*."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
    return buf.getvalue()


@FAST
@given(arrays())
def test_npy_header_is_numpys_byte_for_byte(arr: np.ndarray) -> None:
    data, _ = encode(NpyCodec(), arr)
    if data[6] == 1:  # the header numpy would write (a C copy if arr is strided)
        contiguous = arr if arr.flags.c_contiguous or arr.flags.f_contiguous else arr.copy()
        assert data.startswith(_numpy_header(contiguous))


@FAST
@given(st.one_of(arrays(), numpy_scalars, python_scalars))
def test_size_hint_is_the_exact_file_size(value: Any) -> None:
    codec = NpyCodec()
    hint = codec.size_hint(value)
    data, _ = encode(codec, value)
    if isinstance(value, np.ndarray) and value.dtype.names is None and not value.dtype.hasobject:
        assert hint == len(data)
    else:  # scalars are tiny; structured dtypes are left to numpy's writer
        assert hint is None


def _with_header(text: bytes, payload: bytes) -> bytes:
    """A format 1.0 file with the raw header *text* (padded like numpy) and *payload*."""
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return (
        np.lib.format.MAGIC_PREFIX + b"\x01\x00" + len(text).to_bytes(2, "little") + text + payload
    )


def _numpy_reads(data: bytes) -> tuple[np.ndarray, bool] | None:
    """What np.load makes of *data*: ``(array, whole file consumed)``, None if it refuses."""
    buf = io.BytesIO(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. Python 2 headers, deprecated dtype aliases
        try:
            arr = np.lib.format.read_array(buf, allow_pickle=False)
        except (ValueError, TypeError, SyntaxError, TokenError, EOFError, MemoryError):
            return None
    return arr, buf.tell() == len(data)


def _assert_as_strict_as_numpy(data: bytes) -> None:
    """Our decoder accepts exactly what numpy accepts, with the same result."""
    expected = _numpy_reads(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if expected is None or not expected[1]:  # refused, or bytes left after the array
            with pytest.raises((CorruptEntryError, MemoryError)):
                decode(NpyCodec(), data)
            return
        out = decode(NpyCodec(), data)
    assert_same(expected[0], out)
    assert out.flags.f_contiguous == expected[0].flags.f_contiguous


@pytest.mark.parametrize(
    "text",
    [
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }",
        b"{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
        b"{'shape': (2, 3), 'fortran_order': False, 'descr': '<f8'}",  # other key order
        b'{"descr": "<f8", "fortran_order": False, "shape": (2, 3)}',  # other quotes
        b"{'descr':'<f8','fortran_order':False,'shape':(2,3)}",  # no spaces
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (6), }",  # an int, not a tuple
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (06,), }",  # leading zero
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (0x6,), }",
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (-6,), }",
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (True, 6), }",
        b"{'descr': '<f8', 'fortran_order': 0, 'shape': (6,), }",
        b"{'descr': '<f9', 'fortran_order': False, 'shape': (6,), }",
        b"{'descr': 'f8', 'fortran_order': False, 'shape': (6,), }",
        b"{'descr': '<f8', 'fortran_order': False, }",
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (6,), 'x': 1, }",
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (6,), }\x00",
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (6,),, }",
        b"['<f8', False, (6,)]",
        b"{'descr': '<M8[s]', 'fortran_order': False, 'shape': (6,), }",
        b"{'descr': '<M8[xx]', 'fortran_order': False, 'shape': (6,), }",
        b"{'descr': '<u2', 'fortran_order': False, 'shape': (2, 3, 2), }",
        b"{'descr': '|S4', 'fortran_order': False, 'shape': (3, 1), }",
        b"{'descr': '1f8', 'fortran_order': False, 'shape': (6,), }",  # a subarray dtype
        b"{'descr': '1f8', 'fortran_order': True, 'shape': (2, 3), }",
        b"{'descr': '2f8', 'fortran_order': False, 'shape': (3,), }",
    ],
)
def test_npy_header_variants_are_read_exactly_as_numpy_reads_them(text: bytes) -> None:
    _assert_as_strict_as_numpy(_with_header(text, bytes(range(48))))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [np.arange(6.0), np.arange(12, dtype="<i2").reshape(3, 4), np.zeros((2, 3), "F")]
    ),
    st.lists(
        st.tuples(st.integers(0, 127), st.sampled_from(b"0123456789(),'\" :<>|=fiuTF[]{}\n\x00")),
        min_size=1,
        max_size=3,
    ),
)
def test_damaged_npy_headers_are_refused_exactly_when_numpy_refuses(
    arr: np.ndarray, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(encode(NpyCodec(), arr)[0])
    for position, byte in edits:
        data[position] = byte
    _assert_as_strict_as_numpy(bytes(data))


@pytest.mark.parametrize("order", ["C", "F"])
def test_large_array_is_read_page_aligned_by_two_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    # shrink the thresholds so a small array takes the large-array paths
    monkeypatch.setattr(_npyformat, "ALIGNED_ARRAY", 1000)
    monkeypatch.setattr(_hashio, "_SPLIT_MIN", 1000)
    arr = np.asarray(np.random.default_rng(1).random((50, 31)), order=order)
    data, _ = encode(NpyCodec(), arr)
    path = tmp_path / "big.npy"
    path.write_bytes(data)
    with open(path, "rb", buffering=0) as f:
        reader = HashingReader(cast(BinaryIO, f))
        out = NpyCodec().read(cast(BinaryIO, reader))
        assert reader.finish() == (len(data), checksum_bytes(data))
    assert_same(arr, out)
    assert out.__array_interface__["data"][0] % 4096 == 0
    assert out.flags.writeable and out.flags.aligned
    assert (out.flags.c_contiguous, out.flags.f_contiguous) == (order == "C", order == "F")
    out[0, 0] = -1.0  # an ordinary, writeable array
    assert out[0, 0] == -1.0
    path.write_bytes(data[:-100])
    with open(path, "rb", buffering=0) as f, pytest.raises(CorruptEntryError, match="truncated"):
        NpyCodec().read(cast(BinaryIO, HashingReader(cast(BinaryIO, f))))


# -- npz from real files ------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("items", [1, 100_000], ids=["small", "large"])
def test_npz_reads_from_a_real_file(tmp_path: Path, compress: bool, items: int) -> None:
    # a large archive's stored members are read straight from the file into arrays
    value = {"a": np.arange(items, dtype=np.float64), "b": 1.5, "c": np.asfortranarray(np.eye(3))}
    path = tmp_path / "v.npz"
    path.write_bytes(encode(NpzCodec(compress=compress), value)[0])
    with open(path, "rb", buffering=0) as f:
        out = NpzCodec().read(cast(BinaryIO, f))
    assert_same(value, out)
    assert out["c"].flags.f_contiguous
    np.savez(path, np.arange(items))  # legacy, written by numpy to a seekable file
    with open(path, "rb", buffering=0) as f:
        assert_same(np.arange(items), NpzCodec().read(cast(BinaryIO, f)))


def _large_npz() -> bytes:
    """An archive big enough that its data member is streamed, not read whole."""
    return encode(NpzCodec(), {"a": np.arange(50_000.0)})[0]


def test_npz_member_with_bad_crc_is_corrupt() -> None:
    data = bytearray(_large_npz())
    data[len(data) // 2] ^= 0x01  # inside the array: still a valid .npy, only the CRC tells
    with pytest.raises(CorruptEntryError, match="CRC"):
        decode(NpzCodec(), bytes(data))


def test_npz_read_for_a_verifying_caller_skips_only_the_stored_crc() -> None:
    # the storage checks the whole file's checksum itself, so the CRC is redundant
    data = bytearray(_large_npz())
    data[len(data) // 2] ^= 0x01
    out = NpzCodec().read(io.BytesIO(bytes(data)), verified=True)
    assert np.count_nonzero(out["a"] != np.arange(50_000.0)) == 1
    packed = bytearray(encode(NpzCodec(compress=True), {"a": np.zeros(50_000)})[0])
    packed[len(packed) // 2] ^= 0x01  # deflated: zipfile checks the CRC regardless
    with pytest.raises(CorruptEntryError):
        NpzCodec().read(io.BytesIO(bytes(packed)), verified=True)


def test_npz_local_header_must_match_the_directory() -> None:
    data = bytearray(_large_npz())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        offset = zf.getinfo("arr_0.npy").header_offset
    name_at = offset + 30
    assert data[name_at : name_at + 9] == b"arr_0.npy"
    renamed = bytes(data[:name_at]) + b"arr_9" + bytes(data[name_at + 5 :])
    with pytest.raises(CorruptEntryError, match="differ"):
        decode(NpzCodec(), renamed)
    data[offset] = ord("X")
    with pytest.raises(CorruptEntryError, match="magic"):
        decode(NpzCodec(), bytes(data))
