"""Crash safety with real SIGKILLs: a killed writer never costs a good value or leaves litter."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metricache import DatedCacheManager, MetricNotStoredError
from metricache._layout import record_key
from metricache._store import _HOST, TEMP_PREFIX

from ._entrybytes import Slot
from ._workers import CRASH_STEPS, NAMES, STORAGES, generation_of, make_value

WORKERS = Path(__file__).with_name("_workers.py")
STRESS = os.environ.get("METRICACHE_STRESS") == "1"
#: Kills per storage interface (two interfaces: 50 kills in a default run).
KILLS = 250 if STRESS else 25
#: Generations of one writer run start at run * GEN_STRIDE, so every value is unique.
GEN_STRIDE = 1_000_000

State = dict[str, "int | None"]


@pytest.fixture(params=sorted(STORAGES))
def kind(request: pytest.FixtureRequest) -> str:
    """Each file storage interface the writer can use: ``npz`` and ``npy``."""
    return str(request.param)


def temp_files(folder: Path) -> list[str]:
    """Temp files anywhere in the cache folder (writers stage next to data and records)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(f"{TEMP_PREFIX}*"))


def start_writer(
    kind: str, folder: Path, log: Path, first_gen: int, seed: int, count: int | None = None
) -> subprocess.Popen[bytes]:
    """Start a writer process, which waits for :func:`go`; its stderr goes next to its log."""
    args = [sys.executable, str(WORKERS), "writer", kind, str(folder), str(log)]
    args += [str(first_gen), str(seed)] + ([] if count is None else [str(count)])
    with open(log.with_suffix(".err"), "wb") as err:
        return subprocess.Popen(args, stdin=subprocess.PIPE, stderr=err)


def go(proc: subprocess.Popen[bytes]) -> None:
    """Let a started writer begin writing."""
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.close()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill and reap a writer (if still running) and close its pipe."""
    proc.kill()
    proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()


def stderr_of(log: Path) -> str:
    """What the writer printed on stderr (for failure messages)."""
    return log.with_suffix(".err").read_text(errors="replace")


def wait_until_writing(proc: subprocess.Popen[bytes], log: Path) -> None:
    """Return once the writer has started its first write (imports done, loop entered)."""
    deadline = time.monotonic() + 60
    while not (log.exists() and log.stat().st_size):
        assert proc.poll() is None, f"writer exited early:\n{stderr_of(log)}"
        assert time.monotonic() < deadline, "writer never started writing"
        time.sleep(0.002)


def expected_after(log: Path, state: State) -> dict[str, set[int | None]]:
    """Per name, the generations a reader may find after this run's writer died.

    *state* holds what each entry held before the run (None: never stored). A write
    the log shows as finished (``D``) is the only allowed value until the next one
    starts (``S``); while one is in flight, the last finished value or the new one.
    """
    settled: State = dict(state)
    allowed = {name: {gen} for name, gen in settled.items()}
    for line in log.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # the kill landed inside the append: not a complete line
        tag, gen, name = line.split()
        if tag == "S":
            allowed[name] = {settled[name], int(gen)}
        else:
            settled[name] = int(gen)
            allowed[name] = {int(gen)}
    return allowed


def check_folder(
    kind: str, folder: Path, allowed: dict[str, set[int | None]] | None = None
) -> State:
    """Open the folder afresh and load every entry; return the generation each holds.

    Every entry must load whole (or be not stored) and match its record; with
    *allowed*, each must also hold one of the generations allowed for it.
    """
    storage = STORAGES[kind](folder)
    # The writer is dead and reaped: cleanup() removes its temp files.
    storage.cleanup()
    assert temp_files(folder) == []
    CM = DatedCacheManager(storage, verbose=False, on_corrupt="raise")
    state: State = {}
    for name in NAMES:
        try:
            value = CM.load(name)
        except MetricNotStoredError:
            state[name] = None
        else:
            state[name] = generation_of(kind, value)
            # The data (a file, or a row of a packed index) matches its record.
            assert CM.verify(name).size == Slot(folder, name + storage.file_ext).size()
        if allowed is not None:
            assert state[name] in allowed[name], f"{name}: found {state[name]}, not {allowed}"
    assert not (folder / ".metricache" / "quarantine").exists()
    return state


@pytest.mark.stress
def test_sigkilled_writer_never_loses_or_damages_an_entry(
    kind: str, home: str, tmp_path: Path
) -> None:
    # Both homes: one file per entry, and packed (small values in the index, in
    # one transaction each; large ones in files).
    seed = int(os.environ.get("METRICACHE_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    folder = tmp_path / "cache"
    state: State = dict.fromkeys(NAMES)
    litter = 0

    def writer(run: int) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"run-{run}.log"
        return start_writer(kind, folder, log, run * GEN_STRIDE, rng.randrange(2**32)), log

    standby = writer(0)
    proc = standby[0]
    try:
        for run in range(KILLS):
            (proc, log), standby = standby, writer(run + 1)
            # The next writer starts up (imports) while this one writes and gets killed.
            go(proc)
            wait_until_writing(proc, log)
            time.sleep(rng.uniform(0, 0.05))
            assert proc.poll() is None, f"writer failed (seed {seed}):\n{stderr_of(log)}"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            assert proc.returncode == -signal.SIGKILL, stderr_of(log)
            litter += bool(temp_files(folder))
            state = check_folder(kind, folder, expected_after(log, state))
    finally:
        stop(proc)
        stop(standby[0])
    # The kills did land mid-write: some left temp files for the next open to remove
    # (a packed folder writes temp files only for its large values).
    assert litter or home == "packed", f"no kill interrupted a write (seed {seed})"


def test_cleanup_never_removes_a_live_writers_temp_files(kind: str, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    log = tmp_path / "writer.log"
    proc = start_writer(kind, folder, log, first_gen=0, seed=1, count=120)
    go(proc)
    try:
        wait_until_writing(proc, log)
        opens = 0
        # Each cleanup runs while the writer writes; deleting its temp file would fail
        # its rename.
        while proc.poll() is None:
            STORAGES[kind](folder).cleanup()
            opens += 1
        assert proc.wait() == 0, stderr_of(log)
    finally:
        stop(proc)
    assert opens
    check_folder(kind, folder, expected_after(log, dict.fromkeys(NAMES)))


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live child process (its pid owns temp files in the tests)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    """The pid of a child that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_cleanup_removes_dead_writers_temp_files_only(
    kind: str, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    folder = tmp_path / "cache"
    meta = (folder / record_key("m", STORAGES[kind](folder).file_ext)).parent
    meta.mkdir(parents=True, exist_ok=True)

    def temp(where: Path, pid: int, host: str = _HOST) -> Path:
        path = where / f"{TEMP_PREFIX}{host}-{pid}-0123456789ab"
        path.write_bytes(b"partial")
        return path

    dead = [temp(folder, dead_pid()), temp(meta, dead_pid())]
    live = [temp(folder, os.getpid()), temp(meta, sleeper.pid), temp(folder, sleeper.pid)]
    # A writer on another host may be alive: its fresh temp file is not ours to judge.
    foreign = temp(folder, dead_pid(), host="some-other-host")

    STORAGES[kind](folder)
    assert all(p.exists() for p in dead)  # opening removes nothing
    assert STORAGES[kind](folder).cleanup() == 2
    assert [p.exists() for p in dead] == [False, False]
    assert all(p.exists() for p in live)
    assert foreign.exists()

    # Once the sleeper dies, its temp files are litter too; ours (we are alive) stay.
    sleeper.kill()
    sleeper.wait()
    STORAGES[kind](folder).cleanup()
    assert [p.exists() for p in live] == [True, False, False]


def crash_at(kind: str, folder: Path, gen: int, step: str) -> subprocess.Popen[bytes]:
    """Start a writer that saves generation *gen* and SIGKILLs itself at *step*."""
    args = [sys.executable, str(WORKERS), "crash", kind, str(folder), str(gen), step]
    return subprocess.Popen(args, stderr=subprocess.PIPE)


def stored_generation(kind: str, folder: Path) -> int | None:
    """The generation the first name loads as from a fresh open (None: not stored)."""
    return check_folder(kind, folder)[NAMES[0]]


def test_kill_at_each_commit_step_leaves_old_or_new_value(kind: str, tmp_path: Path) -> None:
    # Generations 1 and 43 have equal sizes: only the checksum tells old data from new.
    old, new = 1, 43
    cases = [(step, first) for step in CRASH_STEPS for first in (False, True)]
    folders = [tmp_path / f"{step}-{'first' if first else 'overwrite'}" for step, first in cases]
    for folder, (_, first_write) in zip(folders, cases, strict=True):
        storage = STORAGES[kind](folder)
        if not first_write:
            storage.save(NAMES[0], make_value(kind, old))
    # The writers are independent: run them side by side (each is mostly start-up time).
    procs = [crash_at(kind, f, new, step) for f, (step, _) in zip(folders, cases, strict=True)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")
    for folder, (step, first_write) in zip(folders, cases, strict=True):
        # A kill before the data rename leaves its temp file, for the next open to remove.
        assert bool(temp_files(folder)) == (step != "data-renamed"), folder.name
        # Only a finished data rename publishes the new value; before it, the old one stands.
        expected = new if step == "data-renamed" else None if first_write else old
        assert stored_generation(kind, folder) == expected, folder.name
        # Nothing is wedged: the next write and load work.
        STORAGES[kind](folder).save(NAMES[0], make_value(kind, 3))
        assert stored_generation(kind, folder) == 3, folder.name


def test_repeated_kills_between_record_and_data_keep_the_old_value(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    # Generations 1, 43 and 85 have equal sizes: sizes cannot tell which data is on disk.
    STORAGES["npy"](folder).save(NAMES[0], make_value("npy", 1))
    # Each crash leaves a newer record beside the same old data file.
    for gen in (43, 85, 127):
        _, err = crash_at("npy", folder, gen, "record-renamed").communicate(timeout=60)
        assert stored_generation("npy", folder) == 1, err.decode(errors="replace")
