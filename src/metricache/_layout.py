"""Every folder and key name metricache uses inside a cache folder, in one place.

::

    <name><suffix>                         the data, under the name the seed used
    <name>_date<suffix>                    the seed's date sidecar (legacy folders only)
    .metricache/meta/<kind>/<name>.json    the record of data file <name><suffix>
    .metricache/meta/<name>.json           a record of metricache 0.1 (read, never written)
    .metricache/meta/<kind>/<name>.gone    data file <name><suffix> had a record once
    .metricache/locks/                     cross-process locks and cycle-detection notes
    .metricache/locks/<name>.lease         the lease of <name> on a remote store (S3)
    .metricache/quarantine/<stamp>/        corrupt entries moved aside
    .metricache/pins/<name>                metric <name> is pinned: gc never evicts it
    .metricache/layout.json                where entries live: "packed" or "files" (written once)
    .metricache/index.sqlite3              the packed home: records, and data under PACKED_MAX
    .mctmp-<host>-<pid>-<random>           a writer's temp file, next to its target

``<kind>`` is the data file's suffix without its dot (``npy``, ``npz``, ``json``):
a record belongs to one data file, so interfaces of different formats sharing a
folder never share a record. Metric names cannot contain ``/``, so a record in a
``<kind>/`` folder can never be mistaken for a 0.1 record of a metric with a dot in
its name.

In a packed folder the index holds keys of the same names: a record key, or a
data key of an entry under :data:`PACKED_MAX` bytes; larger data keeps its file.
"""

from __future__ import annotations

__all__ = [
    "DATE_SUFFIX",
    "INDEX_KEY",
    "LAYOUT_KEY",
    "LOCK_DIR",
    "META_DIR",
    "PACKED_MAX",
    "PIN_DIR",
    "QUARANTINE_DIR",
    "RECORD_SUFFIX",
    "ROOT_DIR",
    "TEMP_PREFIX",
    "data_key",
    "fits_index",
    "gone_key",
    "lease_key",
    "old_record_key",
    "record_dir",
    "record_key",
    "suffix_of_record_dir",
]

ROOT_DIR = ".metricache"
META_DIR = f"{ROOT_DIR}/meta"
LOCK_DIR = f"{ROOT_DIR}/locks"
QUARANTINE_DIR = f"{ROOT_DIR}/quarantine"
PIN_DIR = f"{ROOT_DIR}/pins"
LAYOUT_KEY = f"{ROOT_DIR}/layout.json"
INDEX_KEY = f"{ROOT_DIR}/index.sqlite3"
#: Data of fewer bytes lives in the index of a packed folder; more keeps its own file
#: (np.load-able). Below it a row costs less than a file's create, rename, open and
#: stat; SQLite's own study of internal against external blobs puts the crossover
#: near 100 KiB, and above it files win.
PACKED_MAX = 64 * 1024
RECORD_SUFFIX = ".json"
#: Suffix of the seed's date sidecars: ``<name>_date``.
DATE_SUFFIX = "_date"
#: Prefix of every temp file; never a valid metric name (names cannot start with '.').
TEMP_PREFIX = ".mctmp-"
# The record folder of data files without a suffix (a FileBased interface with file_ext="").
_NO_SUFFIX = "_"


def data_key(name: str, suffix: str) -> str:
    """The data file of metric *name* in a format with file suffix *suffix*."""
    return name + suffix


def record_dir(suffix: str) -> str:
    """The folder holding the records of data files ending in *suffix*."""
    return f"{META_DIR}/{suffix.lstrip('.') or _NO_SUFFIX}"


def suffix_of_record_dir(folder: str) -> str:
    """The data suffix whose records live in ``META_DIR/<folder>`` (inverse of record_dir)."""
    return "" if folder == _NO_SUFFIX else "." + folder


def record_key(name: str, suffix: str) -> str:
    """The record of data file ``<name><suffix>``."""
    return f"{record_dir(suffix)}/{name}{RECORD_SUFFIX}"


def old_record_key(name: str) -> str:
    """Where metricache 0.1 kept the record of *name* (one per name, whatever the format)."""
    return f"{META_DIR}/{name}{RECORD_SUFFIX}"


def gone_key(name: str, suffix: str) -> str:
    """The marker left when the record of ``<name><suffix>`` is removed.

    Data of a name with a marker was written by metricache, so it is never read
    as a hint-less legacy file.
    """
    return f"{record_dir(suffix)}/{name}.gone"


def fits_index(key: str) -> bool:
    """Whether *key* may live in a packed folder's index (records, markers and data)."""
    if key.startswith(META_DIR + "/"):
        return True
    return "/" not in key and not key.startswith(".")


def lease_key(name: str) -> str:
    """The lease object of metric *name* on a remote store (see :mod:`metricache._lease`)."""
    return f"{LOCK_DIR}/{name}.lease"
