"""A real S3-compatible server for the tests: moto's server mode on 127.0.0.1.

One server process serves the whole test session (started by the ``s3`` fixture
in ``conftest.py``); every test gets buckets of its own from :meth:`S3Server.bucket`,
so tests never see each other's objects. Clients talk to it over real HTTP,
exactly as they would talk to AWS: nothing in boto, botocore or s3fs is mocked.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

__all__ = ["CREDENTIALS", "S3Server"]

#: What the clients send; moto accepts any credentials.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
_STARTUP_TIMEOUT = 60.0
_buckets = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class S3Server:
    """A moto server in a subprocess, listening on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **CREDENTIALS}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the moto server exited with {self._process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the moto server did not answer on {self.endpoint}")

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options reaching this server (picklable, for worker processes)."""
        return {
            "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {
                "endpoint_url": self.endpoint,
                "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
            },
        }

    def filesystem(self) -> Any:
        """A fresh s3fs filesystem on this server (no instance cache, no listings cache)."""
        import s3fs

        return s3fs.S3FileSystem(
            skip_instance_cache=True, use_listings_cache=False, **self.storage_options()
        )

    def bucket(self, stem: str = "test") -> str:
        """Create a new, empty bucket and return its name."""
        # Bucket names allow lowercase letters, digits and hyphens (a test id's
        # "[npz-1]" would not do).
        safe = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")[:40] or "test"
        name = f"{safe}-{os.getpid()}-{next(_buckets)}"
        # A plain CreateBucket: s3fs.mkdir would send a LocationConstraint for
        # us-east-1, which S3 (and moto) reject.
        self.filesystem().call_s3("create_bucket", Bucket=name)
        return name

    def stop(self) -> None:
        """Stop the server process."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
