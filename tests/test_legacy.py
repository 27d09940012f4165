"""Folders written by simple_metrics_manager 0.2-0.5 open without recomputation.

The folders are written here file by file, the way that package's storage
interfaces wrote them: ``np.save`` / numpy's savez layout / ``json.dump`` into
``<name>.tmp<ext>``, moved over ``<name><ext>``, and a ``<name>_date<ext>`` sidecar
holding ``time.strftime('%Y-%m-%d')`` saved the same way.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import (
    CorruptEntryError,
    DatedCacheManager,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
    PickleRequiredError,
    StorageInterface,
)

STORAGES: dict[str, Callable[[Path], StorageInterface]] = {
    ".npy": NpyStorageInterface,
    ".npz": NpzStorageInterface,
    ".json": JsonStorageInterface,
}


def old_save(folder: Path, name: str, data: Any, ext: str, compress: bool = False) -> Path:
    """Save *data* as the old package's ``<Format>StorageInterface.save`` did."""
    path = folder / f"{name}{ext}"
    tmp = folder / f"{name}.tmp{ext}"
    if ext == ".npy":
        np.save(tmp, data)
    elif ext == ".json":
        with open(tmp, "w") as f:
            json.dump(data.tolist() if type(data) is np.ndarray else data, f)
    else:
        # Dicts by key, lists and tuples as arr_0..arr_N, anything else as arr_0.
        if hasattr(data, "keys"):
            args, kwds = [], dict(data)
        elif isinstance(data, (list, tuple)):
            args, kwds = list(data), {}
        else:
            args, kwds = [data], {}
        (np.savez_compressed if compress else np.savez)(tmp, *args, **kwds)
    shutil.move(tmp, path)
    return path


def old_get(folder: Path, name: str, data: Any, ext: str, date: str, **kw: Any) -> None:
    """What the old manager's ``save`` left on disk: the value and its date sidecar."""
    old_save(folder, name, data, ext, **kw)
    old_save(folder, name + "_date", date, ext, **kw)


def assert_same(expected: Any, actual: Any) -> None:
    """Same type, dtype, shape and values, through lists and dicts."""
    assert type(actual) is type(expected), (type(expected), type(actual))
    if isinstance(expected, np.ndarray):
        assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape)
        np.testing.assert_array_equal(actual, expected)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(expected[key], actual[key])
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for e, a in zip(expected, actual, strict=True):
            assert_same(e, a)
    else:
        assert actual == expected


twelve = [np.full(i + 1, i, dtype=np.int16) for i in range(12)]

# (name, value the old package was given, value it loaded back, date of the sidecar)
CASES: dict[str, list[tuple[str, Any, Any, str]]] = {
    ".npy": [
        ("matrix", np.arange(6.0).reshape(2, 3), np.arange(6.0).reshape(2, 3), "2019-01-31"),
        ("scalar", 3.5, np.array(3.5), "2020-02-29"),
        ("text", "hello", np.array("hello"), "2021-12-31"),
        ("stacked", [np.zeros(2), np.ones(2)], np.array([[0.0, 0.0], [1.0, 1.0]]), "2018-07-04"),
        ("empty", np.zeros((0, 3), dtype=np.float32), np.zeros((0, 3), np.float32), "2022-06-01"),
    ],
    ".npz": [
        ("single", np.arange(4), np.arange(4), "2019-01-31"),
        ("twelve", twelve, twelve, "2020-02-29"),
        ("pair", (np.zeros(1), np.ones(2)), [np.zeros(1), np.ones(2)], "2021-12-31"),
        (
            "mapping",
            {"x": np.arange(3), "y": 2.0},
            {"x": np.arange(3), "y": np.array(2.0)},
            "2018-07-04",
        ),
        ("scalar", 7, np.array(7), "2022-06-01"),
        ("one_item_list", [np.arange(2)], np.arange(2), "2017-03-15"),
    ],
    ".json": [
        (
            "obj",
            {"a": [1, 2, 3], "b": 2.5, "c": None},
            {"a": [1, 2, 3], "b": 2.5, "c": None},
            "2019-01-31",
        ),  # fmt: skip
        ("array", np.arange(3), [0, 1, 2], "2020-02-29"),
        ("number", 4, 4, "2021-12-31"),
        ("text", "hi", "hi", "2018-07-04"),
        ("rows", [[1.5, 2.5], [3.5, 4.5]], [[1.5, 2.5], [3.5, 4.5]], "2022-06-01"),
    ],
}


def forbidden(name: str) -> Callable[[], Any]:
    """A metric function that fails the test if it is ever called."""

    def function() -> Any:
        raise AssertionError(f"{name} was recomputed instead of loaded")

    return function


def legacy_folder(folder: Path, ext: str) -> None:
    """Write every case of *ext* as the old package would have."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, given, _, date in CASES[ext]:
        old_get(folder, name, given, ext, date)


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in a local time zone 5:30 ahead of UTC, so local and UTC dates differ."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def local_midnight(date: str) -> datetime:
    """The start of *date* in the local time zone, timezone-aware."""
    return datetime.strptime(date, "%Y-%m-%d").astimezone()


@pytest.mark.parametrize("ext", list(STORAGES))
@pytest.mark.usefixtures("far_from_utc")
def test_legacy_folder_loads_without_recomputing(ext: str, tmp_path: Path) -> None:
    legacy_folder(tmp_path, ext)
    CM = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    CM.set_functions_dict({name: forbidden(name) for name, *_ in CASES[ext]})
    for name, _, loaded, date in CASES[ext]:
        assert CM.exists(name)
        assert_same(loaded, CM[name])
        stamp = CM.date(name)
        assert stamp.tzinfo is not None
        assert stamp == local_midnight(date)
        assert stamp.utcoffset() is not None and stamp.astimezone().hour == 0
        assert CM[name + "_date"] == date
        assert CM.info(name).legacy is True
    assert CM.storage_interface.stored_names() == sorted(n for n, *_ in CASES[ext])


@pytest.mark.parametrize("ext", list(STORAGES))
def test_load_reads_legacy_entries(ext: str, tmp_path: Path) -> None:
    legacy_folder(tmp_path, ext)
    CM = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    for name, _, loaded, _ in CASES[ext]:
        assert_same(loaded, CM.load(name))
    assert CM.functions_dict == {}


def test_compressed_legacy_npz(tmp_path: Path) -> None:
    old_get(tmp_path, "packed", [np.arange(5), np.eye(2)], ".npz", "2020-10-10", compress=True)
    old_get(tmp_path, "packed_dict", {"k": np.ones(3)}, ".npz", "2020-10-11", compress=True)
    CM = DatedCacheManager(NpzStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"packed": forbidden("packed"), "packed_dict": forbidden("d")})
    assert_same([np.arange(5), np.eye(2)], CM["packed"])
    assert_same({"k": np.ones(3)}, CM["packed_dict"])
    assert CM["packed_dict_date"] == "2020-10-11"


def test_sidecars_have_the_old_layout(tmp_path: Path) -> None:
    # Guard the fixtures themselves: the sidecars are what the old package wrote.
    for ext in STORAGES:
        old_get(tmp_path, "m", np.arange(2), ext, "2021-03-04")
    npy = np.load(tmp_path / "m_date.npy")
    assert (npy.dtype, npy.shape, npy.item()) == (np.dtype("<U10"), (), "2021-03-04")
    with np.load(tmp_path / "m_date.npz") as npz:
        assert npz.files == ["arr_0"] and npz["arr_0"].item() == "2021-03-04"
    assert (tmp_path / "m_date.json").read_text() == '"2021-03-04"'
    with np.load(tmp_path / "m.npz") as npz:
        assert npz.files == ["arr_0"]


@pytest.mark.parametrize("ext", list(STORAGES))
def test_legacy_entry_without_sidecar_is_dated_by_mtime(ext: str, tmp_path: Path) -> None:
    path = old_save(tmp_path, "orphan", np.arange(3), ext)
    when = datetime(2020, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    os.utime(path, (when.timestamp(), when.timestamp()))
    CM = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    CM.set_functions_dict({"orphan": forbidden("orphan")})
    loaded = CM["orphan"]
    assert list(np.asarray(loaded)) == [0, 1, 2]
    assert CM.date("orphan") == when
    assert CM.info("orphan").legacy is True
    assert CM["orphan_date"] == when.astimezone().strftime("%Y-%m-%d")


@pytest.mark.parametrize("ext", list(STORAGES))
def test_recomputing_a_legacy_entry_writes_a_new_entry(ext: str, tmp_path: Path) -> None:
    legacy_folder(tmp_path, ext)
    name, given, loaded, date = CASES[ext][0]
    before = datetime.now(timezone.utc)
    CM = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    CM.set_functions_dict({name: lambda: np.arange(10)})
    assert_same(loaded, CM[name])
    new = CM.get(name, use_stored=False)
    np.testing.assert_array_equal(new, np.arange(10))
    info = CM.info(name)
    assert info.legacy is False and info.checksum and info.size
    assert info.timestamp >= before

    fresh = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    fresh.set_functions_dict({name: forbidden(name)})
    np.testing.assert_array_equal(fresh[name], np.arange(10))
    assert fresh.date(name) >= before
    assert fresh.info(name).legacy is False
    assert fresh[name + "_date"] == fresh.date(name).astimezone().strftime("%Y-%m-%d")
    assert fresh.storage_interface.stored_names() == sorted(n for n, *_ in CASES[ext])


@pytest.mark.parametrize("ext", list(STORAGES))
def test_stored_names_hide_date_sidecars(ext: str, tmp_path: Path) -> None:
    legacy_folder(tmp_path, ext)
    old_save(tmp_path, "no_sidecar", np.arange(2), ext)
    names = STORAGES[ext](tmp_path).stored_names()
    assert names == sorted([*(n for n, *_ in CASES[ext]), "no_sidecar"])
    assert not any(n.endswith("_date") for n in names)


@pytest.mark.parametrize("ext", list(STORAGES))
def test_deleting_a_legacy_entry_removes_its_sidecar(ext: str, tmp_path: Path) -> None:
    old_get(tmp_path, "m", np.arange(2), ext, "2021-03-04")
    CM = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    assert CM.delete("m") is True
    assert not CM.exists("m")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []


@pytest.mark.parametrize("ext", list(STORAGES))
def test_leftover_old_temp_files_break_nothing(ext: str, tmp_path: Path) -> None:
    old_get(tmp_path, "m", np.arange(4), ext, "2021-03-04")
    # A writer of the old package killed mid-save left a torn temp file behind.
    whole = old_save(tmp_path, "scratch", np.arange(1000), ext).read_bytes()
    (tmp_path / "scratch").with_suffix(ext).unlink()
    (tmp_path / f"m.tmp{ext}").write_bytes(whole[: len(whole) // 2])
    (tmp_path / f"m_date.tmp{ext}").write_bytes(b"")
    CM = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: np.arange(8)})
    assert list(np.asarray(CM["m"])) == [0, 1, 2, 3]
    assert CM["m_date"] == "2021-03-04"
    assert "m" in CM.storage_interface.stored_names()
    np.testing.assert_array_equal(CM.get("m", use_stored=False), np.arange(8))
    fresh = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    np.testing.assert_array_equal(fresh["m"], np.arange(8))


# -- delete("x") deletes x, never a metric named x_date ------------------------------


def visible_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("ext", list(STORAGES))
def test_delete_keeps_a_metric_named_like_a_sidecar(ext: str, tmp_path: Path) -> None:
    # The old symptom: deleting "x" also deleted the data of the metric "x_date".
    CM = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    CM.set_functions_dict({"x": lambda: 1, "x_date": lambda: "2020-01-02"})
    CM.get("x")
    CM.get("x_date")  # a date string, as a sidecar would hold: the record tells them apart
    assert CM.delete("x") is True
    fresh = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    fresh.set_functions_dict({"x_date": forbidden("x_date")})
    assert fresh["x_date"] == "2020-01-02"
    assert visible_files(tmp_path) == [f"x_date{ext}"]


@pytest.mark.parametrize("ext", list(STORAGES))
def test_delete_keeps_a_legacy_metric_named_like_a_sidecar(ext: str, tmp_path: Path) -> None:
    # The old package dated every metric it saved, so a real "x_date" has its own sidecar.
    old_get(tmp_path, "x", np.arange(2), ext, "2021-03-04")
    old_get(tmp_path, "x_date", np.arange(3), ext, "2021-03-05")
    CM = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    assert CM.delete("x") is True
    assert visible_files(tmp_path) == [f"x_date{ext}", f"x_date_date{ext}"]
    assert list(np.asarray(CM.load("x_date"))) == [0, 1, 2]


@pytest.mark.parametrize("ext", list(STORAGES))
def test_delete_keeps_a_sidecar_named_file_that_holds_no_date(ext: str, tmp_path: Path) -> None:
    old_save(tmp_path, "x", np.arange(2), ext)
    old_save(tmp_path, "x_date", np.arange(3), ext)  # undated, but not a date either
    CM = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    assert CM.delete("x") is True
    assert visible_files(tmp_path) == [f"x_date{ext}"]


@pytest.mark.parametrize("ext", list(STORAGES))
def test_delete_of_a_recomputed_legacy_entry_removes_its_old_sidecar(
    ext: str, tmp_path: Path
) -> None:
    old_get(tmp_path, "m", np.arange(2), ext, "2021-03-04")
    CM = DatedCacheManager(STORAGES[ext](tmp_path), verbose=False)
    CM.set_functions_dict({"m": lambda: np.arange(5)})
    CM.get("m", use_stored=False)  # a new entry, with a record; the old sidecar is stale
    assert CM.delete("m") is True
    assert visible_files(tmp_path) == []
    assert CM.storage_interface.stored_names() == []


# -- a valid file that needs pickle is not corrupt ------------------------------------


def seed_pickled_dict(folder: Path) -> tuple[Path, bytes]:
    """What simple_metrics_manager's NpyStorageInterface wrote for a dict: a pickle."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "d.npy"
    np.save(path, {"a": 1, "b": [2, 3]}, allow_pickle=True)
    old_save(folder, "d_date", "2021-03-04", ".npy")
    return path, path.read_bytes()


@pytest.mark.parametrize("on_corrupt", ["recompute", "raise"])
def test_legacy_pickled_npy_is_refused_in_place_not_quarantined(
    on_corrupt: str, tmp_path: Path
) -> None:
    # The old symptom: moved to quarantine as "corrupt", telling the user to pass
    # allow_pickle=True, which then found nothing to load.
    path, original = seed_pickled_dict(tmp_path)
    CM = DatedCacheManager(NpyStorageInterface(tmp_path), verbose=False, on_corrupt=on_corrupt)  # type: ignore[arg-type]
    CM.set_functions_dict({"d": forbidden("d")})
    for call in (CM.get, CM.load, CM.__getitem__):
        with pytest.raises(PickleRequiredError, match="allow_pickle=True") as caught:
            call("d")
        assert str(path) in str(caught.value)
        assert not isinstance(caught.value, CorruptEntryError)
    assert path.read_bytes() == original
    assert not (tmp_path / ".metricache" / "quarantine").exists()

    trusting = DatedCacheManager(NpyStorageInterface(tmp_path, allow_pickle=True), verbose=False)
    trusting.set_functions_dict({"d": forbidden("d")})
    assert trusting["d"][()] == {"a": 1, "b": [2, 3]}
    assert trusting["d_date"] == "2021-03-04"


def test_legacy_npz_with_an_object_member_is_refused_in_place(tmp_path: Path) -> None:
    old_get(tmp_path, "d", {"ok": np.arange(2), "tags": np.array(["a", 1], dtype=object)},
            ".npz", "2021-03-04")  # fmt: skip
    path = tmp_path / "d.npz"
    original = path.read_bytes()
    CM = DatedCacheManager(NpzStorageInterface(tmp_path), verbose=False)
    CM.set_functions_dict({"d": forbidden("d")})
    with pytest.raises(PickleRequiredError, match=r"member 'tags\.npy'.*allow_pickle=True"):
        CM.get("d")
    assert path.read_bytes() == original
    loaded = DatedCacheManager(NpzStorageInterface(tmp_path, allow_pickle=True), verbose=False)
    assert list(loaded["d"]["tags"]) == ["a", 1]
