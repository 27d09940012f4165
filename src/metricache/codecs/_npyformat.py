"""The ``.npy`` format for the codecs: headers, and arrays streamed without extra copies.

Writing sends the header, then the array's own memory in one ``write`` call;
reading parses the header and fills a freshly allocated (page-aligned, when
large) array with ``readinto``, so neither direction builds an intermediate
``bytes`` copy of the data.
"""

from __future__ import annotations

import functools
import io
import math
import os
import pickle
import re
import tokenize
from typing import Any, Literal, Protocol

import numpy as np

from ..exceptions import CorruptEntryError, PickleRequiredError, UnsupportedValueError

#: Bytes per ``readinto`` call when filling an array from a zip member: zipfile's
#: CRC then runs over data still in the CPU cache (256 KiB is numpy's read size).
#: From a plain file the whole array is asked for with one call, which a hashing
#: reader splits into chunks it hashes as they land.
STREAM_CHUNK = 256 << 10
#: Arrays at least this large start on a page boundary. malloc aligns to 16 bytes
#: only, and the kernel's copy from the page cache into a destination that is not
#: 64-byte aligned measured 2.5x slower on AMD EPYC (8 MiB: 5.9 ms at an offset of
#: 16 bytes, 2.2 ms at 0 or 64; 100 MiB: 68 vs 27 ms). The padding (< 4 KiB) is
#: under 2% of such an array.
ALIGNED_ARRAY = 256 << 10
_PAGE = 4096
#: Bytes per ``read`` when slurping the rest of a stream.
_SLURP_CHUNK = 4 << 20
#: Largest header we parse. numpy's default (10 000) rejects the headers it writes
#: itself for wide structured dtypes; the header is only ``ast.literal_eval``-ed.
_MAX_HEADER = 1 << 20
_FORMAT_3 = (3, 0)
_MAGIC = np.lib.format.MAGIC_PREFIX
#: Magic, version and a format 1.0 header length (format 2.0 has two more bytes).
_PREAMBLE = len(_MAGIC) + 4
#: numpy's header layout: padded so the data starts at a multiple of this, with
#: room for the first axis to grow to this many digits.
_ALIGN = 64
_GROWTH_DIGITS = 21
#: dtype kinds whose descr is the plain ``dtype.str`` (no fields, no pickling).
_SIMPLE_KINDS = frozenset("biufcmMSUV")
_INT = rb"(?:0|[1-9][0-9]*)"
#: The header numpy writes for a plain dtype, for example
#: ``{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }`` then spaces and
#: a newline. Only canonical text matches; the rest goes to numpy's parser.
_SIMPLE_HEADER = re.compile(
    rb"\{'descr': '([<>|=]?[A-Za-z][0-9]*(?:\[[0-9]*[A-Za-z]+\])?)', "
    rb"'fortran_order': (False|True), "
    rb"'shape': \((|%s,|%s(?:, %s)+,?)\), \} *\n" % (_INT, _INT, _INT)
)
#: What numpy's header parsing raises for garbage: it tokenizes and literal_evals
#: the header, so tokenizer and parser errors escape besides its own ValueError.
_HEADER_ERRORS = (ValueError, TypeError, SyntaxError, RecursionError, tokenize.TokenError)
#: What unpickling garbage can raise (pickle reports malformed data in many ways).
_UNPICKLE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    OverflowError,
    RecursionError,
)
#: What pickling an unpicklable object can raise.
_PICKLE_ERRORS = (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError)


class ByteReader(Protocol):
    """The part of a binary stream that :func:`decode_array` needs."""

    def read(self, size: int = ..., /) -> bytes: ...

    def readinto(self, buffer: Any, /) -> int | None: ...


# -- writing ---------------------------------------------------------------------------


def _simple_header(arr: np.ndarray) -> bytes | None:
    """numpy's format 1.0 header for a plain dtype, byte for byte; None for other dtypes."""
    dtype = arr.dtype
    if (
        dtype.kind not in _SIMPLE_KINDS
        or dtype.names is not None
        or dtype.subdtype is not None
        or dtype.metadata is not None  # numpy warns that it drops metadata: let it
    ):
        return None
    # numpy's rule: C-contiguous (or neither, then written as a C copy) is C order
    fortran = arr.flags.f_contiguous and not arr.flags.c_contiguous
    shape = arr.shape
    text = f"{{'descr': {dtype.str!r}, 'fortran_order': {fortran!r}, 'shape': {shape!r}, }}"
    if shape:  # room for the growing axis, as numpy leaves it
        text += " " * (_GROWTH_DIGITS - len(repr(shape[-1 if fortran else 0])))
    padded = len(text) + 1
    padded += -(_PREAMBLE + padded) % _ALIGN
    if padded > 0xFFFF:
        return None
    head = _MAGIC + b"\x01\x00" + padded.to_bytes(2, "little")
    return head + text.encode("latin-1").ljust(padded - 1) + b"\n"


def _header(arr: np.ndarray) -> bytes | None:
    """The format 1.0/2.0 ``.npy`` header of *arr*; None if it needs format 3.0."""
    simple = _simple_header(arr)
    if simple is not None:
        return simple
    d = np.lib.format.header_data_from_array_1_0(arr)
    for write_header in (
        np.lib.format.write_array_header_1_0,
        np.lib.format.write_array_header_2_0,
    ):
        buf = io.BytesIO()
        try:
            write_header(buf, d)
        except ValueError:  # too long for 1.0, or field names that are not latin-1
            continue
        return buf.getvalue()
    return None


def _numpy_bytes(arr: np.ndarray, version: tuple[int, int], interface: str) -> bytes:
    """Serialise *arr* with numpy's own writer, in memory so a failure writes nothing."""
    buf = io.BytesIO()
    try:
        np.lib.format.write_array(buf, arr, version=version, allow_pickle=True)
    except _PICKLE_ERRORS as exc:
        raise UnsupportedValueError(
            f"cannot pickle the object array for {interface}: {exc}"
        ) from exc
    return buf.getvalue()


def encode_array(arr: np.ndarray, *, interface: str = "the storage") -> list[Any]:
    """Return the pieces of the ``.npy`` file of a validated *arr*, to write in order.

    Parameters
    ----------
    arr : numpy.ndarray
        An array already accepted by validation (object dtype only if pickling is
        allowed).
    interface : str
        Name of the storage interface, for error messages.

    Returns
    -------
    list
        ``bytes`` and ``memoryview`` pieces; the memoryview is the array's own
        memory (copied only if *arr* is neither C- nor Fortran-contiguous).

    Raises
    ------
    UnsupportedValueError
        If an object array cannot be pickled. Nothing has been written then.
    """
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
    header = _header(arr)
    if header is None or arr.dtype.hasobject:  # rare: pickled objects or UTF-8 field names
        version = _FORMAT_3 if header is None else (header[6], 0)
        return [_numpy_bytes(arr, version, interface)]
    if arr.nbytes == 0:
        return [header]
    # ravel("A") is a view in memory order: a Fortran-only array's memory is exactly
    # what the header's fortran_order=True promises
    return [header, arr.ravel(order="A").view(np.uint8).data]


def encoded_size(arr: np.ndarray) -> int | None:
    """The exact size of the ``.npy`` file :func:`encode_array` writes for a plain *arr*."""
    header = _simple_header(arr)
    return None if header is None else len(header) + arr.nbytes


# -- reading ---------------------------------------------------------------------------


def _read_exact(f: ByteReader, size: int) -> bytes:
    """*size* bytes from *f*, or fewer only where the stream ends."""
    data = f.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    missing = size - len(data)
    while missing and (more := f.read(missing)):
        parts.append(more)
        missing -= len(more)
    return b"".join(parts)


def _read_exact_into(f: ByteReader, view: memoryview, chunk: int) -> None:
    """Fill *view* from *f* chunk by chunk; CorruptEntryError if the stream ends early."""
    total = len(view)
    done = 0
    while done < total:
        got = f.readinto(view[done : done + chunk])
        if not got:
            raise CorruptEntryError(
                f"truncated .npy file: array data ends after {done} of {total} bytes"
            )
        done += got


def _read_to_end(f: ByteReader) -> bytes:
    """Everything left in *f*."""
    chunks = []
    while chunk := f.read(_SLURP_CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)


def _expect_end(f: ByteReader) -> None:
    """CorruptEntryError if *f* has bytes left after the array."""
    if f.read(1):
        raise CorruptEntryError("unexpected data after the end of the .npy array")


def _refuse_pickle(dtype: np.dtype[Any] | str, interface: str) -> PickleRequiredError:
    """The error for a pickled object array met while pickling is off (not corruption)."""
    return PickleRequiredError(
        f"the file holds a pickled object array (dtype {dtype}); it was not loaded "
        "because unpickling can run arbitrary code and allow_pickle is False; pass "
        f"allow_pickle=True to {interface}(...) only if you trust the file (it was "
        "left where it is)"
    )


def _read_pickled(f: ByteReader, shape: tuple[int, ...]) -> np.ndarray:
    """Unpickle the object array that follows a header (numpy stores it that way)."""
    data = io.BytesIO(_read_to_end(f))
    try:
        arr = pickle.load(data)
    except _UNPICKLE_ERRORS as exc:
        raise CorruptEntryError(f"cannot unpickle the object array: {exc!r}") from exc
    if type(arr) is not np.ndarray or arr.shape != shape:
        raise CorruptEntryError("the pickled object array does not match its header")
    if data.tell() != len(data.getbuffer()):
        raise CorruptEntryError("unexpected data after the pickled object array")
    return arr


def _read_format_3(f: ByteReader, head: bytes, allow_pickle: bool, interface: str) -> np.ndarray:
    """Read a format 3.0 (or unknown-version) file with numpy's reader, in memory."""
    data = io.BytesIO(head + _read_to_end(f))
    try:
        arr = np.lib.format.read_array(
            data, allow_pickle=allow_pickle, max_header_size=_MAX_HEADER
        )
    except ValueError as exc:
        # numpy refuses object arrays with this wording ("... when allow_pickle=False")
        if not allow_pickle and "allow_pickle" in str(exc):
            raise _refuse_pickle("object", interface) from None
        raise CorruptEntryError(f"cannot read .npy file: {exc}") from exc
    except (*_HEADER_ERRORS, *_UNPICKLE_ERRORS) as exc:
        raise CorruptEntryError(f"cannot read .npy file: {exc}") from exc
    if data.tell() != len(data.getbuffer()):
        raise CorruptEntryError("unexpected data after the end of the .npy array")
    return arr


#: ``(shape, fortran_order, dtype)`` as numpy's header readers return it.
_Header = tuple[tuple[int, ...], bool, np.dtype[Any]]


def _read_header(f: ByteReader) -> tuple[_Header | None, bytes]:
    """Read magic and header in two reads: ``(header, b"")``, or ``(None, bytes read)``.

    None means a format numpy must read (3.0, or a version it may reject); the
    bytes already consumed are returned for it.
    """
    head = _read_exact(f, _PREAMBLE)
    if len(head) < len(_MAGIC) + 2 or head[: len(_MAGIC)] != _MAGIC:
        raise CorruptEntryError(f"not a valid .npy file: it starts with {head[:8]!r}")
    version = (head[6], head[7])
    if version == (1, 0):
        length = head[8:]
    elif version == (2, 0):
        length = head[8:] + _read_exact(f, 2)
    else:
        return None, head
    if len(length) < (2 if version == (1, 0) else 4):
        raise CorruptEntryError("not a valid .npy file: truncated in its header length")
    size = int.from_bytes(length, "little")
    if size > _MAX_HEADER:
        raise CorruptEntryError(f"not a valid .npy file: header of {size} bytes is too large")
    text = _read_exact(f, size)
    if len(text) < size:
        raise CorruptEntryError("not a valid .npy file: truncated in its header")
    return _parse_header(version, length, text), b""


@functools.lru_cache(maxsize=1024)
def _parse_header(version: tuple[int, int], length: bytes, text: bytes) -> _Header:
    """``(shape, fortran_order, dtype)`` of the header *text* (with its *length* bytes).

    Memoised: a grid's entries share a few headers, and parsing one costs more
    than reading a tiny array (a header that fails to parse is not kept).
    """
    match = _SIMPLE_HEADER.fullmatch(text)
    if match is not None:
        try:
            dtype = np.dtype(match[1].decode("ascii"))
        except TypeError:  # not a dtype: numpy's parser words the error
            pass
        else:
            shape = tuple(map(int, match[3].replace(b",", b" ").split()))
            return shape, match[2] == b"True", dtype
    read = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    try:
        return read(io.BytesIO(length + text), _MAX_HEADER)
    except _HEADER_ERRORS as exc:  # garbage
        raise CorruptEntryError(f"not a valid .npy file: {exc}") from exc


def _allocate(shape: tuple[int, ...], fortran: bool, dtype: np.dtype[Any]) -> np.ndarray:
    """An uninitialised array for the header's shape, order and dtype."""
    order: Literal["C", "F"] = "F" if fortran else "C"
    try:
        if dtype.subdtype is not None:
            return _with_subarray_dtype(shape, fortran, dtype)
        if math.prod(shape) * dtype.itemsize >= ALIGNED_ARRAY:
            return _page_aligned(shape, order, dtype)
        return np.empty(shape, dtype=dtype, order=order)
    except (ValueError, TypeError, MemoryError, OverflowError) as exc:  # absurd dimensions
        raise CorruptEntryError(f"invalid .npy header shape {shape}: {exc!r}") from None


def _with_subarray_dtype(
    shape: tuple[int, ...], fortran: bool, dtype: np.dtype[Any]
) -> np.ndarray:
    """What numpy makes of a (hand-written) header whose descr is a subarray like '1f8'.

    numpy reads ``prod(shape)`` items, whose subarrays become trailing axes, then
    reshapes to the header's shape: the base dtype, or a ValueError if they differ.
    """
    flat: np.ndarray = np.empty(math.prod(shape), dtype=dtype)
    if not fortran:
        return flat.reshape(shape)
    fortran_order: np.ndarray = flat.reshape(shape[::-1]).transpose()
    return fortran_order


def _page_aligned(
    shape: tuple[int, ...], order: Literal["C", "F"], dtype: np.dtype[Any]
) -> np.ndarray:
    """Like ``np.empty`` but starting on a page boundary (a view of a larger buffer)."""
    nbytes = math.prod(shape) * dtype.itemsize
    buffer = np.empty(nbytes + _PAGE, dtype=np.uint8)
    start = -buffer.__array_interface__["data"][0] % _PAGE
    flat = buffer[start : start + nbytes].view(dtype)
    return flat.reshape(shape, order=order)


def bytes_left(f: Any) -> int | None:
    """Bytes left to read in *f*, when it can tell (a file, a buffer, a sized reader)."""
    sized = getattr(f, "bytes_left", None)
    if callable(sized):
        left: int | None = sized()
        return left
    if isinstance(f, io.BytesIO):
        return len(f.getbuffer()) - f.tell()
    try:
        size: int = os.fstat(f.fileno()).st_size - f.tell()
    except (AttributeError, OSError, ValueError):
        return None
    return size


def _check_fits(f: ByteReader, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    """CorruptEntryError if the header declares more data than the file holds.

    Checked before allocating: a header declaring ``2**40`` items in a small file
    must not cost a terabyte of memory (or a MemoryError) to be found out.
    """
    if any(n < 0 for n in shape):
        return  # numpy's own error names it
    declared = math.prod(shape) * dtype.itemsize
    left = bytes_left(f)
    if left is not None and declared > left:
        raise CorruptEntryError(
            f"truncated .npy file: its header declares {declared} bytes of data, "
            f"the file holds {left}"
        )


def decode_array(
    f: ByteReader,
    *,
    allow_pickle: bool = False,
    interface: str = "the storage",
    chunk: int | None = None,
) -> np.ndarray:
    """Read one ``.npy`` file front to back from *f* (no seeking).

    Parameters
    ----------
    f : binary stream
        Needs ``read(n)`` and ``readinto(buffer)``.
    allow_pickle : bool
        Whether object arrays may be unpickled. If False, a pickled array raises
        before any of it is unpickled.
    interface : str
        Name of the storage interface, for error messages.
    chunk : int or None
        Bytes per ``readinto`` call; None reads the data with one call.

    Returns
    -------
    numpy.ndarray
        The array, as :func:`numpy.load` would return it (same dtype, shape, order).

    Raises
    ------
    CorruptEntryError
        On bad magic, a malformed header, a truncated stream or trailing bytes.
    PickleRequiredError
        For a pickled (object) array while *allow_pickle* is False.
    """
    header, head = _read_header(f)
    if header is None:
        return _read_format_3(f, head, allow_pickle, interface)
    shape, fortran, dtype = header
    if dtype.hasobject:
        if not allow_pickle:
            raise _refuse_pickle(dtype, interface)
        return _read_pickled(f, shape)
    _check_fits(f, shape, dtype)
    arr = _allocate(shape, fortran, dtype)
    if arr.nbytes:
        _read_exact_into(f, arr.ravel(order="A").view(np.uint8).data, chunk or arr.nbytes)
    _expect_end(f)
    return arr
