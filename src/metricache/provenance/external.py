"""``collect(depends_on=[...])``: files, environment variables and package versions as parts.

Each item is a path (``"data/raw.csv"``: its content hash, re-hashed only when its
size or modification time changes), ``"env:NAME"`` (the variable's value, hashed)
or ``"package:NAME"`` (the installed version, as it is).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import metadata

import xxhash

__all__ = ["DependsOn", "external_parts"]

DependsOn = Iterable["str | os.PathLike[str]"]
_file_hashes: dict[tuple[str, int, int], str] = {}
_CHUNK = 1 << 20


def _file_hash(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    found = _file_hashes.get(key)
    if found is None:
        h = xxhash.xxh3_128()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        found = _file_hashes[key] = h.hexdigest()
    return found


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def external_parts(depends_on: DependsOn) -> list[tuple[str, str]]:
    """The fingerprint parts of *depends_on* (see the module docstring)."""
    parts = []
    for item in depends_on:
        text = os.fspath(item)
        if text.startswith("env:"):
            value = os.environ.get(text[4:])
            digest = "unset" if value is None else xxhash.xxh3_128_hexdigest(value.encode())
            parts.append((text, digest))
        elif text.startswith("package:"):
            parts.append((text, _package_version(text[8:])))
        else:
            parts.append((f"file:{text}", _file_hash(text)))
    return parts


def check_depends_on(depends_on: DependsOn) -> tuple[str, ...]:
    """*depends_on* as a tuple of strings; ``TypeError`` for an item that is not one."""
    items = (depends_on,) if isinstance(depends_on, (str, os.PathLike)) else tuple(depends_on)
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(
                "depends_on takes paths, 'env:NAME' and 'package:NAME' strings, "
                f"not {type(item).__qualname__}: {item!r:.60}"
            )
    return tuple(os.fspath(i) for i in items)
