"""`make demo` runs: the quickstart computes on the first run and loads on the second."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"


def test_quickstart_computes_then_loads(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(QUICKSTART), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    first, second = done.stdout.split("== second run")
    assert "Compute metric_1" in first and "Compute poly_Y_1_2" in first
    assert "Compute" not in second
    assert "Load metric_2" in second and "Load poly_Y_4_5" in second
    assert (tmp_path / "cache" / "basic" / "metric_1.npy").is_file()
