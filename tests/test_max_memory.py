"""max_memory: the memory tier holds at most that many bytes, oldest values first out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from metricache import ParameterizedDatedCacheManager
from metricache._lru import parse_bytes

MiB = 1 << 20


def build(folder: Path, max_memory: object) -> ParameterizedDatedCacheManager:
    CM = ParameterizedDatedCacheManager(str(folder), verbose=False, max_memory=max_memory)  # type: ignore[arg-type]

    @CM.collect(params_list=[[i] for i in range(40)])
    def block(i: int) -> np.ndarray:
        return np.full(MiB // 8, float(i))  # 1 MiB each

    return CM


def test_memory_holds_at_most_the_bound_and_reloads_what_it_dropped(tmp_path: Path) -> None:
    CM = build(tmp_path / "c", "4.5MiB")
    for i in range(10):
        assert CM.block(i)[0] == i
    assert len(CM.cache) == 4 and sorted(CM.cache) == [f"block_{i}" for i in range(6, 10)]
    assert len(CM._infos) <= 4  # metadata of dropped names goes with them
    assert CM.block(0)[0] == 0.0  # loaded again from storage, not recomputed
    assert "block_0" in CM.cache and "block_6" not in CM.cache


def test_a_value_larger_than_the_bound_is_returned_not_kept(tmp_path: Path) -> None:
    CM = build(tmp_path / "c", 100_000)
    assert CM.block(3)[0] == 3.0 and len(CM.cache) == 0


def rss() -> int:
    """This process's resident memory now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_get_all_over_more_than_the_bound_keeps_rss_bounded(tmp_path: Path) -> None:
    CM = build(tmp_path / "c", "8MB")
    before = rss()
    summary = CM.block.get_all(return_values=False)
    assert summary.computed == 40 and len(CM.cache) <= 8
    grown = rss() - before
    assert grown < 25 * MiB  # 40 MiB computed; unbounded memory would hold all of it


def test_sizes_parse() -> None:
    assert parse_bytes("2GB") == 2 * 10**9 and parse_bytes("1MiB") == MiB
    with pytest.raises(ValueError, match="not a size"):
        parse_bytes("lots")
