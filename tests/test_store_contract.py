"""The Store contract, written once; a store adopts it in two lines (see the end).

Everything the entries layer relies on: staged bytes stay invisible until their
commit, a commit replaces atomically, a failed write leaves nothing, listings see
files and folders apart, and ``stat`` reports size and a stable identity (or None)
without reading the bytes.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from metricache._fsstore import FsspecStore
from metricache._store import LocalStore, Staged, Store

from ._memstore import MemoryStore
from ._s3server import S3Server


class StoreContract:
    """Behaviour every Store must have. Subclasses define :meth:`make`."""

    def make(self, tmp_path: Path) -> Store:
        raise NotImplementedError

    @pytest.fixture
    def store(self, tmp_path: Path) -> Store:
        return self.make(tmp_path)

    def test_put_then_read(self, store: Store) -> None:
        assert store.put_atomic("a/b/key", lambda f: f.write(b"hello")) == 5
        with store.open_read("a/b/key") as f:
            assert f.read() == b"hello"
        assert store.read_bytes("a/b/key") == b"hello"
        assert store.exists("a/b/key")

    def test_missing_key_raises_file_not_found(self, store: Store) -> None:
        with pytest.raises(FileNotFoundError):
            store.open_read("nothing")
        with pytest.raises(FileNotFoundError):
            store.read_bytes("nothing")
        with pytest.raises(FileNotFoundError):
            store.stat("nothing")
        assert not store.exists("nothing")
        assert store.delete("nothing") is False

    def test_staged_bytes_are_invisible_until_committed(self, store: Store) -> None:
        store.put_atomic("k", lambda f: f.write(b"old"))
        staged = store.stage("k", lambda f: f.write(b"new bytes"))
        assert staged.result == 9
        assert store.read_bytes("k") == b"old"
        assert store.list() == ["k"]  # a staging area is never listed as a key
        committed = staged.commit()
        assert store.read_bytes("k") == b"new bytes"
        assert committed == store.stat("k").identity

    def test_identity_known_before_commit_is_the_committed_one(self, store: Store) -> None:
        staged = store.stage("k", lambda f: f.write(b"x"))
        before = staged.identity
        after = staged.commit()
        if before is not None:
            assert after == before == store.stat("k").identity

    def test_identity_is_stable_and_changes_with_new_bytes(self, store: Store) -> None:
        store.put_atomic("k", lambda f: f.write(b"one"))
        first = store.stat("k")
        assert store.stat("k") == first  # stat reads nothing that changes
        store.put_atomic("k", lambda f: f.write(b"two"))
        second = store.stat("k")
        assert (first.size, second.size) == (3, 3)
        if first.identity is not None:
            assert second.identity != first.identity

    def test_discard_leaves_nothing(self, store: Store) -> None:
        staged = store.stage("k", lambda f: f.write(b"never"))
        staged.discard()
        staged.discard()  # idempotent
        assert not store.exists("k")
        assert store.list() == [] and store.temp_files() == []

    def test_a_failing_writer_leaves_the_old_bytes_and_no_litter(self, store: Store) -> None:
        store.put_atomic("d/k", lambda f: f.write(b"old"))

        def fail(f: BinaryIO) -> None:
            f.write(b"half")
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            store.stage("d/k", fail)
        assert store.read_bytes("d/k") == b"old"
        assert store.list("d") == ["k"] and store.temp_files("d") == []

    def test_listing_separates_files_and_folders(self, store: Store) -> None:
        for key in ("top", "f/one", "f/two", "f/sub/deep", "g/x"):
            store.put_atomic(key, lambda f: f.write(b"."))
        assert sorted(store.list()) == ["top"]
        assert sorted(store.list("f")) == ["one", "two"]
        assert sorted(store.folders()) == ["f", "g"]
        assert store.folders("f") == ["sub"]
        assert store.list("missing") == [] and store.folders("missing") == []

    def test_delete_and_move(self, store: Store) -> None:
        store.put_atomic("k", lambda f: f.write(b"data"))
        store.move("k", "moved/here")
        assert not store.exists("k") and store.read_bytes("moved/here") == b"data"
        assert store.delete("moved/here") is True
        assert not store.exists("moved/here")

    def test_stat_open_describes_the_bytes_being_read(self, store: Store) -> None:
        store.put_atomic("k", lambda f: f.write(b"12345"))
        with store.open_read("k") as f:
            assert store.stat_open(f, "k") == store.stat("k")

    def test_stat_reports_size_and_time_without_reading(self, store: Store) -> None:
        store.put_atomic("k", lambda f: f.write(b"12345"))
        stat = store.stat("k")
        assert stat.size == 5 and stat.mtime > 0


def test_a_store_missing_a_primitive_fails_at_construction() -> None:
    class NoStat(Store):
        def open_read(self, key: str) -> BinaryIO:
            raise FileNotFoundError(key)

        def stage(self, key: str, write: Any, **kwargs: Any) -> Staged[Any]:
            raise NotImplementedError

        def exists(self, key: str) -> bool:
            return False

        def delete(self, key: str) -> bool:
            return False

        def list(self, prefix: str = "") -> list[str]:
            return []

        def folders(self, prefix: str = "") -> list[str]:
            return []

    with pytest.raises(TypeError, match="stat"):
        NoStat()  # type: ignore[abstract]


# -- adopting the contract: two lines per store -----------------------------------


class TestLocalStore(StoreContract):
    def make(self, tmp_path: Path) -> Store:
        return LocalStore(tmp_path / "store")


class TestMemoryStore(StoreContract):
    def make(self, tmp_path: Path) -> Store:
        return MemoryStore()


class TestMemoryStoreWithTags(StoreContract):
    def make(self, tmp_path: Path) -> Store:
        return MemoryStore(identity="after-commit")


class TestFsspecMemoryStore(StoreContract):
    def make(self, tmp_path: Path) -> Store:
        return FsspecStore(f"memory://{uuid.uuid4().hex}/store")


class TestS3Store(StoreContract):
    @pytest.fixture
    def store(self, s3: S3Server, s3_url: str) -> Store:
        return FsspecStore(s3_url, s3.storage_options())
