"""Codecs: one module per format, looked up by name in a read-only registry.

Every codec class is importable whatever is installed: its format's suffix must be
known to list and check any folder. A codec whose format needs an optional
package (the frame codec: pyarrow, pandas, polars) imports it when it first
encodes or decodes a value, and raises :class:`~metricache.MissingDependencyError`
with the ``pip install metricache[...]`` line when it is missing.
"""

from __future__ import annotations

from types import MappingProxyType

from ._base import Codec
from .frames import FrameCodec
from .json import JsonCodec
from .npy import NpyCodec
from .npz import NpzCodec
from .pickled import PickleCodec

__all__ = [
    "Codec",
    "FrameCodec",
    "JsonCodec",
    "NpyCodec",
    "NpzCodec",
    "PickleCodec",
    "codec_registry",
]

_registry: dict[str, type[Codec]] = {
    c.name: c for c in (NpzCodec, NpyCodec, JsonCodec, FrameCodec, PickleCodec)
}

#: Codec classes by name (read-only view).
codec_registry = MappingProxyType(_registry)
