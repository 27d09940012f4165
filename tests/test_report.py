"""The HTML report: self-contained, and what a browser shows of it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from metricache import ParameterizedDatedCacheManager
from metricache._folder import Row
from metricache._report import render_report, svg_graph
from metricache.provenance.graph import DependencyGraph

CHROMIUM = "/usr/bin/chromium"


def filled(folder: Path) -> ParameterizedDatedCacheManager:
    CM = ParameterizedDatedCacheManager(folder, verbose=False)

    @CM.collect
    def signal() -> np.ndarray:
        return np.sin(np.arange(4000.0))

    @CM.collect(params_list=[(2,), (8,)])
    def band(n: int) -> np.ndarray:
        return np.abs(np.fft.rfft(CM.signal()))[::n]

    @CM.collect
    def peak() -> float:
        return float(max(CM.band(2).max(), CM.band(8).max()))

    CM.peak()
    return CM


def report_of(folder: Path) -> str:
    from click.testing import CliRunner

    from metricache.cli import main

    page = folder / "report.html"
    result = CliRunner().invoke(main, ["--dir", str(folder), "report", "--html", str(page)])
    assert result.exit_code == 0, result.output
    return page.read_text(encoding="utf-8")


def row(name: str, status: str = "ok", size: int = 1) -> Row:
    return Row(name, name, "", "2024-01-01T00:00:00+00:00", size, 0.5, "npy", status, "", False)


def test_page_needs_no_network(tmp_path: Path) -> None:
    filled(tmp_path)
    page = report_of(tmp_path)
    # The only URL is the SVG namespace, which is a name, never fetched.
    urls = set(re.findall(r"https?://[^\"' )]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}
    assert "<link" not in page and "src=" not in page
    assert page.count("<tr class=") == 4 and "<svg" in page


def test_graph_is_coloured_by_status() -> None:
    graph = DependencyGraph({"a": "fresh", "b": "stale", "c": "missing"}, [("a", "b"), ("c", "b")])
    svg = svg_graph(graph, {"a": "ok", "b": "stale"})
    assert '<g class="node ok" data-name="a">' in svg and 'class="node stale"' in svg
    assert 'class="node missing"' in svg and svg.count("<line") == 2
    # b depends on a: it sits one column to the right.
    xs = dict(re.findall(r'data-name="(\w)"><title>[^<]*</title><rect x="(\d+)"', svg))
    assert int(xs["b"]) > int(xs["a"]) == int(xs["c"])


def test_names_are_escaped() -> None:
    page = render_report([row("x<script>")], DependencyGraph({"x<script>": "fresh"}), "t&t")
    assert "<script>alert" not in page and "x&lt;script&gt;" in page and "t&amp;t" in page


def test_empty_folder(tmp_path: Path) -> None:
    page = report_of(tmp_path)
    assert "0 entries" in page and "No entries." in page


def chromium_dom(page: Path, profile: Path) -> str:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--dump-dom",
    ]  # fmt: skip
    done = subprocess.run(
        [CHROMIUM, *flags, page.as_uri() + "#sort=size"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="needs Debian's chromium (.ci/run installs it)"
)
def test_report_in_headless_chromium(tmp_path: Path) -> None:
    """One launch: the page's script ran (sorted by size), the table rows and the SVG show."""
    folder = tmp_path / "cache"
    filled(folder)
    report_of(folder)
    dom = chromium_dom(folder / "report.html", tmp_path / "profile")
    assert 'data-sorted="sizea"' in dom  # the script ran and sorted ascending by size
    rows = re.findall(r'<tr class="(\w+)"><td class="" data-v="([\w]+)"', dom)
    assert [status for status, _ in rows] == ["ok"] * 4
    sizes = [int(v) for v in re.findall(r'<td class="num" data-v="(\d+)">[^<]*B</td>', dom)]
    assert sizes == sorted(sizes) and len(sizes) == 4
    assert [name for _, name in rows][0] == "peak"  # one float: the smallest entry
    assert re.search(r"<svg[^>]*id=\"graph\"", dom) and dom.count('class="node ok"') == 4
