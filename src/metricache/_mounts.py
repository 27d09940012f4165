"""Which file system holds a folder, and whether one shared index file is safe on it.

SQLite's locking (POSIX byte-range locks and a shared-memory WAL index) is only
reliable on a local file system: on network and FUSE file systems locks may be
advisory, cached or missing, and the ``-shm`` file is not shared between hosts.
Folders there keep one file per entry. On Linux the mount is found in
``/proc/self/mountinfo`` (the longest mount point containing the folder); the table's
path can be given, so a test can hand in a fake one. Where no table can be read
(macOS, Windows), the folder counts as local.
"""

from __future__ import annotations

import logging
import os

__all__ = [
    "MOUNTINFO",
    "NETWORK_TYPES",
    "filesystem_of",
    "is_network_filesystem",
    "nearest_existing",
]

logger = logging.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"
#: File system types where one shared SQLite file is not safe (matched exactly, and
#: every ``fuse.*`` subtype).
NETWORK_TYPES = frozenset(
    {
        "nfs", "nfs4", "nfsd", "lustre", "gpfs", "cifs", "smb", "smb2", "smb3", "smbfs",
        "fuse", "fuseblk", "9p", "ceph", "cephfs", "glusterfs", "afs", "ocfs2", "gfs2",
        "beegfs", "panfs", "orangefs", "pvfs2", "davfs", "ncpfs", "coda", "virtiofs",
        "vboxsf", "vmhgfs", "prl_fs", "wekafs", "quobyte",
    }
)  # fmt: skip


def _unescape(field: str) -> str:
    """A mountinfo path with its octal escapes (``\\040`` for a space) decoded."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def nearest_existing(path: str) -> str:
    """*path* made absolute, or its nearest existing ancestor (it may not exist yet)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def filesystem_of(path: str | os.PathLike[str], mountinfo: str = MOUNTINFO) -> str | None:
    """The type of the file system holding *path* (``"ext4"``, ``"nfs4"``, ...).

    None when the mount table cannot be read or names no mount containing it.
    """
    target = os.path.realpath(nearest_existing(os.fspath(path)))
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return None
    best, kind = -1, None
    for line in lines:
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not sep or len(fields) < 5 or not rest:
            continue  # not a mountinfo line
        mount = _unescape(fields[4])
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        # The last of equally long mount points is the one on top (mounted later).
        if inside and len(mount) >= best:
            best, kind = len(mount), rest[0]
    return kind


def is_network_filesystem(path: str | os.PathLike[str], mountinfo: str = MOUNTINFO) -> bool:
    """Whether *path* lies on a network or FUSE file system (per the mount table)."""
    kind = filesystem_of(path, mountinfo)
    if kind is None:
        return False
    network = kind in NETWORK_TYPES or kind.startswith("fuse.")
    if network:
        logger.debug("%s is on a %s file system: one file per entry", path, kind)
    return network
