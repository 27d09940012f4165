"""The examples run as a user runs them: a new process each, on a fresh folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_spectral_features_shows_compute_reuse_staleness_and_cli(tmp_path: Path) -> None:
    out = run_example("spectral_features.py", str(tmp_path))
    assert "first run (computes 19 entries)" in out and "19 ok, 0 damaged" in out
    assert "table is stale: helper taper() in features.py changed" in out
    assert out.rstrip().endswith("table is fresh")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count("<tr class=") == 19 and "<svg" in page
    # After the recompute, the folder holds the 19 entries, all current and verified.
    listing = subprocess.run(
        [sys.executable, "-m", "metricache", "--dir", str(tmp_path / "cache"), "ls", "--json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = {r["name"]: r for r in json.loads(listing)}
    assert len(rows) == 19 and all(r["status"] == "ok" for r in rows.values())


def test_tour_runs_cell_by_cell_as_a_script(tmp_path: Path) -> None:
    out = run_example("tour.py", str(tmp_path / "tour"))
    assert "smoothed_16 is stale: smoothed_16 was invalidated" in out
    assert "$ metricache verify\n4 ok, 0 damaged" in out
    assert "status" in out.splitlines()[1]  # the status table's header follows the timings
