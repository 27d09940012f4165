"""A stateful property test: random operation sequences checked against a dict model.

The model knows which value each name holds in memory and in the store, and which
stored entries were damaged. Every computation returns a value never seen before
(from a counter), so a returned value proves where it came from: the model's
value, or a fresh computation exactly when the model says one was needed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import metricache._store
from metricache import (
    DatedCacheManager,
    FileStorageInterface,
    MetricNotStoredError,
    NpyStorageInterface,
    NpzStorageInterface,
)
from metricache._homes import FILES, PACKED, record_home

from ._entrybytes import Slot

NAMES = st.sampled_from(["a", "b", "c"])


def make_value(k: int) -> np.ndarray:
    """The *k*-th computed value: unique, and of a size that varies with *k*."""
    return np.arange(k % 7 * 40 + 1) + 1000 * k


class CacheMachine(RuleBasedStateMachine):
    """Drives one manager (reopened at will) over one folder."""

    storage_class: ClassVar[type[FileStorageInterface]]
    #: Whether the folder is packed (small entries in the index) or one file per entry.
    packed: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="metricache-stateful-"))
        # Recorded before the first write: every interface opened here follows it.
        record_home(str(self.folder), PACKED if self.packed else FILES)
        self.computed = 0
        self.memory: dict[str, int] = {}  # name -> k of the value held in memory
        self.stored: dict[str, int] = {}  # name -> k of the value in the store
        self.damaged: set[str] = set()  # stored entries whose data file was corrupted
        self.open_manager()

    def teardown(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def open_manager(self) -> None:
        """A new manager and storage interface over the same folder."""
        self.CM = DatedCacheManager(self.storage_class(self.folder), verbose=False)
        self.CM.set_functions_dict({n: self.compute for n in ("a", "b", "c")})

    def compute(self) -> np.ndarray:
        self.computed += 1
        return make_value(self.computed)

    def check(self, name: str, value: Any, expected: int | None) -> None:
        """*value* must be the model's value *expected*, or (if None) a fresh computation."""
        if expected is None:
            expected = self.computed
            self.memory[name] = self.stored[name] = expected
            self.damaged.discard(name)
        assert np.array_equal(value, make_value(expected)), (name, value[:1], expected)

    def expected(self, name: str) -> int | None:
        """What a cached read of *name* must return (None: it must compute)."""
        if name in self.memory:
            return self.memory[name]
        if name in self.stored and name not in self.damaged:
            return self.stored[name]
        return None

    @rule(name=NAMES)
    def get(self, name: str) -> None:
        before, expected = self.computed, self.expected(name)
        value = self.CM.get(name)
        assert self.computed == before + (expected is None)
        self.check(name, value, expected)
        self.memory[name] = self.memory.get(name, self.stored[name])

    @rule(name=NAMES)
    def get_fresh(self, name: str) -> None:
        before = self.computed
        value = self.CM.get(name, use_stored=False)
        assert self.computed == before + 1
        self.check(name, value, None)

    @rule(name=NAMES)
    def load(self, name: str) -> None:
        expected = self.expected(name)
        if expected is None and name not in self.stored:
            with pytest.raises(MetricNotStoredError):
                self.CM.load(name)
            return
        # A damaged entry is recomputed (on_corrupt="recompute"); a good one is read.
        self.check(name, self.CM.load(name), expected)
        self.memory[name] = self.stored[name] if expected is None else expected

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        assert self.CM.delete(name) == (name in self.stored)
        self.memory.pop(name, None)
        self.stored.pop(name, None)
        self.damaged.discard(name)

    @rule()
    def clear_cache(self) -> None:
        self.CM.clear_cache()
        self.memory.clear()

    @rule()
    def reopen(self) -> None:
        self.open_manager()
        self.memory.clear()

    @rule(name=NAMES, truncate=st.booleans(), where=st.floats(0, 1))
    def corrupt(self, name: str, truncate: bool, where: float) -> None:
        if name not in self.stored:
            return
        path = Slot(self.folder, f"{name}{self.CM.storage_interface.file_ext}")
        raw = bytearray(path.read_bytes())
        if not raw:
            return  # already truncated to nothing: damaged, and stays so
        position = min(int(where * len(raw)), len(raw) - 1)
        if truncate:
            del raw[position:]
        else:
            # +1 rather than a XOR: corrupting the same byte twice must not repair it.
            raw[position] = (raw[position] + 1) % 256
        path.write_bytes(bytes(raw))
        self.damaged.add(name)

    @invariant()
    def store_matches_the_model(self) -> None:
        # A fresh storage interface reads exactly what the model says is stored.
        storage = self.storage_class(self.folder)
        for name, k in self.stored.items():
            if name not in self.damaged:
                value, info = storage.read_entry(name)
                assert np.array_equal(value, make_value(k)) and info is not None
        for name in {"a", "b", "c"} - set(self.stored):
            with pytest.raises(MetricNotStoredError):
                storage.read_entry(name)
        assert list(self.folder.rglob(f"{metricache._store.TEMP_PREFIX}*")) == []


FAST = settings(max_examples=30, stateful_step_count=30, deadline=None, database=None)


class NpzMachine(CacheMachine):
    storage_class = NpzStorageInterface


class NpyMachine(CacheMachine):
    storage_class = NpyStorageInterface


class PackedNpzMachine(NpzMachine):
    packed = True


class PackedNpyMachine(NpyMachine):
    packed = True


TestNpzCache = NpzMachine.TestCase
TestNpzCache.settings = FAST
TestNpyCache = NpyMachine.TestCase
TestNpyCache.settings = FAST
TestPackedNpzCache = PackedNpzMachine.TestCase
TestPackedNpzCache.settings = FAST
TestPackedNpyCache = PackedNpyMachine.TestCase
TestPackedNpyCache.settings = FAST
