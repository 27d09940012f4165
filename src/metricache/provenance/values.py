"""Value ids: a content hash of a stored value, computed while it is written.

A value id is xxh3-128 over a canonical encoding of the value: every item is
type-tagged and length-prefixed, arrays carry their dtype, shape and memory order,
containers their kind, length and keys, so ``1``, ``1.0``, ``"1"``, ``[1]``, a
reshaped or a transposed array never share an id. The walk keeps its own stack, so
nesting has no depth limit.

An array's bytes are hashed once: :class:`ValueIds` watches the writes a codec
makes, and when the codec writes an array's own memory (npy and uncompressed npz
do) its digest is taken from those writes, chunk by chunk, while they pass
through the checksum; only arrays written some other way (JSON, deflated npz,
small arrays) are hashed directly.

A value that is not plain data (a DataFrame, an Arrow table, any object) has no
canonical encoding of its own: its id is its type and the hash of the bytes its
codec writes, taken from the same pass (codecs write equal values as equal bytes),
never a pickle of it made just for the id.

Examples
--------
>>> import numpy as np
>>> len({value_id(v) for v in (1, 1.0, "1", [1], (1,), np.int64(1))})
6
>>> a = np.arange(6).reshape(2, 3)
>>> value_id(a) == value_id(a.copy()), value_id(a) == value_id(a.T)
(True, False)
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import xxhash

__all__ = ["ALGORITHM", "ValueIds", "encode_into", "value_id"]

ALGORITHM = "xxh3_128"
#: Arrays at least this large are taken from the codec's writes when it writes
#: their memory; smaller ones are hashed directly (cheaper than the bookkeeping).
_WATCH_MIN = 64 << 10
_CHUNK = 1 << 20


class _Exit:
    """Marks the end of a container on the walk's stack (cycle bookkeeping)."""

    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key


def _frame(h: Any, tag: bytes, payload: bytes) -> None:
    h.update(tag + len(payload).to_bytes(8, "little") + payload)


def _order(arr: np.ndarray) -> bytes:
    """The memory order an array is stored in: Fortran only when it is not C-contiguous."""
    return b"F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else b"C"


def _raw_digest(arr: np.ndarray) -> bytes:
    """xxh3-128 of an array's bytes in its storage order."""
    h = xxhash.xxh3_128()
    flat = arr.ravel(order="F" if _order(arr) == b"F" else "C")
    data = np.ascontiguousarray(flat).view(np.uint8).data
    for start in range(0, data.nbytes, _CHUNK):
        h.update(data[start : start + _CHUNK])
    return h.digest()


def _array_header(arr: np.ndarray) -> bytes:
    dtype = arr.dtype
    described = repr(dtype.descr) if dtype.fields is not None else dtype.str
    kind = type(arr).__module__ + "." + type(arr).__qualname__
    return f"{kind}|{described}|{arr.shape}|".encode() + _order(arr)


def _scalar(h: Any, value: Any) -> bool:
    """Encode an atomic value; False if *value* is not one."""
    kind = type(value)
    if value is None:
        _frame(h, b"N", b"")
    elif kind is bool:
        _frame(h, b"?", b"\x01" if value else b"\x00")
    elif kind is int:
        _frame(h, b"i", str(value).encode())
    elif kind is float:
        _frame(h, b"f", struct.pack("<d", value))
    elif kind is complex:
        _frame(h, b"c", struct.pack("<dd", value.real, value.imag))
    elif kind is str:
        _frame(h, b"s", value.encode("utf-8", "surrogatepass"))
    elif kind in (bytes, bytearray):
        _frame(h, b"b" if kind is bytes else b"B", bytes(value))
    elif isinstance(value, np.generic) and not value.dtype.hasobject:
        _frame(h, b"g", repr(value.dtype.descr).encode() + b"|" + value.tobytes())
    else:
        return False
    return True


def _children(h: Any, value: Any) -> list[Any] | None:
    """Encode a container's header; return its items in order (None: not a container)."""
    kind = type(value)
    if kind in (list, tuple):
        _frame(h, b"l" if kind is list else b"t", str(len(value)).encode())
        return list(value)
    if kind is dict:
        _frame(h, b"d", str(len(value)).encode())
        return [part for pair in value.items() for part in pair]
    if kind in (set, frozenset):
        items = sorted(value, key=value_id)
        _frame(h, b"S" if kind is set else b"Z", str(len(items)).encode())
        return items
    return None


def encode_into(
    h: Any,
    value: Any,
    digest: Callable[[np.ndarray], bytes] = _raw_digest,
    *,
    pickles: bool = True,
) -> None:
    """Feed the canonical encoding of *value* to the hasher *h*.

    *digest* gives an array's data hash (by default, hashing it now). A value of
    another type is encoded by its type and pickle (unless not *pickles*);
    ``TypeError`` if it has no canonical form.
    """
    stack: list[Any] = [value]
    active: list[int] = []
    while stack:
        item = stack.pop()
        if type(item) is _Exit:
            active.remove(item.key)
            continue
        if _scalar(h, item):
            continue
        if isinstance(item, np.ndarray):
            _encode_array(h, item, digest, stack)
            continue
        if id(item) in active:
            # A container holding itself: name how far up, not the item again.
            _frame(h, b"R", str(len(active) - active.index(id(item))).encode())
            continue
        items = _children(h, item)
        if items is None:
            if not pickles:
                raise TypeError(f"{type(item).__qualname__} is not plain data")
            _frame(h, b"p", _pickled(item))
            continue
        active.append(id(item))
        stack.append(_Exit(id(item)))
        stack.extend(reversed(items))


def _encode_array(
    h: Any, arr: np.ndarray, digest: Callable[[np.ndarray], bytes], stack: list[Any]
) -> None:
    if arr.dtype.hasobject:
        _frame(h, b"O", _array_header(arr))
        stack.extend(reversed(arr.ravel(order="K").tolist()))
        return
    _frame(h, b"a", _array_header(arr) + digest(arr))


def _pickled(item: Any) -> bytes:
    kind = type(item)
    try:
        data = pickle.dumps(item, protocol=5)
    except Exception as err:  # noqa: BLE001 - any pickling failure means "no canonical form"
        raise TypeError(f"no canonical form for {kind.__qualname__}: {err}") from None
    return f"{kind.__module__}.{kind.__qualname__}|".encode() + data


def value_id(value: Any) -> str:
    """The value id of *value* (``"xxh3_128:<hex>"``); ``TypeError`` if it has none."""
    h = xxhash.xxh3_128()
    encode_into(h, value)
    return f"{ALGORITHM}:{h.hexdigest()}"


def _large_arrays(value: Any) -> Iterator[np.ndarray]:
    """The contiguous, non-object arrays a codec may write straight from memory."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            contiguous = item.flags.c_contiguous or item.flags.f_contiguous
            if contiguous and not item.dtype.hasobject and item.nbytes >= _WATCH_MIN:
                yield item
        elif type(item) in (list, tuple) and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item)
        elif type(item) is dict and id(item) not in seen:
            seen.add(id(item))
            stack.extend(item.values())


_PLAIN = (type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict)


def _plain(value: Any) -> bool:
    """Whether *value*'s top level has a canonical encoding (else its bytes stand in)."""
    kind = type(value)
    return (
        kind in _PLAIN or kind in (set, frozenset) or isinstance(value, (np.ndarray, np.generic))
    )


def _address(data: Any) -> int:
    return int(np.frombuffer(data, np.uint8).__array_interface__["data"][0])


class ValueIds:
    """The value id of one value being written, its array bytes taken from the writes.

    :meth:`sink` is handed each buffer written (see ``HashingWriter``): a write of
    a watched array's memory returns the hasher to feed it to, in order. A watched
    array whose writes did not all pass is hashed directly by :meth:`finish`.
    """

    def __init__(self, value: Any) -> None:
        self.value = value
        # Not plain data: the id comes from every byte the codec writes.
        self._stream = None if _plain(value) else xxhash.xxh3_128()
        # start address -> (array, hasher, bytes fed so far)
        self._watched: dict[int, list[Any]] = {}
        self._next: dict[int, int] = {}  # address a run continues at -> its start
        for arr in _large_arrays(value):
            start = _address(arr.ravel(order="A").view(np.uint8))
            self._watched.setdefault(start, [arr, xxhash.xxh3_128(), 0])
            self._next[start] = start

    def sink(self, view: memoryview) -> Any:
        """The hasher to feed *view* to (it continues a watched array), or None."""
        if self._stream is not None:
            return self._stream
        if view.nbytes < _WATCH_MIN or not self._next:
            return None
        at = _address(view)
        start = self._next.pop(at, None)
        if start is None:
            return None
        state = self._watched[start]
        state[2] += view.nbytes
        if state[2] < state[0].nbytes:
            self._next[at + view.nbytes] = start
        return state[1]

    def _digest(self, arr: np.ndarray) -> bytes:
        if self._watched and arr.nbytes >= _WATCH_MIN:
            state = self._watched.get(_address(arr.ravel(order="A").view(np.uint8)))
            if state is not None and state[0] is arr and state[2] == arr.nbytes:
                return bytes(state[1].digest())
        return _raw_digest(arr)

    def finish(self) -> str | None:
        """The value id (None for a value without a canonical form)."""
        h = xxhash.xxh3_128()
        if self._stream is not None:
            kind = type(self.value)
            _frame(h, b"w", f"{kind.__module__}.{kind.__qualname__}".encode())
            _frame(h, b"W", self._stream.digest())
            return f"{ALGORITHM}:{h.hexdigest()}"
        try:
            encode_into(h, self.value, self._digest)
        except TypeError:
            return None
        return f"{ALGORITHM}:{h.hexdigest()}"
