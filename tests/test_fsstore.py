"""FsspecStore on backends other than S3, URLs as folders, and the install hints."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from metricache import (
    AutoStorageInterface,
    DatedCacheManager,
    JsonStorageInterface,
    NpyStorageInterface,
)
from metricache._fsstore import FsspecStore, is_remote, local_path_of
from metricache._layout import TEMP_PREFIX
from metricache._store import LocalStore


def memory_url() -> str:
    return f"memory://{uuid.uuid4().hex[:12]}/cache"


def test_which_urls_are_remote() -> None:
    assert is_remote("s3://bucket/prefix") and is_remote("memory://x") and is_remote("gcs://b")
    for local in ("cache/", "/abs/path", "file:///abs/path", "local:///x", "C:\\cache"):
        assert not is_remote(local), local
    assert local_path_of("file:///abs/path") == "/abs/path"
    assert local_path_of("relative/x") == "relative/x"


def test_file_urls_keep_the_local_store(tmp_path: Path) -> None:
    storage = NpyStorageInterface(f"file://{tmp_path}/cache")
    storage.save("m", np.arange(3))
    assert not isinstance(storage.store, FsspecStore)
    assert isinstance(storage.store, LocalStore) or storage.store.local_path("x") is not None
    np.testing.assert_array_equal(NpyStorageInterface(tmp_path / "cache").load("m"), np.arange(3))


def test_a_memory_url_is_a_cache_folder_for_a_manager() -> None:
    url = memory_url()
    CM = DatedCacheManager(url, verbose=False)
    CM.set_functions_dict({"ramp": lambda: np.arange(4.0), "doc": lambda: {"k": {"v": 1}}})
    CM["ramp"], CM["doc"]
    assert isinstance(CM.storage_interface, AutoStorageInterface)
    again = DatedCacheManager(url, verbose=False)
    again.set_functions_dict({"ramp": lambda: 1 / 0, "doc": lambda: 1 / 0})
    np.testing.assert_array_equal(again["ramp"], np.arange(4.0))
    assert again["doc"] == {"k": {"v": 1}}
    assert [e.name for e in again.entries()] == ["doc", "ramp"] and again.check().clean


def test_a_pickled_store_rebuilds_its_filesystem() -> None:
    store = FsspecStore(memory_url(), {"skip_instance_cache": True})
    store.put_atomic("k", lambda f: f.write(b"v"))
    copy = pickle.loads(pickle.dumps(store))
    assert (copy.url, copy.storage_options, copy.root) == (
        store.url, store.storage_options, store.root,
    )  # fmt: skip
    assert copy.read_bytes("k") == b"v"  # memory:// is one per process: the same bytes
    assert (copy.protocol, repr(copy)) == ("memory", f"FsspecStore({store.url!r})")


def test_large_values_stage_in_a_local_temp_file(monkeypatch: pytest.MonkeyPatch) -> None:
    import metricache._fsstore as fsstore

    monkeypatch.setattr(fsstore, "_SPOOL_MAX", 1000)
    store = FsspecStore(memory_url())
    store.put_atomic("small", lambda f: f.write(b"x" * 10))
    staged = store.stage("big", lambda f: f.write(b"y" * 5000), size_hint=5000)
    assert not store.exists("big") and store.list() == ["small"]
    staged.commit()
    assert store.read_bytes("big") == b"y" * 5000
    gone = store.stage("big", lambda f: f.write(b"z" * 5000), size_hint=5000)
    gone.discard()
    assert store.read_bytes("big") == b"y" * 5000
    with pytest.raises(ValueError, match="already"):
        staged.commit()


def test_listings_leave_out_temp_files_and_the_folder_itself() -> None:
    store = FsspecStore(memory_url())
    store.fs.pipe_file(store.path(f"{TEMP_PREFIX}other-writer"), b"half")
    store.put_atomic("a", lambda f: f.write(b"1"))
    store.put_atomic("d/b", lambda f: f.write(b"2"))
    assert store.list() == ["a"] and store.folders() == ["d"]
    assert store.list("a") == [] and store.list("d") == ["b"]


def test_a_value_that_cannot_be_stored_leaves_a_remote_folder_as_it_was() -> None:
    url = memory_url()
    storage = JsonStorageInterface(url)
    storage.save("m", [1, 2])
    before = sorted(storage.store.fs.find(storage.store.root))
    with pytest.raises(TypeError):
        storage.save("m", object())
    assert sorted(storage.store.fs.find(storage.store.root)) == before
    assert JsonStorageInterface(url).load("m") == [1, 2]


@pytest.mark.parametrize(("blocked", "url", "extra"), [
    ("s3fs", "s3://bucket/cache", "s3"),
    ("fsspec", "memory://cache", "remote"),
])  # fmt: skip
def test_a_missing_backend_names_the_extra_to_install(
    blocked: str, url: str, extra: str, tmp_path: Path
) -> None:
    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None\n"  # as if not installed
        "from metricache import NpzStorageInterface, MissingDependencyError\n"
        "try:\n"
        f"    NpzStorageInterface({url!r})\n"
        "except MissingDependencyError as err:\n"
        "    assert isinstance(err, ImportError)\n"
        "    print(err)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert f"pip install metricache[{extra}]" in out.stdout and url in out.stdout
