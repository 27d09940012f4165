"""Decode a data file and checksum it in the same pass, whatever the codec needs.

A sequential codec (npy, json) reads front to back through a hashing wrapper, so
the bytes are hashed as they arrive. A seeking codec (a zip reader) gets the real
file while a background thread hashes it by ``pread`` (large local files), or an
in-memory copy hashed as it was read (small files, and stores without a file
descriptor).
"""

from __future__ import annotations

import io
import os
from typing import Any, BinaryIO, cast

from ._hashio import HashingReader, hash_fd_in_background
from .codecs import Codec

__all__ = ["decode_verified"]

#: Seeking codecs read files up to this size into memory in one read: faster
#: than decoding the file while another thread hashes it.
_IN_MEMORY_MAX = 96 * 1024

Decoded = tuple[Any, int, "str | None"]


def decode_verified(
    codec: Codec, f: BinaryIO, hint: str | None, *, hashing: bool, recorded: bool = True
) -> Decoded:
    """``(value, size, checksum)`` of file *f*; checksum None when not *hashing*.

    *recorded* is False for legacy files, whose codec checks (zip CRCs) are then
    the only integrity check there is.
    """
    if codec.sequential:
        reader = HashingReader(f, hashing=hashing)
        value = codec.read(cast(BinaryIO, reader), hint)
        size, checksum = reader.finish()
        return value, size, checksum
    return _decode_seekable(codec, f, hint, hashing, recorded)


def _decode_seekable(
    codec: Codec, f: BinaryIO, hint: str | None, hashing: bool, recorded: bool
) -> Decoded:
    fd = _fileno(f)
    if fd is None:
        return _decode_in_memory(codec, f, hint, hashing)
    size = os.fstat(fd).st_size
    if not hashing:
        return codec.read(f, hint), size, None  # only the size is checked
    pending = hash_fd_in_background(fd) if size > _IN_MEMORY_MAX else None
    if pending is None:  # a small file, or no pread on this platform
        return _decode_in_memory(codec, f, hint, hashing)
    value = codec.read_verified(f, hint) if recorded else codec.read(f, hint)
    size, checksum = pending.result()
    return value, size, checksum


def _decode_in_memory(codec: Codec, f: BinaryIO, hint: str | None, hashing: bool) -> Decoded:
    """Read the whole file in one read (hashing it), then decode the copy."""
    reader = HashingReader(f, hashing=hashing)
    value = codec.read(io.BytesIO(reader.read()), hint)
    size, checksum = reader.finish()
    return value, size, checksum


def hash_whole(f: BinaryIO) -> tuple[int, str]:
    """``(size, checksum)`` of everything left in *f*."""
    size, checksum = HashingReader(f).finish()
    assert checksum is not None
    return size, checksum


def _fileno(f: BinaryIO) -> int | None:
    """The OS file descriptor behind *f*, if it has one."""
    try:
        return f.fileno()
    except (AttributeError, OSError):  # io.UnsupportedOperation is an OSError
        return None
