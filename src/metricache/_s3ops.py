"""S3 done right: one PUT per commit, multipart uploads visible only when complete.

What :class:`~metricache._fsstore.FsspecStore` does on s3fs instead of the generic
``pipe``: a value smaller than a part is one ``PutObject``; a larger one is a
multipart upload whose parts go up while the value is still being encoded, and
which only ``CompleteMultipartUpload`` makes visible. Either way the commit is one
request, never a copy and a delete. Every PUT carries ``Content-MD5``, so the
server refuses bytes torn on the way, and the object's ETag (the MD5, or the
MD5 of the parts' MD5s) is known before the commit: it is the identity the
record names. A read is one ``GetObject`` streamed into the codec, and reports
the ETag of that very response, so a reader checks the bytes it actually got.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import io
import logging
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import aiohttp
from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]
from fsspec.asyn import sync  # type: ignore[import-untyped]

from ._safeopen import RECORD_MAX
from ._store import Staged, StatResult
from .exceptions import CorruptEntryError

__all__ = ["S3Ops"]

T = TypeVar("T")
logger = logging.getLogger(__name__)
#: Parts uploading at once per write: bounds the memory a large value holds.
_IN_FLIGHT = 4
#: What a broken connection raises below s3fs, turned into OSError here.
_NETWORK_ERRORS = (BotoCoreError, aiohttp.ClientError, asyncio.TimeoutError)
_pool: ThreadPoolExecutor | None = None


def _parts_pool() -> ThreadPoolExecutor:
    """Threads that hash and upload parts while the caller keeps encoding."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_IN_FLIGHT, thread_name_prefix="metricache-s3")
    return _pool


def _forget_pool() -> None:
    """In a forked child: the parent's threads are not there, so start new ones on demand."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


# Bodies go as file objects: aiohttp warns that a large raw bytes body blocks its loop.
def _md5(data: bytes | bytearray) -> bytes:
    """The MD5 digest S3 checks (``Content-MD5``) and builds ETags from."""
    return hashlib.md5(data, usedforsecurity=False).digest()


def _stat(resp: dict[str, Any]) -> StatResult:
    """Size, ETag and time of a HeadObject/GetObject response."""
    return StatResult(
        int(resp["ContentLength"]), resp.get("ETag"), resp["LastModified"].timestamp()
    )


class S3Ops:
    """The S3 requests of one s3fs filesystem."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One S3 request on *path* (s3fs retries and turns errors into OSErrors)."""
        bucket, key, _ = self.fs.split_path(path)
        try:
            resp: dict[str, Any] = self.fs.call_s3(method, Bucket=bucket, Key=key, **kwargs)
        except _NETWORK_ERRORS as err:
            raise OSError(errno.EIO, f"{method} of s3://{path} failed: {err}") from err
        return resp

    def head(self, path: str) -> StatResult:
        """One HEAD; ``FileNotFoundError`` if there is no such object."""
        return _stat(self._call("head_object", path))

    def list_prefix(self, prefix: str) -> list[str] | None:
        """Keys (``bucket/key`` paths) starting with *prefix*, in one LIST; None if more."""
        bucket, key, _ = self.fs.split_path(prefix)
        try:
            resp = self.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=key, Delimiter="/")
        except _NETWORK_ERRORS as err:
            raise OSError(errno.EIO, f"listing s3://{prefix} failed: {err}") from err
        if resp.get("IsTruncated"):
            return None  # a thousand keys share the prefix: the caller asks otherwise
        return [f"{bucket}/{item['Key']}" for item in resp.get("Contents", [])]

    def get(self, path: str, **conditions: Any) -> _Reader:
        """One GET, streamed: the returned file reads the response body."""
        return _Reader(self, path, self._call("get_object", path, **conditions))

    def read_small(self, path: str) -> bytes:
        """A record's bytes in one GET; ``CorruptEntryError`` if it is too large for one."""
        with self.get(path) as f:
            if f.served.size > RECORD_MAX:
                raise CorruptEntryError(f"s3://{path} is too large for a record")
            return f.readall()

    def stage(self, path: str, write: Callable[[Any], T], part_size: int) -> Staged[T]:
        """Run *write* into an upload of *path*; nothing is visible until the commit."""
        upload = _Upload(self, path, part_size)
        try:
            result = write(upload)
            upload.finish_parts()
        except BaseException:
            upload.abort()
            raise
        return _S3Staged(upload, result)


class _Reader(io.RawIOBase):
    """The body of one GetObject response, as a read-only file."""

    def __init__(self, ops: S3Ops, path: str, resp: dict[str, Any]) -> None:
        super().__init__()
        self._ops, self._path, self._body = ops, path, resp["Body"]
        #: The bytes this response serves (what ``stat_open`` reports).
        self.served = _stat(resp)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n: int = self._sync(_fill, self._body, view)
        self._pos += n
        return n

    def readall(self) -> bytes:
        data: bytes = self._sync(self._body.read)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._pos + offset
        if whence not in (io.SEEK_SET, io.SEEK_CUR) or target not in (0, self._pos):
            raise io.UnsupportedOperation("an S3 object is read front to back")
        if target != self._pos:
            # Read from the start again: the same bytes (If-Match), or an error.
            self._body.close()
            resp = self._ops._call("get_object", self._path, IfMatch=self.served.identity)
            self._body, self._pos = resp["Body"], 0
        return self._pos

    def _sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run coroutine *fn* on the filesystem's loop; network errors as OSError."""
        try:
            return sync(self._ops.fs.loop, fn, *args)
        except _NETWORK_ERRORS as err:
            raise OSError(errno.EIO, f"reading s3://{self._path} failed: {err}") from err

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


async def _fill(body: Any, view: memoryview) -> int:
    """Fill *view* from the response *body*; fewer bytes only at its end."""
    done = 0
    while done < view.nbytes:
        chunk = await body.read(view.nbytes - done)
        if not chunk:
            break
        view[done : done + len(chunk)] = chunk
        done += len(chunk)
    return done


class _Upload(io.RawIOBase):
    """A write-only file whose bytes become one PUT, or the parts of a multipart upload."""

    def __init__(self, ops: S3Ops, path: str, part_size: int) -> None:
        super().__init__()
        self._ops, self._path, self._part_size = ops, path, part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._pending: list[Future[tuple[int, str, bytes]]] = []
        self._parts: list[tuple[int, str, bytes]] = []
        #: The ETag the object will have (known once every byte is written).
        self.etag: str | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        while view.nbytes:
            room = self._part_size - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) >= self._part_size:
                self._send_part()
        return size

    def _send_part(self) -> None:
        """Upload the buffer as the next part, in the background (a few at a time)."""
        if self._upload_id is None:
            self._upload_id = self._ops._call("create_multipart_upload", self._path)["UploadId"]
        while len(self._pending) >= _IN_FLIGHT:
            self._parts.append(self._pending.pop(0).result())
        number = len(self._parts) + len(self._pending) + 1
        part, self._buffer = self._buffer, bytearray()
        self._pending.append(_parts_pool().submit(self._put_part, number, part))

    def _put_part(self, number: int, data: bytearray) -> tuple[int, str, bytes]:
        digest = _md5(data)
        resp = self._ops._call(
            "upload_part", self._path, UploadId=self._upload_id, PartNumber=number,
            Body=io.BytesIO(data), ContentMD5=base64.b64encode(digest).decode(),
        )  # fmt: skip
        return number, resp["ETag"], digest

    def finish_parts(self) -> None:
        """Upload what is left of a multipart upload and compute the coming ETag."""
        if self._upload_id is None:
            self.etag = f'"{_md5(self._buffer).hex()}"'
            return
        if self._buffer:
            self._send_part()
        while self._pending:
            self._parts.append(self._pending.pop(0).result())
        # S3's ETag of a multipart object: the MD5 of its parts' MD5s, and their count.
        joined = _md5(b"".join(digest for _, _, digest in self._parts))
        self.etag = f'"{joined.hex()}-{len(self._parts)}"'

    def publish(self) -> str | None:
        """The one request that makes the object visible; returns its ETag."""
        if self._upload_id is None:
            try:
                resp = self._ops._call(
                    "put_object", self._path, Body=io.BytesIO(self._buffer),
                    ContentMD5=base64.b64encode(_md5(self._buffer)).decode(),
                )  # fmt: skip
            except OSError:
                if not self._landed():
                    raise
                resp = {}  # every byte arrived; only the answer was lost
            self._buffer = bytearray()
            return resp.get("ETag") or self.etag
        parts = [{"PartNumber": n, "ETag": tag} for n, tag, _ in self._parts]
        try:
            resp = self._ops._call(
                "complete_multipart_upload", self._path, UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )  # fmt: skip
        except FileNotFoundError:
            # A retry after a lost response finds the upload already completed: it
            # is ours if the object has exactly the ETag our parts make.
            if not self._landed():
                raise
            resp = {}
        self._upload_id = None
        return resp.get("ETag") or self.etag

    def _landed(self) -> bool:
        """Whether the object now is exactly what this upload sent (after a failed commit)."""
        try:
            return self._ops.head(self._path).identity == self.etag
        except OSError:
            return False

    def abort(self) -> None:
        """Drop the staged bytes; abort a multipart upload (no part stays on the server)."""
        for pending in self._pending:
            pending.exception()  # wait: a part still uploading would outlive the abort
        self._pending, self._buffer = [], bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            self._ops._call("abort_multipart_upload", self._path, UploadId=upload_id)
        except OSError as err:
            # Never completed, so never visible; a bucket lifecycle rule reclaims it.
            logger.warning("could not abort the upload of s3://%s: %s", self._path, err)


class _S3Staged(Staged[T]):
    """An upload whose bytes are all on the server (or here), waiting for its one commit."""

    def __init__(self, upload: _Upload, result: T) -> None:
        self._upload, self.result = upload, result
        self.identity = upload.etag
        self._done = False

    def commit(self) -> str | None:
        if self._done:
            raise ValueError("this staged write was already committed or discarded")
        self._done = True
        try:
            return self._upload.publish()
        except BaseException:
            self._upload.abort()
            raise

    def discard(self) -> None:
        if not self._done:
            self._done = True
            self._upload.abort()
