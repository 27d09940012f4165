"""The ``.json`` codec: JSON-native values, with numpy arrays and scalars coerced.

JSON stores values, not Python types, so loading gives back JSON's types: a tuple
comes back as a list, a numpy array as (nested) lists of Python numbers or strings,
a numpy scalar as the Python scalar ``.item()`` returns, and a subclass of
``str``/``int``/``float``/``dict``/``list`` as the base type. NaN and the
infinities are written as ``NaN``/``Infinity`` (Python's JSON dialect) and read back.
"""

from __future__ import annotations

import json
from typing import Any, BinaryIO

import numpy as np

from ..exceptions import CorruptEntryError, UnsupportedValueError
from ._base import Codec

__all__ = ["JsonCodec"]

_CHUNK = 1 << 20
#: Array kinds whose ``tolist()`` is already JSON-native (bool, int, float, str).
_NATIVE_KINDS = frozenset("biufU")
_SCALARS = (str, int, float)  # bool is an int
_EXACT = frozenset((str, int, float, bool))


class _Rejected(Exception):
    """A value JSON cannot hold; collects the path to it while unwinding."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def _where(path: list[str]) -> str:
    """Render a path collected innermost-first as ``value['a'][0]``."""
    return "value" + "".join(reversed(path))


class _Walk:
    """State of one coercion: the containers being walked, and whether to go exact."""

    def __init__(self, exact: bool) -> None:
        self.active: set[int] = set()
        #: Also turn subclasses of str/int/float into the base type, as a load would.
        self.exact = exact


def _reloaded(value: Any) -> Any:
    """A subclass instance of str/int/float as JSON writes and reads it back (rare)."""
    return json.loads(_dumps(value))


def _coerce_array(value: np.ndarray, active: _Walk) -> Any:
    """An array as nested lists; datetimes are refused (tolist() would change them)."""
    if value.dtype.kind in "Mm":
        raise _Rejected(f"a {value.dtype} array (JSON has no date/time type)")
    if value.dtype.kind in _NATIVE_KINDS:
        return value.tolist()  # already JSON-native (and exact types): no need to walk it
    return _coerce(value.tolist(), active)


def _coerce_scalar(value: np.generic, active: _Walk) -> Any:
    """A numpy scalar as the Python scalar ``.item()`` gives."""
    if value.dtype.kind in "Mm":
        raise _Rejected(f"a numpy {value.dtype} scalar (JSON has no date/time type)")
    return _coerce(value.item(), active)


def _coerce_items(pairs: Any, active: _Walk, as_dict: bool) -> Any:
    """Coerce the items of a list (``(index, item)``) or dict (``(key, item)``)."""
    out: Any = {} if as_dict else []
    for key, item in pairs:
        if as_dict and not isinstance(key, str):
            raise _Rejected(f"a dict key of type {type(key).__name__} ({key!r})")
        try:
            coerced = _coerce(item, active)
        except _Rejected as exc:
            exc.path.append(f"[{key!r}]")
            raise
        if as_dict:
            text = str(key)
            out[text if type(text) is str or not active.exact else _reloaded(text)] = coerced
        else:
            out.append(coerced)
    return out


def _coerce_container(value: list[Any] | tuple[Any, ...] | dict[Any, Any], active: _Walk) -> Any:
    """Coerce a list, tuple or dict, refusing reference cycles."""
    if id(value) in active.active:
        raise _Rejected("a reference cycle (a container that contains itself)")
    active.active.add(id(value))
    try:
        if isinstance(value, dict):
            return _coerce_items(value.items(), active, as_dict=True)
        return _coerce_items(enumerate(value), active, as_dict=False)
    finally:
        active.active.discard(id(value))


def _coerce(value: Any, active: _Walk) -> Any:
    """Return *value* as JSON-native objects, or raise _Rejected."""
    if value is None or (isinstance(value, _SCALARS) and not isinstance(value, np.generic)):
        if active.exact and type(value) not in _EXACT:
            return _reloaded(value)
        return value
    if isinstance(value, np.generic):
        return _coerce_scalar(value, active)
    if isinstance(value, np.ndarray):
        return _coerce_array(value, active)
    if isinstance(value, (list, tuple, dict)):
        return _coerce_container(value, active)
    raise _Rejected(f"a {type(value).__module__}.{type(value).__qualname__}")


def to_json_native(value: Any, *, exact: bool = False) -> Any:
    """Return *value* with numpy arrays/scalars coerced and tuples turned into lists.

    Parameters
    ----------
    value : Any
        Any nesting of dicts (str keys), lists, tuples, str, int, float, bool,
        None, numpy arrays and numpy scalars.
    exact : bool
        Return exactly what decoding the encoded value would (see ``memory_form``).

    Returns
    -------
    Any
        An equivalent value made of JSON-native types only; with *exact*, of the
        exact types a load returns (no subclasses of str, int or float).

    Raises
    ------
    UnsupportedValueError
        Naming where the first value JSON cannot represent is (complex, bytes,
        sets, datetimes, generators, non-str dict keys, cycles, other objects).
    """
    try:
        return _coerce(value, _Walk(exact))
    except _Rejected as exc:
        raise UnsupportedValueError(
            f"JsonStorageInterface cannot store {_where(exc.path)}: it is {exc.reason}; "
            "JSON holds only dicts with str keys, lists, str, int, float, bool and None"
        ) from None
    except RecursionError:
        raise UnsupportedValueError("the value is nested too deeply for JSON") from None


def _dumps(native: Any) -> bytes:
    """UTF-8 JSON text; ASCII escapes if a lone surrogate cannot be UTF-8 encoded."""
    try:
        text = json.dumps(native, ensure_ascii=False, allow_nan=True)
    except (ValueError, RecursionError) as exc:  # an int past the str-digit limit
        raise UnsupportedValueError(f"cannot write the value as JSON: {exc}") from exc
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # \ud800-style escapes round-trip lone surrogates that UTF-8 cannot carry
        return json.dumps(native, ensure_ascii=True, allow_nan=True).encode("ascii")


class JsonCodec(Codec):
    """Store JSON-native values (and numpy data coerced to them) as UTF-8 JSON.

    Numpy arrays become nested lists (``tolist()``) and numpy scalars Python
    scalars (``item()``) anywhere inside the value; tuples become lists, because
    JSON has no tuple. ``NaN`` and infinities are kept.
    """

    name = "json"
    suffix = ".json"
    sequential = True

    def __repr__(self) -> str:
        return "JsonCodec()"

    def validate(self, value: Any) -> None:
        """Raise if *value* cannot be written as JSON.

        Parameters
        ----------
        value : Any
            The value to check.

        Raises
        ------
        UnsupportedValueError
            For complex numbers, bytes, sets, generators, datetimes, non-str dict
            keys, reference cycles and arbitrary objects.
        """
        _dumps(to_json_native(value))

    def memory_form(self, value: Any) -> Any:
        """*value* exactly as :meth:`read` returns it after :meth:`write`, without JSON text.

        Arrays become nested lists, numpy scalars Python scalars, tuples lists,
        and subclasses of str/int/float (an ``IntEnum``) their base type.

        Parameters
        ----------
        value : Any
            A value accepted by :meth:`validate`.

        Returns
        -------
        Any
            Equal to ``read(write(value))``, types included, in new containers.

        Examples
        --------
        >>> import numpy as np
        >>> JsonCodec().memory_form({"a": (np.arange(2), np.float32(0.5))})
        {'a': [[0, 1], 0.5]}
        """
        return to_json_native(value, exact=True)

    def write(self, value: Any, f: BinaryIO) -> str | None:
        """Write *value* as UTF-8 JSON to *f* in one ``write`` call.

        Parameters
        ----------
        value : Any
            A value accepted by :meth:`validate`.
        f : BinaryIO
            Write-only stream.

        Returns
        -------
        None
            JSON needs no hint.
        """
        f.write(_dumps(to_json_native(value)))
        return None

    def read(self, f: BinaryIO, hint: str | None = None) -> Any:
        """Read the JSON value from *f*, front to back.

        Parameters
        ----------
        f : BinaryIO
            Stream supporting ``read(n)``.
        hint : str or None
            Ignored.

        Returns
        -------
        Any
            The decoded value (dicts, lists, str, int, float, bool, None).

        Raises
        ------
        CorruptEntryError
            If the bytes are not valid JSON (UTF-8, -16 or -32 are accepted).
        """
        chunks = []
        while chunk := f.read(_CHUNK):
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise CorruptEntryError(f"not a valid JSON file: {exc}") from exc
