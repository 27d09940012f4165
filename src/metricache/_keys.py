"""Canonical parameter keys: when two calls of a collected metric are the same call.

A key is a hashable, type-tagged description of a value's content, never its
``repr``. Two arguments are *equal* when their keys are equal:

* integers by value, whatever their type: ``3``, ``np.int64(3)``, ``np.uint8(3)``
  (``True`` is a bool, not the integer 1);
* ``float`` and ``np.float64`` by exact value (``float.hex``): ``-0.0`` is not
  ``0.0``, every NaN equals every NaN, ``inf`` is ``inf``; ``1.0`` is not ``1``;
* other float widths (``np.float16``, ``np.float32``, ``np.longdouble``) and
  complex widths by dtype and exact value: ``np.float32(0.5)`` is not ``0.5``,
  because arithmetic on it rounds differently (``np.float32(0.5) / 3 != 0.5 / 3``);
* ``complex`` and ``np.complex128`` by exact value of both parts;
* ``str``, ``bytes``, ``None``, bools by value; enum members by class and name;
* tuples, lists, dicts (in any order), sets recursively, each kind apart;
* arrays by dtype, shape and a 128-bit BLAKE2 digest of their bytes (NaNs made
  canonical, byte order native), object arrays element by element;
* other hashable values by their class and ``==``. Values whose ``repr`` is an
  address (functions, lambdas, plain objects) have no identity a cache folder
  could keep: they need a ``name_generation_function``.
"""

from __future__ import annotations

import enum
import hashlib
import types
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from .exceptions import InvalidMetricNameError

__all__ = ["Key", "call_digest", "describe", "param_key"]

Key = Hashable
#: How long a shown parameter value may be in an error message.
SHOWN_CHARS = 80


def param_key(value: Any) -> Key:
    """The canonical key of one argument value (see the module docstring).

    >>> param_key(3) == param_key(np.int64(3)) != param_key(3.0)
    True
    >>> param_key(float("nan")) == param_key(float("nan")) != param_key(-0.0)
    True
    """
    convert = _EXACT.get(type(value))
    if convert is not None:
        return convert(value)
    return _other_key(value)


def call_digest(base: str, key: Key) -> str:
    """16 hex digits identifying *key* of *base*, the same in every process."""
    # repr() of a key is stable: it holds only str, int, bytes and tuples of them
    # (floats as hex text, sets and dicts sorted), plus user values' own reprs.
    text = repr((base, key)).encode("utf-8", "backslashreplace")
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def describe(value: Any, limit: int = SHOWN_CHARS) -> str:
    """A short text of *value* for messages: type-tagged numpy values, at most *limit* chars."""
    if isinstance(value, (np.str_, np.bytes_)):
        text = f"np.{type(value).__name__}({value.item()!r})"
    elif isinstance(value, np.generic):  # the same text on numpy 1 and 2
        text = f"np.{type(value).__name__}({value!s})"
    elif isinstance(value, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        text = f"<{type(value).__name__} {value.__name__}>"  # the address says nothing
    elif isinstance(value, np.ndarray):
        text = f"array(dtype={value.dtype}, shape={value.shape}: {np.array2string(value)})"
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _float_text(value: float) -> str:
    return "nan" if value != value else float.hex(value)


def _complex_key(value: complex) -> Key:
    return ("complex", _float_text(value.real), _float_text(value.imag))


def _sorted_keys(keys: Any) -> tuple[Key, ...]:
    # Sorted by repr so the order (and call_digest) does not depend on str hashing.
    return tuple(sorted(keys, key=repr))


def _dict_key(value: dict[Any, Any]) -> Key:
    items = ((param_key(k), param_key(v)) for k, v in value.items())
    return ("dict", _sorted_keys(items))


_EXACT: dict[type, Callable[[Any], Key]] = {
    int: lambda v: ("int", v),
    bool: lambda v: ("bool", v),
    str: lambda v: ("str", v),
    float: lambda v: ("float", _float_text(v)),
    type(None): lambda v: ("none",),
    bytes: lambda v: ("bytes", v),
    complex: _complex_key,
    tuple: lambda v: ("tuple", tuple(map(param_key, v))),
    list: lambda v: ("list", tuple(map(param_key, v))),
    dict: _dict_key,
    frozenset: lambda v: ("frozenset", _sorted_keys(map(param_key, v))),
    set: lambda v: ("set", _sorted_keys(map(param_key, v))),
}


# The common numpy scalar types too, so np.int64(3) costs what 3 does.
_EXACT.update(
    {t: (lambda v: ("int", int(v))) for t in np.sctypeDict.values() if issubclass(t, np.integer)}
)
_EXACT.update(
    {np.float64: lambda v: ("float", _float_text(float(v))), np.bool_: lambda v: ("bool", bool(v))}
)


def _other_key(value: Any) -> Key:
    """Keys of numpy values, enums, subclasses of builtins and other hashable objects."""
    if isinstance(value, np.generic):
        return _numpy_scalar_key(value)
    if isinstance(value, np.ndarray):
        return _array_key(value)
    if isinstance(value, enum.Enum):
        return ("enum", _qualname(type(value)), value.name)
    for base, convert in _EXACT.items():
        if isinstance(value, base):  # a namedtuple, an int subclass, ...
            return ("subclass", _qualname(type(value)), convert(value))
    if _identity_repr(value):
        raise _no_identity(value)
    try:
        hash(value)
    except TypeError:
        raise _no_identity(value, "it is unhashable and of a type metricache cannot key") from None
    return ("object", _qualname(type(value)), value)


def _numpy_scalar_key(value: np.generic) -> Key:
    if isinstance(value, np.bool_):
        return ("bool", bool(value))
    if isinstance(value, np.integer):
        return ("int", int(value))
    if isinstance(value, np.float64):  # a float subclass that computes like float
        return ("float", _float_text(float(value)))
    if isinstance(value, np.complex128):
        return _complex_key(complex(value))
    if isinstance(value, (np.str_, np.bytes_)):
        return param_key(value.item())
    if isinstance(value, np.floating):
        return ("np", value.dtype.name, _numpy_float_text(value))
    if isinstance(value, np.complexfloating):
        parts = (_numpy_float_text(value.real), _numpy_float_text(value.imag))
        return ("np", value.dtype.name, *parts)
    return ("np", value.dtype.str, value.tobytes())  # datetime64, timedelta64, void


def _numpy_float_text(value: np.floating[Any]) -> str:
    # The shortest text that round-trips within the dtype: exact, and longdouble-safe.
    return "nan" if np.isnan(value) else np.format_float_scientific(value, unique=True)


def _array_key(array: np.ndarray[Any, Any]) -> Key:
    if array.dtype == object:
        return ("ndarray", "O", array.shape, tuple(map(param_key, array.flat)))
    if array.dtype.hasobject:
        raise _no_identity(array, "it is a structured array with object fields")
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    flat = np.ascontiguousarray(array).reshape(-1)
    if array.dtype.kind in "fc":
        floats = flat.view(flat.real.dtype) if array.dtype.kind == "c" else flat
        nans = np.isnan(floats)
        if nans.any():  # NaNs differ in sign and payload bits; as parameters they are one
            floats = np.where(nans, floats.dtype.type(np.nan), floats)
            flat = floats.view(array.dtype) if array.dtype.kind == "c" else floats
    digest = hashlib.blake2b(flat.view(np.uint8).data, digest_size=16).digest()
    return ("ndarray", array.dtype.str, array.shape, digest)


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_OBJECT_REPR: object = object.__repr__


def _identity_repr(value: Any) -> bool:
    """Whether *value*'s repr names its address, so no other process can recognise it."""
    if isinstance(value, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        return True
    return getattr(type(value), "__repr__", None) is _OBJECT_REPR and not isinstance(value, type)


def _no_identity(value: Any, why: str = "") -> InvalidMetricNameError:
    why = why or "its repr is an address, which differs in every process"
    return InvalidMetricNameError(
        f"the parameter value {describe(value)} cannot name a stored metric: {why}; "
        "pass name_generation_function= to collect() to name such parameters"
    )
