"""The packed index compresses small values: every value comes back byte for byte."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricache import AutoStorageInterface, CorruptEntryError, ParameterizedDatedCacheManager
from metricache._layout import INDEX_KEY
from metricache._squeeze import MARK, MAX_SQUEEZED, squeeze, unsqueeze

from ._compare import assert_same


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096), st.text(alphabet="0123456789abcdef", max_size=16))
def test_any_bytes_come_back_as_they_went_in(data: bytes, ident: str) -> None:
    stored, marked = squeeze(data, ident)
    assert unsqueeze(bytes(stored), marked, "k") == (data, ident)
    # Marked only when compressed; a value that does not shrink stays as it is.
    assert (marked == MARK + ident) == (stored != data)
    if stored == data:
        assert marked == ident


def test_values_over_the_bound_are_stored_as_they_are() -> None:
    # Compressing large (mostly incompressible) array data would cost milliseconds per
    # write; only small values are tried, even when a larger one would shrink.
    large = b"a" * (MAX_SQUEEZED + 1)
    assert squeeze(large, "abc") == (large, "abc")
    small, marked = squeeze(large[:MAX_SQUEEZED], "abc")
    assert marked == MARK + "abc" and len(small) < 100


def test_records_and_tiny_arrays_shrink_several_times(tmp_path: Path) -> None:
    storage = AutoStorageInterface(tmp_path, packed=True)
    CM = ParameterizedDatedCacheManager(storage, verbose=False)
    CM.collect(lambda i: np.arange(10.0) + i, name="tiny", params_list=[[i] for i in range(50)])
    CM.tiny.get_all(progress=False)
    with sqlite3.connect(tmp_path / INDEX_KEY) as conn:
        rows = conn.execute("SELECT key, length(data), ident FROM blobs").fetchall()
    assert len(rows) == 100 and all(ident.startswith(MARK) for _, _, ident in rows)
    records = [size for key, size, _ in rows if key.startswith(".metricache/")]
    data = [size for key, size, _ in rows if not key.startswith(".metricache/")]
    assert max(records) < 250 and max(data) < 100  # ~600 and 208 bytes uncompressed
    fresh = ParameterizedDatedCacheManager(AutoStorageInterface(tmp_path), verbose=False)
    fresh.collect(lambda i: np.arange(10.0) + i, name="tiny", params_list=[[i] for i in range(50)])
    for i in range(50):
        assert_same(fresh.tiny(i), np.arange(10.0) + i)
    assert AutoStorageInterface(tmp_path).check().clean


@pytest.mark.parametrize("damage", ["flip", "cut", "pad"])
def test_damaged_compressed_bytes_are_a_clear_corrupt_entry(damage: str) -> None:
    stored, marked = squeeze(b'{"format":1,"current":{"name":"m"}}' * 20, "abc")
    raw = bytes(stored)
    damaged = {
        "flip": raw[:3] + bytes([raw[3] ^ 0xFF]) + raw[4:],
        "cut": raw[:-4],
        "pad": raw + b"\x00\x00",
    }[damage]
    try:
        value, _ = unsqueeze(damaged, marked, "index [m]")
    except CorruptEntryError as err:
        assert "index [m] is damaged" in str(err)
    else:  # a flip DEFLATE cannot see: other bytes, which the checksum then refuses
        assert damage == "flip" and value != b'{"format":1,"current":{"name":"m"}}' * 20
