"""Where a local folder's entries live, decided once and recorded in the folder.

``.metricache/layout.json`` (``{"format": 1, "entries": "packed"}`` or ``"files"``)
is written by the folder's first write with create-exclusive semantics (a complete
temp file hard-linked into place: the link fails if another process recorded
first), so every process of every host agrees on it, whatever each would detect.

A folder without a record gets one by its first write: packed, unless it lies on
a network or FUSE file system (:mod:`metricache._mounts`) or already holds entries
of an older version (a ``.metricache/meta`` folder, or data files). An interface's
``packed=True`` opts a per-file folder in (the record is rewritten; its per-file
entries stay readable); ``packed=False`` makes its own writes per-file files,
while entries in the index stay readable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any

from ._layout import LAYOUT_KEY, META_DIR, ROOT_DIR
from ._mounts import MOUNTINFO, is_network_filesystem
from ._packed import PackedStore
from ._store import LocalStore, temp_path

__all__ = [
    "ENV_VAR",
    "FILES",
    "PACKED",
    "auto_home",
    "open_local_store",
    "packed_since_empty",
    "record_home",
    "recorded_home",
]

logger = logging.getLogger(__name__)

PACKED, FILES = "packed", "files"
#: Overrides the automatic choice for folders without a record (``0``: files, ``1``: packed).
ENV_VAR = "METRICACHE_PACKED"
_FORMAT = 1


def _layout_path(root: str) -> str:
    return os.path.join(root, LAYOUT_KEY)


def _read(root: str) -> dict[str, Any] | None:
    """The folder's layout record; None if there is none.

    A record that cannot be read counts as ``"files"`` written by someone else's
    version: this one then keeps its writes per-file and never rewrites it.
    """
    try:
        with open(_layout_path(root), "rb") as f:
            raw = f.read(4096)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        record = json.loads(raw)
        if record["entries"] in (PACKED, FILES):
            return dict(record)
    except (ValueError, TypeError, KeyError):
        pass
    logger.warning("%s is unreadable: entries written there stay files", _layout_path(root))
    return {"entries": FILES}


def recorded_home(root: str) -> str | None:
    """The home recorded in folder *root* (``"packed"``, ``"files"``), None if none is."""
    record = _read(root)
    return None if record is None else str(record["entries"])


def packed_since_empty(root: str) -> bool | None:
    """Whether *root* was packed from its first write (None: no record yet).

    Every data file of such a folder was written with a record, so one without a
    record (its record lost with a damaged index) is never read as a legacy file.
    """
    record = _read(root)
    return None if record is None else record.get("since_empty") is True


def _write(root: str, home: str, replace: bool) -> str:
    """Record *home* (create-exclusive unless *replace*); return what is recorded now."""
    empty = home == PACKED and not replace and not _has_old_entries(root)
    os.makedirs(os.path.join(root, ROOT_DIR), exist_ok=True)
    tmp = temp_path(os.path.join(root, ROOT_DIR))  # a dead writer's is removed by cleanup()
    with open(tmp, "x", encoding="utf-8") as f:
        json.dump({"format": _FORMAT, "entries": home, "since_empty": empty}, f)
    try:
        if replace:
            os.replace(tmp, _layout_path(root))
            return home
        try:
            os.link(tmp, _layout_path(root))
        except FileExistsError:
            return recorded_home(root) or home
        return home
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def record_home(root: str, home: str) -> str:
    """Record *home* unless a home is recorded already; return the recorded one."""
    return _write(root, home, replace=False)


def _has_old_entries(root: str) -> bool:
    """Whether folder *root* holds entries of an older version (records or data files)."""
    if os.path.isdir(os.path.join(root, META_DIR)):
        return True
    try:
        with os.scandir(root) as it:
            return any(not e.name.startswith(".") and e.is_file() for e in it)
    except (FileNotFoundError, NotADirectoryError):
        return False


def auto_home(root: str, mountinfo: str = MOUNTINFO) -> str:
    """The home a folder without a record gets: files on network file systems or old folders.

    The environment variable ``METRICACHE_PACKED`` (``0`` or ``1``), when set,
    decides instead: a site or a test run can pick the home of every new folder.
    """
    chosen = os.environ.get(ENV_VAR, "").strip()
    if chosen in ("0", "1"):
        return PACKED if chosen == "1" else FILES
    if is_network_filesystem(root, mountinfo) or _has_old_entries(root):
        return FILES
    return PACKED


def _would_pack(root: str, packed: bool | None, mountinfo: str) -> bool:
    """Whether a writer would pack now, without recording anything (see :func:`_settle`)."""
    recorded = recorded_home(root)
    if recorded is None:
        recorded = auto_home(root, mountinfo) if packed is None else (PACKED if packed else FILES)
    elif recorded == FILES and packed:
        recorded = PACKED
    return recorded == PACKED and packed is not False


def _settle(root: str, packed: bool | None, mountinfo: str) -> bool:
    """Settle folder *root*'s home before a first write; whether this writer packs."""
    recorded = recorded_home(root)
    if recorded is None:
        want = auto_home(root, mountinfo) if packed is None else (PACKED if packed else FILES)
        recorded = record_home(root, want)
    elif recorded == FILES and packed:
        recorded = _write(root, PACKED, replace=True)  # the user opts this folder in
        logger.info("%s: entries under the size threshold are packed from now on", root)
    return recorded == PACKED and packed is not False


def open_local_store(
    root: str, packed: bool | None, *, durable: bool = False, mountinfo: str = MOUNTINFO
) -> LocalStore:
    """The store of local folder *root*: packed unless its recorded home is files.

    Nothing is created here: a folder without a record is settled by its first write.
    """
    if packed is not None and not isinstance(packed, bool):
        raise TypeError(f"packed must be None, True or False, not {packed!r}")
    if recorded_home(root) == FILES and not packed:
        return LocalStore(root)
    return PackedStore(
        root,
        lambda: _settle(root, packed, mountinfo),
        lambda: packed_since_empty(root),
        lambda: _would_pack(root, packed, mountinfo),
        durable=durable,
    )
