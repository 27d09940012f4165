"""The S3 test server itself: real HTTP, strong reads, and the conditional writes leases need."""

from __future__ import annotations

import pytest

from ._s3server import S3Server


def test_objects_round_trip_over_real_http(s3: S3Server) -> None:
    fs = s3.filesystem()
    bucket = s3.bucket("roundtrip")
    fs.pipe_file(f"{bucket}/a/b.bin", b"payload")
    assert fs.cat_file(f"{bucket}/a/b.bin") == b"payload"
    assert fs.ls(f"{bucket}/a", detail=False) == [f"{bucket}/a/b.bin"]


def test_buckets_are_fresh_and_apart(s3: S3Server) -> None:
    fs = s3.filesystem()
    first, second = s3.bucket("same"), s3.bucket("same")
    assert first != second
    fs.pipe_file(f"{first}/x", b"1")
    assert fs.ls(second, detail=False) == []


def test_the_server_refuses_a_second_create_only_put(s3: S3Server) -> None:
    """If-None-Match: * (what a lease's acquisition relies on) is enforced by this server."""
    fs = s3.filesystem()
    bucket = s3.bucket("conditional")
    fs.call_s3("put_object", Bucket=bucket, Key="lease", Body=b"a", IfNoneMatch="*")
    # s3fs turns the server's 412 PreconditionFailed into FileExistsError.
    with pytest.raises(FileExistsError):
        fs.call_s3("put_object", Bucket=bucket, Key="lease", Body=b"b", IfNoneMatch="*")
    assert fs.cat_file(f"{bucket}/lease") == b"a"


def test_bucket_names_from_parametrized_test_ids_are_valid(s3: S3Server) -> None:
    fs = s3.filesystem()
    bucket = s3.bucket("test_x[npz-Auto_1]")
    fs.pipe_file(f"{bucket}/k", b"v")
    assert bucket.startswith("test-x-npz-auto-1-")
    assert fs.cat_file(f"{bucket}/k") == b"v"
