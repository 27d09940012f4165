"""Corruption is detected, never returned: damaged data or records follow ``on_corrupt``."""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from metricache import (
    CorruptEntryError,
    DatedCacheManager,
    JsonStorageInterface,
    NpyStorageInterface,
    StorageInterface,
)
from metricache._layout import data_key, record_key

from ._entrybytes import Slot, snapshot
from .conftest import Counter

#: The safety properties hold in both homes: one file per entry, and packed.
pytestmark = pytest.mark.usefixtures("home")

QUARANTINE = Path(".metricache") / "quarantine"
VALUE = np.arange(200)
OTHER = np.arange(3)


@dataclass
class Entry:
    """The stored bytes of metric ``m`` (and of its neighbour ``other``), in any home."""

    folder: Path
    data: Slot
    record: Slot
    other_record: Slot


def flip_byte(entry: Entry) -> Slot:
    """Invert one byte in the middle of the data file (same size)."""
    raw = bytearray(entry.data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    entry.data.write_bytes(bytes(raw))
    return entry.data


def truncate(entry: Entry) -> Slot:
    """Cut the data file in half."""
    raw = entry.data.read_bytes()
    entry.data.write_bytes(raw[: len(raw) // 2])
    return entry.data


def zero_bytes(entry: Entry) -> Slot:
    """Empty the data file."""
    entry.data.write_bytes(b"")
    return entry.data


def random_bytes(entry: Entry) -> Slot:
    """Replace the data file by as many random bytes."""
    size = entry.data.size()
    entry.data.write_bytes(random.Random(size).randbytes(size))
    return entry.data


def json_text(entry: Entry) -> Slot:
    """Replace the data file by a JSON text (an '.npz' that is really a '.json')."""
    entry.data.write_bytes(b'{"value": [1, 2, 3]}\n')
    return entry.data


def garbage_record(entry: Entry) -> Slot:
    """Replace the metadata record by bytes that are not JSON."""
    entry.record.write_bytes(b'\x00{"format": 1, "current": ')
    return entry.record


def foreign_record(entry: Entry) -> Slot:
    """Copy another metric's record over this one's."""
    entry.record.write_bytes(entry.other_record.read_bytes())
    return entry.record


CORRUPTIONS: dict[str, Callable[[Entry], Slot]] = {
    f.__name__: f
    for f in (
        flip_byte,
        truncate,
        zero_bytes,
        random_bytes,
        json_text,
        garbage_record,
        foreign_record,
    )
}
#: What the error message says was wrong, for each kind of damage.
PROBLEMS = {
    "garbage_record": "unreadable",
    "foreign_record": "belongs to metric 'other'",
}
DATA_PROBLEM = "does not match its metadata|not a valid|truncated"


@pytest.fixture(params=list(CORRUPTIONS))
def corruption(request: pytest.FixtureRequest) -> str:
    """The name of each kind of damage in turn."""
    return str(request.param)


def manager(storage: StorageInterface, counter: Counter, **options: object) -> DatedCacheManager:
    """A quiet manager defining ``m`` (through *counter*) and ``other``."""
    CM = DatedCacheManager(storage, verbose=False, **options)  # type: ignore[arg-type]
    CM.set_functions_dict({"m": counter, "other": lambda: OTHER})
    return CM


def stored_entry(storage_class: type[StorageInterface], folder: Path) -> Entry:
    """Store ``m`` and ``other`` in *folder*; return their files."""
    CM = manager(storage_class(folder), Counter(VALUE))
    CM.get("m")
    CM.get("other")
    ext = CM.storage_interface.file_ext
    return Entry(
        folder,
        Slot(folder, data_key("m", ext)),
        Slot(folder, record_key("m", ext)),
        Slot(folder, record_key("other", ext)),
    )


def same(value: object, expected: np.ndarray) -> bool:
    """Whether *value* holds *expected* (JSON gives lists back, not arrays)."""
    return np.array_equal(np.asarray(value), expected)


@pytest.mark.parametrize("method", ["get", "load"])
def test_recompute_quarantines_and_stores_again(
    storage_class: type[StorageInterface],
    corruption: str,
    method: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = stored_entry(storage_class, tmp_path)
    bad_file = CORRUPTIONS[corruption](entry)
    bad_bytes = bad_file.read_bytes()
    partner = entry.record if bad_file == entry.data else entry.data
    partner_bytes = partner.read_bytes()

    counter = Counter(VALUE)
    CM = manager(storage_class(tmp_path), counter)
    with caplog.at_level(logging.WARNING, logger="metricache"):
        value = getattr(CM, method)("m")
    assert same(value, VALUE)
    assert counter.calls == 1
    warnings = [r for r in caplog.records if r.name == "metricache"]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "corrupt entry 'm'" in warnings[0].getMessage()

    # The damaged file and its partner were moved aside, intact, for inspection.
    quarantined = [q for q in (tmp_path / QUARANTINE).rglob("*") if q.is_file()]
    assert sorted(q.read_bytes() for q in quarantined) == sorted([bad_bytes, partner_bytes])
    (where,) = (tmp_path / QUARANTINE).iterdir()
    assert str(where) in warnings[0].getMessage()

    # The recomputed value was stored: a fresh manager loads it without computing.
    later = Counter(VALUE)
    fresh = manager(storage_class(tmp_path), later)
    assert same(fresh.get("m"), VALUE) and same(fresh.get("other"), OTHER)
    assert later.calls == 0
    assert fresh.verify("m") == fresh.info("m")


def test_raise_names_the_file_and_deletes_nothing(
    storage_class: type[StorageInterface], corruption: str, tmp_path: Path
) -> None:
    entry = stored_entry(storage_class, tmp_path)
    bad_file = CORRUPTIONS[corruption](entry)
    before = snapshot(tmp_path)

    counter = Counter(VALUE)
    CM = manager(storage_class(tmp_path), counter, on_corrupt="raise")
    for call in (CM.get, CM.load, CM.__getitem__):
        with pytest.raises(CorruptEntryError) as caught:
            call("m")
        message = str(caught.value)
        assert message.startswith(bad_file.where())
        assert caught.match(PROBLEMS.get(corruption, DATA_PROBLEM))
    assert counter.calls == 0
    assert "m" not in CM.cache
    assert snapshot(tmp_path) == before
    assert not (tmp_path / QUARANTINE).exists()
    # The neighbouring entry is untouched and still loads.
    assert same(CM.get("other"), OTHER)


def test_verify_false_misses_a_same_size_flip(tmp_path: Path) -> None:
    # The documented limitation: without checksums only the size is checked, so a
    # flipped byte inside the array data comes back as a (wrong) value.
    entry = stored_entry(NpyStorageInterface, tmp_path)
    flip_byte(entry)
    value = manager(NpyStorageInterface(tmp_path, verify=False), Counter()).get("m")
    assert (value != VALUE).sum() == 1
    # The checksumming default catches the same file.
    with pytest.raises(CorruptEntryError, match="checksum"):
        manager(NpyStorageInterface(tmp_path), Counter(), on_corrupt="raise").get("m")


def test_verify_false_still_checks_the_size(
    storage_class: type[StorageInterface], tmp_path: Path
) -> None:
    entry = stored_entry(storage_class, tmp_path)
    truncate(entry)
    CM = manager(storage_class(tmp_path, verify=False), Counter(), on_corrupt="raise")  # type: ignore[call-arg]
    with pytest.raises(CorruptEntryError, match=re.escape(entry.data.where())):
        CM.get("m")


def test_verify_false_size_check_catches_a_truncation_that_still_parses(tmp_path: Path) -> None:
    # '123456' cut to '12345' is still valid JSON: only the size check can notice.
    CM = manager(JsonStorageInterface(tmp_path), Counter(123456))
    CM.get("m")
    data = Slot(tmp_path, "m.json")
    data.write_bytes(data.read_bytes()[:-1])
    CM = manager(JsonStorageInterface(tmp_path, verify=False), Counter(), on_corrupt="raise")
    with pytest.raises(CorruptEntryError, match="does not match its metadata"):
        CM.get("m")


def test_verify_detects_a_flip_that_mmap_loads_skip(tmp_path: Path) -> None:
    original = np.arange(1000.0)
    CM = manager(NpyStorageInterface(tmp_path, mmap_mode="r"), Counter(original))
    CM.get("m")
    assert CM.verify("m") == CM.info("m")
    flip_byte(Entry(tmp_path, Slot(tmp_path, "m.npy"), Slot(tmp_path, record_key("m", ".npy")),
                    Slot(tmp_path, "")))  # fmt: skip

    fresh = manager(NpyStorageInterface(tmp_path, mmap_mode="r"), Counter(), on_corrupt="raise")
    # Memory-mapped loads are O(1): they check the size, not the checksum.
    mapped = fresh.get("m")
    assert isinstance(mapped, np.memmap)
    assert (mapped != original).sum() == 1
    with pytest.raises(CorruptEntryError, match="checksum") as caught:
        fresh.verify("m")
    assert str(tmp_path / "m.npy") in str(caught.value)


def test_mmap_load_still_checks_the_size(tmp_path: Path) -> None:
    CM = manager(NpyStorageInterface(tmp_path, mmap_mode="r"), Counter(np.arange(1000.0)))
    CM.get("m")
    data = tmp_path / "m.npy"
    data.write_bytes(data.read_bytes()[:-8])
    fresh = manager(NpyStorageInterface(tmp_path, mmap_mode="r"), Counter(), on_corrupt="raise")
    with pytest.raises(CorruptEntryError, match="does not match its metadata|memory-map"):
        fresh.get("m")
