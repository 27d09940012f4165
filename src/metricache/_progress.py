"""The progress bar of a grid: tqdm on stderr, when someone is watching."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from ._optional import require

__all__ = ["Progress", "watched"]


def watched() -> bool:
    """Whether stderr is a terminal or this runs in a notebook kernel."""
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """A tqdm bar over a grid (or nothing), starting at the entries already stored.

    *show* ``None`` shows it when :func:`watched`; True or False force it.
    """

    def __init__(self, show: bool | None, total: int, initial: int) -> None:
        self._bar: Any = None
        if show is None:
            show = watched()
        if show:
            tqdm = require("tqdm.auto", "parallel", "the progress bar of get_all")
            self._bar = tqdm.tqdm(
                total=total, initial=initial, unit="metric", file=sys.stderr, desc="metrics"
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self, summary: Any) -> None:
        """One more entry done; show the computed/loaded/failed counts."""
        if self._bar is not None:
            self._bar.set_postfix(
                computed=summary.computed, loaded=summary.loaded, failed=summary.failed,
                refresh=False,
            )  # fmt: skip
            self._bar.update(1)
