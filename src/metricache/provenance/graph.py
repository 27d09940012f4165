"""``CM.graph()``: the dependency graph of the stored entries, from their records.

Nodes are entries (coloured by status), edges point from a dependency to the
entry computed from it. Built from records alone, so it works in a fresh process
that defines no metric. Output: Mermaid (:meth:`DependencyGraph.to_mermaid`),
Graphviz DOT (:meth:`DependencyGraph.to_dot`) and, with the ``graphviz`` package
and its ``dot`` program installed, SVG for notebooks.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .._meta import EntryInfo
from ..exceptions import MissingDependencyError
from .staleness import Staleness

__all__ = ["DependencyGraph", "build_graph"]

#: status -> (fill colour, text colour)
COLOURS = {
    "fresh": ("#c8e6c9", "#1b5e20"),
    "stale": ("#ffcdd2", "#b71c1c"),
    "unknown": ("#eeeeee", "#424242"),
    "missing": ("#fff3e0", "#e65100"),
}


@dataclass
class DependencyGraph:
    """Entries (name -> status) and edges ``(dependency, dependant)``."""

    nodes: dict[str, str] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def to_mermaid(self) -> str:
        """Mermaid ``flowchart`` text (labels quoted and escaped)."""
        ids = {name: f"n{i}" for i, name in enumerate(self.nodes)}
        lines = ["flowchart LR"]
        lines += [f'    {ids[n]}["{_mermaid_label(n)}"]:::{s}' for n, s in self.nodes.items()]
        lines += [f"    {ids[a]} --> {ids[b]}" for a, b in self.edges]
        lines += [
            f"    classDef {status} fill:{fill},color:{text}"
            for status, (fill, text) in COLOURS.items()
        ]
        return "\n".join(lines)

    def to_dot(self) -> str:
        """Graphviz DOT text (identifiers quoted and escaped)."""
        lines = ["digraph metricache {", "    rankdir=LR;", "    node [shape=box, style=filled];"]
        for name, status in self.nodes.items():
            fill, text = COLOURS[status]
            label = _dot_quote(f"{name}\\n{status}")
            lines.append(
                f'    {_dot_quote(name)} [label={label}, fillcolor="{fill}", fontcolor="{text}"];'
            )
        lines += [f"    {_dot_quote(a)} -> {_dot_quote(b)};" for a, b in self.edges]
        lines.append("}")
        return "\n".join(lines)

    def to_svg(self) -> str:
        """SVG rendered by Graphviz (needs the ``graphviz`` package and ``dot``)."""
        try:
            graphviz: Any = importlib.import_module("graphviz")  # optional, untyped
        except ImportError:
            raise MissingDependencyError(
                "CM.graph().to_svg() needs the graphviz package: pip install graphviz "
                "(and the Graphviz programs, e.g. apt install graphviz)"
            ) from None
        svg: Any = graphviz.Source(self.to_dot()).pipe(format="svg", encoding="utf-8")
        return str(svg)

    def _repr_svg_(self) -> str | None:
        try:
            return self.to_svg()
        except Exception:  # noqa: BLE001 - a notebook then shows the Mermaid text instead
            return None

    def _repr_markdown_(self) -> str:
        return f"```mermaid\n{self.to_mermaid()}\n```"


def _dot_quote(text: str) -> str:
    """A DOT quoted string: backslash-escaped quotes, newlines kept as DOT's ``\\n``."""
    escaped = text.replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _mermaid_label(text: str) -> str:
    """Mermaid has no escapes inside quotes but HTML entities: use them for the specials."""
    return re.sub(r'["<>#&;`]', lambda m: f"#{ord(m.group())};", text)


def build_graph(infos: Iterable[EntryInfo], checker: Staleness) -> DependencyGraph:
    """The graph of *infos*; dependencies that are not stored appear as ``missing``."""
    graph = DependencyGraph()
    entries = sorted(infos, key=lambda i: i.name)
    for info in entries:
        graph.nodes[info.name] = checker.report(info.name, info).status
    for info in entries:
        for dep, _ in info.dependencies or ():
            graph.nodes.setdefault(dep, "missing")
            graph.edges.append((dep, info.name))
    return graph
