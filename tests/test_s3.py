"""Cache folders on S3 (a real moto server): commits, identities, requests, folders moved.

Everything runs over HTTP against the session's moto server; request counts come
from a proxy in front of it that sees every request (``tests/_faultproxy.py``).
"""

from __future__ import annotations

import multiprocessing
import pickle
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metricache import (
    AutoStorageInterface,
    DatedCacheManager,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
    PickleStorageInterface,
)
from metricache._fsstore import FsspecStore

from ._faultproxy import FaultProxy
from ._s3server import S3Server
from .test_legacy import CASES as LEGACY_CASES
from .test_legacy import assert_same, forbidden, legacy_folder

#: Parts of S3's minimum size, so a few MiB make a multipart upload.
SMALL_PARTS = {"default_block_size": 5 << 20}


@pytest.fixture
def url(s3: S3Server) -> str:
    """A fresh, empty cache folder on S3."""
    return f"s3://{s3.bucket('s3')}/cache"


@pytest.fixture
def proxy(s3: S3Server) -> FaultProxy:
    """A proxy in front of the server, counting requests."""
    return FaultProxy(("127.0.0.1", s3.port))


def uploads_in_progress(s3: S3Server, url: str) -> list[Any]:
    """Multipart uploads begun and neither completed nor aborted, in *url*'s bucket."""
    fs = s3.filesystem()
    bucket = url[len("s3://") :].split("/", 1)[0]
    return list(fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", []))


def test_a_large_value_is_a_multipart_upload_named_by_its_etag(s3: S3Server, url: str) -> None:
    value = np.random.default_rng(0).random(12 << 17)  # 12 MiB: three parts of 5 MiB
    storage = NpyStorageInterface(url, storage_options={**s3.storage_options(), **SMALL_PARTS})
    info = storage.write_entry("big", value)
    etag = storage.store.stat("big.npy").identity
    assert etag is not None and etag.endswith('-3"')
    assert info.file_id == etag  # the record names the object's ETag before it exists
    np.testing.assert_array_equal(
        NpyStorageInterface(url, storage_options=s3.storage_options()).load("big"), value
    )
    assert uploads_in_progress(s3, url) == []


def test_staged_parts_are_invisible_until_the_commit(s3: S3Server, url: str) -> None:
    store = FsspecStore(url, {**s3.storage_options(), **SMALL_PARTS})
    store.put_atomic("k", lambda f: f.write(b"old"))
    staged = store.stage("k", lambda f: f.write(b"x" * (11 << 20)))
    assert len(uploads_in_progress(s3, url)) == 1  # the parts are on the server already
    assert store.read_bytes("k") == b"old" and store.stat("k").size == 3
    assert staged.commit() == store.stat("k").identity == staged.identity
    assert store.stat("k").size == 11 << 20
    discarded = store.stage("k", lambda f: f.write(b"y" * (11 << 20)))
    discarded.discard()
    assert uploads_in_progress(s3, url) == []
    assert store.stat("k").size == 11 << 20


def test_a_small_hit_is_two_requests_and_a_write_never_copies(
    s3: S3Server, url: str, proxy: FaultProxy
) -> None:
    storage = NpyStorageInterface(url, storage_options=proxy.options(s3.storage_options()))
    storage.save("m", np.arange(5))
    proxy.clear()
    storage.save("m", np.arange(6))
    methods = [r.split(" ", 1)[0] for r in proxy.requests]
    assert methods.count("PUT") == 2 and "DELETE" not in methods  # record, then data
    assert not any("x-amz-copy" in r or "copy" in r.lower() for r in proxy.requests)
    proxy.clear()
    np.testing.assert_array_equal(storage.load("m"), np.arange(6))
    assert [r.split(" ", 1)[0] for r in proxy.requests] == ["GET", "GET"]  # record, data


def test_listing_reads_records_never_a_head_per_entry(
    s3: S3Server, url: str, proxy: FaultProxy
) -> None:
    storage = NpyStorageInterface(url, storage_options=proxy.options(s3.storage_options()))
    CM = DatedCacheManager(storage, verbose=False)
    lists = []
    for count in (3, 12):
        for i in range(count):
            storage.save(f"m{i}", np.arange(i))
        proxy.clear()
        assert [e.name for e in CM.entries()] == sorted(f"m{i}" for i in range(count))
        assert not [r for r in proxy.requests if r.startswith("HEAD")]
        records = [r for r in proxy.requests if r.endswith(".json")]
        assert len(records) == count  # one GET per record, nothing else per entry
        lists.append(len(proxy.requests) - count)
    assert lists[0] == lists[1]  # LISTs per folder, however many entries
    assert CM.check().clean


def test_listings_see_writes_of_other_clients_at_once(s3: S3Server, url: str) -> None:
    store = FsspecStore(url, s3.storage_options())
    assert store.list() == []
    other = s3.filesystem()
    other.pipe_file(url[len("s3://") :] + "/written-elsewhere", b"1")
    assert store.list() == ["written-elsewhere"]  # no stale listing cache
    other.rm_file(url[len("s3://") :] + "/written-elsewhere")
    assert store.list() == [] and not store.exists("written-elsewhere")


@pytest.mark.parametrize(
    "cls", [NpzStorageInterface, JsonStorageInterface, PickleStorageInterface]
)
def test_every_format_on_s3(cls: Any, s3: S3Server, url: str) -> None:
    storage = cls(url, storage_options=s3.storage_options())
    value = {"a": [1, 2], "b": 3} if cls is not NpzStorageInterface else {"a": np.arange(3)}
    storage.save("m", value)
    again = cls(url, storage_options=s3.storage_options())
    loaded = again.load("m")
    assert loaded.keys() == value.keys()
    assert again.verify("m") is not None and again.check().clean


def _sum_in_worker(storage: Any) -> None:
    CM = DatedCacheManager(storage, verbose=False)
    CM.set_functions_dict({"total": lambda: np.arange(100).sum()})
    assert CM["total"] == 4950


def test_a_pickled_interface_rebuilds_its_client_in_a_worker(s3: S3Server, url: str) -> None:
    storage = AutoStorageInterface(url, storage_options=s3.storage_options())
    blob = pickle.dumps(storage)
    assert b"FsspecStore" not in blob and b"S3FileSystem" not in blob  # a description only
    worker = multiprocessing.get_context("spawn").Process(target=_sum_in_worker, args=(storage,))
    worker.start()
    worker.join(120)
    assert worker.exitcode == 0
    CM = DatedCacheManager(pickle.loads(blob), verbose=False)
    CM.set_functions_dict({"total": forbidden("total")})
    assert CM["total"] == 4950


def _fill(CM: DatedCacheManager) -> dict[str, Any]:
    values = {"ramp": np.arange(4.0), "parts": [np.zeros(2), np.ones(3)], "conf": {"k": [1]}}
    CM.set_functions_dict({n: (lambda v=v: v) for n, v in values.items()})
    for name in values:
        CM[name]
    return values


def _reopened_without_recompute(where: str, values: dict[str, Any], **kw: Any) -> None:
    CM = DatedCacheManager(AutoStorageInterface(where, **kw), verbose=False)
    CM.set_functions_dict({n: forbidden(n) for n in values})
    for name, value in values.items():
        got = CM[name]
        if isinstance(value, list):
            assert all(np.array_equal(a, b) for a, b in zip(got, value, strict=True))
        elif isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got, value)
        else:
            assert got == value
    assert CM.check().clean


@pytest.mark.parametrize("remote", ["s3", "memory"])
def test_a_folder_uploaded_opens_remotely_and_back(
    remote: str, s3: S3Server, tmp_path: Path
) -> None:
    if remote == "s3":
        base, options = f"s3://{s3.bucket('moved')}", s3.storage_options()
        fs = s3.filesystem()
    else:
        base, options = f"memory://moved-{uuid.uuid4().hex[:12]}", None
        fs = FsspecStore(base).fs
    kw: dict[str, Any] = {"storage_options": options} if options else {}
    values = _fill(DatedCacheManager(AutoStorageInterface(tmp_path / "local"), verbose=False))
    fs.put(str(tmp_path / "local"), base.split("://")[1] + "/up", recursive=True)
    _reopened_without_recompute(f"{base}/up", values, **kw)

    remote_values = _fill(
        DatedCacheManager(AutoStorageInterface(f"{base}/made", **kw), verbose=False)
    )
    fs.invalidate_cache()
    fs.get(base.split("://")[1] + "/made", str(tmp_path / "down"), recursive=True)
    _reopened_without_recompute(str(tmp_path / "down"), remote_values)


@pytest.mark.parametrize("ext", [".npz", ".npy", ".json"])
def test_a_legacy_folder_uploaded_to_s3_opens(ext: str, s3: S3Server, tmp_path: Path) -> None:
    legacy_folder(tmp_path / "seed", ext)
    base = f"{s3.bucket('legacy')}/seed"
    s3.filesystem().put(str(tmp_path / "seed"), base, recursive=True)
    storage = {
        ".npz": NpzStorageInterface,
        ".npy": NpyStorageInterface,
        ".json": JsonStorageInterface,
    }[ext]
    CM = DatedCacheManager(
        storage(f"s3://{base}", storage_options=s3.storage_options()), verbose=False
    )
    names = [name for name, *_ in LEGACY_CASES[ext]]
    CM.set_functions_dict({n: forbidden(n) for n in names})
    for name, _, expected, date in LEGACY_CASES[ext]:
        assert_same(expected, CM[name])
        assert CM[name + "_date"] == date
    shutil.rmtree(tmp_path / "seed")


def _load_sum(url: str, options: dict[str, Any], cache_dir: str, out: Any) -> None:
    storage = NpyStorageInterface(url, storage_options=options, cache_dir=cache_dir)
    out.put(float(storage.load("big").sum()))


def _in_process(url: str, options: dict[str, Any], cache_dir: Path) -> float:
    """The sum of entry ``big`` as a fresh process reads it through *cache_dir*."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    worker = ctx.Process(target=_load_sum, args=(url, options, str(cache_dir), out))
    worker.start()
    total = out.get(timeout=120)
    worker.join(60)
    assert worker.exitcode == 0
    return float(total)


def test_a_second_process_reads_through_the_local_cache(
    s3: S3Server, url: str, proxy: FaultProxy, tmp_path: Path
) -> None:
    value = np.random.default_rng(1).random(1 << 20)  # 8 MiB
    NpyStorageInterface(url, storage_options=s3.storage_options()).save("big", value)
    options = proxy.options(s3.storage_options())
    proxy.clear()
    assert _in_process(url, options, tmp_path / "cache") == value.sum()
    assert proxy.served > value.nbytes  # the first process downloaded it
    proxy.clear()
    assert _in_process(url, options, tmp_path / "cache") == value.sum()
    assert proxy.served < 64 << 10  # the second one read the local copy: records only
    assert not [r for r in proxy.requests if r.startswith("GET") and r.endswith("big.npy")]

    # Replaced on S3 by someone without the cache: the local copy is stale, never served.
    NpyStorageInterface(url, storage_options=s3.storage_options()).save("big", value * 2)
    proxy.clear()
    assert _in_process(url, options, tmp_path / "cache") == (value * 2).sum()
    assert proxy.served > value.nbytes
    copies = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(copies) == 1  # the stale copy was replaced, not kept beside the new one


def test_cache_dir_and_storage_options_are_refused_for_local_folders(tmp_path: Path) -> None:
    for kwargs in ({"cache_dir": tmp_path / "c"}, {"storage_options": {"anon": True}}):
        with pytest.raises(ValueError, match="remote folders"):
            NpyStorageInterface(tmp_path / "local", **kwargs)
    assert not (tmp_path / "local").exists() and not (tmp_path / "c").exists()


def test_an_auto_hit_finds_its_format_in_one_listing(
    s3: S3Server, url: str, proxy: FaultProxy
) -> None:
    storage = AutoStorageInterface(url, storage_options=proxy.options(s3.storage_options()))
    for name, value in {
        "arr": np.arange(3),
        "pair": [np.zeros(1), 2.0],
        "doc": {"k": [1]},
    }.items():
        storage.save(name, value)
        storage.save(name + "x", value)  # a name that starts like it: not a candidate
        proxy.clear()
        fresh = AutoStorageInterface(url, storage_options=proxy.options(s3.storage_options()))
        fresh.load(name)
        methods = [r.split(" ", 1)[0] for r in proxy.requests]
        assert methods == ["GET", "GET", "GET"], proxy.requests  # LIST, record, data
        assert "list-type=2" in proxy.requests[0]


def _use_inherited(storage: Any, value: np.ndarray) -> None:
    np.testing.assert_array_equal(storage.load("big"), value)
    storage.save("big", value + 1)  # a multipart upload from the child's own threads


def test_an_interface_inherited_by_a_forked_child_makes_its_own_client(
    s3: S3Server, url: str
) -> None:
    storage = NpyStorageInterface(url, storage_options={**s3.storage_options(), **SMALL_PARTS})
    value = np.random.default_rng(3).random(11 << 17)
    storage.save("big", value)  # the parent's client, event loop and upload threads exist
    child = multiprocessing.get_context("fork").Process(
        target=_use_inherited, args=(storage, value)
    )
    child.start()
    child.join(120)
    assert child.exitcode == 0
    np.testing.assert_array_equal(storage.load("big"), value + 1)
