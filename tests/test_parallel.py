"""get_all/get_many on real worker processes: skips, on_error, progress, kills, races."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest

from metricache import (
    GridError,
    GridSummary,
    MissingDependencyError,
    ParameterizedDatedCacheManager,
)

from ._grid_workers import build, computes

ROOT = Path(__file__).resolve().parent.parent


def test_n_jobs_computes_each_entry_once_and_returns_values_in_order(tmp_path: Path) -> None:
    CM = build(tmp_path / "c", tmp_path / "log", n=6)
    CM.square(1)  # stored before: skipped, not submitted
    values = CM.square.get_all(n_jobs=2, progress=False)
    assert [v[0] for v in values] == [i * i for i in range(6)]
    assert Counter(computes(tmp_path / "log")) == Counter(f"square_{i}" for i in range(6))
    assert CM.check().ok
    summary = CM.square.get_all(n_jobs=2, return_values=False)
    assert isinstance(summary, GridSummary)
    assert (summary.computed, summary.loaded, summary.failed) == (0, 6, 0)
    assert len(computes(tmp_path / "log")) == 6


def test_any_executor_and_get_many(tmp_path: Path) -> None:
    CM = build(tmp_path / "c", tmp_path / "log", n=4)
    names = [CM.square.metric_name(i) for i in (3, 1)]
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        summary = CM.get_many(names, executor=pool, return_values=False)
    assert (summary.computed, summary.failed) == (2, 0) and summary.compute_time > 0
    assert sorted(computes(tmp_path / "log")) == ["square_1", "square_3"]
    assert [v[0] for v in CM.get_many(names)] == [9.0, 1.0]


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_on_error_raise_finishes_the_others_then_names_the_failure(
    tmp_path: Path, n_jobs: int | None
) -> None:
    CM = build(tmp_path / "c", tmp_path / "log", n=4, fail=2)
    with pytest.raises(GridError) as caught:
        CM.square.get_all(n_jobs=n_jobs)
    assert list(caught.value.errors) == ["square_2"]
    assert isinstance(caught.value.errors["square_2"], ValueError)
    assert "square_2" in str(caught.value) and "no square for 2" in str(caught.value)
    assert all(CM.storage_interface.exists(f"square_{i}") for i in (0, 1, 3))


@pytest.mark.parametrize("n_jobs", [None, 2])
def test_on_error_return_and_skip(tmp_path: Path, n_jobs: int | None) -> None:
    CM = build(tmp_path / "c", tmp_path / "log", n=4, fail=1)
    returned = list(CM.square.get_all(n_jobs=n_jobs, on_error="return"))
    assert isinstance(returned[1], ValueError) and returned[3][0] == 9.0
    skipped = list(CM.square.get_all(n_jobs=n_jobs, on_error="skip"))
    assert [v[0] for v in skipped] == [0.0, 4.0, 9.0]
    with pytest.raises(ValueError, match="on_error"):
        CM.square.get_all(on_error="ignore")  # type: ignore[arg-type]


def test_progress_bar_starts_at_the_stored_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    CM = build(tmp_path / "c", tmp_path / "log", n=5, fail=4)
    CM.square(0)
    CM.square(1)
    CM.square.get_all(progress=True, on_error="skip")
    err = capsys.readouterr().err
    assert "2/5" in err and "5/5" in err
    assert "computed=2" in err and "failed=1" in err and "loaded=2" in err
    CM.square.get_all(progress=False, on_error="skip")
    assert capsys.readouterr().err == ""


def test_a_missing_extra_names_the_install_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    CM = build(tmp_path / "c", tmp_path / "log", n=2)
    monkeypatch.setitem(sys.modules, "loky", None)  # import loky now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install metricache\[parallel\]"):
        CM.square.get_all(n_jobs=2)
    assert computes(tmp_path / "log") == []


def test_a_killed_worker_costs_one_recompute(tmp_path: Path) -> None:
    stall = str(tmp_path / "stall")
    Path(f"{stall}-3").touch()
    log = tmp_path / "log"
    CM = build(tmp_path / "c", log, n=6, stall=stall)
    pid_file = Path(f"{stall}-3.pid")

    def kill_when_the_others_are_done() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if pid_file.exists() and len(computes(log)) == 6:
                Path(f"{stall}-3").unlink()  # the rerun must not stall
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_when_the_others_are_done)
    killer.start()
    first = CM.square.get_all(n_jobs=2, batch=1, return_values=False, on_error="return")
    killer.join()
    assert first.failed == 1 and list(first.errors) == ["square_3"]
    rerun = CM.square.get_all(n_jobs=2, batch=1, return_values=False)
    assert (rerun.computed, rerun.loaded, rerun.failed) == (1, 5, 0)
    counted = Counter(computes(log))
    assert counted.pop("square_3") == 2 and set(counted.values()) == {1}
    assert CM.check().ok and not list(tmp_path.joinpath("c").glob(".mctmp-*"))


def test_changing_n_jobs_between_grids_fails_nothing(tmp_path: Path) -> None:
    # Each size has its own pool: grids on 3 then 1 workers do not resize (and kill
    # the workers of) the pool another thread's grid of 2 is still using.
    stall = str(tmp_path / "stall")
    Path(f"{stall}-0").touch()
    other = build(tmp_path / "d", tmp_path / "log-d", n=4, stall=stall)
    outcome: list[GridSummary] = []
    beside = threading.Thread(
        target=lambda: outcome.append(
            other.square.get_all(n_jobs=2, batch=1, return_values=False, on_error="return")
        )
    )
    beside.start()
    deadline = time.monotonic() + 60
    while not Path(f"{stall}-0.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    CM = build(tmp_path / "c", tmp_path / "log", n=8)
    for n_jobs, use_stored in ((3, True), (4, False), (3, False)):
        summary = CM.square.get_all(
            n_jobs=n_jobs, batch=1, use_stored=use_stored, return_values=False
        )
        assert (summary.computed, summary.failed) == (8, 0)
    Path(f"{stall}-0").unlink()
    beside.join()
    assert (outcome[0].computed, outcome[0].failed) == (4, 0), outcome[0].errors
    assert len(computes(tmp_path / "log")) == 24
    assert sorted(computes(tmp_path / "log-d")) == sorted(f"square_{i}" for i in range(4))
    assert CM.check().ok and other.check().ok


NOTEBOOK = """
import os, sys, time
import numpy as np
from metricache import ParameterizedDatedCacheManager

folder, log, n_jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
CM = ParameterizedDatedCacheManager(folder, verbose=False)

def note(name):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (name + "\\n").encode())
    os.close(fd)

@CM.collect(params_list=[[1], [2], [3]])
def base(a):
    note(f"base_{a}")
    time.sleep(0.1)
    return np.arange(3.0) * a

@CM.collect(params_list=[[a, b] for a in (1, 2, 3) for b in (1, 2, 3)])
def grid(a, b):
    note(f"grid_{a}_{b}")
    time.sleep(0.1)
    return CM.base(a) + b  # a dependency: loaded, or waited for, never computed twice

values = CM.grid.get_all(n_jobs=n_jobs, progress=True)
assert [float(v[1]) for v in values] == [a + b for a in (1, 2, 3) for b in (1, 2, 3)]
CM2 = ParameterizedDatedCacheManager(folder, verbose=False)
for name in CM.grid.collected._declared:
    CM2.verify(name)
print("ok")
"""


def test_two_processes_fill_one_grid_of_main_functions_once_each(tmp_path: Path) -> None:
    script = tmp_path / "notebook.py"
    script.write_text(textwrap.dedent(NOTEBOOK))
    folder, log = tmp_path / "c", tmp_path / "log"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    runs = [
        subprocess.Popen(
            [sys.executable, str(script), str(folder), str(log), "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    for run in runs:
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0, err
        assert out.strip() == "ok" and "9/9" in err  # the bar, on stderr
    counted = Counter(computes(log))
    expected = [f"grid_{a}_{b}" for a in (1, 2, 3) for b in (1, 2, 3)]
    assert counted == Counter(expected + ["base_1", "base_2", "base_3"])
    manager = ParameterizedDatedCacheManager(str(folder), verbose=False)
    assert len([e for e in manager.entries() if e.name.startswith("grid_")]) == 9


def test_a_warm_get_all_inside_a_metric_still_records_its_dependencies(tmp_path: Path) -> None:
    from metricache import ParameterizedDatedCacheManager

    CM = ParameterizedDatedCacheManager(tmp_path, verbose=False)
    CM.collect(lambda k: np.arange(3.0) * k, base_name="part", params_list=[[1], [2]])
    CM.set_functions_dict({"whole": lambda: float(sum(v.sum() for v in CM.part.get_all()))})
    assert [v.tolist() for v in CM.part.get_all()] == [[0, 1, 2], [0, 2, 4]]  # now warm
    assert CM["whole"] == 9.0
    assert dict(CM.info("whole").dependencies or ()).keys() == {"part_1", "part_2"}
