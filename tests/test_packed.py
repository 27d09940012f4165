"""The packed home: small entries and records in one index file, large entries in files.

Real folders, real SQLite files, real processes (spawned and forked) and real
SIGKILLs; the index is inspected with the standard library's sqlite3, as a user
debugging a folder would.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from metricache import (
    AutoStorageInterface,
    CorruptEntryError,
    DatedCacheManager,
    FileStorageInterface,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
    ParameterizedDatedCacheManager,
)
from metricache._homes import FILES, PACKED, recorded_home
from metricache._layout import INDEX_KEY, PACKED_MAX, QUARANTINE_DIR, record_key
from metricache._packed import PackedStore
from metricache._store import LocalStore
from metricache.cli import main
from metricache.codecs import NpyCodec

from ._compare import assert_same
from ._workers import PATIENCE

ROOT = Path(__file__).resolve().parent.parent

#: Every test here sees the home metricache detects, whatever the suite default.
pytestmark = pytest.mark.usefixtures("detected_home")


def index_keys(folder: Path) -> set[str]:
    """Every key in the folder's index (read with plain sqlite3)."""
    with sqlite3.connect(folder / INDEX_KEY) as conn:
        return {row[0] for row in conn.execute("SELECT key FROM blobs")}


def files_of(folder: Path) -> set[str]:
    """Every file under *folder*, relative, except the index's own."""
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith("index.sqlite3")
    }


def small() -> np.ndarray:
    return np.arange(10.0)


def large() -> np.ndarray:
    return np.arange(PACKED_MAX // 8 + 100, dtype=np.float64)


def test_small_entries_live_in_the_index_and_large_ones_in_their_files(tmp_path: Path) -> None:
    storage = AutoStorageInterface(tmp_path)
    storage.save("tiny", small())
    storage.save("big", large())
    storage.save("config", {"depth": 3})
    assert recorded_home(str(tmp_path)) == PACKED
    keys = index_keys(tmp_path)
    assert {"tiny.npy", "config.npz", record_key("tiny", ".npy")} <= keys
    assert record_key("big", ".npy") in keys and "big.npy" not in keys
    # A large miss creates one file: its data (the record is in the index).
    assert files_of(tmp_path) == {"big.npy", ".metricache/layout.json"}
    assert_same(np.load(tmp_path / "big.npy"), large())  # users can np.load big results
    fresh = AutoStorageInterface(tmp_path)
    assert_same(fresh.load("tiny"), small())
    assert_same(fresh.load("big"), large())
    assert fresh.load("config") == {"depth": 3}
    assert sorted(e.name for e in fresh.entries()) == ["big", "config", "tiny"]
    assert fresh.check().clean and len(fresh.check().ok) == 3


def test_an_entry_moving_between_homes_keeps_its_newest_value(tmp_path: Path) -> None:
    storage = NpyStorageInterface(tmp_path)
    for value in (small(), large(), small() + 1, large() + 1, small() + 2):
        storage.save("m", value)
        assert_same(NpyStorageInterface(tmp_path).load("m"), value)
    assert not (tmp_path / "m.npy").exists()  # the large file went with the small rewrite
    storage.save("m", large() + 3)
    assert "m.npy" not in index_keys(tmp_path)  # and the packed copy with the large one
    assert_same(NpyStorageInterface(tmp_path).load("m"), large() + 3)


def test_mixed_interfaces_share_one_packed_folder(tmp_path: Path) -> None:
    NpzStorageInterface(tmp_path).save("m", [np.arange(3), np.ones(2)])
    JsonStorageInterface(tmp_path).save("m", {"a": [1, 2]})
    AutoStorageInterface(tmp_path).save("auto", np.arange(4))
    FileStorageInterface(tmp_path, NpyCodec()).save("m", np.arange(5))
    assert_same(NpzStorageInterface(tmp_path).load("m"), [np.arange(3), np.ones(2)])
    assert JsonStorageInterface(tmp_path).load("m") == {"a": [1, 2]}
    assert_same(NpyStorageInterface(tmp_path).load("m"), np.arange(5))
    assert_same(AutoStorageInterface(tmp_path).load("auto"), np.arange(4))
    found = {(e.name, e.codec) for e in AutoStorageInterface(tmp_path).entries()}
    assert found == {("m", "npz"), ("m", "json"), ("m", "npy"), ("auto", "npy")}
    assert NpzStorageInterface(tmp_path).check().clean


def old_writer(folder: Path) -> FileStorageInterface:
    """An interface writing per-file entries, unaware of any index (an older version)."""
    return FileStorageInterface(folder, NpyCodec(), store=LocalStore(folder))


def test_an_old_per_file_folder_stays_per_file_until_opted_in(tmp_path: Path) -> None:
    old_writer(tmp_path).save("old", np.arange(3))
    AutoStorageInterface(tmp_path).save("new", np.arange(4))  # auto: the folder has entries
    assert recorded_home(str(tmp_path)) == FILES
    assert (tmp_path / "new.npy").is_file() and not (tmp_path / INDEX_KEY).exists()
    assert type(NpyStorageInterface(tmp_path).store) is LocalStore  # no index to look in

    opted = AutoStorageInterface(tmp_path, packed=True)
    assert_same(opted.load("old"), np.arange(3))
    opted.save("newer", np.arange(5))
    assert recorded_home(str(tmp_path)) == PACKED
    assert "newer.npy" in index_keys(tmp_path)
    for name, value in [("old", np.arange(3)), ("new", np.arange(4)), ("newer", np.arange(5))]:
        assert_same(NpyStorageInterface(tmp_path).load(name), value)


def test_old_and_new_writers_on_one_folder_resolve_to_the_newest_entry(tmp_path: Path) -> None:
    new = AutoStorageInterface(tmp_path, packed=True)
    new.save("m", np.arange(3))
    old_writer(tmp_path).save("m", np.arange(30))  # per-file, after the packed one
    assert (tmp_path / "m.npy").is_file() and "m.npy" in index_keys(tmp_path)
    for _ in range(3):  # deterministic: the same answer every time, in every interface
        assert_same(NpyStorageInterface(tmp_path).load("m"), np.arange(30))
        assert_same(AutoStorageInterface(tmp_path).load("m"), np.arange(30))
    assert NpyStorageInterface(tmp_path).verify("m") is not None
    new.save("m", np.arange(300))  # packed again: newest, and the file copy is gone
    assert not (tmp_path / "m.npy").exists()
    assert_same(NpyStorageInterface(tmp_path).load("m"), np.arange(300))
    assert [e.name for e in new.entries()] == ["m"]
    assert new.check().clean


def test_packed_false_writes_files_and_still_reads_the_index(tmp_path: Path) -> None:
    AutoStorageInterface(tmp_path).save("packed", np.arange(2))
    per_file = NpyStorageInterface(tmp_path)
    per_file_store = FileStorageInterface(tmp_path, NpyCodec(), packed=False)
    per_file_store.save("file", np.arange(3))
    assert (tmp_path / "file.npy").is_file()
    assert_same(per_file_store.load("packed"), np.arange(2))
    assert_same(per_file.load("file"), np.arange(3))
    assert recorded_home(str(tmp_path)) == PACKED  # the folder's record is unchanged


@pytest.mark.parametrize(
    ("interface", "value"),
    [
        (NpzStorageInterface, [np.arange(2.0), 3]),
        (NpyStorageInterface, np.arange(2.0)),
        (JsonStorageInterface, {"a": [1.0, 2.0]}),
    ],
)
def test_every_interface_takes_packed(tmp_path: Path, interface: Any, value: Any) -> None:
    per_file = interface(tmp_path / "files", packed=False)
    per_file.save("m", value)
    assert recorded_home(str(tmp_path / "files")) == FILES
    assert (tmp_path / "files" / f"m{per_file.file_ext}").is_file()
    packed = interface(tmp_path / "packed", packed=True)
    packed.save("m", value)
    assert recorded_home(str(tmp_path / "packed")) == PACKED
    assert f"m{packed.file_ext}" in index_keys(tmp_path / "packed")
    assert not (tmp_path / "packed" / f"m{packed.file_ext}").exists()
    for folder in ("files", "packed"):  # either opens with the default, and reads the same
        assert_same(interface(tmp_path / folder).load("m"), value)


def test_a_memory_mapping_interface_defaults_to_files_but_may_pack(tmp_path: Path) -> None:
    mapped = NpyStorageInterface(tmp_path / "a", mmap_mode="r")
    mapped.save("m", np.arange(3.0))
    assert isinstance(mapped.load("m"), np.memmap)
    packed = NpyStorageInterface(tmp_path / "b", mmap_mode="r", packed=True)
    packed.save("m", np.arange(3.0))
    loaded = packed.load("m")
    assert not isinstance(loaded, np.memmap)  # read from the index into memory
    assert_same(loaded, np.arange(3.0))


def test_durable_packed_commits_use_full_sync(tmp_path: Path) -> None:
    storage = FileStorageInterface(tmp_path, NpyCodec(), durable=True)
    storage.save("m", small())
    store = storage.store
    assert isinstance(store, PackedStore)
    conn = store.index._conn(create=False)
    assert conn is not None
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    plain = FileStorageInterface(tmp_path, NpyCodec()).store
    assert isinstance(plain, PackedStore)
    plain.exists("m")
    conn = plain.index._conn(create=False)
    assert conn is not None and conn.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_quarantine_moves_a_packed_entry_out_of_the_index(tmp_path: Path) -> None:
    storage = NpyStorageInterface(tmp_path)
    storage.save("m", small())
    storage.save("keep", small() + 1)
    where = storage.quarantine("m")
    assert where is not None and QUARANTINE_DIR in where
    moved = list((tmp_path / QUARANTINE_DIR).rglob("m.npy"))
    assert len(moved) == 1 and same_bytes(moved[0], small())
    assert not storage.exists("m")
    assert_same(storage.load("keep"), small() + 1)


def same_bytes(path: Path, value: np.ndarray) -> bool:
    """Whether the quarantined file holds *value* as npy (it is a plain file now)."""
    return bool(np.array_equal(np.load(path), value))


KILLED_LAYOUT_WRITER = """
import os, signal, sys
from metricache._store import temp_path
with open(temp_path(os.path.join(sys.argv[1], ".metricache")), "x") as f:
    f.write('{"format": 1')  # half a layout record, then killed
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_cleanup_removes_the_layout_temp_file_of_a_killed_writer(tmp_path: Path) -> None:
    (tmp_path / ".metricache").mkdir()
    run = subprocess.run([sys.executable, "-c", KILLED_LAYOUT_WRITER, str(tmp_path)], check=False)
    assert run.returncode == -signal.SIGKILL
    assert len(list((tmp_path / ".metricache").glob(".mctmp-*"))) == 1
    storage = AutoStorageInterface(tmp_path)
    assert storage.cleanup() == 1
    assert list((tmp_path / ".metricache").glob(".mctmp-*")) == []
    storage.save("m", small())  # the folder works as ever
    assert_same(AutoStorageInterface(tmp_path).load("m"), small())


def test_a_read_fetches_record_and_data_in_one_query(tmp_path: Path) -> None:
    storage = NpyStorageInterface(tmp_path)
    storage.save("m", small())
    reader = NpyStorageInterface(tmp_path)
    reader.load("m")  # the connection is open
    queries: list[str] = []
    conn = reader.store.index._conn(create=False)  # type: ignore[attr-defined]
    conn.set_trace_callback(queries.append)
    assert_same(reader.load("m"), small())
    assert_same(AutoStorageInterface(tmp_path).load("m"), small())
    conn.set_trace_callback(None)
    assert len([q for q in queries if q.startswith("SELECT")]) == 1


@pytest.mark.parametrize(
    ("value", "seen"), [(small, "before"), (large, "after")], ids=["packed", "file"]
)
def test_a_read_racing_a_rewrite_is_one_entry_never_corrupt(
    tmp_path: Path, value: Any, seen: str
) -> None:
    # Another writer commits while a read's block holds the rows fetched before it.
    # A packed entry's rows are a consistent pair: the read is the entry before the
    # rewrite. A file entry's new data does not match the block's record: read again.
    storage = NpyStorageInterface(tmp_path)
    storage.save("m", value())
    reader = NpyStorageInterface(tmp_path)
    store = reader.store
    assert isinstance(store, PackedStore)
    entries = reader._entries  # type: ignore[attr-defined]
    before = reader.info("m")
    keys = [entries.records.key("m"), entries.data_key("m")]
    with store.reading(keys):
        NpyStorageInterface(tmp_path).save("m", value() + 1)  # another writer, mid-read
        after = NpyStorageInterface(tmp_path).info("m")
        loaded, info = entries.read("m")
        assert_same(loaded, value() if seen == "before" else value() + 1)
        assert info == (before if seen == "before" else after)
        assert_same(entries.read("m")[0], value() + 1)  # rows answer once, then the index
    assert_same(reader.load("m"), value() + 1)


# -- the index damaged --------------------------------------------------------------


def overwrite(path: Path, offset: int, garbage: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(garbage)


def checkpoint(folder: Path) -> None:
    """Fold the WAL into the index file, so its bytes are where a test damages them."""
    with sqlite3.connect(folder / INDEX_KEY) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def filled_manager(folder: Path, on_corrupt: Any = "recompute") -> tuple[Any, list[str]]:
    calls: list[str] = []
    CM = DatedCacheManager(AutoStorageInterface(folder), verbose=False, on_corrupt=on_corrupt)

    def metric(name: str, value: Any) -> Any:
        def compute() -> Any:
            calls.append(name)
            return value

        return compute

    CM.set_functions_dict(
        {"tiny": metric("tiny", small()), "big": metric("big", large()),
         "cfg": metric("cfg", {"k": [1, 2]})}
    )  # fmt: skip
    return CM, calls


def test_an_overwritten_index_header_is_quarantined_and_its_entries_recomputed(
    tmp_path: Path,
) -> None:
    CM, _ = filled_manager(tmp_path)
    for name in ("tiny", "big", "cfg"):
        CM.get(name)
    checkpoint(tmp_path)
    overwrite(tmp_path / INDEX_KEY, 0, b"this is no database" * 4)
    raising, calls = filled_manager(tmp_path, on_corrupt="raise")
    with pytest.raises(CorruptEntryError, match="index.sqlite3 is damaged"):
        raising.get("tiny")
    assert calls == []
    # The large entry's data file is intact but its record was in the index: not stored.
    assert (tmp_path / "big.npy").is_file()
    assert AutoStorageInterface(tmp_path).stored_names() == []
    quarantined = list((tmp_path / QUARANTINE_DIR).glob("index-*/index.sqlite3"))
    assert len(quarantined) == 1  # moved aside, whole, for inspection
    fresh, calls = filled_manager(tmp_path)
    assert_same(fresh.get("tiny"), small())
    assert fresh.get("cfg") == {"k": [1, 2]}
    # The large entry's data file is intact, but its record was in the index: recomputed.
    assert_same(fresh.get("big"), large())
    assert sorted(calls) == ["big", "cfg", "tiny"]
    again, calls = filled_manager(tmp_path)
    for name in ("tiny", "big", "cfg"):
        again.get(name)
    assert calls == []
    assert AutoStorageInterface(tmp_path).check().damaged == []


@pytest.mark.parametrize("marker", [np.full(64, 7.25), np.random.default_rng(5).random(64)])
def test_a_damaged_packed_value_is_caught(tmp_path: Path, marker: np.ndarray) -> None:
    # The disk damages bytes of the index file where the value is (compressed or not):
    # its checksum, or its compression's own framing, catches it; nothing else is lost.
    storage = NpyStorageInterface(tmp_path)
    storage.save("victim", marker)
    storage.save("other", small())
    checkpoint(tmp_path)
    with sqlite3.connect(tmp_path / INDEX_KEY) as conn:
        stored = conn.execute("SELECT data FROM blobs WHERE key = 'victim.npy'").fetchone()[0]
    at = (tmp_path / INDEX_KEY).read_bytes().index(stored)
    overwrite(tmp_path / INDEX_KEY, at + len(stored) // 2, b"\x00\x01\x02\x03")
    with pytest.raises(CorruptEntryError, match="damaged|does not match its metadata"):
        NpyStorageInterface(tmp_path).load("victim")
    report = NpyStorageInterface(tmp_path).check()
    assert [d.name for d in report.damaged] == ["victim"]
    calls: list[int] = []

    def victim() -> np.ndarray:
        calls.append(1)
        return marker

    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"victim": victim, "other": small})
    assert_same(CM.get("victim"), marker)
    assert calls == [1]
    assert_same(CM.get("other"), small())  # nothing else lost
    assert NpyStorageInterface(tmp_path).check().clean


# -- processes ---------------------------------------------------------------------


KILL_IN_TRANSACTION = """
import os, signal, sys
import numpy as np
from metricache import NpyStorageInterface
from metricache import _index
storage = NpyStorageInterface(sys.argv[1])
real_put = _index.Index.put
count = [0]
def put(self, key, data, ident):
    stamp = real_put(self, key, data, ident)
    count[0] += 1
    if count[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)  # inside the transaction, before COMMIT
    return stamp
_index.Index.put = put
storage.save("m", np.arange(10.0) + 1)
"""


@pytest.mark.parametrize("after_puts", [1, 2])
def test_sigkill_inside_a_packed_transaction_keeps_the_old_entry(
    tmp_path: Path, after_puts: int
) -> None:
    NpyStorageInterface(tmp_path).save("m", np.arange(10.0))
    done = subprocess.run(
        [sys.executable, "-c", KILL_IN_TRANSACTION, str(tmp_path), str(after_puts)],
        timeout=PATIENCE * 4,
    )
    assert done.returncode == -signal.SIGKILL
    fresh = NpyStorageInterface(tmp_path)
    assert_same(fresh.load("m"), np.arange(10.0))  # the old entry, whole
    assert fresh.check().clean
    fresh.save("m", np.arange(10.0) + 2)  # the index takes writes again at once
    assert_same(NpyStorageInterface(tmp_path).load("m"), np.arange(10.0) + 2)


def fill_worker(folder: str, log: str, start: Any) -> None:
    """Get metrics f_0..f_59 (in an order of its own), logging each compute."""
    CM = ParameterizedDatedCacheManager(folder, verbose=False)

    @CM.collect(params_list=[(i,) for i in range(60)])
    def f(i: int) -> np.ndarray:
        with open(log, "a") as out:
            out.write(f"{i}\n")
        return np.arange(10.0) + i

    start.wait(PATIENCE)
    order = range(60) if os.getpid() % 2 else range(59, -1, -1)
    for i in order:
        assert np.array_equal(CM.f(i), np.arange(10.0) + i)


def test_two_processes_fill_one_packed_folder_computing_each_entry_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    folder, log = str(tmp_path / "cache"), str(tmp_path / "computes.log")
    workers = [ctx.Process(target=fill_worker, args=(folder, log, start)) for _ in range(2)]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(PATIENCE * 4)
        assert w.exitcode == 0
    computed = Path(log).read_text().split()
    assert sorted(computed, key=int) == [str(i) for i in range(60)]  # each exactly once
    storage = AutoStorageInterface(folder)
    assert recorded_home(folder) == PACKED
    assert len(list(storage.entries())) == 60 and storage.check().clean
    for i in range(60):
        assert_same(storage.load(f"f_{i}"), np.arange(10.0) + i)


def forked_child(storage: NpyStorageInterface, queue: Any) -> None:
    storage.save("child", storage.load("parent") * 2)
    queue.put(int(storage.load("child").sum()))


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the Linux default start method")
def test_an_interface_used_across_fork_reopens_its_index(tmp_path: Path) -> None:
    storage = NpyStorageInterface(tmp_path)
    storage.save("parent", np.arange(10))  # the parent's connection is open now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=forked_child, args=(storage, queue))
    child.start()
    assert queue.get(timeout=PATIENCE) == 90
    child.join(PATIENCE)
    assert child.exitcode == 0
    storage.save("parent", np.arange(5))  # the parent's connection still works
    assert_same(storage.load("child"), np.arange(10) * 2)
    assert_same(NpyStorageInterface(tmp_path).load("parent"), np.arange(5))


# -- the command line ----------------------------------------------------------------


def test_the_command_line_works_on_a_packed_folder(tmp_path: Path) -> None:
    CM, _ = filled_manager(tmp_path)
    for name in ("tiny", "big", "cfg"):
        CM.get(name)
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, ["--dir", str(tmp_path), *args])
        assert result.exit_code == code, result.output
        return result.output

    listing = run("ls")
    assert all(name in listing for name in ("tiny", "big", "cfg"))
    assert "tiny" in run("info", "tiny")
    run("verify")
    run("rm", "tiny", "--yes")
    assert "tiny" not in run("ls")
    assert not AutoStorageInterface(tmp_path).exists("tiny")
    run("gc", "--dry-run")
    assert_same(AutoStorageInterface(tmp_path).load("big"), large())
