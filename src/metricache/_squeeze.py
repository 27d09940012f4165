"""Compression of the packed index's small values: records and tiny data, a few times smaller.

A record is ~600 bytes of JSON whose field names and shapes repeat from entry to
entry, and a tiny array's ``.npy`` bytes are mostly header padding; raw DEFLATE
with a preset dictionary of those common parts (:data:`_DICTIONARY`) makes a
typical record ~175 bytes and a 10-float array ~40, for ~15 us to compress
and ~5 us to decompress (a 2 KiB window: the values are small). Only values of up
to :data:`MAX_SQUEEZED` bytes are tried: there the dictionary pays, while larger
ones (mostly array data, often incompressible) would cost milliseconds on every
write (a 64 KiB array of random floats: ~7 ms, against ~0.1 ms for ``np.save``).

A compressed value is marked by its identity: the index stores ``z1:<ident>``
(see :mod:`metricache._index`), so no byte of any value, whatever its format, is
ever mistaken for the mark. The dictionary is part of the format: ``z1`` values
are only ever read with this exact dictionary (a new one needs a new mark).
"""

from __future__ import annotations

import zlib

from .exceptions import CorruptEntryError

__all__ = ["MARK", "MAX_SQUEEZED", "squeeze", "unsqueeze"]

#: The identity prefix of a compressed value.
MARK = "z1:"
_WBITS = -11  # raw DEFLATE, a 2 KiB window (the dictionary and a value fit in it)
_LEVEL = 1
_MEM_LEVEL = 8  # zlib's default; faster than less memory on incompressible bytes
#: Larger values are stored as they are.
MAX_SQUEEZED = 2048
#: Smaller savings are not worth a decompression on every read.
_MIN_SAVING = 16
#: The common parts of records and of small ``.npy`` data. Never change it: every
#: ``z1`` value in every packed folder was compressed with it.
_DICTIONARY = (
    b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (10,), }"
    + b" " * 60
    + b"\n"
    + b'{"format":1,"current":{"name":"","timestamp":"2026-01-01T00:00:00.000000+00:00",'
    b'"duration":0.0001,"size":208,"checksum":"xxh3_64:","codec":"npy",'
    b'"storage":"AutoStorageInterface","version":"0.2.0","hint":null,"file_id":"",'
    b'"legacy":false,"value_id":"xxh3_128:","dependencies":[],"code":[["algorithm",'
    b'"ast-1"],["partial",""],["code",""],["unknown:__main__:",""]],"invalidated":null,'
    b'"family":"","params":"(1,)"},"previous":[]}'
    b'"codec":"npz","storage":"NpyStorageInterface","storage":"NpzStorageInterface",'
    b'"codec":"json","storage":"JsonStorageInterface","hint":"list","hint":"tuple"'
)


def squeeze(data: bytes | memoryview, ident: str) -> tuple[bytes | memoryview, str]:
    """``(value, identity)`` as the index stores them: compressed and marked if it pays."""
    if len(data) > MAX_SQUEEZED:
        return data, ident
    packer = zlib.compressobj(
        _LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, _DICTIONARY
    )
    small = packer.compress(data) + packer.flush()
    if len(small) + _MIN_SAVING > len(data):
        return data, ident
    return small, MARK + ident


def unsqueeze(data: bytes, ident: str, where: str) -> tuple[bytes, str]:
    """``(value, identity)`` as stored before :func:`squeeze`; *where* names it in errors."""
    if not ident.startswith(MARK):
        return data, ident
    unpacker = zlib.decompressobj(_WBITS, _DICTIONARY)
    try:
        value = unpacker.decompress(data) + unpacker.flush()
    except zlib.error as err:
        raise CorruptEntryError(
            f"{where} is damaged: its compressed bytes do not decode ({err})"
        ) from None
    if not unpacker.eof or unpacker.unused_data:
        raise CorruptEntryError(f"{where} is damaged: its compressed bytes are cut or padded")
    return value, ident[len(MARK) :]
