"""Entries over any store: mixed interfaces on one folder, opening that changes nothing,
listing and checking, old records, and the commit protocol on a store without inodes."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import (
    CorruptEntryError,
    DatedCacheManager,
    FileStorageInterface,
    JsonStorageInterface,
    MetricNotStoredError,
    NpyStorageInterface,
    NpzStorageInterface,
    StorageInterface,
)
from metricache._layout import TEMP_PREFIX, old_record_key, record_key
from metricache._meta import EntryInfo, encode_record, utc_now
from metricache._store import _HOST
from metricache.codecs import JsonCodec, NpyCodec, NpzCodec

from ._compare import assert_same
from ._memstore import MemoryStore

INTERFACES = {"npz": NpzStorageInterface, "npy": NpyStorageInterface, "json": JsonStorageInterface}
VALUES = {"npz": [np.arange(3), 1.5], "npy": np.arange(6.0), "json": {"a": [1, 2]}}


def tree(folder: Path, locks: bool = True) -> dict[str, tuple[int, int, bytes]]:
    """Every file below *folder*: size, mtime (ns) and bytes (without lock files: not *locks*)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file() and (locks or ".metricache/locks" not in str(p))
    }


# -- mixed interfaces on one folder --------------------------------------------------


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(INTERFACES, 2)))
def test_two_interfaces_share_a_folder_and_keep_every_record(
    first: str, second: str, tmp_path: Path
) -> None:
    a, b = INTERFACES[first](tmp_path), INTERFACES[second](tmp_path)
    a.save("m", VALUES[first])
    b.save("m", VALUES[second])  # the same name in both formats: two entries, two records
    b.save("only_b", VALUES[second])
    infos = {first: a.info("m"), second: b.info("m")}
    for _ in range(2):  # and once more, reopened
        x, y = INTERFACES[first](tmp_path), INTERFACES[second](tmp_path)
        assert_same(x.load("m"), VALUES[first])
        assert_same(y.load("m"), VALUES[second])
        assert x.info("m") == infos[first] and y.info("m") == infos[second]
        assert x.verify("m") == infos[first] and y.verify("m") == infos[second]
        with pytest.raises(MetricNotStoredError):
            x.load("only_b")
    assert not (tmp_path / ".metricache" / "quarantine").exists()


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(INTERFACES, 2)))
def test_a_manager_never_touches_another_interfaces_files(
    first: str, second: str, tmp_path: Path
) -> None:
    INTERFACES[first](tmp_path).save("m", VALUES[first])
    before = tree(tmp_path, locks=False)
    CM = DatedCacheManager(INTERFACES[second](tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: VALUES[second]})
    assert not CM.exists("m")
    assert_same(CM.get("m"), VALUES[second])
    assert CM.delete("m")
    after = tree(tmp_path, locks=False)
    # The other format's data and record, untouched (this one's only leaves the marker
    # that its record existed, so that left-over data is never read hint-less).
    assert {k: v for k, v in after.items() if not k.endswith(".gone")} == before


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(INTERFACES, 2)))
def test_mixed_interfaces_survive_a_crash_between_record_and_data(
    first: str, second: str, tmp_path: Path
) -> None:
    a, b = INTERFACES[first](tmp_path), INTERFACES[second](tmp_path)
    a.save("m", VALUES[first])
    b.save("m", VALUES[second])
    # A writer of b's entry dies after its record, before its data commit.
    key = f"m{b.file_ext}"
    staged = b.store.stage(key, lambda f: f.write(b"never committed"))
    record = encode_record(
        EntryInfo("m", utc_now(), size=15, checksum="xxh3_64:0", codec=b.codec.name),
        [b.info("m")],  # type: ignore[list-item]
    )
    b.store.put_atomic(record_key("m", b.file_ext), lambda f: f.write(record))
    staged.discard()
    for reopened in (INTERFACES[first](tmp_path), INTERFACES[second](tmp_path)):
        kind = first if isinstance(reopened, INTERFACES[first]) else second
        assert_same(reopened.load("m"), VALUES[kind])
    assert INTERFACES[second](tmp_path).check().clean
    assert not (tmp_path / ".metricache" / "quarantine").exists()


# -- records of metricache 0.1 ----------------------------------------------------------


def write_old_record(folder: Path, storage: FileStorageInterface, name: str) -> None:
    """Move *name*'s record to where metricache 0.1 kept it (one per name)."""
    new = folder / record_key(name, storage.file_ext)
    old = folder / old_record_key(name)
    old.write_bytes(new.read_bytes())
    new.unlink()


def test_old_records_load_verified_and_are_replaced_on_the_next_write(tmp_path: Path) -> None:
    storage = NpyStorageInterface(tmp_path)
    storage.save("m", np.arange(5))
    info = storage.info("m")
    write_old_record(tmp_path, storage, "m")
    fresh = NpyStorageInterface(tmp_path)
    assert fresh.info("m") == info and fresh.verify("m") == info
    assert_same(fresh.load("m"), np.arange(5))
    (tmp_path / "m.npy").write_bytes((tmp_path / "m.npy").read_bytes()[:-8] + b"\xff" * 8)
    with pytest.raises(CorruptEntryError, match="does not match"):
        fresh.load("m")  # the old record's checksum is still checked
    fresh.save("m", np.arange(7))
    assert not (tmp_path / old_record_key("m")).exists()
    assert_same(NpyStorageInterface(tmp_path).load("m"), np.arange(7))


def test_an_old_record_of_another_format_is_not_ours(tmp_path: Path) -> None:
    npz = NpzStorageInterface(tmp_path)
    npz.save("m", [np.arange(2)])
    write_old_record(tmp_path, npz, "m")
    np.save(tmp_path / "m.npy", np.arange(9))  # a legacy npy file of the same name
    npy = NpyStorageInterface(tmp_path)
    assert_same(npy.load("m"), np.arange(9))  # not checked against the npz record
    assert npy.info("m").legacy  # type: ignore[union-attr]
    assert_same(NpzStorageInterface(tmp_path).load("m"), [np.arange(2)])
    npy.save("m", np.arange(3))  # writing the npy entry keeps the npz one's record
    assert (tmp_path / old_record_key("m")).exists()
    assert_same(NpzStorageInterface(tmp_path).load("m"), [np.arange(2)])


# -- opening changes nothing ------------------------------------------------------------


def litter(folder: Path) -> dict[str, Path]:
    """A folder with entries of every format, a legacy entry and every kind of leftover."""
    for kind, cls in INTERFACES.items():
        cls(folder).save(f"e_{kind}", VALUES[kind])
    np.save(folder / "legacy.npy", np.arange(2))
    np.save(folder / "legacy_date.npy", np.array("2020-01-02"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    files = {
        "dead_temp": folder / f"{TEMP_PREFIX}{_HOST}-{dead}-0123456789ab",
        "dead_record_temp": folder / ".metricache/meta/npy" / f"{TEMP_PREFIX}{_HOST}-{dead}-ab",
        "orphan": folder / record_key("gone", ".npy"),
        "notes": folder / "notes.txt",
        "old_temp": folder / "foo.npy.tmp",
        "own_temp": folder / f"{TEMP_PREFIX}{_HOST}-{os.getpid()}-cdef01234567",
    }
    NpyStorageInterface(folder).save("gone", np.arange(1))
    (folder / "gone.npy").unlink()  # a first write that never finished
    for key, path in files.items():
        if key != "orphan":
            path.write_bytes(b"partial")
    return files


def test_opening_listing_and_loading_change_nothing(tmp_path: Path) -> None:
    litter(tmp_path)
    before = tree(tmp_path)
    for kind, cls in INTERFACES.items():
        storage = cls(tmp_path)
        CM = DatedCacheManager(storage, verbose=False)
        assert_same(CM.load(f"e_{kind}"), VALUES[kind])
        assert CM.exists(f"e_{kind}") and CM.info(f"e_{kind}").codec == kind
        list(storage.entries())
        storage.check()
        storage.stored_names()
    assert tree(tmp_path) == before


def test_cleanup_removes_only_what_dead_writers_left(tmp_path: Path) -> None:
    files = litter(tmp_path)
    assert NpyStorageInterface(tmp_path).cleanup() == 3  # two dead temps and the orphan
    assert {k for k, p in files.items() if p.exists()} == {"notes", "old_temp", "own_temp"}
    assert NpyStorageInterface(tmp_path).cleanup() == 0


def test_a_folder_nothing_can_be_written_to_opens_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    litter(tmp_path)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "read-only folder")

    for name in ("replace", "unlink", "mkdir", "rename", "rmdir"):
        monkeypatch.setattr(os, name, refuse)
    for kind, cls in INTERFACES.items():
        CM = DatedCacheManager(cls(tmp_path), verbose=False)
        assert_same(CM.get(f"e_{kind}"), VALUES[kind])
    assert_same(DatedCacheManager(NpyStorageInterface(tmp_path)).get("legacy"), np.arange(2))


# -- listing and checking -------------------------------------------------------------


def test_entries_lists_every_format_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    litter(tmp_path)
    for codec in (NpyCodec, NpzCodec, JsonCodec):
        monkeypatch.setattr(codec, "read", lambda *a, **k: pytest.fail("decoded a value"))
    found = {(e.name, e.codec, e.legacy) for e in NpzStorageInterface(tmp_path).entries()}
    assert found == {
        ("e_npz", "npz", False),
        ("e_npy", "npy", False),
        ("e_json", "json", False),
        ("legacy", "npy", True),
    }
    manager = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    assert {e.name for e in manager.entries()} == {"e_npz", "e_npy", "e_json", "legacy"}


def test_check_reports_every_kind_of_problem_and_changes_nothing(tmp_path: Path) -> None:
    files = litter(tmp_path)
    data = tmp_path / "e_npy.npy"
    data.write_bytes(data.read_bytes()[:-1] + b"\x00")  # same size, another checksum
    before = tree(tmp_path)
    report = NpyStorageInterface(tmp_path).check()
    assert tree(tmp_path) == before
    assert sorted(e.name for e in report.ok) == ["e_json", "e_npz", "legacy"]
    assert [(d.name, d.key) for d in report.damaged] == [("e_npy", "e_npy.npy")]
    assert "checksum" in report.damaged[0].reason
    assert report.orphans == [record_key("gone", ".npy")]
    assert sorted(report.temp_files) == sorted(
        str(files[k].relative_to(tmp_path)) for k in ("dead_temp", "dead_record_temp")
    )
    assert report.quarantined == [] and not report.clean


def test_check_lists_quarantined_entries(tmp_path: Path) -> None:
    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: np.arange(100)})
    CM.get("m")
    (tmp_path / "m.npy").write_bytes(b"garbage")
    assert_same(DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False).load("m")
                if False else CM.get("m"), np.arange(100))  # fmt: skip
    fresh = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False)
    fresh.set_functions_dict({"m": lambda: np.arange(100)})
    assert_same(fresh.get("m"), np.arange(100))  # recomputed after quarantining
    report = fresh.check()
    assert len(report.quarantined) == 1 and report.clean
    assert [e.name for e in report.ok] == ["m"]


def test_listing_a_hundred_thousand_entries_is_linear(tmp_path: Path) -> None:
    # Correctness at a size where a per-entry scan would show; speed is in make bench.
    storage = NpyStorageInterface(tmp_path)
    for i in range(300):
        storage.save(f"m{i}", np.float64(i))
    assert sorted(e.name for e in storage.entries()) == sorted(f"m{i}" for i in range(300))


# -- the commit protocol on stores without inodes ---------------------------------------


@pytest.fixture(params=["none", "after-commit"])
def memory_storage(request: pytest.FixtureRequest) -> FileStorageInterface:
    """An npy interface over an in-memory store (no identities, or ETag-like ones)."""
    return FileStorageInterface("memory-cache", NpyCodec(), store=MemoryStore(request.param))


def test_round_trip_and_overwrite_on_an_in_memory_store(
    memory_storage: FileStorageInterface,
) -> None:
    memory_storage.save("m", np.arange(3))
    memory_storage.save("m", 7)
    assert memory_storage.load("m") == 7 and type(memory_storage.load("m")) is int
    assert memory_storage.verify("m") == memory_storage.info("m")
    assert [e.name for e in memory_storage.entries()] == ["m"]
    assert memory_storage.check().clean


def test_a_crash_before_the_data_commit_leaves_the_old_value_without_inodes(
    memory_storage: FileStorageInterface,
) -> None:
    memory_storage.save("m", np.arange(3))
    store = memory_storage.store
    real_stage = store.stage
    pending: list[Any] = []

    def stage_and_die(key: str, write: Any, **kwargs: Any) -> Any:
        staged = real_stage(key, write, **kwargs)
        if key == "m.npy":
            pending.append(staged)
            staged.commit = lambda: (_ for _ in ()).throw(KeyboardInterrupt())  # type: ignore[method-assign]
        return staged

    store.stage = stage_and_die  # type: ignore[method-assign]
    for value in (np.arange(3) + 1, 5):  # same size, then another codec hint
        with pytest.raises(KeyboardInterrupt):
            memory_storage.save("m", value)
    store.stage = real_stage  # type: ignore[method-assign]
    value = memory_storage.load("m")
    assert_same(value, np.arange(3))
    memory_storage.store.items["m.npy"].data = b"x" * store.stat("m.npy").size
    with pytest.raises(CorruptEntryError):
        memory_storage.load("m")


# -- pickling ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(INTERFACES))
def test_storage_interfaces_pickle_to_a_small_description(kind: str, tmp_path: Path) -> None:
    storage: StorageInterface = INTERFACES[kind](tmp_path, durable=True)
    storage.save("m", VALUES[kind])
    CM = DatedCacheManager(storage, verbose=False)
    CM.get("m")  # locks and threads exist now; they must not travel
    blob = pickle.dumps(storage)
    assert len(blob) < 1000
    copy = pickle.loads(blob)
    assert type(copy) is type(storage) and copy.durable is True  # type: ignore[attr-defined]
    assert_same(copy.load("m"), VALUES[kind])
    script = (
        "import pickle, sys; s = pickle.loads(sys.stdin.buffer.read()); "
        "s.save('from_child', s.load('m'))"
    )
    subprocess.run([sys.executable, "-c", script], input=blob, check=True)
    assert_same(storage.load("from_child"), VALUES[kind])


def test_npy_options_survive_pickling(tmp_path: Path) -> None:
    storage = NpyStorageInterface(tmp_path, mmap_mode="r", verify=False)
    storage.save("m", np.arange(10))
    copy = pickle.loads(pickle.dumps(storage))
    assert isinstance(copy.load("m"), np.memmap) and copy.verify_checksums is False


def test_record_json_is_keyed_by_data_file(tmp_path: Path) -> None:
    NpyStorageInterface(tmp_path).save("a.b", np.arange(2))  # a dot in the name
    JsonStorageInterface(tmp_path).save("a.b", [1])
    record = json.loads((tmp_path / ".metricache/meta/npy/a.b.json").read_text())
    assert record["current"]["name"] == "a.b" and record["current"]["codec"] == "npy"
    assert (tmp_path / ".metricache/meta/json/a.b.json").is_file()
    assert not (tmp_path / ".metricache/meta/a.b.json").exists()
