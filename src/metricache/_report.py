"""``metricache report --html``: one self-contained HTML page about a cache folder.

The page needs no network: styles, the sorting script (a few lines) and the
dependency graph (SVG laid out here, in layers by dependency depth, so no
Graphviz is needed) are all inline.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from ._folder import Row
from .provenance.graph import COLOURS, DependencyGraph

__all__ = ["render_report", "svg_graph"]

#: Row status -> graph status for colours (the graph knows fresh/stale/unknown/missing).
_FILL = {
    "ok": COLOURS["fresh"],
    "stale": COLOURS["stale"],
    "damaged": ("#e1bee7", "#4a148c"),
    "legacy": COLOURS["unknown"],
    "missing": COLOURS["missing"],
}
_COLUMNS = ("name", "family", "parameters", "date", "size", "compute_time", "format", "status")
_W, _H, _GAP_X, _GAP_Y = 180, 34, 60, 14

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#212121}
table{border-collapse:collapse}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}
th{cursor:pointer;background:#f5f5f5}th:after{content:" \\2195";color:#999}
tr.stale td{background:#ffebee}tr.damaged td{background:#f3e5f5}tr.legacy td{color:#616161}
td.num{text-align:right}
"""
# Sorting: a click on a header sorts by that column (numbers by data-v), twice reverses;
# a link ending in #sort=<column> opens the page sorted.
_SCRIPT = r"""
document.querySelectorAll("#entries th").forEach(function(th,i){th.onclick=function(){
var b=th.closest("table").tBodies[0],r=Array.from(b.rows),d=th.dataset.dir==="a"?-1:1;
r.sort(function(x,y){var p=x.cells[i].dataset.v,q=y.cells[i].dataset.v;
return (isNaN(p-q)?p.localeCompare(q):p-q)*d});th.dataset.dir=d>0?"a":"d";
r.forEach(function(e){b.appendChild(e)});document.body.dataset.sorted=th.dataset.col+(d>0?"a":"d")}});
var m=location.hash.match(/^#sort=(\w+)/);document.querySelectorAll("#entries th").forEach(
function(th){if(m&&th.dataset.col===m[1])th.click()});
"""


def _size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""  # unreachable: the loop returns at GiB


def _cell(column: str, row: Row) -> str:
    value = getattr(row, column)
    if column == "size":
        sort, shown, cls = str(value if value is not None else -1), _size(value), "num"
    elif column == "compute_time":
        sort = str(value if value is not None else -1)
        shown, cls = ("" if value is None else f"{value:.3g} s"), "num"
    else:
        sort, shown, cls = str(value), str(value), ""
    title = f' title="{html.escape(row.reason)}"' if column == "status" and row.reason else ""
    return f'<td class="{cls}" data-v="{html.escape(sort)}"{title}>{html.escape(shown)}</td>'


def _table(rows: Iterable[Row]) -> str:
    head = "".join(f'<th data-col="{c}">{c.replace("_", " ")}</th>' for c in _COLUMNS)
    body = "".join(
        f'<tr class="{html.escape(r.status)}">' + "".join(_cell(c, r) for c in _COLUMNS) + "</tr>"
        for r in rows
    )
    return f'<table id="entries"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _layers(graph: DependencyGraph) -> dict[str, int]:
    """Each node's depth: 0 for entries computed from nothing, else 1 + its deepest input."""
    inputs: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        inputs.setdefault(b, []).append(a)
    depth: dict[str, int] = {}

    def visit(node: str, seen: frozenset[str]) -> int:
        if node not in depth:
            # A cycle in records is never written, but must not recurse forever.
            ups = [visit(u, seen | {node}) for u in inputs.get(node, []) if u not in seen]
            depth[node] = 1 + max(ups, default=-1)
        return depth[node]

    for node in graph.nodes:
        visit(node, frozenset())
    return depth


def svg_graph(graph: DependencyGraph, statuses: dict[str, str]) -> str:
    """The graph as inline SVG: columns by depth, boxes coloured by *statuses*."""
    depth = _layers(graph)
    slots: dict[int, int] = {}
    where: dict[str, tuple[int, int]] = {}
    for node in graph.nodes:
        row = slots.get(depth[node], 0)
        slots[depth[node]] = row + 1
        where[node] = (depth[node] * (_W + _GAP_X) + 10, row * (_H + _GAP_Y) + 10)
    width = (max(depth.values(), default=0) + 1) * (_W + _GAP_X)
    height = max(slots.values(), default=1) * (_H + _GAP_Y) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="graph" width="{width}" height="{height}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto"><path d="M0,0L10,5L0,10z" fill="#757575"/>'
        "</marker></defs>",
    ]
    for a, b in graph.edges:
        (x1, y1), (x2, y2) = where[a], where[b]
        parts.append(
            f'<line x1="{x1 + _W}" y1="{y1 + _H // 2}" x2="{x2}" y2="{y2 + _H // 2}" '
            'stroke="#757575" marker-end="url(#arrow)"/>'
        )
    for node, (x, y) in where.items():
        status = statuses.get(node, graph.nodes[node])
        fill, text = _FILL.get(status, COLOURS.get(status, COLOURS["unknown"]))
        label = html.escape(node if len(node) <= 24 else node[:23] + "\u2026")
        parts.append(
            f'<g class="node {html.escape(status)}" data-name="{html.escape(node)}">'
            f"<title>{html.escape(node)}: {html.escape(status)}</title>"
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="5" fill="{fill}" '
            f'stroke="{text}"/><text x="{x + 8}" y="{y + 22}" fill="{text}" '
            f'font-size="13">{label}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_report(rows: list[Row], graph: DependencyGraph, title: str) -> str:
    """The whole page: a summary, the sortable table and the graph."""
    total = sum(r.size or 0 for r in rows)
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "stale", "damaged", "legacy")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    statuses = {r.name: r.status for r in rows}
    graph_part = svg_graph(graph, statuses) if graph.nodes else "<p>No entries.</p>"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p id="summary">{len(rows)} entries, {_size(total)}'
        f"{': ' + summary if summary else ''}</p>"
        f"<h2>Entries</h2>{_table(rows)}<h2>Dependencies</h2>{graph_part}"
        f"<script>{_SCRIPT}</script></body></html>"
    )
