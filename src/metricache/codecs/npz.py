"""The ``.npz`` codec: an array, a scalar, or a flat list/tuple/dict of them in a zip.

Members are standard ``.npy`` files named ``arr_0.npy`` ... ``arr_{n-1}.npy`` holding
the items in order (dict keys live in the manifest, so any ``str`` key works, even
``""`` or ``"a/b"``), plus ``__metricache__.npy``: a 0-d unicode array holding the
JSON manifest, for example::

    {"format": 1, "kind": "dict", "hints": [null, "py:int"], "keys": ["a", "b"]}

``kind`` is ``"array"``, ``"scalar"``, ``"list"``, ``"tuple"`` or ``"dict"``; ``hints``
has one entry per member (see :mod:`metricache.codecs._values`); ``keys`` is only
present for a dict. ``np.load`` reads every file this codec writes.

Files without a manifest were written by the previous package with ``np.savez`` and
load exactly as it loaded them: no ``arr_0`` member gives a dict of all members, a
lone ``arr_0`` gives that array, otherwise a list ordered by the number after
``arr_``.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from typing import Any, BinaryIO, cast

import numpy as np

from ..exceptions import CorruptEntryError, UnsupportedValueError
from . import _values
from ._base import Codec
from .npy import ByteReader, decode_array, encode_array

__all__ = ["NpzCodec"]

_MANIFEST = "__metricache__"
_FORMAT = 1
_KINDS = ("array", "scalar", "list", "tuple", "dict")
#: Everything reading a damaged zip member can raise: bad headers or CRC
#: (BadZipFile), cut-off deflate data (EOFError, zlib.error), unknown compression
#: (NotImplementedError), encryption (RuntimeError), a missing member (KeyError).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    OSError,
    NotImplementedError,
    RuntimeError,
    KeyError,
    ValueError,
)
#: zipfile's threshold above which a member needs ZIP64 records.
_ZIP64_LIMIT = (1 << 31) - 1


def _member(index: int) -> str:
    """Zip member name of item *index* (np.savez's naming, so np.load agrees)."""
    return f"arr_{index}.npy"


def _nested_error(where: str, item: Any) -> UnsupportedValueError:
    """The error for a container inside a container."""
    return UnsupportedValueError(
        f"{where} is {_values.describe(item)}: NpzStorageInterface stores one level of "
        "list/tuple/dict of arrays and scalars, not nested containers; convert "
        "rectangular data to an array (np.asarray), store ragged rows as a list of "
        "1-d arrays, or flatten nested dicts into one dict"
    )


class NpzCodec(Codec):
    """Store an array, a scalar, or a list/tuple/dict of them as an ``.npz`` file.

    The container kind (list, tuple, dict, single array, scalar), dict keys and
    item order are recorded in a manifest member, so what is loaded has the type
    that was stored; scalars keep their exact numpy or Python type.

    Parameters
    ----------
    compress : bool, default False
        Deflate the members (``zipfile.ZIP_DEFLATED``, as :func:`numpy.savez_compressed`).
    allow_pickle : bool, default False
        Store and load object arrays by pickling them. Unpickling can run arbitrary
        code, so only enable it for caches nobody untrusted can write.
    list_limit : int or None, default None
        Reject lists and tuples with more items than this (one zip member per item
        gets slow; an array is usually what was meant). None means no limit.

    Notes
    -----
    Reading a member that is a pickled object array while *allow_pickle* is False
    raises :class:`~metricache.CorruptEntryError` before anything is unpickled.
    """

    name = "npz"
    suffix = ".npz"
    sequential = False
    _interface = "NpzStorageInterface"

    def __init__(
        self, compress: bool = False, allow_pickle: bool = False, list_limit: int | None = None
    ) -> None:
        self.compress = compress
        self.allow_pickle = allow_pickle
        self.list_limit = list_limit

    def __repr__(self) -> str:
        return (
            f"NpzCodec(compress={self.compress!r}, allow_pickle={self.allow_pickle!r}, "
            f"list_limit={self.list_limit!r})"
        )

    # -- validation ---------------------------------------------------------------

    def _check_item(self, item: Any, where: str) -> None:
        """Raise unless *item* is an array or scalar that round-trips."""
        if _values.check_item(item, allow_pickle=self.allow_pickle, interface=self._interface):
            return
        if isinstance(item, (list, tuple, dict, set, frozenset)):
            raise _nested_error(where, item)
        raise UnsupportedValueError(
            f"{where} is {_values.describe(item)}, which {self._interface} cannot store; "
            "items must be numpy arrays or numpy/Python scalars"
        )

    def _check_length(self, value: list[Any] | tuple[Any, ...]) -> None:
        """Enforce *list_limit*."""
        if self.list_limit is not None and len(value) > self.list_limit:
            raise UnsupportedValueError(
                f"{type(value).__name__} of {len(value)} items exceeds "
                f"list_limit={self.list_limit}; store an array instead or raise the limit"
            )

    def _plan(self, value: Any) -> tuple[str, list[str] | None, list[Any]]:
        """Validate *value* and split it into ``(kind, dict keys, items)``."""
        if isinstance(value, np.ndarray) or _values.is_scalar(value):
            self._check_item(value, "the value")
            return ("array" if isinstance(value, np.ndarray) else "scalar"), None, [value]
        if type(value) in (list, tuple):
            self._check_length(value)
            for i, item in enumerate(value):
                self._check_item(item, f"item {i} of the {type(value).__name__}")
            return type(value).__name__, None, list(value)
        if type(value) is dict:
            return "dict", self._dict_keys(value), list(value.values())
        raise UnsupportedValueError(self._top_level_error(value))

    def _dict_keys(self, value: dict[Any, Any]) -> list[str]:
        """Validate a dict's keys and values; return its keys as str."""
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnsupportedValueError(
                    f"dict key {key!r} is {_values.describe(key)}; {self._interface} "
                    "only stores dicts with str keys"
                )
            self._check_item(item, f"the value of dict key {key!r}")
        return [str(key) for key in value]

    def _top_level_error(self, value: Any) -> str:
        """The message for a value that is none of the supported kinds."""
        if isinstance(value, (list, tuple, dict)):  # subclasses: namedtuple, OrderedDict
            return (
                f"{_values.describe(value)} would load back as a plain "
                f"{type(value).__mro__[-2].__name__}; convert it to one before storing"
            )
        return (
            f"{self._interface} cannot store {_values.describe(value)}: it stores a "
            "numpy array, a numpy/Python scalar, or a list, tuple or dict of them"
        )

    def validate(self, value: Any) -> None:
        """Raise if *value* cannot be stored faithfully.

        Parameters
        ----------
        value : Any
            The value to check.

        Raises
        ------
        UnsupportedValueError
            For nested or ragged containers, non-str dict keys, object data without
            *allow_pickle*, a list/tuple longer than *list_limit*, ndarray subclasses
            and anything that is not an array, scalar, list, tuple or dict.
        """
        self._plan(value)

    # -- writing ------------------------------------------------------------------

    def write(self, value: Any, f: BinaryIO) -> str | None:
        """Write *value* as an ``.npz`` file to the write-only, unseekable *f*.

        Every member is encoded (and object arrays pickled) before the first byte
        is written, so an error leaves *f* untouched.

        Parameters
        ----------
        value : Any
            A value accepted by :meth:`validate`.
        f : BinaryIO
            Write-only stream; needs ``write`` and ``flush``.

        Returns
        -------
        None
            The manifest inside the file records everything needed to read it.
        """
        kind, keys, items = self._plan(value)
        encoded = [_values.to_array(item) for item in items]
        manifest: dict[str, Any] = {
            "format": _FORMAT,
            "kind": kind,
            "hints": [hint for _, hint in encoded],
        }
        if keys is not None:
            manifest["keys"] = keys
        # sort_keys: identical values give identical bytes (and checksums)
        text = np.asarray(json.dumps(manifest, sort_keys=True), dtype=np.str_)
        members = [(_MANIFEST + ".npy", encode_array(text))]
        members += [
            (_member(i), encode_array(arr, interface=self._interface))
            for i, (arr, _) in enumerate(encoded)
        ]
        self._write_zip(f, members)
        return None

    def _write_zip(self, f: BinaryIO, members: list[tuple[str, list[Any]]]) -> None:
        """Stream the encoded members into a zip on *f* (zipfile handles no-seek output)."""
        compression = zipfile.ZIP_DEFLATED if self.compress else zipfile.ZIP_STORED
        with zipfile.ZipFile(f, "w", compression, allowZip64=True) as zf:
            for name, pieces in members:
                # default 1980 timestamp and fixed mode: same value, same bytes
                info = zipfile.ZipInfo(name)
                info.compress_type = compression
                info.external_attr = 0o600 << 16
                # a known size lets zipfile add ZIP64 records only when needed
                info.file_size = sum(memoryview(p).nbytes for p in pieces)
                with zf.open(info, "w", force_zip64=info.file_size > _ZIP64_LIMIT) as m:
                    for piece in pieces:
                        m.write(piece)

    # -- reading ------------------------------------------------------------------

    def read(self, f: BinaryIO, hint: str | None = None) -> Any:
        """Read the value back from *f*, an in-memory seekable buffer.

        Parameters
        ----------
        f : BinaryIO
            Seekable stream (e.g. :class:`io.BytesIO`) holding the whole file.
        hint : str or None
            Ignored: the manifest inside the file carries the type information.

        Returns
        -------
        Any
            The stored value; a legacy file (no manifest) loads as the previous
            package loaded it.

        Raises
        ------
        CorruptEntryError
            If *f* is not a valid zip, a member is damaged or not a ``.npy`` file,
            the manifest is malformed, or a member is a pickled object array while
            *allow_pickle* is False.
        """
        try:
            with zipfile.ZipFile(f) as zf:
                return self._read_zip(zf)
        except CorruptEntryError:
            raise
        except _ZIP_ERRORS as exc:
            raise CorruptEntryError(f"not a valid .npz file: {exc!r}") from exc

    def _read_zip(self, zf: zipfile.ZipFile) -> Any:
        """Dispatch on the presence of the manifest."""
        names = zf.namelist()
        if _MANIFEST + ".npy" in names:
            return self._read_manifested(zf, names)
        return self._read_legacy(zf, names)

    def _load(self, zf: zipfile.ZipFile, name: str) -> np.ndarray:
        """Decode the ``.npy`` member *name*."""
        with zf.open(name) as member:
            try:
                return decode_array(
                    cast(ByteReader, member),  # a ZipExtFile: io.BufferedIOBase has readinto
                    allow_pickle=self.allow_pickle,
                    interface=self._interface,
                )
            except CorruptEntryError as exc:
                raise CorruptEntryError(f"member {name!r} of the .npz: {exc}") from exc

    def _manifest(self, zf: zipfile.ZipFile) -> dict[str, Any]:
        """Load and sanity-check the manifest member."""
        raw = self._load(zf, _MANIFEST + ".npy")
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

    def _read_manifested(self, zf: zipfile.ZipFile, names: list[str]) -> Any:
        """Rebuild a value written by this codec."""
        manifest = self._manifest(zf)
        kind, hints, keys = manifest.get("kind"), manifest.get("hints"), manifest.get("keys")
        if kind not in _KINDS or not isinstance(hints, list) or len(names) != len(hints) + 1:
            raise CorruptEntryError(f"inconsistent .npz manifest: {manifest!r}")
        items = [
            _values.from_array(self._load(zf, _member(i)), hint) for i, hint in enumerate(hints)
        ]
        return _assemble(kind, items, keys)

    def _read_legacy(self, zf: zipfile.ZipFile, names: list[str]) -> Any:
        """Load a file without a manifest exactly as the previous package did."""
        # np.load's NpzFile drops the ".npy" suffix from member names
        members = {(n[:-4] if n.endswith(".npy") else n): n for n in names}
        if "arr_0" not in members:
            return {key: self._load_legacy(zf, name) for key, name in members.items()}
        if len(members) == 1:
            return self._load_legacy(zf, members["arr_0"])
        order = sorted(members, key=_legacy_index)
        return [self._load_legacy(zf, members[key]) for key in order]

    def _load_legacy(self, zf: zipfile.ZipFile, name: str) -> Any:
        """Like NpzFile: a ``.npy`` member is an array, anything else its raw bytes."""
        with zf.open(name) as member:
            is_npy = member.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX
        return self._load(zf, name) if is_npy else zf.read(name)


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
