"""Metric names: validation as file names, and parameter -> name generation."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from .exceptions import InvalidMetricNameError

__all__ = ["MAX_NAME_BYTES", "NameGenerator", "default_name_generation_function", "validate_name"]

#: Longest file name most file systems accept (ext4, APFS, NTFS count 255 units).
MAX_NAME_BYTES = 255
#: Longest suffix metricache appends to a metric name (``.pending.json`` records).
_LONGEST_INTERNAL_SUFFIX = len(".pending.json")

NameGenerator = Callable[[str, Sequence[Any]], str]

# Characters Windows forbids in file names, and C0/C1 control characters; rejected
# everywhere so a cache folder written on one system opens on every other.
_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f-\x9f]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.IGNORECASE)


def default_name_generation_function(base_name: str, params: Sequence[Any]) -> str:
    """Join the base name and the parameters with ``_``; every ``.`` becomes ``p``.

    This is the seed package's rule, kept exactly so that folders it wrote are found.

    >>> default_name_generation_function("poly_Y", (1, 0.5))
    'poly_Y_1_0p5'
    """
    return "_".join([base_name, *map(str, params)]).replace(".", "p")


def validate_name(name: object, suffix: str = "") -> str:
    """Return *name* if it is safe as a file name on every OS, else raise.

    *suffix* is the data file extension the storage will append; the name plus the
    longest suffix metricache uses must fit in :data:`MAX_NAME_BYTES`.
    """
    if not isinstance(name, str):
        raise InvalidMetricNameError(
            f"metric names must be str, not {type(name).__name__}: {name!r}"
        )
    problem = _name_problem(name, suffix)
    if problem:
        raise InvalidMetricNameError(f"invalid metric name {name!r}: {problem}")
    return name


def _name_problem(name: str, suffix: str) -> str:
    """Describe what makes *name* unsafe, or return an empty string."""
    if not name:
        return "it is empty"
    if not name.isascii() and not _encodable(name):
        return "it contains a lone surrogate, which cannot be encoded as UTF-8"
    bad = _FORBIDDEN.search(name)
    if bad:
        char = bad.group()
        if char in "/\\":
            return "it contains a path separator"
        if char.isprintable():
            return f"it contains the character {char!r}, which Windows forbids in file names"
        return f"it contains the control character {char!r}"
    if ".." in name:
        return "it contains '..'"
    if name.startswith("."):
        return "it starts with '.' (hidden files are reserved for metricache's own records)"
    if name != name.rstrip(". "):
        return "it ends with a space or a dot, which Windows drops from file names"
    if _RESERVED.match(name):
        return "it is a reserved device name on Windows"
    limit = MAX_NAME_BYTES - max(len(suffix.encode()) + len("_date"), _LONGEST_INTERNAL_SUFFIX)
    if len(name.encode("utf-8")) > limit:
        return f"it is {len(name.encode('utf-8'))} bytes long; the limit is {limit} bytes"
    return ""


def _encodable(name: str) -> bool:
    """Whether *name* encodes to UTF-8 (a lone surrogate does not)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
