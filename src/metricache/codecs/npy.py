"""The ``.npy`` codec: one array or scalar per file, streamed without extra copies.

The file is a standard ``.npy`` file (``np.load`` reads it). Writing sends the
header, then the array's own memory in one ``write`` call; reading parses the
header and fills a freshly allocated array with ``readinto``, so neither direction
builds an intermediate ``bytes`` copy of the data.
"""

from __future__ import annotations

import io
import os
import pickle
import tokenize
from typing import Any, BinaryIO, Protocol, cast

import numpy as np

from ..exceptions import CorruptEntryError, UnsupportedValueError
from . import _values
from ._base import Codec

__all__ = ["NpyCodec"]

#: Bytes per ``readinto`` call when filling an array. Chunks that stay in the CPU
#: cache beat big ones: the caller hashes (or zipfile CRCs and copies) each chunk
#: right after it is read. 256 KiB (numpy's own read size) measured best for both
#: a hashing file reader and zip members; 1 MiB+ was up to 3x slower for zip members.
STREAM_CHUNK = 256 << 10
#: Bytes per ``read`` when slurping the rest of a stream.
_SLURP_CHUNK = 4 << 20
#: Largest header we parse. numpy's default (10 000) rejects the headers it writes
#: itself for wide structured dtypes; the header is only ``ast.literal_eval``-ed.
_MAX_HEADER = 1 << 20
_FORMAT_3 = (3, 0)
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


def _header(arr: np.ndarray) -> bytes | None:
    """The format 1.0/2.0 ``.npy`` header of *arr*; None if it needs format 3.0."""
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


def _refuse_pickle(dtype: np.dtype[Any], interface: str) -> CorruptEntryError:
    """The error for a pickled object array met while pickling is off."""
    return CorruptEntryError(
        f"the file holds a pickled object array (dtype {dtype}); it was not loaded "
        "because unpickling can run arbitrary code and allow_pickle is False; pass "
        f"allow_pickle=True to {interface}(...) only if you trust the file"
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


def _read_format_3(f: ByteReader, version: tuple[int, int], allow_pickle: bool) -> np.ndarray:
    """Read a format 3.0 (or unknown-version) file with numpy's reader, in memory."""
    data = io.BytesIO(np.lib.format.magic(*version) + _read_to_end(f))
    try:
        arr = np.lib.format.read_array(
            data, allow_pickle=allow_pickle, max_header_size=_MAX_HEADER
        )
    except (*_HEADER_ERRORS, *_UNPICKLE_ERRORS) as exc:
        raise CorruptEntryError(f"cannot read .npy file: {exc}") from exc
    if data.tell() != len(data.getbuffer()):
        raise CorruptEntryError("unexpected data after the end of the .npy array")
    return arr


def _read_header(f: ByteReader) -> tuple[tuple[int, int], Any]:
    """Parse magic and header: ``(version, (shape, fortran_order, dtype) or None)``."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return version, np.lib.format.read_array_header_1_0(f, _MAX_HEADER)
        if version == (2, 0):
            return version, np.lib.format.read_array_header_2_0(f, _MAX_HEADER)
    except _HEADER_ERRORS as exc:  # bad magic, truncated, garbage
        raise CorruptEntryError(f"not a valid .npy file: {exc}") from exc
    return version, None


def _allocate(shape: tuple[int, ...], fortran: bool, dtype: np.dtype[Any]) -> np.ndarray:
    """An uninitialised array for the header's shape, order and dtype."""
    try:
        return np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    except (ValueError, TypeError) as exc:  # negative or absurd dimensions
        raise CorruptEntryError(f"invalid .npy header shape {shape}: {exc}") from exc


def decode_array(
    f: ByteReader,
    *,
    allow_pickle: bool = False,
    interface: str = "the storage",
    chunk: int = STREAM_CHUNK,
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
    chunk : int
        Bytes per ``readinto`` call.

    Returns
    -------
    numpy.ndarray
        The array, as :func:`numpy.load` would return it (same dtype, shape, order).

    Raises
    ------
    CorruptEntryError
        On bad magic, a malformed header, a truncated stream, trailing bytes, or a
        pickled array while *allow_pickle* is False.
    """
    version, header = _read_header(f)
    if header is None:
        return _read_format_3(f, version, allow_pickle)
    shape, fortran, dtype = header
    if dtype.hasobject:
        if not allow_pickle:
            raise _refuse_pickle(dtype, interface)
        return _read_pickled(f, shape)
    arr = _allocate(shape, fortran, dtype)
    if arr.nbytes:
        _read_exact_into(f, arr.ravel(order="A").view(np.uint8).data, chunk)
    _expect_end(f)
    return arr


class NpyCodec(Codec):
    """Store one array or scalar as a standard ``.npy`` file.

    Arrays of every non-object dtype round-trip with their dtype, shape and
    Fortran order (a non-contiguous array is stored as its C-ordered copy; an
    ``np.memmap`` loads back as a plain ndarray). Numpy scalars and the Python
    scalars ``bool``, ``int`` (any size), ``float``, ``complex``, ``str`` and
    ``bytes`` come back as the same type, using the hint :meth:`write` returns
    (see :mod:`metricache.codecs._values`).

    Parameters
    ----------
    allow_pickle : bool, default False
        Store and load object arrays by pickling them. Unpickling can run
        arbitrary code, so only enable it for caches nobody untrusted can write.

    Notes
    -----
    A file holding a pickled object array, read while *allow_pickle* is False,
    raises :class:`~metricache.CorruptEntryError` without unpickling anything.
    """

    name = "npy"
    suffix = ".npy"
    sequential = True
    _interface = "NpyStorageInterface"

    def __init__(self, allow_pickle: bool = False) -> None:
        self.allow_pickle = allow_pickle

    def __repr__(self) -> str:
        return f"NpyCodec(allow_pickle={self.allow_pickle!r})"

    def validate(self, value: Any) -> None:
        """Raise if *value* is not one array or scalar this codec round-trips.

        Parameters
        ----------
        value : Any
            The value to check.

        Raises
        ------
        UnsupportedValueError
            For containers, ndarray subclasses, object data without
            *allow_pickle*, and anything that is not an array or scalar.
        """
        ok = _values.check_item(value, allow_pickle=self.allow_pickle, interface=self._interface)
        if ok:
            return
        if isinstance(value, (list, tuple, dict)):
            raise UnsupportedValueError(
                f"{self._interface} stores one array or scalar, not {_values.describe(value)}; "
                "use NpzStorageInterface, which stores lists, tuples and dicts of arrays"
            )
        raise UnsupportedValueError(
            f"{self._interface} cannot store {_values.describe(value)}: it stores one "
            "numpy array or a numpy/Python scalar"
        )

    def write(self, value: Any, f: BinaryIO) -> str | None:
        """Write *value* as a ``.npy`` file to *f*.

        Parameters
        ----------
        value : Any
            An array or scalar accepted by :meth:`validate`.
        f : BinaryIO
            Write-only stream; it is never seeked or told.

        Returns
        -------
        str or None
            None for an ndarray, else the scalar type hint to pass to :meth:`read`.
        """
        self.validate(value)
        arr, hint = _values.to_array(value)
        for piece in encode_array(arr, interface=self._interface):
            f.write(piece)
        return hint

    def read(self, f: BinaryIO, hint: str | None = None) -> Any:
        """Read the value back from *f*, consuming it front to back.

        Parameters
        ----------
        f : BinaryIO
            Stream supporting ``read(n)`` and ``readinto(buffer)``.
        hint : str or None
            What :meth:`write` returned; None (or a legacy file) gives the array
            exactly as :func:`numpy.load` would.

        Returns
        -------
        Any
            The stored array or scalar.

        Raises
        ------
        CorruptEntryError
            If the stream is not a complete, valid ``.npy`` file.
        """
        # typing.BinaryIO omits readinto, which the storage's streams do provide
        reader = cast(ByteReader, f)
        arr = decode_array(reader, allow_pickle=self.allow_pickle, interface=self._interface)
        return _values.from_array(arr, hint)

    def read_mmap(self, path: str | os.PathLike[str], hint: str | None = None) -> Any:
        """Memory-map the array stored at *path* read-only (O(1) in its size).

        Scalars (a non-None *hint*), object arrays and format 3.0 files cannot be
        mapped and are read normally instead. The checksum is not verified.

        Parameters
        ----------
        path : str or os.PathLike
            A ``.npy`` file written by this codec (or :func:`numpy.save`).
        hint : str or None
            What :meth:`write` returned.

        Returns
        -------
        Any
            A read-only :class:`numpy.memmap` for arrays, else the stored value.
        """
        with open(path, "rb") as fh:
            _version, header = _read_header(fh)
            if hint is not None or header is None or header[2].hasobject:
                fh.seek(0)
                return self.read(fh, hint)
        try:
            return np.load(path, mmap_mode="r", max_header_size=_MAX_HEADER)
        except (ValueError, OSError) as exc:  # e.g. file shorter than its header says
            raise CorruptEntryError(f"cannot memory-map {os.fspath(path)!r}: {exc}") from exc
