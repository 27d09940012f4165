"""The metricache command line, through click's CliRunner (one test per command and option)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from metricache import DatedCacheManager
from metricache._store import _HOST
from metricache.cli import main

# A small analysis: raw -> scaled(k) for three k -> total, in the user's own module.
ANALYSIS = """
import numpy as np
from metricache import ParameterizedDatedCacheManager

CM = ParameterizedDatedCacheManager({folder!r}, verbose=False)

@CM.collect
def raw():
    return np.arange(2000.0)

@CM.collect(params_list=[(1,), (2,), (0.5,)])
def scaled(k):
    return CM.raw() * k

@CM.collect
def total():
    return float(sum(CM.scaled(k).sum() for k in (1, 2, 0.5)))
"""
NAMES = ["raw", "scaled_0p5", "scaled_1", "scaled_2", "total"]


def write_analysis(where: Path, folder: Path, name: str = "analysis", edit: str = "") -> None:
    code = ANALYSIS.format(folder=str(folder))
    (where / f"{name}.py").write_text(code.replace("* k", "* k" + edit))


@pytest.fixture
def filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A cache folder filled by another process running the user's module."""
    folder = tmp_path / "cache"
    write_analysis(tmp_path, folder)
    code = "import analysis; analysis.CM.total()"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # undone after: --module adds the folder
    sys.modules.pop("analysis", None)
    yield folder
    sys.modules.pop("analysis", None)  # --module imported it: the next test has its own


def run(folder: Path, *args: str, code: int = 0, **kw: object) -> Result:
    result = CliRunner().invoke(main, ["--dir", str(folder), *args], **kw)  # type: ignore[arg-type]
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


def damage(folder: Path, name: str) -> None:
    path = folder / f"{name}.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_ls_lists_every_entry_with_status(filled: Path) -> None:
    out = run(filled, "ls").output.splitlines()
    assert out[0].split() == ["name", "parameters", "date", "size", "time", "format", "status"]
    assert [line.split()[0] for line in out[1:]] == NAMES
    assert all(line.split()[-1] == "ok" for line in out[1:])


def test_ls_json_sort_and_patterns(filled: Path) -> None:
    rows = json.loads(run(filled, "ls", "--json", "--sort", "size").output)
    assert rows[0]["name"] == "total"  # one float: the smallest
    assert {r["format"] for r in rows} == {"npy"}
    rows = json.loads(run(filled, "ls", "--json", "scaled_*", "raw").output)
    assert [r["name"] for r in rows] == ["raw", "scaled_0p5", "scaled_1", "scaled_2"]
    assert {r["family"] for r in rows} == {"raw", "scaled"}
    names = [r["name"] for r in json.loads(run(filled, "ls", "--json", "-r").output)]
    assert names == NAMES[::-1]


def test_ls_with_module_shows_parameters(filled: Path) -> None:
    rows = json.loads(run(filled, "ls", "--json", "--module", "analysis:CM", "scaled_*").output)
    assert [r["parameters"] for r in rows] == ["(0.5,)", "(1,)", "(2,)"]


def test_ls_shows_parameters_and_families_from_the_records_alone(filled: Path) -> None:
    rows = json.loads(run(filled, "ls", "--json", "scaled_*").output)  # no --module
    assert [r["parameters"] for r in rows] == ["(0.5,)", "(1,)", "(2,)"]
    assert {r["family"] for r in rows} == {"scaled"}


def test_du_groups_by_the_recorded_family_not_by_the_name(tmp_path: Path) -> None:
    CM = DatedCacheManager(tmp_path / "cache", verbose=False)
    # A family whose base name ends like a parameter: guessing from names would split it.
    CM.collect(lambda k: np.arange(10.0) * k, base_name="run_2", params_list=[[1], [3]])
    CM.run_2.get_all()
    families = json.loads(run(tmp_path / "cache", "du", "--json").output)["families"]
    assert set(families) == {"run_2"}


def test_ls_marks_damaged_and_legacy(filled: Path) -> None:
    (filled / "scaled_2.npy").write_bytes(b"short")
    np.save(filled / "old.npy", np.ones(3))
    np.save(filled / "old_date.npy", np.array("2021-05-06"))
    rows = {r["name"]: r for r in json.loads(run(filled, "ls", "--json").output)}
    assert rows["scaled_2"]["status"] == "damaged"
    assert rows["old"]["status"] == "legacy" and rows["old"]["date"].startswith("2021-05-06")
    assert "old_date" not in rows


def test_info_prints_every_field(filled: Path) -> None:
    out = run(filled, "info", "total").output
    for field in ("checksum: xxh3_64:", "codec: npy", "value_id: xxh3_128:", "dependencies:"):
        assert field in out
    assert "scaled_0p5  xxh3_128:" in out and "algorithm  " in out


def test_unknown_name_is_a_click_error(filled: Path) -> None:
    result = run(filled, "info", "nope", code=1)
    assert result.output.startswith("Error: metric 'nope' is not stored")
    assert "Traceback" not in result.output


def test_explain_from_records_alone(filled: Path) -> None:
    assert run(filled, "explain", "total").output.startswith("total is fresh")
    # Another run recomputes scaled_1 with a new value: total is stale, records say why.
    write_analysis(filled.parent, filled, name="edited", edit=" + 1")
    subprocess.run(
        [sys.executable, "-c", "import edited; edited.CM.save('scaled_1', force=True)"],
        cwd=filled.parent,
        check=True,
    )
    report = json.loads(run(filled, "explain", "total", "--json").output)
    assert report["stale"] and report["reasons"][0]["kind"] == "dependency"
    assert "scaled_1 was recomputed" in run(filled, "explain", "total").output


def test_explain_with_module_sees_code_changes(filled: Path) -> None:
    write_analysis(filled.parent, filled, edit=" + 1")  # the code changed, nothing recomputed
    assert "code changes not compared" in run(filled, "explain", "scaled_1").output
    out = run(filled, "explain", "scaled_1", "--module", "analysis:CM").output
    assert out.startswith("scaled_1 is stale") and "code of scaled" in out


def test_du_totals_per_family(filled: Path) -> None:
    out = json.loads(run(filled, "du", "--json").output)
    assert out["families"]["scaled"]["entries"] == 3
    assert out["families"]["scaled"]["bytes"] == 3 * (filled / "scaled_1.npy").stat().st_size
    assert out["total_bytes"] > sum(f["bytes"] for f in out["families"].values())
    assert "scaled  3" in run(filled, "du").output


def test_verify_exit_codes_and_fix(filled: Path) -> None:
    assert run(filled, "verify").output.strip() == "5 ok, 0 damaged"
    damage(filled, "scaled_1")
    out = run(filled, "verify", code=1).output
    assert "damaged  scaled_1" in out and out.strip().endswith("4 ok, 1 damaged")
    assert run(filled, "verify", "raw").output.strip() == "1 ok, 0 damaged"
    assert "moved to" in run(filled, "verify", "--fix").output
    assert not (filled / "scaled_1.npy").exists()
    assert run(filled, "verify").output.strip() == "4 ok, 0 damaged"


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def litter(folder: Path) -> tuple[Path, Path]:
    """A dead writer's temp file and a two-year-old quarantine folder."""
    temp = folder / f".mctmp-{_HOST}-{2**22 + 12345}-abcdef123456"
    temp.write_bytes(b"half")
    old = folder / ".metricache" / "quarantine" / "20000101T000000-abcdef"
    old.mkdir(parents=True)
    (old / "x.npy").write_bytes(b"junk")
    return temp, old


def test_gc_dry_run_changes_nothing(filled: Path) -> None:
    litter(filled)
    before = tree(filled)
    out = run(filled, "gc", "--dry-run", "--max-size", "1KB").output
    assert "would remove .mctmp-" in out and "would remove .metricache/quarantine/" in out
    assert "would evict" in out
    assert tree(filled) == before


def test_gc_removes_litter_and_respects_older_than(filled: Path) -> None:
    temp, old = litter(filled)
    run(filled, "gc", "--older-than", "100000d")
    assert not temp.exists() and old.exists()
    run(filled, "gc", "--older-than", "30d")
    assert not old.exists()
    assert run(filled, "verify").output.strip() == "5 ok, 0 damaged"


def test_gc_max_size_evicts_by_score_never_pinned(filled: Path) -> None:
    DatedCacheManager(filled, verbose=False).pin("scaled_2")
    # Room for all but one array: the small total stays, one unprotected array goes.
    out = run(filled, "gc", "--max-size", "50KB", "--keep", "raw").output
    assert len(out.splitlines()) == 1 and out.startswith("evicted scaled_")
    left = json.loads(run(filled, "ls", "--json").output)
    assert {"raw", "scaled_2", "total"} <= {r["name"] for r in left} and len(left) == 4
    # No room for anything: pinned and kept entries still stay, and gc says so.
    out = run(filled, "gc", "--max-size", "20KB", "--keep", "raw").output
    assert "the rest is pinned or kept" in out
    left = {r["name"]: r for r in json.loads(run(filled, "ls", "--json").output)}
    assert set(left) == {"raw", "scaled_2"} and left["scaled_2"]["pinned"]


def test_eviction_score_prefers_large_cheap_idle_entries() -> None:
    from datetime import datetime, timezone

    from metricache import EntryInfo
    from metricache._gc import eviction_score

    now = datetime.now(timezone.utc)
    big_cheap = EntryInfo("a", now, duration=0.1, size=2**30)
    small_costly = EntryInfo("b", now, duration=3600, size=2**20)
    t = now.timestamp()
    assert eviction_score(big_cheap, t, t) > eviction_score(small_costly, t, t)
    assert eviction_score(big_cheap, t - 86400 * 10, t) > eviction_score(big_cheap, t, t)


def test_gc_bad_sizes_are_usage_errors(filled: Path) -> None:
    assert "not a size" in run(filled, "gc", "--max-size", "lots", code=2).output
    assert "not an age" in run(filled, "gc", "--older-than", "soon", code=2).output


def test_pin_command_and_unpin(filled: Path) -> None:
    run(filled, "pin", "raw")
    assert json.loads(run(filled, "ls", "--json", "raw").output)[0]["pinned"]
    run(filled, "pin", "--remove", "raw")
    assert not DatedCacheManager(filled, verbose=False).unpin("raw")


def test_rm_glob_asks_first(filled: Path) -> None:
    out = run(filled, "rm", "scaled_*", input="n\n", code=1).output
    assert "delete these 3 entries?" in out and "Aborted" in out
    assert (filled / "scaled_1.npy").exists()
    run(filled, "rm", "scaled_*", "--yes")
    left = [r["name"] for r in json.loads(run(filled, "ls", "--json").output)]
    assert left == ["raw", "total"]
    assert "no stored entry matches" in run(filled, "rm", "nothing*", "-y", code=1).output


def test_rm_downstream(filled: Path) -> None:
    out = run(filled, "rm", "scaled_1", "--downstream", "-y").output
    assert out.splitlines()[:2] == ["scaled_1", "total"]
    left = [r["name"] for r in json.loads(run(filled, "ls", "--json").output)]
    assert left == ["raw", "scaled_0p5", "scaled_2"]


def test_invalidate_pattern(filled: Path) -> None:
    out = run(filled, "invalidate", "scaled_1").output
    assert out.splitlines() == ["invalidated scaled_1", "invalidated total"]
    rows = {r["name"]: r["status"] for r in json.loads(run(filled, "ls", "--json").output)}
    assert rows == {"raw": "ok", "scaled_0p5": "ok", "scaled_1": "stale", "scaled_2": "ok",
                    "total": "stale"}  # fmt: skip
    run(filled, "invalidate", "raw", "--no-downstream")
    assert json.loads(run(filled, "ls", "--json", "scaled_2").output)[0]["status"] == "stale"


def test_graph_formats(filled: Path) -> None:
    assert run(filled, "graph").output.startswith("flowchart LR")
    dot = run(filled, "graph", "--format", "dot").output
    assert '"scaled_1" -> "total";' in dot
    assert "scaled_2" not in run(filled, "graph", "--format", "dot", "raw", "scaled_1").output
    assert "<svg" in run(filled, "graph", "--format", "svg").output


def write_legacy(folder: Path) -> None:
    """simple_metrics_manager's layout, byte for byte: <name>.npy and <name>_date.npy."""
    folder.mkdir(exist_ok=True)
    np.save(folder / "spectrum.npy", np.linspace(0, 1, 50))
    np.save(folder / "spectrum_date.npy", np.array("2019-03-04"))


def test_migrate_dry_run_then_real(tmp_path: Path) -> None:
    write_legacy(tmp_path)
    before = tree(tmp_path)
    assert "would migrate spectrum" in run(tmp_path, "migrate", "--dry-run").output
    assert tree(tmp_path) == before
    assert "1 legacy entries migrated" in run(tmp_path, "migrate").output
    row = json.loads(run(tmp_path, "ls", "--json").output)[0]
    assert (row["status"], row["date"][:10]) == ("ok", "2019-03-04")
    assert not (tmp_path / "spectrum_date.npy").exists()
    value = DatedCacheManager(tmp_path, verbose=False).load("spectrum")
    assert np.array_equal(value, np.linspace(0, 1, 50))


def test_report_html(filled: Path) -> None:
    page = filled.parent / "r.html"
    assert "5 entries" in run(filled, "report", "--html", str(page)).output
    text = page.read_text()
    assert (
        text.count('<tr class="ok">') == 5
        and "<svg" in text
        and "http" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )


def test_run_computes_a_grid_with_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cache"
    write_analysis(tmp_path, folder, name="grid")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = run(folder, "run", "grid:CM", "scaled").output
    assert "computing scaled" in out and "3 entries of scaled stored" in out
    names = [r["name"] for r in json.loads(run(folder, "ls", "--json").output)]
    assert names == ["raw", "scaled_0p5", "scaled_1", "scaled_2"]
    assert "1 entries of total stored" in run(folder, "run", "grid:CM", "total").output
    assert "no 'nope'" in run(folder, "run", "grid:nope", "total", code=2).output
    sys.modules.pop("grid", None)


def fresh_workers() -> None:
    """Worker processes that import the user's module from this test's folder.

    loky reuses its workers across calls; each keeps the import path it started
    with, so a worker of an earlier test would not find this test's module.
    """
    loky = pytest.importorskip("loky", reason="needs metricache[parallel]")
    loky.get_reusable_executor(max_workers=2).shutdown(wait=True)


def test_run_jobs_uses_parallel_get_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cache"
    write_analysis(tmp_path, folder, name="grid2")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_workers()
    assert "3 entries" in run(folder, "run", "grid2:CM", "scaled", "--jobs", "2").output
    assert len(json.loads(run(folder, "ls", "--json", "scaled_*").output)) == 3
    sys.modules.pop("grid2", None)


def test_env_dir_and_missing_folder(filled: Path) -> None:
    result = CliRunner().invoke(main, ["ls"], env={"METRICACHE_DIR": str(filled)})
    assert result.exit_code == 0 and "scaled_0p5" in result.output
    assert "is not a folder" in run(filled / "nope", "ls", code=1).output


@pytest.mark.parametrize(
    "command",
    [
        "ls",
        "info",
        "explain",
        "du",
        "verify",
        "gc",
        "rm",
        "invalidate",
        "pin",
        "graph",
        "report",
        "migrate",
        "run",
    ],  # fmt: skip
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
    assert f"metricache {command}" in result.output


def console_script() -> str:
    path = Path(sys.executable).with_name("metricache")
    if not path.exists():
        pytest.fail(f"{path} is missing: pip install -e . installs the console script")
    return str(path)


def shell(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "METRICACHE_DIR"}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_console_script_on_folders_of_other_processes(filled: Path) -> None:
    """The installed script, on a folder another process filled, damaged, with legacy files."""
    exe = console_script()
    write_legacy(filled)
    out = shell(exe, "ls", cwd=filled)
    assert out.returncode == 0 and "spectrum" in out.stdout and "legacy" in out.stdout
    assert "\x1b[" not in out.stdout  # no colour when not on a terminal
    assert shell(exe, "verify", cwd=filled).returncode == 0
    damage(filled, "raw")
    bad = shell(exe, "--dir", str(filled), "verify", cwd=filled.parent)
    assert bad.returncode == 1 and "damaged  raw" in bad.stdout
    assert shell(exe, "du", cwd=filled).returncode == 0
    explain = shell(exe, "explain", "nope", cwd=filled)
    assert explain.returncode == 1 and "Traceback" not in explain.stderr
    module = shell(sys.executable, "-m", "metricache", "--dir", str(filled), "ls", cwd=filled)
    assert module.returncode == 0 and "scaled_0p5" in module.stdout


def test_report_title_and_version(filled: Path) -> None:
    page = filled.parent / "t.html"
    run(filled, "report", "--html", str(page), "--title", "Job array 17")
    assert "<title>Job array 17</title>" in page.read_text()
    assert "version" in run(filled, "--version").output


def test_run_on_a_dask_scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    distributed = pytest.importorskip("dask.distributed", reason="needs metricache[dask]")
    folder = tmp_path / "cache"
    write_analysis(tmp_path, folder, name="grid3")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    # In-process workers: they import the user's module from this test's folder.
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    ) as cluster:
        out = run(folder, "run", "grid3:CM", "scaled", "--scheduler", cluster.scheduler_address)
    assert "3 entries of scaled stored" in out.output
    assert len(json.loads(run(folder, "ls", "--json", "scaled_*").output)) == 3
    sys.modules.pop("grid3", None)


def test_gc_evicts_the_longest_unused_first(filled: Path) -> None:
    """Of equal entries, the one whose data file was used longest ago goes first."""
    for name in ("scaled_0p5", "scaled_1", "scaled_2"):
        os.utime(filled / f"{name}.npy", (1e9, 1e9))  # used in 2001
    os.utime(filled / "scaled_1.npy", (1e6, 1e6))  # used in 1970: the longest ago
    out = run(filled, "gc", "--max-size", "50KB", "--keep", "raw", "--dry-run").output
    assert out.splitlines() == ["would evict scaled_1 (15.8 KiB)"]
