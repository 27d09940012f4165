"""Reading ``.npz`` archives for the npz codec: the manifest, then each member.

Uncompressed members are read straight from the archive into their arrays.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np

from ..exceptions import CorruptEntryError, PickleRequiredError
from . import _values
from ._npyformat import STREAM_CHUNK, ByteReader, decode_array

if TYPE_CHECKING:
    from .npz import NpzCodec

_MANIFEST = "__metricache__"
_FORMAT = 1
_KINDS = ("array", "scalar", "list", "tuple", "dict")
#: A zip local file header: signature, 5 shorts, CRC and sizes, name and extra lengths.
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")
_LOCAL_MAGIC = b"PK\x03\x04"
#: General purpose flags only zipfile handles: encrypted, patched, strong encryption.
_ZIPFILE_ONLY_FLAGS = 0x01 | 0x20 | 0x40
_UTF8_NAME_FLAG = 0x800
#: Stored members up to this size are fetched with their local header in one read.
_SMALL_MEMBER = 64 << 10
#: Archives up to this size are read into memory in one call first: zipfile's dozen
#: small reads and seeks on an unbuffered file cost more than the copy. Larger
#: buffers cross malloc's mmap threshold (128 KiB), whose fresh pages cost more.
_SMALL_ARCHIVE = 96 << 10


def _member(index: int) -> str:
    """Zip member name of item *index* (np.savez's naming, so np.load agrees)."""
    return f"arr_{index}.npy"


class _Reader:
    """Reads one archive for a codec: the manifest, then each member."""

    def __init__(self, codec: NpzCodec, zf: zipfile.ZipFile, *, check_crc: bool) -> None:
        self._allow_pickle = codec.allow_pickle
        self._interface = codec._interface
        self._zf = zf
        self._check_crc = check_crc

    def read(self) -> Any:
        """Dispatch on the presence of the manifest."""
        names = self._zf.namelist()
        if _MANIFEST + ".npy" in names:
            return self._read_manifested(names)
        return self._read_legacy(names)

    def _load(self, name: str) -> np.ndarray:
        """Decode the ``.npy`` member *name*."""
        info = self._zf.getinfo(name)
        stored = _open_stored(self._zf, info, check_crc=self._check_crc)
        if stored is not None:
            return self._decode(stored, name)
        with self._zf.open(info) as member:  # compressed, or flags only zipfile handles
            # a ZipExtFile is an io.BufferedIOBase, which has readinto; it tells
            # nothing of its size, so the header is bounded by the declared one
            return self._decode(cast(ByteReader, _Declared(member, info.file_size)), name)

    def _decode(self, member: ByteReader, name: str) -> np.ndarray:
        """Decode one member's ``.npy`` bytes, naming the member in errors."""
        try:
            return decode_array(
                member,
                allow_pickle=self._allow_pickle,
                interface=self._interface,
                # the CRC runs best on cache-sized chunks; without it, one read
                chunk=STREAM_CHUNK if self._check_crc else None,
            )
        except PickleRequiredError as exc:
            raise PickleRequiredError(f"member {name!r} of the .npz: {exc}") from None
        except CorruptEntryError as exc:
            raise CorruptEntryError(f"member {name!r} of the .npz: {exc}") from exc

    def _manifest(self) -> dict[str, Any]:
        """Load and sanity-check the manifest member."""
        raw = self._load(_MANIFEST + ".npy")
        if raw.ndim != 0 or raw.dtype.kind != "U":
            raise CorruptEntryError("the .npz manifest is not a 0-d unicode array")
        try:
            manifest = json.loads(str(raw[()]))
        except ValueError as exc:
            raise CorruptEntryError(f"the .npz manifest is not valid JSON: {exc}") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
            raise CorruptEntryError(
                f"unsupported .npz manifest (format {_format_of(manifest)!r}); it may have "
                "been written by a newer metricache"
            )
        return manifest

    def _read_manifested(self, names: list[str]) -> Any:
        """Rebuild a value written by this codec."""
        manifest = self._manifest()
        kind, hints, keys = manifest.get("kind"), manifest.get("hints"), manifest.get("keys")
        if kind not in _KINDS or not isinstance(hints, list) or len(names) != len(hints) + 1:
            raise CorruptEntryError(f"inconsistent .npz manifest: {manifest!r}")
        items = [_values.from_array(self._load(_member(i)), hint) for i, hint in enumerate(hints)]
        return _assemble(kind, items, keys)

    def _read_legacy(self, names: list[str]) -> Any:
        """Load a file without a manifest exactly as the previous package did."""
        # np.load's NpzFile drops the ".npy" suffix from member names
        members = {(n[:-4] if n.endswith(".npy") else n): n for n in names}
        if "arr_0" not in members:
            return {key: self._load_legacy(name) for key, name in members.items()}
        if len(members) == 1:
            return self._load_legacy(members["arr_0"])
        order = sorted(members, key=_legacy_index)
        return [self._load_legacy(members[key]) for key in order]

    def _load_legacy(self, name: str) -> Any:
        """Like NpzFile: a ``.npy`` member is an array, anything else its raw bytes."""
        with self._zf.open(name) as member:
            is_npy = member.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX
        return self._load(name) if is_npy else self._zf.read(name)


def _format_of(manifest: Any) -> Any:
    """The manifest's format field, if it has one."""
    return manifest.get("format") if isinstance(manifest, dict) else None


def _legacy_index(key: str) -> int:
    """The number in a legacy ``arr_N`` member name, for numeric ordering."""
    try:
        return int(key.partition("_")[2])
    except ValueError:
        raise CorruptEntryError(
            f"legacy .npz has an arr_0 member and also {key!r}, which is not arr_N"
        ) from None


def _assemble(kind: str, items: list[Any], keys: Any) -> Any:
    """Rebuild the container recorded in the manifest."""
    if kind == "dict":
        if not isinstance(keys, list) or len(keys) != len(items):
            raise CorruptEntryError("the .npz manifest's keys do not match its members")
        return dict(zip(keys, items, strict=True))
    if kind == "list":
        return items
    if kind == "tuple":
        return tuple(items)
    if len(items) != 1 or (kind == "array") != isinstance(items[0], np.ndarray):
        raise CorruptEntryError(f"the .npz manifest says {kind!r} but the member disagrees")
    return items[0]


def _in_memory_if_small(f: BinaryIO) -> BinaryIO:
    """*f*, or an in-memory copy of it if it is small (read from the start)."""
    if isinstance(f, io.BytesIO):
        return f
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    return io.BytesIO(f.read(size)) if size <= _SMALL_ARCHIVE else f


class _StoredMember:
    """An uncompressed member read straight from the archive; CRC-checked at its end.

    zipfile's reader would copy each chunk once more into a ``bytes`` object; this
    reads into the caller's buffer (the array) and checks the CRC-32 as zipfile does.
    """

    def __init__(self, source: Any, info: zipfile.ZipInfo, check_crc: bool) -> None:
        self._source = source
        self._name = info.filename
        self._left = info.file_size
        self._expected = info.CRC if check_crc else None
        self._crc = 0

    def read(self, size: int = -1, /) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data: bytes = self._source.read(size) if size else b""
        self._count(data)
        return data

    def readinto(self, buffer: Any, /) -> int:
        view = memoryview(buffer).cast("B")[: self._left]
        n: int = (self._source.readinto(view) or 0) if view.nbytes else 0
        self._count(view[:n])
        return n

    def bytes_left(self) -> int:
        """Bytes of the member not read yet (bounds what a header may declare)."""
        return self._left

    def _count(self, data: bytes | memoryview) -> None:
        """Fold *data* into the CRC; compare once the member's last byte is read."""
        self._left -= len(data)
        if self._expected is None:
            return
        self._crc = zlib.crc32(data, self._crc)
        if not self._left and self._crc != self._expected:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {self._name!r}")


def _open_stored(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, *, check_crc: bool
) -> _StoredMember | None:
    """A direct reader for a stored member, its local header checked; None if compressed."""
    if (
        info.compress_type != zipfile.ZIP_STORED
        or info.flag_bits & _ZIPFILE_ONLY_FLAGS
        or info.compress_size != info.file_size
    ):
        return None
    f: Any = zf.fp
    f.seek(info.header_offset)
    local = f.read(_LOCAL_HEADER.size)
    if len(local) != _LOCAL_HEADER.size:
        raise zipfile.BadZipFile("Truncated file header")
    magic, _, flags, *_, name_size, extra_size = _LOCAL_HEADER.unpack(local)
    if magic != _LOCAL_MAGIC:
        raise zipfile.BadZipFile("Bad magic number for file header")
    small = info.file_size <= _SMALL_MEMBER
    head = f.read(name_size + extra_size + (info.file_size if small else 0))
    name = head[:name_size].decode("utf-8" if flags & _UTF8_NAME_FLAG else "cp437")
    if name != info.orig_filename:
        raise zipfile.BadZipFile(
            f"File name in directory {info.orig_filename!r} and header {name!r} differ."
        )
    source = io.BytesIO(head[name_size + extra_size :]) if small else f
    return _StoredMember(source, info, check_crc)


class _Declared:
    """A compressed member with the uncompressed size its directory entry declares."""

    def __init__(self, member: Any, size: int) -> None:
        self._member, self._size = member, size

    def read(self, size: int = -1, /) -> bytes:
        data: bytes = self._member.read(size)
        return data

    def readinto(self, buffer: Any, /) -> int:
        n: int = self._member.readinto(buffer)
        return n

    def bytes_left(self) -> int:
        read: int = self._member.tell()
        return self._size - read
