"""AutoStorageInterface: a format per value, one name across formats, old folders, crashes."""

from __future__ import annotations

import json
import os
import pickle
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from metricache import (
    AutoStorageInterface,
    CorruptEntryError,
    DatedCacheManager,
    JsonStorageInterface,
    MetricNotStoredError,
    NpyStorageInterface,
    NpzStorageInterface,
    PickleRequiredError,
    PickleStorageInterface,
    UnsupportedValueError,
)
from metricache import _housekeeping as housekeeping

from ._compare import assert_same
from .conftest import record_file

FORMAT_OF = [
    (np.arange(3.0), "npy"),
    (np.float32(2.5), "npy"),
    (7, "npy"),
    ("text", "npy"),
    ([np.zeros(2), np.ones(3)], "npz"),
    ((1, "a"), "npz"),
    ({"w": np.eye(2), "n": 3}, "npz"),
    ([], "npz"),
    (pd.DataFrame({"a": [1, 2]}), "arrow"),
    (pd.Series([1.5], name="s"), "arrow"),
    (pa.table({"a": [1]}), "arrow"),
    (None, "json"),
    ({"nested": {"depth": [1, [2, None]]}}, "json"),
    ([1, {"a": "b"}], "json"),
]


@pytest.mark.parametrize(("value", "codec"), FORMAT_OF, ids=[c for _, c in FORMAT_OF])
def test_the_format_is_picked_from_the_value_and_named_in_the_record(
    value: Any, codec: str, tmp_path: Path
) -> None:
    storage = AutoStorageInterface(tmp_path)
    storage.save("m", value)
    assert storage.codec_for(value).name == codec
    assert (tmp_path / f"m.{codec}").is_file()
    suffix = f".{codec}"
    record = json.loads(record_file(tmp_path, "m", suffix).read_bytes())
    assert record["current"]["codec"] == codec
    assert_same(value, AutoStorageInterface(tmp_path).load("m"))


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, {1: np.zeros(1)}, np.array([object()], dtype=object), [lambda: 1]],
    ids=["object", "set", "int-keyed dict", "object array", "list of a function"],
)
def test_the_rest_is_refused_with_what_it_can_hold(value: Any, tmp_path: Path) -> None:
    storage = AutoStorageInterface(tmp_path)
    with pytest.raises(UnsupportedValueError) as caught:
        storage.save("m", value)
    message = str(caught.value)
    if not isinstance(value, np.ndarray):
        for holds in ("numpy array", "DataFrame", "JSON data", "PickleStorageInterface"):
            assert holds in message
    else:
        assert "allow_pickle=True to AutoStorageInterface" in message
    assert list(tmp_path.iterdir()) == []


def test_object_arrays_with_allow_pickle(tmp_path: Path) -> None:
    value = np.array([{"a": 1}, None], dtype=object)
    AutoStorageInterface(tmp_path, allow_pickle=True).save("m", value)
    with pytest.raises(PickleRequiredError):
        AutoStorageInterface(tmp_path).load("m")
    loaded = AutoStorageInterface(tmp_path, allow_pickle=True).load("m")
    assert loaded.tolist() == value.tolist()


# -- one name, several formats across writes ------------------------------------------------


def test_a_name_changes_format_between_writes_and_the_old_entry_goes(tmp_path: Path) -> None:
    storage = AutoStorageInterface(tmp_path)
    sequence = [np.arange(3), [np.zeros(1)], pd.DataFrame({"a": [1]}), {"x": None}, 1.5]
    for value in sequence:
        storage.save("m", value)
        assert_same(value, AutoStorageInterface(tmp_path).load("m"))
        data = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
        assert data == [f"m.{storage.codec_for(value).name}"]
        assert storage.stored_names() == ["m"]
    records = sorted(p.parent.name for p in (tmp_path / ".metricache" / "meta").rglob("m.json"))
    assert records == ["npy"]
    assert storage.check().clean


def test_a_crash_between_the_new_entry_and_removing_the_old_loads_the_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = AutoStorageInterface(tmp_path)
    storage.save("m", np.arange(3))

    def crash(*args: object) -> bool:
        raise KeyboardInterrupt  # the process dies before the old format is removed

    monkeypatch.setattr(housekeeping, "delete", crash)
    frame = pd.DataFrame({"a": [1, 2]})
    with pytest.raises(KeyboardInterrupt):
        storage.save("m", frame)
    monkeypatch.undo()
    assert (tmp_path / "m.npy").is_file() and (tmp_path / "m.arrow").is_file()
    fresh = AutoStorageInterface(tmp_path)
    assert_same(frame, fresh.load("m"))
    assert fresh.info("m").codec == "arrow"  # type: ignore[union-attr]
    assert fresh.stored_names() == ["m"]
    # The next write of the name clears both.
    fresh.save("m", [1, 2])
    assert not (tmp_path / "m.npy").exists() and not (tmp_path / "m.arrow").exists()
    assert_same([1, 2], AutoStorageInterface(tmp_path).load("m"))


def test_of_two_entries_the_newest_record_wins_whichever_format(tmp_path: Path) -> None:
    # Two single-format interfaces write the same name: what the auto interface
    # finds after a crash, both orders.
    NpyStorageInterface(tmp_path).save("m", np.arange(2))
    JsonStorageInterface(tmp_path).save("m", {"newer": True})
    assert AutoStorageInterface(tmp_path).load("m") == {"newer": True}
    NpyStorageInterface(tmp_path).save("m", np.arange(3))
    assert_same(np.arange(3), AutoStorageInterface(tmp_path).load("m"))


def test_a_recorded_entry_beats_a_legacy_file_of_another_format(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", np.ones(2))  # the old package's file, dated today
    NpyStorageInterface(tmp_path).save("m", np.arange(2))
    assert_same(np.arange(2), AutoStorageInterface(tmp_path).load("m"))


def test_an_unreadable_record_among_two_formats_fails_rather_than_load_an_old_value(
    tmp_path: Path,
) -> None:
    NpyStorageInterface(tmp_path).save("m", np.arange(2))
    JsonStorageInterface(tmp_path).save("m", [1])
    record_file(tmp_path, "m", ".json").write_text("{not json")
    CM = DatedCacheManager(AutoStorageInterface(tmp_path), verbose=False)
    with pytest.raises(CorruptEntryError):
        CM.storage_interface.load("m")
    CM.set_functions_dict({"m": lambda: "recomputed"})
    assert CM["m"] == "recomputed"  # both formats quarantined, then recomputed
    assert sorted(p.name for p in tmp_path.iterdir()) == [".metricache", "m.npy"]
    assert CM.storage_interface.info("m").codec == "npy"  # type: ignore[union-attr]


def test_delete_and_quarantine_take_every_format(tmp_path: Path) -> None:
    NpyStorageInterface(tmp_path).save("m", np.arange(2))
    JsonStorageInterface(tmp_path).save("m", [1])
    storage = AutoStorageInterface(tmp_path)
    where = storage.quarantine("m")
    assert where is not None and len(where.split(", ")) == 2  # one folder per format
    assert not storage.exists("m")
    NpzStorageInterface(tmp_path).save("m", [1])
    JsonStorageInterface(tmp_path).save("m", [1])
    assert storage.delete("m") is True
    assert storage.delete("m") is False
    with pytest.raises(MetricNotStoredError):
        storage.load("m")


def test_a_reader_retries_when_the_format_it_chose_vanishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = AutoStorageInterface(tmp_path)
    storage.save("m", np.arange(2))
    real = storage._format_of
    calls: list[str] = []

    def racing(name: str) -> Any:
        chosen = real(name)
        if not calls:  # another process rewrites the name as JSON right now
            calls.append(name)
            AutoStorageInterface(tmp_path).save("m", {"json": 1})
        return chosen

    monkeypatch.setattr(storage, "_format_of", racing)
    assert storage.load("m") == {"json": 1}


# -- folders written by others --------------------------------------------------------------


def test_reads_what_the_single_format_interfaces_wrote(tmp_path: Path) -> None:
    NpzStorageInterface(tmp_path).save("z", [np.arange(2)])
    NpyStorageInterface(tmp_path).save("y", np.eye(2))
    JsonStorageInterface(tmp_path).save("j", {"a": [1]})
    storage = AutoStorageInterface(tmp_path)
    assert storage.stored_names() == ["j", "y", "z"]
    assert_same([np.arange(2)], storage.load("z"))
    assert_same(np.eye(2), storage.load("y"))
    assert storage.load("j") == {"a": [1]}
    assert [storage.info(n).codec for n in ("j", "y", "z")] == ["json", "npy", "npz"]  # type: ignore[union-attr]


def test_reads_the_old_packages_files_and_their_date_sidecars(tmp_path: Path) -> None:
    np.savez(tmp_path / "legacy.npz", np.arange(4))
    np.savez(tmp_path / "legacy_date.npz", np.array("2019-05-06"))
    np.save(tmp_path / "plain.npy", np.ones(3))
    storage = AutoStorageInterface(tmp_path)
    assert storage.stored_names() == ["legacy", "plain"]
    assert_same(np.arange(4), storage.load("legacy"))
    info = storage.info("legacy")
    assert info is not None and info.legacy and info.date == "2019-05-06"
    CM = DatedCacheManager(str(tmp_path), verbose=False)
    assert_same(np.ones(3), CM.load("plain"))
    # Rewriting a legacy name removes its old file and sidecar.
    storage.save("legacy", pd.DataFrame({"a": [1]}))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".metricache",
        "legacy.arrow",
        "plain.npy",
    ]


def test_never_reads_or_writes_pickles(tmp_path: Path) -> None:
    PickleStorageInterface(tmp_path).save("p", {1, 2})
    storage = AutoStorageInterface(tmp_path)
    assert storage.stored_names() == []
    with pytest.raises(MetricNotStoredError):
        storage.load("p")


# -- the default of a manager given a path ------------------------------------------------------


def test_a_manager_given_a_path_stores_arrays_lists_and_frames(tmp_path: Path) -> None:
    values = {
        "arr": np.arange(5),
        "parts": [np.zeros(2), np.ones(1)],
        "frame": pd.DataFrame({"x": pd.Categorical(["a", "b"])}, index=["r", "s"]),
        "conf": {"depth": {"max": 2}},
    }
    calls: list[str] = []

    def metric(name: str) -> Any:
        def compute() -> Any:
            calls.append(name)
            return values[name]

        return compute

    for _ in range(2):
        CM = DatedCacheManager(str(tmp_path / "cache"), verbose=False)
        CM.set_functions_dict({name: metric(name) for name in values})
        for name, value in values.items():
            assert_same(value, CM[name])
    assert sorted(calls) == sorted(values)  # each computed once, loaded by the second manager


def test_mmap_mode_maps_npy_arrays(tmp_path: Path) -> None:
    AutoStorageInterface(tmp_path).save("m", np.arange(1000.0))
    loaded = AutoStorageInterface(tmp_path, mmap_mode="r").load("m")
    assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
    with pytest.raises(ValueError, match="mmap_mode"):
        AutoStorageInterface(tmp_path, mmap_mode="w+")


def test_pickles_to_a_description_and_works_after(tmp_path: Path) -> None:
    storage = AutoStorageInterface(tmp_path, mmap_mode="r")
    storage.save("m", pd.DataFrame({"a": [1]}))
    clone = pickle.loads(pickle.dumps(storage))
    assert clone.mmap_mode == "r" and clone.stored_names() == ["m"]
    assert_same(pd.DataFrame({"a": [1]}), clone.load("m"))


def test_cleanup_removes_dead_writers_litter_of_every_format(tmp_path: Path) -> None:
    storage = AutoStorageInterface(tmp_path)
    storage.save("m", pd.DataFrame({"a": [1]}))
    dead = tmp_path / ".metricache" / "meta" / "arrow" / ".mctmp-nohost-1-abc"
    dead.write_bytes(b"x")
    orphan = record_file(tmp_path, "gone", ".arrow")
    orphan.write_bytes(
        record_file(tmp_path, "m", ".arrow").read_bytes().replace(b'"m"', b'"gone"')
    )
    old = time.time() - timedelta(days=2).total_seconds()
    os.utime(dead, (old, old))
    assert storage.cleanup() == 2
    assert not dead.exists() and not orphan.exists()
    assert storage.check().clean
