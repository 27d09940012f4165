"""The benchmark suite runs end to end (``make bench-quick``) and prints every table.

Timings are not asserted: only that each scenario ran against every contender
and reported its targets, so ``make bench`` cannot rot unnoticed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"

#: Every table title the quick run must print, in order.
TITLES = [
    "(a) memory hit",
    "(b) disk hit, fresh manager, 64 KiB",
    "(b) disk hit, fresh manager, 512 KiB",
    "(b) disk hit, fresh manager, 2 MiB",
    "(c) miss: trivial compute + store, 64 KiB",
    "(c) miss: trivial compute + store, 512 KiB",
    "(c) miss: trivial compute + store, 2 MiB",
    "(d) fill: 300 parameterized entries",
    "(d) cold read: 300 entries",
    "(e) get_all over the 300 entries, cold",
    "(e) get_all over the 300 entries, warm",
    "(f) open a folder of 2,000 entries",
    "(f) list a folder of 2,000 entries",
    "(g) frame disk hit, fresh manager, 20,000 x 10 DataFrame",
    "(g) frame miss: trivial compute + store, 20,000 x 10 DataFrame",
    "(t) fill: 100 tiny entries (10 float64)",
    "(t) cold read: 100 tiny entries",
    "(s) S3 put, 1 MiB float64 array",
    "(s) S3 get, 1 MiB float64 array",
    "(s) S3 small hit, 100 float64 values",
    "(p) get_all over 100 small entries",
    "(p) get_all over 4 x 1 MiB entries",
    "(p) get_all over 4 CPU-bound entries (~50 ms each)",
    "(p) declare 100,000 parameter sets",
    "(p) first lookups of 1,000 declared sets (of 100,000)",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, object]]:
    """Run ``benchmarks/run.py --quick --json`` once; return its output and JSON dump."""
    # No skip when joblib/diskcache are missing: `make test` installs the bench extra.
    dump = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", str(dump)],
        cwd=tmp_path_factory.getbasetemp(),
        capture_output=True,
        text=True,
        timeout=280,  # the parallel scenario starts worker pools and a Dask cluster
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(dump.read_text())


def test_prints_machine_info_first(quick_run: tuple[str, dict[str, object]]) -> None:
    out, _ = quick_run
    head = out.split("\n\n", 1)[0]
    for key in ("date", "cpu", "python", "numpy", "metricache", "joblib", "diskcache"):
        assert any(line.startswith(key) for line in head.splitlines()), key
    assert "temp dir file system" in head


def test_prints_every_scenario_table_in_order(quick_run: tuple[str, dict[str, object]]) -> None:
    out, _ = quick_run
    positions = [out.find("== " + title) for title in TITLES]
    assert -1 not in positions, [t for t, p in zip(TITLES, positions, strict=True) if p < 0]
    assert positions == sorted(positions)


def test_every_table_compares_metricache_with_the_field(
    quick_run: tuple[str, dict[str, object]],
) -> None:
    _, dump = quick_run
    tables = dump["tables"]
    assert isinstance(tables, list) and len(tables) == len(TITLES)
    for table in tables:
        names = [row["name"] for row in table["rows"]]
        assert table["baseline"] in names, table["title"]
        assert any(n.startswith("metricache") for n in names), table["title"]
        for row in table["rows"]:
            assert row["median_s"] > 0 and row["min_s"] <= row["median_s"], row
    others = {row["name"] for table in tables[:-4] for row in table["rows"]}
    assert {"joblib.Memory", "diskcache memoize", "lru_cache call"} <= others


def test_reports_each_target_with_a_verdict(quick_run: tuple[str, dict[str, object]]) -> None:
    out, dump = quick_run
    targets = [t for table in dump["tables"] for t in table["targets"]]
    # memory hit 3, disk hit 2 per size, miss 2 per size, fill 2, cold read 2, open 1,
    # frame hit 1, frame miss 1, tiny fill 1, tiny cold read 2, S3 put 1, get 1, small hit 1,
    # parallel CPU-bound 2
    assert len(targets) == 3 + 2 * 3 + 2 * 3 + 2 + 2 + 1 + 2 + 3 + 3 + 2
    verdicts = [line for line in out.splitlines() if line.strip().startswith("target:")]
    assert len(verdicts) == len(targets)
    assert all(line.endswith(("PASS", "MISS")) for line in verdicts)


def test_footnote_explains_the_old_package_is_not_measured(
    quick_run: tuple[str, dict[str, object]],
) -> None:
    out, _ = quick_run
    assert "simple_metrics_manager" in out and "numpy 2" in out
