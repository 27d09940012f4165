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

import errno
import json
import zipfile
import zlib
from typing import Any, BinaryIO

import numpy as np

from ..exceptions import CorruptEntryError, PickleRequiredError, UnsupportedValueError
from . import _values
from ._base import Codec
from ._npyformat import encode_array
from ._npzread import _FORMAT, _MANIFEST, _in_memory_if_small, _member, _Reader

__all__ = ["NpzCodec"]

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
#: OSErrors that zipfile raises for garbage offsets (a seek before the start), and
#: its own OSErrors without an errno; any other errno is the disk's, not the file's.
_GARBAGE_ERRNOS = (None, errno.EINVAL)
#: zipfile's threshold above which a member needs ZIP64 records.
_ZIP64_LIMIT = (1 << 31) - 1


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
    raises :class:`~metricache.PickleRequiredError` before anything is unpickled.
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
        zf = zipfile.ZipFile(f, "w", compression, allowZip64=True)
        try:
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
        except BaseException:
            # The staged file is discarded: finishing the archive (a member may be left
            # open by a KeyboardInterrupt) could only raise and hide the real error.
            zf.fp = None
            raise
        zf.close()

    # -- reading ------------------------------------------------------------------

    def read(self, f: BinaryIO, hint: str | None = None, *, verified: bool = False) -> Any:
        """Read the value back from the seekable *f*.

        Parameters
        ----------
        f : BinaryIO
            Seekable binary file: the archive itself or an in-memory copy
            (e.g. :class:`io.BytesIO`). Uncompressed members are read straight
            from it into their arrays.
        hint : str or None
            Ignored: the manifest inside the file carries the type information.
        verified : bool
            The caller checks a checksum of the whole file before using the value,
            so the CRC-32 of uncompressed members (~0.4 ms per MiB, most of the
            read) is skipped. Compressed members are always CRC-checked.

        Returns
        -------
        Any
            The stored value; a legacy file (no manifest) loads as the previous
            package loaded it.

        Raises
        ------
        CorruptEntryError
            If *f* is not a valid zip, a member is damaged (its CRC-32 is checked
            unless *verified*) or not a ``.npy`` file, or the manifest is malformed.
        PickleRequiredError
            If a member is a pickled object array while *allow_pickle* is False.
        """
        try:
            with zipfile.ZipFile(_in_memory_if_small(f)) as zf:
                return _Reader(self, zf, check_crc=not verified).read()
        except (CorruptEntryError, PickleRequiredError):
            raise  # PickleRequiredError is a ValueError, and no zip error
        except OSError as exc:
            if exc.errno not in _GARBAGE_ERRNOS:
                raise  # EIO, EACCES, ...: the disk failed, not the file; never quarantined
            raise CorruptEntryError(f"not a valid .npz file: {exc!r}") from exc
        except _ZIP_ERRORS as exc:
            raise CorruptEntryError(f"not a valid .npz file: {exc!r}") from exc

    def read_verified(self, f: BinaryIO, hint: str | None = None) -> Any:
        """:meth:`read` without member CRCs: the caller verifies the file's checksum."""
        return self.read(f, hint, verified=True)
