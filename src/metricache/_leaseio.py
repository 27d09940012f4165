"""The S3 requests a lease is made of: conditional PUTs, a GET, a conditional DELETE.

Each lease is one small JSON object. It is created with ``If-None-Match: *`` (only
one writer can create it), renewed and taken over with ``If-Match: <etag>`` (only
the writer that saw the current version can replace it) and released with a
conditional DELETE. S3 answers ``412 PreconditionFailed`` when the condition does
not hold (someone else won: :class:`Taken`) and ``409 ConditionalRequestConflict``
when another conditional write of the same key is in flight (retried here, with
backoff, until the server decides).

Ages are judged by the server's clock only: the ``Date`` header of the response
minus the object's ``LastModified``, both written by the server, so a client whose
clock is wrong still judges a lease right.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, TypeVar

__all__ = ["LeaseIO", "LeaseState", "Taken", "error_code"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: How often a 409 (a concurrent conditional write in flight) is retried.
_CONFLICT_RETRIES = 8
#: Lease bodies are a few hundred bytes; anything larger is not a lease.
_BODY_MAX = 1 << 16


class Taken(Exception):
    """The condition of a conditional request did not hold: someone else's version is there."""


class LeaseState(NamedTuple):
    """A lease object as the server holds it now."""

    #: The object's ETag (the version to name in ``If-Match``).
    etag: str
    #: The lease body: ``owner``, ``host``, ``pid``, ``ttl``, ``beats`` (empty if unreadable).
    body: dict[str, Any]
    #: Seconds since it was last written, by the server's clock.
    age: float

    @property
    def owner(self) -> str:
        """The holder's token (host, pid and a random part)."""
        return str(self.body.get("owner", "?"))

    def holder(self) -> str:
        """Who holds it, for messages: process, host, and how fresh by the server's clock."""
        host, pid = self.body.get("host", "?"), self.body.get("pid", "?")
        return (
            f"process {pid} on host {host} (lease {self.owner}, renewed {self.age:.0f} s "
            f"ago by the server's clock, TTL {self.body.get('ttl', '?')} s)"
        )

    def expired(self, default_ttl: float) -> bool:
        """Whether its holder's TTL has run out (whole-second server stamps: 1 s grace)."""
        ttl = self.body.get("ttl")
        ttl = float(ttl) if isinstance(ttl, (int, float)) and ttl > 0 else default_ttl
        return self.age > ttl + 1.0


def error_code(err: BaseException) -> tuple[str | None, int | None]:
    """The S3 error code and HTTP status behind *err* (s3fs wraps botocore's ClientError)."""
    seen: BaseException | None = err
    for _ in range(4):  # the ClientError, or the cause of s3fs's translation of it
        if seen is None:
            break
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return (str(code) if code else None), (int(status) if status else None)
        seen = seen.__cause__
    return None, None


def _is_taken(err: BaseException) -> bool:
    code, status = error_code(err)
    return code == "PreconditionFailed" or status == 412


def _is_conflict(err: BaseException) -> bool:
    code, status = error_code(err)
    return code == "ConditionalRequestConflict" or status == 409


def _is_missing(err: BaseException) -> bool:
    code, status = error_code(err)
    return isinstance(err, FileNotFoundError) or code in ("NoSuchKey", "404") or status == 404


def _server_age(response: dict[str, Any]) -> float:
    """``Date`` minus ``LastModified`` of a GET response: its age by the server's clock."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    modified = response.get("LastModified")
    if not date or modified is None:
        return 0.0  # no server stamps: never judged expired by a guess
    age: float = (parsedate_to_datetime(date) - modified).total_seconds()
    return age


class LeaseIO:
    """Conditional requests on the lease objects of one bucket, through an s3fs filesystem."""

    def __init__(self, fs: Any, bucket: str) -> None:
        self.fs, self.bucket = fs, bucket

    def create(self, key: str, body: dict[str, Any]) -> str:
        """Create *key* holding *body*; its ETag. :class:`Taken` if it exists."""
        return self._put(key, body, IfNoneMatch="*")

    def replace(self, key: str, body: dict[str, Any], etag: str) -> str:
        """Replace version *etag* of *key* by *body*; the new ETag.

        :class:`Taken` if another version is there, or none is.
        """
        try:
            return self._put(key, body, IfMatch=etag)
        except OSError as err:
            if _is_missing(err):
                raise Taken(str(err)) from None
            raise

    def _put(self, key: str, body: dict[str, Any], **condition: str) -> str:
        data = json.dumps(body, sort_keys=True).encode()
        response = self._conditional(
            lambda: self.fs.call_s3(
                "put_object",
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType="application/json",
                **condition,
            )
        )
        return str(response["ETag"])

    def delete(self, key: str, etag: str) -> bool:
        """Delete version *etag* of *key*; False if it is gone or another version is there."""
        try:
            self._conditional(
                lambda: self.fs.call_s3("delete_object", Bucket=self.bucket, Key=key, IfMatch=etag)
            )
        except Taken:
            return False
        except OSError as err:
            if _is_missing(err):
                return False
            raise
        return True

    def read(self, key: str) -> LeaseState | None:
        """The lease at *key* now, or None if there is none."""
        from ._optional import require

        asyn = require("fsspec.asyn", "s3", "a lease lock on S3")
        try:
            response, raw = asyn.sync(self.fs.loop, self._get, key)
        except OSError as err:
            if _is_missing(err):
                return None
            raise
        try:
            body = json.loads(raw.decode())
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return LeaseState(str(response["ETag"]), body, _server_age(response))

    async def _get(self, key: str) -> tuple[dict[str, Any], bytes]:
        response = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=key)
        async with response["Body"] as stream:
            raw = await stream.read(_BODY_MAX)
        return response, bytes(raw)

    def _conditional(self, request: Callable[[], T]) -> T:
        """Run *request*, retrying 409 conflicts with backoff; 412 raises :class:`Taken`."""
        delay = 0.05
        for attempt in range(_CONFLICT_RETRIES + 1):
            try:
                return request()
            except OSError as err:
                if _is_taken(err):
                    raise Taken(str(err)) from None
                if not _is_conflict(err) or attempt == _CONFLICT_RETRIES:
                    raise
                logger.debug("conditional write conflict (409), retrying in %.2f s", delay)
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")  # pragma: no cover
