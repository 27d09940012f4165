"""Classify values for the numpy codecs and turn scalars into 0-d arrays and back.

A ``.npy`` member only holds arrays, so a scalar is stored as a small array plus a
*hint* naming the type to rebuild on load:

``None``
    a plain :class:`numpy.ndarray`, loaded exactly as :func:`numpy.load` loads it.
``"np:scalar"``
    any numpy scalar (``np.float32(1.5)``, ``np.datetime64(...)``) as its 0-d
    array; loaded back as the scalar (``arr[()]``).
``"py:bool"``, ``"py:float"``, ``"py:complex"``
    0-d ``bool``, ``float64`` or ``complex128`` (exact for these types).
``"py:int"``
    0-d ``int64``; an int outside int64 as a 0-d unicode array of its hexadecimal
    digits (exact, and free of Python's limit on decimal digits).
``"py:str"``
    0-d unicode array; a str ending in NUL as a 1-d ``<u4`` array of its code
    points (numpy strips trailing NULs from its string dtypes).
``"py:bytes"``
    0-d ``S`` array; bytes ending in NUL as a 1-d ``uint8`` array.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..exceptions import CorruptEntryError, UnsupportedValueError

__all__ = [
    "NP_SCALAR",
    "check_array",
    "check_item",
    "describe",
    "from_array",
    "is_array",
    "is_scalar",
    "to_array",
]

NP_SCALAR = "np:scalar"
_PY_HINTS: dict[type, str] = {
    bool: "py:bool",
    int: "py:int",
    float: "py:float",
    complex: "py:complex",
    str: "py:str",
    bytes: "py:bytes",
}
#: dtype kinds the .npy format describes natively (O only by pickling). Others are
#: user dtypes such as numpy 2's StringDType ("T"), which numpy would pickle as
#: object arrays and load back with a different dtype.
_NPY_KINDS = frozenset("biufcmMOSUV")
_INT64_MIN = -(1 << 63)
_INT64_END = 1 << 63


def is_array(value: Any) -> bool:
    """True for a plain ndarray (a memmap counts: it is only a file-backed ndarray)."""
    return type(value) is np.ndarray or type(value) is np.memmap


def is_scalar(value: Any) -> bool:
    """True for a numpy scalar or an exact Python bool/int/float/complex/str/bytes."""
    return isinstance(value, np.generic) or type(value) in _PY_HINTS


def describe(value: Any) -> str:
    """Short human description of *value*'s type for error messages."""
    kind = type(value)
    if kind.__module__ == "builtins":
        return f"a {kind.__qualname__}"
    return f"a {kind.__module__}.{kind.__qualname__}"


def _pickle_error(what: str, interface: str) -> UnsupportedValueError:
    """The error for object data when pickling is off."""
    return UnsupportedValueError(
        f"{what} holds Python objects (object dtype), which can only be stored by "
        "pickling them, and loading a pickle can run arbitrary code; convert it to a "
        f"numeric/string dtype, or pass allow_pickle=True to {interface}(...) if you "
        "trust every reader and writer of the cache"
    )


def _subclass_error(value: Any) -> UnsupportedValueError:
    """The error for an ndarray subclass, which would load back as a plain ndarray."""
    hint = (
        "store its .data and .mask as two arrays"
        if isinstance(value, np.ma.MaskedArray)
        else "store np.asarray(value) instead"
    )
    return UnsupportedValueError(
        f"{describe(value)} is an ndarray subclass and would load back as a plain "
        f"ndarray, losing its type; {hint}"
    )


def check_array(value: Any, *, allow_pickle: bool, interface: str) -> None:
    """Raise UnsupportedValueError unless *value* is an ndarray we can round-trip."""
    if not is_array(value):
        raise _subclass_error(value)
    if value.dtype.kind not in _NPY_KINDS:
        raise UnsupportedValueError(
            f"arrays of dtype {value.dtype} cannot be stored faithfully (the .npy format "
            "has no such dtype); convert it, e.g. arr.astype(str) for StringDType"
        )
    if value.dtype.hasobject and not allow_pickle:
        raise _pickle_error(f"the array (dtype {value.dtype})", interface)


def _check_scalar(value: Any, *, allow_pickle: bool, interface: str) -> None:
    """Raise UnsupportedValueError for a numpy scalar that does not survive a 0-d array."""
    if not isinstance(value, np.generic):
        return  # every exact Python scalar type has a lossless encoding below
    if isinstance(value, (np.str_, np.bytes_)) and _ends_with_nul(value):
        raise UnsupportedValueError(
            f"{describe(value)} ending in NUL cannot be stored: numpy strips trailing "
            "NULs; store it as a Python str/bytes instead"
        )
    if value.dtype.hasobject and not allow_pickle:
        raise _pickle_error(f"the scalar (dtype {value.dtype})", interface)


def check_item(value: Any, *, allow_pickle: bool, interface: str) -> bool:
    """Validate an array or scalar; return False if *value* is neither (caller decides)."""
    if isinstance(value, np.ndarray):
        check_array(value, allow_pickle=allow_pickle, interface=interface)
    elif is_scalar(value):
        _check_scalar(value, allow_pickle=allow_pickle, interface=interface)
    else:
        return False
    return True


def _ends_with_nul(value: str | bytes) -> bool:
    """True if *value* ends in a NUL, which numpy's string dtypes would drop."""
    return value[-1:] in ("\0", b"\0")


def _int_to_array(value: int) -> np.ndarray:
    """int64 when it fits, else the hex digits (exact, no str-digit limit)."""
    if _INT64_MIN <= value < _INT64_END:
        return np.asarray(value, dtype=np.int64)
    return np.asarray(format(value, "x"), dtype=np.str_)


def _str_to_array(value: str) -> np.ndarray:
    """0-d unicode, or code points when a trailing NUL would be stripped."""
    if not _ends_with_nul(value):
        return np.asarray(value, dtype=np.str_)
    # surrogatepass keeps lone surrogates, which are valid in a Python str
    return np.frombuffer(value.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _bytes_to_array(value: bytes) -> np.ndarray:
    """0-d bytes, or raw uint8 when a trailing NUL would be stripped."""
    if not _ends_with_nul(value):
        return np.asarray(value, dtype=np.bytes_)
    return np.frombuffer(value, dtype=np.uint8)


def to_array(value: Any) -> tuple[np.ndarray, str | None]:
    """Encode a validated array or scalar as ``(array, hint)``."""
    if isinstance(value, np.ndarray):
        return value, None
    if isinstance(value, np.generic):
        return np.asarray(value), NP_SCALAR
    kind = type(value)
    if kind is int:
        arr = _int_to_array(value)
    elif kind is str:
        arr = _str_to_array(value)
    elif kind is bytes:
        arr = _bytes_to_array(value)
    else:  # bool, float, complex: numpy's default dtypes are exact for them
        arr = np.asarray(value)
    return arr, _PY_HINTS[kind]


def _corrupt(arr: np.ndarray, hint: str) -> CorruptEntryError:
    """The error for an array that does not match the hint it was stored with."""
    return CorruptEntryError(
        f"stored array (dtype {arr.dtype}, shape {arr.shape}) does not match its type "
        f"hint {hint!r}"
    )


def _hex_to_int(item: Any) -> int:
    """Parse the hex digits of an int that did not fit int64."""
    return int(str(item), 16)


# (hint, dtype kind) -> how to rebuild the Python scalar from a 0-d array's item
_DECODERS: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("py:bool", "b"): bool,
    ("py:int", "i"): int,
    ("py:int", "U"): _hex_to_int,
    ("py:float", "f"): float,
    ("py:complex", "c"): complex,
    ("py:str", "U"): str,
    ("py:bytes", "S"): bytes,
}


def _decode_0d(arr: np.ndarray, hint: str) -> Any:
    """Rebuild a Python scalar stored as a 0-d array."""
    decoder = _DECODERS.get((hint, arr.dtype.kind))
    if decoder is None:
        raise _corrupt(arr, hint)
    try:
        return decoder(arr[()])
    except ValueError as exc:  # bad hex digits
        raise CorruptEntryError(f"cannot decode stored {hint!r} value: {exc}") from exc


def _decode_1d(arr: np.ndarray, hint: str) -> Any:
    """Rebuild a str/bytes that ended in NUL, stored as a 1-d array."""
    if arr.ndim != 1:
        raise _corrupt(arr, hint)
    if hint == "py:str" and arr.dtype == np.dtype("<u4"):
        try:
            return arr.tobytes().decode("utf-32-le", "surrogatepass")
        except UnicodeDecodeError as exc:  # a code point beyond U+10FFFF
            raise CorruptEntryError(f"cannot decode stored str: {exc}") from exc
    if hint == "py:bytes" and arr.dtype == np.dtype(np.uint8):
        return arr.tobytes()
    raise _corrupt(arr, hint)


def from_array(arr: np.ndarray, hint: str | None) -> Any:
    """Decode what :func:`to_array` encoded; a ``None`` hint returns *arr* unchanged."""
    if hint is None:
        return arr
    if hint == NP_SCALAR:
        if arr.ndim != 0:
            raise _corrupt(arr, hint)
        return arr[()]
    if hint not in _PY_HINTS.values():
        raise CorruptEntryError(f"unknown type hint {hint!r}")
    return _decode_0d(arr, hint) if arr.ndim == 0 else _decode_1d(arr, hint)
