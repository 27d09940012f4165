"""Network faults between s3fs and a real S3 server (moto), injected by a TCP proxy.

A lost response: the server stored the bytes but the client never heard, so it
sends them again. A cut connection: the server never got the request whole. Either
way a reader gets the old value or the new one, never a torn or partial object,
and nothing is left that ``check()`` reports once ``cleanup()`` ran.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from metricache import DatedCacheManager, NpyStorageInterface
from metricache.exceptions import CacheWriteWarning, CorruptEntryError

from ._faultproxy import FaultProxy
from ._s3server import S3Server
from .test_s3 import SMALL_PARTS, uploads_in_progress

#: Few, quick retries: a fault that persists fails the write in seconds.
RETRIES = {"config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"}}}


@pytest.fixture
def url(s3: S3Server) -> str:
    return f"s3://{s3.bucket('faults')}/cache"


@pytest.fixture
def proxy(s3: S3Server) -> FaultProxy:
    return FaultProxy(("127.0.0.1", s3.port))


def storage_via(proxy: FaultProxy, s3: S3Server, url: str, **extra: Any) -> NpyStorageInterface:
    options = {**proxy.options(s3.storage_options()), **RETRIES, **extra}
    return NpyStorageInterface(url, storage_options=options)


def direct(s3: S3Server, url: str) -> NpyStorageInterface:
    """The same folder, reached without the proxy."""
    return NpyStorageInterface(url, storage_options=s3.storage_options())


def objects(s3: S3Server, url: str) -> list[str]:
    fs = s3.filesystem()
    return sorted(fs.find(url[len("s3://") :]))


@pytest.mark.parametrize("lost", [r"/m\.npy$", r"/\.metricache/meta/npy/m\.json$"])
def test_a_put_whose_response_is_lost_is_retried(
    lost: str, s3: S3Server, url: str, proxy: FaultProxy
) -> None:
    storage = storage_via(proxy, s3, url)
    storage.save("m", np.arange(3))
    before = objects(s3, url)
    proxy.clear()
    rule = proxy.drop_response(r"^PUT /[^?]*" + lost)
    storage.save("m", np.arange(4))
    assert len(rule.hits) == 1  # the server stored it once already, then got it again
    assert sum(1 for r in proxy.requests if r == rule.hits[0]) == 2
    np.testing.assert_array_equal(direct(s3, url).load("m"), np.arange(4))
    assert objects(s3, url) == before  # no duplicate, nothing torn
    assert direct(s3, url).check().clean


def test_a_lost_completion_of_a_multipart_upload_is_recognised(
    s3: S3Server, url: str, proxy: FaultProxy
) -> None:
    storage = storage_via(proxy, s3, url, **SMALL_PARTS)
    value = np.random.default_rng(2).random(11 << 17)  # 11 MiB: three parts
    rule = proxy.drop_response(r"^POST /[^?]*/big\.npy\?uploadId=")
    info = storage.write_entry("big", value)
    assert len(rule.hits) == 1
    # The retry found the upload already completed, and the object is exactly ours.
    assert direct(s3, url).store.stat("big.npy").identity == info.file_id
    np.testing.assert_array_equal(direct(s3, url).load("big"), value)
    assert uploads_in_progress(s3, url) == []


def test_a_cut_mid_upload_leaves_the_old_value_and_no_parts(
    s3: S3Server, url: str, proxy: FaultProxy
) -> None:
    storage = storage_via(proxy, s3, url, **SMALL_PARTS)
    old = np.zeros(11 << 17)
    storage.save("big", old)
    records = objects(s3, url)
    proxy.cut_request(r"^PUT /[^?]*/big\.npy\?.*partNumber=2", after=1 << 20)
    with pytest.raises(OSError):
        storage.save("big", np.ones(11 << 17))
    reader = direct(s3, url)
    np.testing.assert_array_equal(reader.load("big"), old)
    assert uploads_in_progress(s3, url) == []  # the upload was aborted
    assert objects(s3, url) == records
    reader.cleanup()
    assert reader.check().clean


def test_a_cut_single_put_never_gives_a_wrong_value(
    s3: S3Server, url: str, proxy: FaultProxy
) -> None:
    storage = storage_via(proxy, s3, url)
    storage.save("m", np.arange(3))
    proxy.cut_request(r"^PUT /[^?]*/m\.npy$", after=10)
    with pytest.raises(OSError):
        storage.save("m", np.arange(5))
    # The record names the new entry, and S3 refuses a body cut short (IncompleteBody):
    # the data is still the old one, which the record's previous entry describes. A
    # server that keeps a truncated body (moto does) is caught by the size and
    # checksum: corrupt, never returned, and recomputed by a manager.
    reader = direct(s3, url)
    try:
        np.testing.assert_array_equal(reader.load("m"), np.arange(3))
    except CorruptEntryError:
        assert reader.store.stat("m.npy").size < 168
    CM = DatedCacheManager(direct(s3, url), verbose=False)
    CM.set_functions_dict({"m": lambda: np.arange(3)})
    np.testing.assert_array_equal(CM["m"], np.arange(3))
    reader.cleanup()
    assert reader.check().clean
    # A manager whose write fails keeps the value it computed, and warns.
    proxy.cut_request(r"^PUT /[^?]*/n\.npy$", after=10)
    CM = DatedCacheManager(storage, verbose=False)
    CM.set_functions_dict({"n": lambda: np.arange(7)})
    with pytest.warns(CacheWriteWarning):
        np.testing.assert_array_equal(CM["n"], np.arange(7))
    proxy.clear()
    storage.save("m", np.arange(6))
    np.testing.assert_array_equal(reader.load("m"), np.arange(6))
