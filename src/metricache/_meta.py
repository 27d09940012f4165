"""Entry metadata: the :class:`EntryInfo` record and the one place that (de)serialises it.

A record file ``.metricache/meta/<name>.json`` holds the *current* entry and the
*previous* one. The commit protocol writes the record before renaming the data
file into place, so after a crash between the two renames the data on disk still
matches ``previous`` and stays readable; once the data rename lands it matches
``current``. Any data file that matches neither is corrupt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from typing import Any

from ._layout import META_DIR
from ._version import __version__
from .exceptions import CorruptEntryError

__all__ = [
    "META_DIR",
    "RECORD_FORMAT",
    "EntryInfo",
    "decode_current",
    "decode_record",
    "encode_record",
]

RECORD_FORMAT = 1


@dataclass(frozen=True)
class EntryInfo:
    """What metricache knows about one stored metric.

    Attributes
    ----------
    name : str
        The metric name.
    timestamp : datetime
        When the value was computed (timezone-aware, UTC).
    duration : float or None
        Seconds the metric function took, when known.
    size : int or None
        Bytes in the data file (None for legacy entries).
    checksum : str or None
        ``"xxh3_64:<hex>"`` of the data file (None for legacy entries).
    codec : str or None
        Codec name (``"npz"``, ``"npy"``, ``"json"``).
    storage : str or None
        Storage interface class that wrote it.
    version : str or None
        metricache version that wrote it (None for legacy entries).
    hint : str or None
        Codec-specific detail needed to read the value back faithfully.
    file_id : str or None
        The store's identity of the data file (an inode), when it has one.
    legacy : bool
        True for entries written by simple_metrics_manager (no record, no checksum).
    value_id : str or None
        ``"xxh3_128:<hex>"``: a content hash of the value itself, whatever its file
        format (see :mod:`metricache.provenance.values`); None when unknown.
    dependencies : tuple of (name, value_id) pairs, or None
        The metrics this value was computed from, each with the value id it read;
        None for entries written without provenance (treated as fresh).
    code : tuple of (part, hash) pairs, or None
        The code fingerprint of the metric function, as named parts (the first is
        ``("algorithm", tag)``); None when unknown.
    family : str or None
        The base name of the collected metric (family) the entry belongs to.
    params : str or None
        The call's arguments as written (``"(1, b=2)"``), for listings; None for
        metrics defined without parameters or by ``set_functions_dict``.
    invalidated : str or None
        When :meth:`~metricache.DatedCacheManager.invalidate` marked it stale (ISO
        8601), and why; a recompute writes a new entry without the mark.
    """

    name: str
    timestamp: datetime
    duration: float | None = None
    size: int | None = None
    checksum: str | None = None
    codec: str | None = None
    storage: str | None = None
    version: str | None = __version__
    hint: str | None = None
    file_id: str | None = None
    legacy: bool = False
    value_id: str | None = None
    dependencies: tuple[tuple[str, str | None], ...] | None = None
    code: tuple[tuple[str, str], ...] | None = None
    invalidated: str | None = None
    family: str | None = None
    params: str | None = None

    @property
    def date(self) -> str:
        """The local calendar date of :attr:`timestamp`, ``'YYYY-MM-DD'`` as the seed stored it."""
        return self.timestamp.astimezone().strftime("%Y-%m-%d")

    def with_name(self, name: str) -> EntryInfo:
        """A copy of this record under another name."""
        return replace(self, name=name)


# Field names, computed once: dataclasses.fields() and asdict() cost more than the
# rest of a record's (de)serialisation, which sits on every cache miss and load.
_FIELDS = tuple(f.name for f in fields(EntryInfo))
_KNOWN = frozenset(_FIELDS)


def _to_json(info: EntryInfo) -> dict[str, Any]:
    data = {name: getattr(info, name) for name in _FIELDS}
    data["timestamp"] = info.timestamp.isoformat()
    return data


#: Timestamps a record may hold: a day inside datetime's range, so local time fits.
_STAMP_MIN = datetime(1, 1, 2, tzinfo=timezone.utc)
_STAMP_MAX = datetime(9999, 12, 30, tzinfo=timezone.utc)
#: What parsing a damaged or hostile record can raise (nesting too deep: RecursionError).
_RECORD_ERRORS = (ValueError, TypeError, KeyError, AttributeError, RecursionError, OverflowError)


def _from_json(data: Any) -> EntryInfo | None:
    if data is None:
        return None
    complete = data.keys() == _KNOWN  # a record of this version: every field, no other
    kwargs = dict(data) if complete else {k: data[k] for k in data if k in _KNOWN}
    stamp = datetime.fromisoformat(kwargs["timestamp"])
    kwargs["timestamp"] = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    if not _STAMP_MIN <= kwargs["timestamp"] <= _STAMP_MAX:
        # At the datetime range's edge, converting to local time (``.date``) overflows.
        raise ValueError(f"timestamp {kwargs['timestamp'].isoformat()} is out of range")
    _provenance_from_json(kwargs)
    if not complete:
        return EntryInfo(**kwargs)  # missing fields take their defaults
    # Every field given: fill the frozen instance directly, skipping the generated
    # __init__'s per-field object.__setattr__ (8x faster; listings build one per entry).
    info = object.__new__(EntryInfo)
    info.__dict__.update(kwargs)
    return info


def _provenance_from_json(kwargs: dict[str, Any]) -> None:
    """JSON lists of pairs back to the tuples :class:`EntryInfo` holds (hashable, frozen)."""
    for key in ("dependencies", "code"):
        pairs = kwargs.get(key)
        if pairs is not None:
            kwargs[key] = tuple((str(a), None if b is None else str(b)) for a, b in pairs)


def encode_record(current: EntryInfo, previous: list[EntryInfo]) -> bytes:
    """Serialise a record file."""
    record = {
        "format": RECORD_FORMAT,
        "current": _to_json(current),
        "previous": [_to_json(p) for p in previous],
    }
    # Compact separators keep json on its C encoder (indent= would not).
    return json.dumps(record, separators=(",", ":")).encode()


def decode_current(raw: bytes, name: str) -> EntryInfo:
    """The current entry of a record file for metric *name* (its previous ones unparsed)."""
    try:
        record = json.loads(raw)
        if record.get("format") != RECORD_FORMAT:
            raise ValueError(f"unknown record format {record.get('format')!r}")
        current = _from_json(record["current"])
    except _RECORD_ERRORS as err:
        raise CorruptEntryError(f"metadata record of {name!r} is unreadable: {err}") from None
    if current is None or current.name != name:
        owner = None if current is None else current.name
        raise CorruptEntryError(f"metadata record of {name!r} belongs to metric {owner!r}")
    return current


def decode_record(raw: bytes, name: str) -> tuple[EntryInfo, list[EntryInfo]]:
    """Parse a record file for metric *name*; ``CorruptEntryError`` if it is unusable."""
    try:
        record = json.loads(raw)
        if record.get("format") != RECORD_FORMAT:
            raise ValueError(f"unknown record format {record.get('format')!r}")
        current = _from_json(record["current"])
        previous = [_from_json(p) for p in record.get("previous") or []]
    except _RECORD_ERRORS as err:
        raise CorruptEntryError(f"metadata record of {name!r} is unreadable: {err}") from None
    if current is None or current.name != name:
        owner = None if current is None else current.name
        raise CorruptEntryError(f"metadata record of {name!r} belongs to metric {owner!r}")
    return current, [p for p in previous if p is not None]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)
