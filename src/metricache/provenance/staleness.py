"""Staleness: is a stored entry still what the code would compute now, and if not, why.

An entry is stale when its code fingerprint differs from the current one, a
dependency's current value id differs from the one it was computed from, a
dependency is stale or gone, or it was invalidated. Entries without provenance
(legacy, or written before provenance was recorded) are "unknown" and count as
fresh. Checking reads only records (never values): the entry's, and those of
the dependencies it names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .._meta import EntryInfo
from .fingerprint import Parts

__all__ = ["OnStale", "Reason", "StaleReport", "Staleness", "diff_code"]

OnStale = Literal["warn", "ignore", "recompute", "raise"]
ON_STALE = ("warn", "ignore", "recompute", "raise")
Kind = Literal[
    "code", "helper", "constant", "dependency", "missing-dependency", "invalidated", "unknown"
]


@dataclass(frozen=True)
class Reason:
    """Why an entry is stale: a *kind* and a sentence (*detail*); *via* names the
    dependency the cause came through (empty when it is the entry's own)."""

    kind: Kind
    detail: str
    via: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.detail + (f" (through {' -> '.join(self.via)})" if self.via else "")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"kind": self.kind, "detail": self.detail, "via": list(self.via)}


@dataclass
class StaleReport:
    """What :meth:`~metricache.DatedCacheManager.explain` says about one entry.

    Attributes
    ----------
    name : str
        The metric name.
    stale : bool
        Whether the stored value may no longer be what the code computes.
    reasons : list of Reason
        Root causes (not every symptom downstream of them).
    known : bool
        False when the entry has no provenance to compare (then it counts as fresh).
    stored : bool
        False when nothing is stored under *name*.
    """

    name: str
    stale: bool = False
    reasons: list[Reason] = field(default_factory=list)
    known: bool = True
    stored: bool = True

    @property
    def status(self) -> str:
        """``"stale"``, ``"fresh"``, ``"unknown"`` or ``"missing"``."""
        if not self.stored:
            return "missing"
        if self.stale:
            return "stale"
        return "fresh" if self.known else "unknown"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: name, status, stale and reasons."""
        return {
            "name": self.name,
            "status": self.status,
            "stale": self.stale,
            "reasons": [r.to_dict() for r in self.reasons],
        }

    def __str__(self) -> str:
        if not self.stored:
            return f"{self.name} is not stored"
        if not self.stale:
            why = "" if self.known else " (written without provenance: nothing to compare)"
            return f"{self.name} is fresh{why}"
        return f"{self.name} is stale: " + "; ".join(map(str, self.reasons))


def _where(module: str) -> str:
    if module == "__main__":
        return "the main script"
    return module.replace(".", "/") + ".py"


def _describe_part(key: str, owner: str, old: str | None, new: str | None) -> Reason:
    """The reason a fingerprint part changed (was added, or removed)."""
    what = "changed" if old and new else ("was added" if new else "is no longer used")
    kind, _, rest = key.partition(":")
    if kind == "helper":
        module, _, qualname = rest.partition(":")
        return Reason("helper", f"helper {qualname}() in {_where(module)} {what}")
    if kind == "constant":
        module, _, name = rest.partition(":")
        return Reason("constant", f"constant {name} in {_where(module)} {what}")
    if kind == "unknown":
        return Reason(
            "unknown", f"code of {rest.partition(':')[2] or rest} has no source to compare"
        )
    if kind in ("package", "version"):
        label = f"package {rest}" if kind == "package" else "version"
        return Reason("code", f"{label} of {owner} changed from {old!r} to {new!r}")
    labels = {
        "code": f"code of {owner} changed",
        "default": f"default value of {rest} of {owner} {what}",
        "closure": f"closure variable {rest} of {owner} {what}",
        "partial": f"bound arguments of {owner} changed",
        "file": f"file {rest} {what}",
        "env": f"environment variable {rest} {what}",
        "algorithm": "the fingerprint algorithm changed",
    }
    return Reason("code", labels.get(kind, f"{key} of {owner} {what}"))


def diff_code(owner: str, recorded: Parts, current: Parts) -> list[Reason]:
    """The reasons two fingerprints differ (empty if they are equal).

    Added or removed parts follow from a changed one (a new helper call is a code
    change), so they are named only when nothing changed in place.
    """
    old, new = dict(recorded), dict(current)
    if old == new:
        return []
    changed = [k for k in new if k in old and old[k] != new[k]]
    unknown = [k for k in (*old, *new) if k.startswith("unknown:")]
    keys = changed or [k for k in dict.fromkeys([*new, *old]) if old.get(k) != new.get(k)]
    reasons = [_describe_part(k, owner, old.get(k), new.get(k)) for k in keys]
    if unknown and not any(r.kind == "unknown" for r in reasons):
        reasons.append(_describe_part(unknown[0], owner, "?", "?"))
    return reasons


class Staleness:
    """Checks entries against the current code and their dependencies' records.

    Parameters
    ----------
    info_of : callable
        ``name -> EntryInfo | None``: the current entry of a name (None: not stored).
    code_of : callable
        ``name -> Parts | None``: the current fingerprint of a name's function
        (None: no function for it in this process, so its code is not compared).
    """

    def __init__(
        self,
        info_of: Callable[[str], EntryInfo | None],
        code_of: Callable[[str], Parts | None],
    ) -> None:
        self.info_of, self.code_of = info_of, code_of
        self._memo: dict[str, list[Reason]] = {}

    def report(self, name: str, info: EntryInfo | None = None) -> StaleReport:
        """The report on *name* (its entry *info*, read when not given)."""
        info = info if info is not None else self.info_of(name)
        if info is None:
            return StaleReport(name, stored=False)
        reasons = self.reasons(name, info)
        known = info.code is not None or info.dependencies is not None or bool(reasons)
        return StaleReport(name, bool(reasons), reasons, known)

    def reasons(self, name: str, info: EntryInfo) -> list[Reason]:
        """Root causes why *info* (the entry of *name*) is stale; memoised per checker."""
        found = self._memo.get(name)
        if found is None:
            self._memo[name] = []  # a cycle in records (never written so) reads as fresh
            found = self._memo[name] = self._reasons(name, info)
        return found

    def _reasons(self, name: str, info: EntryInfo) -> list[Reason]:
        reasons: list[Reason] = []
        if info.invalidated:
            reasons.append(Reason("invalidated", f"{name} was invalidated on {info.invalidated}"))
        current = self.code_of(name) if info.code is not None else None
        if current is not None and info.code is not None:
            reasons += diff_code(name, info.code, current)
        for dep, recorded in info.dependencies or ():
            reasons += self._dependency(dep, recorded)
        return _unique(reasons)

    def _dependency(self, dep: str, recorded: str | None) -> list[Reason]:
        found = self.info_of(dep)
        if found is None:
            return [Reason("missing-dependency", f"dependency {dep} is no longer stored")]
        if recorded is not None and found.value_id is not None and found.value_id != recorded:
            when = found.timestamp.astimezone().strftime("%Y-%m-%d")
            return [
                Reason("dependency", f"dependency {dep} was recomputed on {when} with a new value")
            ]
        return [Reason(r.kind, r.detail, (dep, *r.via)) for r in self.reasons(dep, found)]


def _unique(reasons: list[Reason]) -> list[Reason]:
    """One reason per cause: the same helper reached twice is named once (the nearest)."""
    seen: dict[tuple[str, str], Reason] = {}
    for reason in reasons:
        key = (reason.kind, reason.detail)
        if key not in seen or len(reason.via) < len(seen[key].via):
            seen[key] = reason
    return list(seen.values())
