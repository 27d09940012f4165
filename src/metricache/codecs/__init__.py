"""Codecs: one module per format, looked up by name in a read-only registry."""

from __future__ import annotations

from types import MappingProxyType

from ._base import Codec
from .json import JsonCodec
from .npy import NpyCodec
from .npz import NpzCodec

__all__ = ["Codec", "JsonCodec", "NpyCodec", "NpzCodec", "codec_registry"]

_registry: dict[str, type[Codec]] = {c.name: c for c in (NpzCodec, NpyCodec, JsonCodec)}

#: Codec classes by name (read-only view).
codec_registry = MappingProxyType(_registry)
