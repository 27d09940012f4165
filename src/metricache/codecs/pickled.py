"""The pickle codec: any picklable value, for :class:`~metricache.PickleStorageInterface` only.

.. warning::
   Loading a pickle runs code chosen by whoever wrote the file. Only load pickles
   from folders that nobody untrusted can write to. No storage interface uses this
   codec unless asked to (:class:`~metricache.AutoStorageInterface` never does).

The protocol is pinned (:data:`PROTOCOL`), so the bytes do not change with the
Python that writes them. A pickle names classes, not their code: a value may not
load, or load differently, under other versions of Python or of the packages its
classes come from. So each entry records them, in its hint (compact JSON)::

    {"protocol": 5, "python": "3.11", "packages": {"numpy": "2.1.0", "pandas": "2.2.3"}}

and a load under a different Python (major.minor) or package version logs one
warning per difference and process on the ``metricache`` logger (a logging
warning, not :mod:`warnings`: the value is returned and is usually fine, and the
log is where metricache reports what it does).
"""

from __future__ import annotations

import json
import logging
import pickle
import sys
from typing import Any, BinaryIO

import numpy as np

from ..exceptions import CorruptEntryError, UnsupportedValueError
from ._base import Codec
from ._npyformat import _UNPICKLE_ERRORS  # what unpickling damaged bytes can raise

__all__ = ["PROTOCOL", "PickleCodec", "python_version"]

logger = logging.getLogger("metricache")

#: The pickle protocol of every entry (Python 3.8+ read it; out-of-band buffers unused).
PROTOCOL = 5
#: Differences already warned about in this process: ``(what, stored, running)``.
_warned: set[tuple[str, str, str]] = set()
#: What pickling an unpicklable object raises (lambdas, generators, open files, locks).
_PICKLE_ERRORS = (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError)


def python_version() -> str:
    """``major.minor`` of the running Python: what pickle compatibility depends on."""
    return "{}.{}".format(*sys.version_info[:2])


def _package_version(top: str) -> str | None:
    """The version of the imported top-level package *top*, if it declares one."""
    module = sys.modules.get(top)
    version = getattr(module, "__version__", None)
    return version if isinstance(version, str) else None


class _RecordingPickler(pickle.Pickler):
    """A pickler that notes the top-level package of every class it pickles."""

    def __init__(self, f: Any) -> None:
        super().__init__(f, protocol=PROTOCOL)
        self.packages: set[str] = set()
        self._seen: set[type] = set()

    def reducer_override(self, obj: Any) -> Any:
        # Called for every object except the builtin atoms; classes and functions
        # pickle as a reference to their module, instances through their class.
        cls = type(obj)
        if cls not in self._seen:
            self._seen.add(cls)
            self.packages.add(cls.__module__.partition(".")[0])
        module = getattr(obj, "__module__", None) if isinstance(obj, type) else None
        if isinstance(module, str):
            self.packages.add(module.partition(".")[0])
        if cls is np.ndarray and obj.dtype.kind in "mM" and not obj.dtype.isnative:
            # numpy pickles a byte-swapped datetime64/timedelta64 array as a native
            # one: store the native array and the dtype it came as, and swap back.
            return _with_dtype, (obj.astype(obj.dtype.newbyteorder("=")), obj.dtype.str)
        return NotImplemented


def _with_dtype(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Rebuild a pickled array in its original byte order (see ``reducer_override``)."""
    return arr.astype(dtype)


class _Reader:
    """What :func:`pickle.load` needs of the storage's stream (``readline`` unused at 5)."""

    def __init__(self, f: BinaryIO) -> None:
        self.read = f.read
        self.readinto = f.readinto  # type: ignore[attr-defined]

    def readline(self) -> bytes:
        raise pickle.UnpicklingError("a protocol 5 pickle has no text lines")


class PickleCodec(Codec):
    """Store any picklable value as a ``.pkl`` file (pickle protocol :data:`PROTOCOL`).

    Loading runs code named by the file: use it only for folders you trust.
    """

    name = "pickle"
    suffix = ".pkl"

    def write(self, value: Any, f: BinaryIO) -> str | None:
        """Pickle *value* into *f*; return the versions it depends on (JSON)."""
        pickler = _RecordingPickler(f)
        try:
            pickler.dump(value)
        except _PICKLE_ERRORS as err:
            raise UnsupportedValueError(
                f"cannot pickle {type(value).__module__}.{type(value).__qualname__}: {err}"
            ) from err
        packages = {}
        for top in sorted(pickler.packages - {"builtins", "__main__"}):
            version = _package_version(top)
            if version is not None:
                packages[top] = version
        hint = {"protocol": PROTOCOL, "python": python_version(), "packages": packages}
        return json.dumps(hint, separators=(",", ":"), sort_keys=True)

    def read(self, f: BinaryIO, hint: str | None = None) -> Any:
        """Unpickle the value in *f*, warning once per version that differs from *hint*'s."""
        try:
            value = pickle.load(_Reader(f))  # noqa: S301 - the interface's documented risk
        except _UNPICKLE_ERRORS as err:
            raise CorruptEntryError(f"cannot unpickle: {err!r}") from err
        if f.read(1):
            raise CorruptEntryError("unexpected data after the end of the pickle")
        if hint is not None:
            _warn_versions(hint)
        return value


def _warn_versions(hint: str) -> None:
    """Log each difference between the writer's versions and ours, once per process."""
    try:
        recorded = json.loads(hint)
        packages = dict(recorded.get("packages") or {})
        python = str(recorded.get("python"))
    except (ValueError, TypeError, AttributeError):
        return  # not a hint of this codec's: nothing to compare
    differences = [("Python", python, python_version())]
    differences += [(top, str(v), _package_version(top) or "?") for top, v in packages.items()]
    for what, stored, running in differences:
        key = (what, stored, running)
        if stored != running and key not in _warned:
            _warned.add(key)
            logger.warning(
                "a pickle written under %s %s is loaded under %s %s: it may load "
                "differently or fail; recompute it if in doubt",
                what,
                stored,
                what,
                running,
            )
