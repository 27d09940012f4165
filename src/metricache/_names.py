"""Metric names: validation as file names, and parameter -> name generation."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from ._keys import param_key
from .exceptions import InvalidMetricNameError

__all__ = [
    "MAX_NAME_BYTES",
    "NameGenerator",
    "all_valid",
    "default_name_generation_function",
    "hashed_name",
    "plain_name",
    "seed_faithful",
    "validate_name",
]

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


# Strings whose seed text no value of another type has: a letter, then letters,
# digits or dashes (no "_", which joins parameters, no "." -> "p", no "=" or "~").
_PLAIN_STR = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
# ...except the words None, bools and special floats are written as.
_TAKEN_WORDS = frozenset({"None", "True", "False", "nan", "inf"})
#: Longest name made of plain values only; longer ones are shortened and hashed.
_PLAIN_LIMIT = 200
#: Longest readable part in front of ``~<digest>`` of a hashed name.
_READABLE_LIMIT = 80
_UNSAFE_RUN = re.compile(r"[^\w=+()\[\]-]+")


def plain_name(
    base: str, positional: Sequence[Any], keywords: Sequence[tuple[str, Any]]
) -> str | None:
    """The seed-style name of a call whose every value writes uniquely, else ``None``.

    Positional values join with ``_`` as the seed did; keyword-only values add
    ``name=value``. Only ints, floats, bools, ``None`` and plain words qualify, so
    no two different calls of one function share a plain name.

    >>> plain_name("q", (1, 0.5), (("hi", 5),))
    'q_1_0p5_hi=5'
    >>> plain_name("f", ("a.b",), ()) is None
    True
    """
    tokens = [_plain_token(v) for v in positional]
    for key, value in keywords:
        token = _plain_token(value)
        tokens.append(None if token is None else f"{key}={token}")
    if None in tokens:
        return None
    name = "_".join([base, *tokens]).replace(".", "p")  # type: ignore[list-item]
    return name if len(name.encode("utf-8")) <= _PLAIN_LIMIT else None


def hashed_name(
    base: str, positional: Sequence[Any], keywords: Sequence[tuple[str, Any]], digest: str
) -> str:
    """A readable, file-safe summary of a call followed by ``~`` and its digest.

    >>> hashed_name("scaled", (np.zeros((2, 3)),), (), "0123456789abcdef")
    'scaled_float64[2x3]~0123456789abcdef'
    """
    tokens = [_hint(v) for v in positional] + [f"{k}={_hint(v)}" for k, v in keywords]
    readable = "_".join([base, *tokens]).replace(".", "p")
    readable = _UNSAFE_RUN.sub("-", readable).strip("-")[:_READABLE_LIMIT]
    return f"{readable}~{digest}"


def seed_faithful(value: Any) -> bool:
    """Whether the seed's ``str()`` of a declared *value* tells it apart from its kin.

    False for arrays whose text is elided or rounded (``[0 1 ... 1999]``,
    ``[0.1]`` for ``0.1000000001``) or spans lines; such declarations get a hashed name.
    """
    if isinstance(value, np.ndarray):
        return _faithful_array(value)
    if type(value) in (tuple, list):
        return all(map(seed_faithful, value))
    if type(value) is dict:
        return all(map(seed_faithful, value)) and all(map(seed_faithful, value.values()))
    return True


def _plain_token(value: Any) -> str | None:
    """The seed's text of *value* if no value of another kind has that text."""
    kind = type(value)
    if kind is bool or kind is np.bool_:
        return str(bool(value))
    if kind is int or isinstance(value, np.integer):
        text = str(int(value))
        return text if len(text) <= 40 else None
    if kind is float or kind is np.float64:
        return str(float(value))
    if value is None:
        return "None"
    if kind is str or kind is np.str_:
        text = str(value)
        return text if _PLAIN_STR.fullmatch(text) and text not in _TAKEN_WORDS else None
    return None


def _hint(value: Any) -> str:
    """A short readable stand-in for a value in a hashed name."""
    token = _plain_token(value)
    if token is not None:
        return token
    if isinstance(value, np.ndarray):
        return f"{value.dtype.name}[{'x'.join(map(str, value.shape))}]"
    if isinstance(value, np.generic):
        return f"{value.dtype.name}({value!s})"
    return str(value)[:24]


def _faithful_array(array: np.ndarray[Any, Any]) -> bool:
    text = str(array)
    if array.ndim > 1 or array.dtype.kind not in "biuf" or "..." in text or "\n" in text:
        return False
    tokens = text.strip("[]").split()
    if len(tokens) != array.size:
        return False
    if array.dtype.kind == "b":
        back = np.array([t == "True" for t in tokens], dtype=bool)
    else:
        try:
            back = np.array(tokens, dtype=array.dtype)
        except (ValueError, OverflowError):
            return False
    return bool(param_key(back.reshape(array.shape)) == param_key(array))


# Names made only of these, not starting or ending with a space and longer than a
# reserved device name, pass every check below but the length: the common case.
_QUICK_OK = re.compile(r"[\w+=~(),\[\]-][\w+=~(),\[\] -]{4,}(?<! )", re.ASCII)


# Characters of names that pass every check below but the length, as long as the
# name does not end with a space and is longer than a reserved device name.
_QUICK_BAD = re.compile(r"[^\w+=~(),\[\] \n-]", re.ASCII)


def all_valid(names: Collection[str], suffix: str = "", text: str | None = None) -> bool:
    """Whether :func:`validate_name` accepts every one of *names* (a few C-level scans).

    *text*, if given, is the names already joined by line breaks.
    """
    if not names:
        return True
    text = "\n".join(names) if text is None else text
    return (
        _QUICK_BAD.search(text) is None
        and " \n" not in text
        and not text.endswith(" ")
        and min(map(len, names)) > 4
        and max(map(len, names)) <= _limit(suffix)
    )


def validate_name(name: object, suffix: str = "") -> str:
    """Return *name* if it is safe as a file name on every OS, else raise.

    *suffix* is the data file extension the storage will append; the name plus the
    longest suffix metricache uses must fit in :data:`MAX_NAME_BYTES`.
    """
    if type(name) is str and _QUICK_OK.fullmatch(name) and len(name) <= _limit(suffix):
        return name
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
    limit = _limit(suffix)
    if len(name.encode("utf-8")) > limit:
        return f"it is {len(name.encode('utf-8'))} bytes long; the limit is {limit} bytes"
    return ""


def _limit(suffix: str) -> int:
    """Longest name in UTF-8 bytes beside data files ending in *suffix*."""
    return MAX_NAME_BYTES - max(len(suffix.encode()) + len("_date"), _LONGEST_INTERNAL_SUFFIX)


def _encodable(name: str) -> bool:
    """Whether *name* encodes to UTF-8 (a lone surrogate does not)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
