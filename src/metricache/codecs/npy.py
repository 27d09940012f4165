"""The ``.npy`` codec: one array or scalar per file, streamed without extra copies.

The file is a standard ``.npy`` file (``np.load`` reads it). Writing sends the
header, then the array's own memory in one ``write`` call; reading parses the
header and fills a freshly allocated array with ``readinto``, so neither direction
builds an intermediate ``bytes`` copy of the data.

The headers numpy writes for plain dtypes are built and parsed directly (a
regex instead of numpy's ``ast.literal_eval``, ~20 us less per file); every other
header goes through numpy's own functions, so both paths accept exactly the same
files. That machinery lives in :mod:`metricache.codecs._npyformat`.
"""

from __future__ import annotations

import os
from typing import Any, BinaryIO, cast

import numpy as np

from ..exceptions import CorruptEntryError, UnsupportedValueError
from . import _values
from ._base import Codec
from ._npyformat import (
    _MAX_HEADER,
    ByteReader,
    _read_header,
    decode_array,
    encode_array,
    encoded_size,
)

__all__ = ["NpyCodec"]


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
    raises :class:`~metricache.PickleRequiredError` without unpickling anything.
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

    def size_hint(self, value: Any) -> int | None:
        """The exact size of the file :meth:`write` makes for *value*, if known cheaply.

        Lets a store reserve the file's space in one step before writing (as
        ``ndarray.tofile`` does), which is faster than growing it write by write.

        Parameters
        ----------
        value : Any
            A value accepted by :meth:`validate`.

        Returns
        -------
        int or None
            The size in bytes for an array of a plain dtype; None for scalars (tiny)
            and for structured or object arrays.
        """
        if not _values.is_array(value):
            return None
        return encoded_size(value)

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
        PickleRequiredError
            If it holds a pickled object array and *allow_pickle* is False.
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
            header, _ = _read_header(cast(ByteReader, fh))
            if hint is not None or header is None or header[2].hasobject:
                fh.seek(0)
                return self.read(fh, hint)
        try:
            return np.load(path, mmap_mode="r", max_header_size=_MAX_HEADER)
        except (ValueError, OSError) as exc:  # e.g. file shorter than its header says
            raise CorruptEntryError(f"cannot memory-map {os.fspath(path)!r}: {exc}") from exc
