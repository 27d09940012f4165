"""CM.status() and CM.graph(): tables and graphs of stored entries, from their records."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metricache import (
    DatedCacheManager,
    DependencyGraph,
    MissingDependencyError,
    NpyStorageInterface,
    ParameterizedDatedCacheManager,
)


def stored(tmp_path: Path) -> ParameterizedDatedCacheManager:
    CM = ParameterizedDatedCacheManager(NpyStorageInterface(tmp_path / "cache"), verbose=False)

    @CM.collect(params_list=[[1], [2]])
    def poly_X(a: int) -> np.ndarray:
        return np.arange(3) * a

    @CM.collect(params_list=[[1, 2]])
    def poly_Y(a: int, b: int) -> np.ndarray:
        return CM.poly_X(a) + CM.poly_X(2) + b

    CM.poly_Y(1, 2)
    return CM


def test_status_lists_every_entry_with_its_status_and_reason(tmp_path: Path) -> None:
    CM = stored(tmp_path)
    CM.invalidate("poly_X_1", downstream=False)
    table = CM.status()
    assert [row.name for row in table] == ["poly_X_1", "poly_X_2", "poly_Y_1_2"]
    assert [row.status for row in table] == ["stale", "fresh", "stale"]
    assert table["poly_Y_1_2"].parameters == "(1, 2)"
    assert table["poly_Y_1_2"].reason.startswith("poly_X_1 was invalidated on ")
    assert table["poly_X_2"].size == CM.info("poly_X_2").size
    text = str(table).splitlines()
    assert text[0].split() == ["name", "parameters", "date", "size", "compute_time", "status",
                               "reason"]  # fmt: skip
    assert len(text) == 4 and "poly_Y_1_2" in text[3] and "stale" in text[3]
    html = table._repr_html_()
    assert html.count("<tr") == 4 and '<tr class="stale">' in html


def test_status_to_pandas(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frame = stored(tmp_path).status().to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["name"]) == ["poly_X_1", "poly_X_2", "poly_Y_1_2"]
    assert set(frame["status"]) == {"fresh"}


def test_to_pandas_without_pandas_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(MissingDependencyError, match="pip install pandas"):
        stored(tmp_path).status().to_pandas()


def test_graph_from_records_in_a_fresh_process(tmp_path: Path) -> None:
    stored(tmp_path)
    script = (
        "from metricache import DatedCacheManager, NpyStorageInterface\n"
        f"CM = DatedCacheManager(NpyStorageInterface({str(tmp_path / 'cache')!r}),"
        " verbose=False)\n"
        "print(CM.graph().to_mermaid())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    found = re.findall(r'^    (n\d+)\["([^"]*)"\]:::(\w+)$', out, re.M)
    nodes = {node: label for node, label, _ in found}
    assert set(nodes.values()) == {"poly_X_1", "poly_X_2", "poly_Y_1_2"}
    ids = {label: node for node, label in nodes.items()}
    edges = set(re.findall(r"^    (n\d+) --> (n\d+)$", out, re.M))
    assert edges == {(ids["poly_X_1"], ids["poly_Y_1_2"]), (ids["poly_X_2"], ids["poly_Y_1_2"])}
    assert check_mermaid(out) == 3


HOSTILE = DependencyGraph(
    nodes={'a"quoted"': "fresh", "semi;colon#hash&amp<x>": "stale", "plain": "missing"},
    edges=[('a"quoted"', "semi;colon#hash&amp<x>"), ("plain", 'a"quoted"')],
)


def check_mermaid(text: str) -> int:
    """Every line is a header, a node, an edge or a class; return the number of nodes."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    # No raw quote, bracket or angle bracket in a label: those are entity codes (#34;).
    node = re.compile(r'    n\d+\["[^"<>\[\]]*"\]:::(fresh|stale|unknown|missing)')
    edge = re.compile(r"    n\d+ --> n\d+")
    klass = re.compile(r"    classDef \w+ fill:#[0-9a-f]{6},color:#[0-9a-f]{6}")
    assert all(node.fullmatch(x) or edge.fullmatch(x) or klass.fullmatch(x) for x in lines[1:])
    return sum(bool(node.fullmatch(x)) for x in lines)


def dot_tokens(text: str) -> list[str]:
    """A tiny DOT tokenizer: quoted strings (with \\" escapes), IDs and punctuation."""
    pattern = re.compile(r'\s*("(?:[^"\\]|\\.)*"|->|[{}\[\];,=]|[A-Za-z_][A-Za-z_0-9]*)')
    tokens, at = [], 0
    while at < len(text.rstrip()):
        match = pattern.match(text, at)
        assert match, f"cannot tokenize DOT at {text[at : at + 20]!r}"
        tokens.append(match.group(1))
        at = match.end()
    return tokens


def parse_dot(text: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Node and edge names of our DOT subset (statements ``id [a=v, ...];``, ``a -> b;``)."""
    tokens = dot_tokens(text)
    assert tokens[:3] == ["digraph", "metricache", "{"] and tokens[-1] == "}"
    statements = " ".join(tokens[3:-1]).split(" ; ")
    nodes, edges = set(), set()
    unquote = lambda t: t[1:-1].replace('\\"', '"')  # noqa: E731
    for statement in statements:
        parts = statement.rstrip(" ;").split(" ")
        if parts[0] in ("rankdir", "node"):
            continue
        if len(parts) >= 3 and parts[1] == "->":
            edges.add((unquote(parts[0]), unquote(parts[2])))
        else:
            assert parts[1] == "[" and parts[-1] == "]", statement
            nodes.add(unquote(parts[0]))
    return nodes, edges


def test_labels_are_escaped_in_mermaid_and_dot() -> None:
    assert check_mermaid(HOSTILE.to_mermaid()) == 3
    assert "#34;quoted#34;" in HOSTILE.to_mermaid()
    nodes, edges = parse_dot(HOSTILE.to_dot())
    assert nodes == set(HOSTILE.nodes)
    assert edges == set(HOSTILE.edges)


def test_dot_renders_with_graphviz_when_installed(tmp_path: Path) -> None:
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("Graphviz's dot is not installed (the DOT is still parsed above)")
    graph = stored(tmp_path).graph()
    svg = subprocess.run(
        [dot, "-Tsvg"], input=graph.to_dot(), capture_output=True, text=True, check=True
    ).stdout
    assert "<svg" in svg and "poly_Y_1_2" in svg
    assert graph.nodes == {"poly_X_1": "fresh", "poly_X_2": "fresh", "poly_Y_1_2": "fresh"}


def test_svg_through_the_graphviz_package(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (.ci/run installs it)")
    graph = stored(tmp_path).graph()
    svg = graph.to_svg()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "poly_X_1" in svg
    assert graph._repr_svg_() == svg


def test_svg_needs_the_graphviz_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(MissingDependencyError, match="pip install graphviz"):
        HOSTILE.to_svg()
    assert HOSTILE._repr_svg_() is None
    assert HOSTILE._repr_markdown_().startswith("```mermaid\nflowchart LR")


def test_stale_nodes_are_coloured(tmp_path: Path) -> None:
    CM = stored(tmp_path)
    CM.invalidate("poly_X_2")
    graph = DatedCacheManager(CM.storage_interface, verbose=False).graph()
    assert graph.nodes == {"poly_X_1": "fresh", "poly_X_2": "stale", "poly_Y_1_2": "stale"}
    assert 'fillcolor="#ffcdd2"' in graph.to_dot()
