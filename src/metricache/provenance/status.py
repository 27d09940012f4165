"""``CM.status()``: one row per stored entry, with its status and the reason for it."""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from .._meta import EntryInfo
from ..exceptions import MissingDependencyError
from .staleness import Staleness

__all__ = ["StatusRow", "StatusTable", "build_status"]

COLUMNS = ("name", "parameters", "date", "size", "compute_time", "status", "reason")


@dataclass(frozen=True)
class StatusRow:
    """One stored entry: its name, parameters (as written), date, size in bytes,
    compute time in seconds, status (fresh, stale, unknown) and the reason."""

    name: str
    parameters: str
    date: str
    size: int | None
    compute_time: float | None
    status: str
    reason: str


class StatusTable:
    """The rows of :meth:`~metricache.DatedCacheManager.status`: a table with three faces.

    ``str()`` is plain text, ``_repr_html_`` an HTML table for notebooks and
    :meth:`to_pandas` a DataFrame (pandas is optional).
    """

    def __init__(self, rows: Iterable[StatusRow]) -> None:
        self.rows = list(rows)

    def __iter__(self) -> Iterator[StatusRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> StatusRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_records(self) -> list[dict[str, Any]]:
        """The rows as dicts (column -> value)."""
        return [asdict(row) for row in self.rows]

    def to_pandas(self) -> Any:
        """The table as a :class:`pandas.DataFrame` (``MissingDependencyError`` without pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise MissingDependencyError(
                "CM.status().to_pandas() needs pandas: pip install pandas "
                "(or pip install 'metricache[frames]')"
            ) from None
        return pd.DataFrame(self.to_records(), columns=list(COLUMNS))

    def _cells(self) -> list[list[str]]:
        return [[_text(getattr(row, c)) for c in COLUMNS] for row in self.rows]

    def __str__(self) -> str:
        cells = [list(COLUMNS), *self._cells()]
        widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        return f"<StatusTable of {len(self.rows)} entries>"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{c}</th>" for c in COLUMNS)
        body = "".join(
            f'<tr class="{html.escape(row.status)}">'
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
            for row, cells in zip(self.rows, self._cells(), strict=True)
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def build_status(
    infos: Iterable[EntryInfo], checker: Staleness, parameters: dict[str, str]
) -> StatusTable:
    """The status table of *infos* (one checker, so shared upstream entries are read once)."""
    rows = []
    for info in sorted(infos, key=lambda i: i.name):
        report = checker.report(info.name, info)
        rows.append(
            StatusRow(
                info.name,
                parameters.get(info.name, ""),
                info.timestamp.astimezone().isoformat(timespec="seconds"),
                info.size,
                info.duration,
                report.status,
                "; ".join(map(str, report.reasons)),
            )
        )
    return StatusTable(rows)
