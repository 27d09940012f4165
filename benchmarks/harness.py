"""Interleaved timing, targets and table printing shared by every benchmark scenario."""

from __future__ import annotations

import gc
import math
import statistics
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Contender:
    """One way of doing the scenario's operation, timed against the others.

    ``run`` is the timed operation; ``setup``, when given, runs untimed before each
    call (e.g. to build a fresh manager). ``number`` fixes the calls per sample;
    None calibrates it (timeit-style) to last at least the harness's ``min_time``.
    ``batch``, when given, times ``n`` calls itself and returns nanoseconds.
    """

    name: str
    run: Callable[[], Any]
    setup: Callable[[], Any] | None = None
    number: int | None = None
    note: str = ""
    batch: Callable[[int], float] | None = None

    @classmethod
    def statement(
        cls, name: str, stmt: str, namespace: dict[str, Any], note: str = ""
    ) -> Contender:
        """A contender timed like ``timeit``: *stmt* compiled into the loop, no wrapper call.

        This is how user code calls a cache (``CM.get("x")``), so nanosecond-scale hits
        are not inflated by a Python-level (or ``functools.partial``) indirection.
        """
        timer = timeit.Timer(stmt, timer=time.perf_counter_ns, globals=namespace)
        return cls(name, lambda: timer.timeit(1), note=note, batch=timer.timeit)


@dataclass
class Row:
    """The samples of one contender: seconds per call, one per round."""

    name: str
    samples: list[float]
    note: str = ""
    #: Timed calls of ``run``, calibration included (scenarios check hits did not compute).
    calls: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def minimum(self) -> float:
        return min(self.samples)


@dataclass
class Target:
    """An issue target: ``contender`` median <= ``limit`` x the ``baseline`` median."""

    contender: str
    limit: float
    baseline: str | None = None  # None: the table's baseline


@dataclass
class Table:
    """One printed table: a scenario at one size."""

    title: str
    rows: list[Row]
    baseline: str
    unit_label: str = "per call"
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    def ratio(self, name: str, baseline: str | None = None, stat: str = "median") -> float:
        """How many times the *baseline*'s time *name* takes."""
        base = self.row(baseline or self.baseline)
        return float(getattr(self.row(name), stat) / getattr(base, stat))

    def verdicts(self) -> list[tuple[Target, float, bool]]:
        """Each target with the measured median ratio and whether it is met."""
        results = []
        for target in self.targets:
            ratio = self.ratio(target.contender, target.baseline)
            results.append((target, ratio, ratio <= target.limit))
        return results


@contextmanager
def _no_gc() -> Iterator[None]:
    """Keep the collector out of timed code, as timeit does."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _sample(contender: Contender, number: int) -> float:
    """Seconds per call over *number* calls (setup excluded from the time)."""
    run, setup = contender.run, contender.setup
    if contender.batch is not None:
        return contender.batch(number) / number / 1e9  # timeit turns the collector off itself
    with _no_gc():
        if setup is None:
            start = time.perf_counter_ns()
            for _ in range(number):
                run()
            total = time.perf_counter_ns() - start
        else:
            total = 0
            for _ in range(number):
                setup()
                start = time.perf_counter_ns()
                run()
                total += time.perf_counter_ns() - start
    return total / number / 1e9


def _calibrate(contender: Contender, min_time: float, max_number: int) -> int:
    """Calls per sample so that a sample lasts *min_time*; the first call also warms up."""
    if contender.number is not None:
        return contender.number
    once = _sample(contender, 1)
    return max(1, min(max_number, math.ceil(min_time / max(once, 1e-9))))


def measure(
    contenders: list[Contender],
    rounds: int,
    *,
    min_time: float = 0.02,
    max_number: int = 10_000,
    warmup: bool = True,
) -> list[Row]:
    """Time every contender *rounds* times, round-robin, so machine noise hits all alike.

    The order rotates each round: no contender always runs right after another.
    """
    numbers = {}
    for c in contenders:
        numbers[c.name] = _calibrate(c, min_time, max_number) if warmup else c.number or 1
    calibrations = 1 if warmup else 0
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    for i in range(rounds):
        shift = i % len(contenders)
        for c in contenders[shift:] + contenders[:shift]:
            samples[c.name].append(_sample(c, numbers[c.name]))
    return [
        Row(
            c.name,
            samples[c.name],
            c.note,
            calls=rounds * numbers[c.name] + (calibrations if c.number is None else 0),
        )
        for c in contenders
    ]


def fmt_time(seconds: float) -> str:
    """A duration with a readable unit."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_bytes(n: float) -> str:
    """A byte count with a binary unit."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def render(table: Table) -> str:
    """The table as aligned text: time, ratios to the baseline, extras, notes, targets."""
    head = ["contender", f"median {table.unit_label}", "min", "x base (med)", "x base (min)"]
    head += table.extra_columns
    lines = []
    for row in table.rows:
        name = row.name + ("  [baseline]" if row.name == table.baseline else "")
        cells = [
            name,
            fmt_time(row.median),
            fmt_time(row.minimum),
            f"{table.ratio(row.name):.2f}",
            f"{table.ratio(row.name, stat='minimum'):.2f}",
        ]
        cells += [row.extra.get(col, "") for col in table.extra_columns]
        lines.append(cells)
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]

    def join(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    out = [f"== {table.title}", join(head), "  ".join("-" * w for w in widths)]
    out += [join(cells) for cells in lines]
    for row in table.rows:
        if row.note:
            out.append(f"   {row.name}: {row.note}")
    out += [f"   note: {note}" for note in table.notes]
    for target, ratio, met in table.verdicts():
        versus = target.baseline or table.baseline
        verdict = "PASS" if met else "MISS"
        out.append(
            f"   target: {target.contender} <= {target.limit:g}x {versus}: {ratio:.2f}x  {verdict}"
        )
    return "\n".join(out)


def to_json(table: Table) -> dict[str, Any]:
    """The table as plain data for ``--json``."""
    return {
        "title": table.title,
        "baseline": table.baseline,
        "unit": table.unit_label,
        "rows": [
            {
                "name": r.name,
                "median_s": r.median,
                "min_s": r.minimum,
                "samples_s": r.samples,
                "ratio_median": table.ratio(r.name),
                "ratio_min": table.ratio(r.name, stat="minimum"),
                "note": r.note,
                **r.extra,
            }
            for r in table.rows
        ],
        "notes": table.notes,
        "targets": [
            {
                "contender": t.contender,
                "baseline": t.baseline or table.baseline,
                "limit": t.limit,
                "ratio": ratio,
                "met": met,
            }
            for t, ratio, met in table.verdicts()
        ],
    }
