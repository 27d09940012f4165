"""Ctrl-C at any moment of a get() leaves no lock, ``.wait`` record or computing entry behind.

Real SIGINTs (``os.kill``) are fired at random moments into a process looping
``get(use_stored=False)`` while a contender recomputes the same name; afterwards
the name must be free in that process and in every other.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from metricache._locking import LocalLocks

from ._race_workers import contender, interrupted_loop

STRESS = os.environ.get("METRICACHE_STRESS") == "1"
SIGNALS = 600 if STRESS else 60


def _wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


@pytest.mark.stress
@pytest.mark.timeout(240)
def test_sigint_at_random_moments_leaves_every_lock_free(tmp_path: Path) -> None:
    folder, stop, out = tmp_path / "cache", tmp_path / "stop", tmp_path / "report.json"
    ctx = multiprocessing.get_context("spawn")
    loop = ctx.Process(target=interrupted_loop, args=(str(folder), str(stop), str(out)))
    rival = ctx.Process(target=contender, args=(str(folder), str(stop)))
    loop.start()
    rival.start()
    try:
        _wait_for(Path(str(out) + ".ready"))
        assert loop.pid is not None
        for _ in range(SIGNALS):
            time.sleep(random.uniform(0.001, 0.03))
            os.kill(loop.pid, signal.SIGINT)
        stop.write_text("stop")
        _wait_for(out)
        report = json.loads(out.read_text())
        # Another process can take the name while the interrupted one still lives:
        # no byte-range lock leaked there.
        with LocalLocks(folder).hold("m", timeout=10):
            pass
    finally:
        Path(str(stop) + ".done").write_text("done")
        stop.write_text("stop")
        loop.join(30)
        rival.join(30)
    assert loop.exitcode == 0 and rival.exitcode == 0
    assert report["interrupts"] > SIGNALS // 4  # the signals really landed inside get()
    assert report["errors"] == []  # e.g. no false MetricCycleError from a leaked entry
    assert report["calls"] > 0
    assert not report["owned"]  # no thread lock left held
    assert report["held_again"]  # and the name can be held again there
    assert report["stack"] == []  # nothing is "computing" any more
    assert not list((folder / ".metricache" / "locks").glob(f"*-{loop.pid}-*.wait"))


def test_an_interrupted_compute_leaves_no_trace_in_this_process(tmp_path: Path) -> None:
    from metricache import DatedCacheManager, NpyStorageInterface
    from metricache._context import computing_stack

    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"ok": lambda: np.arange(3), "boom": _interrupting})
    CM["ok"]
    with pytest.raises(KeyboardInterrupt):
        CM["boom"]
    assert computing_stack(CM.locks.scope) == ()  # type: ignore[attr-defined]
    # Memory hits are back on their fast path (the hot dict, not the recording one).
    assert CM._computing == 0 and CM._cache is CM.cache
    with CM.locks.hold("boom", timeout=0):  # and the lock is free
        pass


def _interrupting() -> None:
    raise KeyboardInterrupt
