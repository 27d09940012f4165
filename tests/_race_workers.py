"""Code the race, interrupt and hostile-file tests run in other (spawned) processes."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from metricache import DatedCacheManager, NpzStorageInterface
from metricache.exceptions import CorruptEntryError, MetricNotStoredError

#: What the rewriters store: values whose hint-less reading would be another value
#: (a Python int past int64 is stored as text, a list as members).
VALUES: list[Any] = [2**70, np.arange(4, dtype=np.int64), [np.zeros(2), np.ones(3)], 7.5]


def is_one_of_values(value: Any) -> bool:
    """Whether *value* is exactly one of :data:`VALUES` (type, dtype and content)."""
    for good in VALUES:
        if type(value) is not type(good):
            continue
        if isinstance(good, np.ndarray):
            if value.dtype == good.dtype and np.array_equal(value, good):
                return True
        elif isinstance(good, list):
            if len(value) == len(good) and all(
                type(a) is np.ndarray and np.array_equal(a, b)
                for a, b in zip(value, good, strict=True)
            ):
                return True
        elif value == good:
            return True
    return False


def _pick() -> Any:
    return random.choice(VALUES)


def race_role(role: str, folder: str, seconds: float, out: str, seed: int) -> None:
    """Run one role of the delete/rewrite/load race for *seconds*; counts go to *out*."""
    random.seed(seed)
    warnings.simplefilter("ignore")  # a write racing a delete may warn; values are checked
    storage = NpzStorageInterface(folder)
    CM = DatedCacheManager(storage, verbose=False)
    CM.set_functions_dict({"m": _pick})
    counts = {"good": 0, "wrong": 0, "not_stored": 0, "corrupt": 0, "os_error": 0, "ops": 0}
    wrong: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts["ops"] += 1
        try:
            if role == "writer":
                CM.get("m", use_stored=False)
            elif role == "deleter":
                # Half through the manager (locked), half straight on the storage
                # (no lock): a delete racing a writer between its record and its data.
                CM.delete("m") if random.random() < 0.5 else storage.delete("m")
                time.sleep(random.random() * 0.002)
            elif random.random() < 0.8:
                value = storage.load("m")
                if is_one_of_values(value):
                    counts["good"] += 1
                else:
                    counts["wrong"] += 1
                    wrong.append(repr(value)[:120])
            else:
                storage.verify("m")
                counts["good"] += 1
        except MetricNotStoredError:
            counts["not_stored"] += 1
        except CorruptEntryError as err:
            counts["corrupt"] += 1
            wrong.append(f"corrupt: {err}"[:200])
        except OSError as err:
            counts["os_error"] += 1
            wrong.append(f"{type(err).__name__}: {err}"[:200])
    Path(out).write_text(json.dumps({"counts": counts, "wrong": wrong[:10]}))


# -- interrupts -------------------------------------------------------------------------


def interrupted_loop(folder: str, stop: str, out: str) -> None:
    """Loop ``get(use_stored=False)`` until *stop* exists; SIGINT interrupts only get().

    Then report whether the name's locks are free and nothing is left computing.
    """
    from metricache._context import computing_stack

    CM = DatedCacheManager(NpzStorageInterface(folder), verbose=False)
    CM.set_functions_dict({"m": lambda: np.arange(100)})
    inside = [False]
    interrupts = [0]

    def on_sigint(signum: int, frame: Any) -> None:
        if inside[0]:
            inside[0] = False
            raise KeyboardInterrupt
        interrupts[0] -= 1  # landed outside get(): not counted as an interrupt of it

    signal.signal(signal.SIGINT, on_sigint)
    Path(out + ".ready").write_text("ready")
    calls, errors = 0, []
    while not os.path.exists(stop):
        try:
            inside[0] = True
            CM.get("m", use_stored=False)
            inside[0] = False
            calls += 1
        except KeyboardInterrupt:
            interrupts[0] += 1
        except Exception as err:  # noqa: BLE001 - a leak shows as an error: reported
            inside[0] = False
            errors.append(repr(err)[:200])
            if len(errors) > 5:
                break
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    locks = CM.storage_interface.lock_provider()
    thread_lock = getattr(locks, "_locks", {}).get("m")
    owned = bool(thread_lock is not None and thread_lock._is_owned())
    scope = getattr(locks, "scope", "")
    held_again = False
    try:
        with locks.hold("m", timeout=5):
            held_again = True
    except Exception:  # noqa: BLE001 - reported, not raised
        held_again = False
    report = {
        "calls": calls,
        "interrupts": interrupts[0],
        "owned": owned,
        "held_again": held_again,
        "stack": list(computing_stack(scope)),
        "errors": errors,
    }
    Path(out).write_text(json.dumps(report))
    # Stay alive (holding whatever leaked) until the parent has checked the locks.
    deadline = time.monotonic() + 30
    while not os.path.exists(stop + ".done") and time.monotonic() < deadline:
        time.sleep(0.02)


def contender(folder: str, stop: str) -> None:
    """Recompute the same name until *stop* exists, so the interrupted loop waits often."""
    CM = DatedCacheManager(NpzStorageInterface(folder), verbose=False)
    CM.set_functions_dict({"m": lambda: np.arange(100)})
    while not os.path.exists(stop):
        CM.get("m", use_stored=False)


# -- hostile files ----------------------------------------------------------------------


def bounded_get(kind: str, folder: str, expected: str, out: str) -> None:
    """``get("m")`` under an address-space limit; report the value, warnings and peak RSS."""
    from metricache import JsonStorageInterface, NpyStorageInterface

    limit = 3 << 30  # a runaway read fails here instead of exhausting the machine
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    storage = {"npz": NpzStorageInterface, "npy": NpyStorageInterface}.get(
        kind, JsonStorageInterface
    )(folder)
    CM = DatedCacheManager(storage, verbose=False)
    wanted = json.loads(expected)
    CM.set_functions_dict({"m": lambda: wanted if kind == "json" else np.array(wanted)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = CM.get("m")
            result = json.dumps(np.asarray(value).tolist())
            error = None
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            result, error = None, f"{type(err).__name__}: {err}"
    peak_kib = _peak_rss_kib()
    report = {
        "value": result,
        "error": error,
        "warnings": [w.category.__name__ for w in caught],
        "rss_mib": peak_kib / 1024,
    }
    Path(out).write_text(json.dumps(report))


def _peak_rss_kib() -> int:
    """This process's own peak RSS (KiB) since it started its program.

    Not ``ru_maxrss``: Linux carries that over an ``execve``, so a spawned child
    would report the peak of the (large) test process it was forked from.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def hold_temp_file(path: str, ready: str, release: str) -> None:
    """Create a temp file and hold its flock (a writer mid-write) until *release* exists."""
    import fcntl

    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    Path(ready).write_text("ready")
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.close(fd)


if __name__ == "__main__":  # python _race_workers.py stage FOLDER READY RELEASE
    _, command, folder, ready, release = sys.argv
    assert command == "stage"
    from metricache._store import LocalStore

    def slow_write(f: Any) -> None:
        f.write(b"partial")
        f.flush()
        Path(ready).write_text("ready")
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)

    LocalStore(folder).stage("x.npy", slow_write).discard()
