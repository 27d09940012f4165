"""A cache folder as the command line and the report see it: one row per entry.

Built from records alone (no value is decoded, the user's code is not needed):
staleness from the dependencies' records, damage from a cheap size check (the
data file's size against its record's; ``verify`` reads checksums).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from ._gc import pinned
from ._layout import data_key
from ._meta import EntryInfo
from .codecs import codec_registry

__all__ = ["Row", "family_of", "folder_rows", "suffix_of"]

# A generated parameter part: a number (0p5, -1, 1e-3), a boolean or None.
_PARAM = re.compile(r"_(?:m?-?\d[\w]*|True|False|None)$")


@dataclass(frozen=True)
class Row:
    """One entry of a folder: what ``metricache ls`` prints and the report shows."""

    name: str
    family: str
    parameters: str
    date: str
    size: int | None
    compute_time: float | None
    format: str
    status: str
    reason: str
    pinned: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def family_of(name: str) -> str:
    """The metric family of a generated name: the name without its parameter parts.

    >>> family_of("poly_Y_1_2"), family_of("spectrum_0p5"), family_of("total")
    ('poly_Y', 'spectrum', 'total')
    """
    base = name
    while (match := _PARAM.search(base)) and match.start() > 0:
        base = base[: match.start()]
    return base


def suffix_of(info: EntryInfo) -> str:
    """The data file suffix of *info*'s format (``.npy``, ``.npz``, ...)."""
    cls = codec_registry.get(info.codec or "")
    return cls.suffix if cls is not None else f".{info.codec}"


def folder_rows(manager: Any, families: dict[str, str] | None = None) -> list[Row]:
    """A :class:`Row` for every entry of *manager*'s storage (a ``DatedCacheManager``)."""
    storage = manager.storage_interface
    store = storage.store
    infos = {i.name: i for i in manager.entries()}
    status = {row.name: row for row in manager.status()}
    pins = pinned(store)
    rows = []
    for name, info in infos.items():
        if info.legacy:
            # The listing dates legacy files by mtime; their _date sidecar knows better.
            info = storage.info(name) or info
        found = status.get(name)
        state, reason = _state(store, info, found.status if found else "unknown")
        if found is not None and found.reason and state == "stale":
            reason = found.reason
        rows.append(
            Row(
                name,
                (families or {}).get(name) or info.family or family_of(name),
                found.parameters if found else "",
                info.timestamp.astimezone().isoformat(timespec="seconds"),
                info.size,
                info.duration,
                info.codec or "",
                state,
                reason,
                name in pins,
            )
        )
    return rows


def _state(store: Any, info: EntryInfo, status: str) -> tuple[str, str]:
    """``ok``, ``stale``, ``damaged`` or ``legacy``, and why."""
    if info.legacy:
        return "legacy", "written by simple_metrics_manager: no checksum (run metricache migrate)"
    try:
        size = store.stat(data_key(info.name, suffix_of(info))).size
    except FileNotFoundError:
        return "damaged", "data file is missing"
    if info.size is not None and size != info.size:
        return "damaged", f"data file holds {size} bytes, its record says {info.size}"
    return ("stale", "") if status == "stale" else ("ok", "")
