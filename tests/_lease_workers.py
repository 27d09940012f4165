"""Workers for the lease tests (importable by spawned processes), and a fault proxy.

Metric functions append their name and tag to a log opened with ``O_APPEND`` (one
write per line, so lines of several processes never interleave): a test counts
computes across processes from it. A ``stall`` file makes a computation wait while
it exists, after writing the computing process's pid next to it.
"""

from __future__ import annotations

import functools
import http.client
import http.server
import json
import os
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from metricache import (
    AutoStorageInterface,
    DatedCacheManager,
    NpzStorageInterface,
    ParameterizedDatedCacheManager,
    S3LeaseLocks,
)

from ._grid_workers import computes, note

__all__ = ["FaultProxy", "computes", "note"]


# -- metrics --------------------------------------------------------------------------


def slow(log: str, tag: str, stall: str = "", seconds: float = 0.0) -> np.ndarray:
    """``[tag's code points]``; logs ``slow:<tag>``; waits on *stall* or *seconds*."""
    note(log, f"slow:{tag}")
    if stall:
        Path(f"{stall}.pid").write_text(str(os.getpid()))
        while Path(stall).exists():
            time.sleep(0.02)
    time.sleep(seconds)
    return np.array([ord(c) for c in tag], dtype=np.int64)


def decode(value: Any) -> str:
    """The tag a :func:`slow` value was computed with."""
    return "".join(chr(int(c)) for c in value)


def lease_manager(
    url: str,
    options: dict[str, Any],
    ttl: float,
    log: str,
    tag: str,
    interface: str = "npz",
    **slow_options: Any,
) -> DatedCacheManager:
    """A manager over the S3 folder *url* with leases of *ttl* s, defining ``slow``.

    *interface* is ``"npz"`` (:class:`NpzStorageInterface`) or ``"auto"``.
    """
    locks = S3LeaseLocks(url, options, ttl=ttl)
    kind = AutoStorageInterface if interface == "auto" else NpzStorageInterface
    storage = kind(url, storage_options=options, locks=locks)
    CM = DatedCacheManager(storage, verbose=False, lock_timeout=120)
    CM.set_functions_dict({"slow": functools.partial(slow, log, tag, **slow_options)})
    return CM


# -- process roles --------------------------------------------------------------------


def get_slow(
    url: str,
    options: dict[str, Any],
    ttl: float,
    log: str,
    tag: str,
    out: str,
    start: str = "",
    skew: float = 0.0,
    **slow_options: Any,
) -> None:
    """Get ``slow`` (after *start* appears) and write what happened to *out* (JSON).

    *skew* shifts this process's ``time.time()`` by that many seconds: leases are
    judged by the server's clock, so nothing may change.
    """
    if skew:
        _skew_clock(skew)
    result: dict[str, Any] = {"pid": os.getpid()}
    try:
        CM = lease_manager(url, options, ttl, log, tag, **slow_options)
        while start and not Path(start).exists():
            time.sleep(0.01)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result["value"] = decode(CM.get("slow"))
        result["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    except Exception as err:  # noqa: BLE001 - reported to the test, which fails on it
        result["error"] = f"{type(err).__name__}: {err}"
        result["traceback"] = traceback.format_exc()
    Path(out).write_text(json.dumps(result))


def hold_name(
    url: str, options: dict[str, Any], ttl: float, name: str, held: str, release: str
) -> None:
    """Hold *name*'s lease, touch *held*, and keep it until *release* appears."""
    locks = S3LeaseLocks(url, options, ttl=ttl)
    with locks.hold(name):
        Path(held).write_text(str(os.getpid()))
        while not Path(release).exists():
            time.sleep(0.02)


def _skew_clock(seconds: float) -> None:
    real = time.time
    time.time = lambda: real() + seconds


# -- grids ----------------------------------------------------------------------------


def cell(i: int, j: int, log: str = "") -> np.ndarray:
    """A 3x3 grid cell: ``[i, j, i*j]``, logged as ``cell_<i>_<j>``."""
    note(log, f"cell_{i}_{j}")
    time.sleep(0.05)
    return np.array([i, j, i * j], dtype=np.float64)


def grid_manager(url: str, options: dict[str, Any], log: str) -> ParameterizedDatedCacheManager:
    """A manager over the S3 folder *url* with ``cell`` declared on a 3x3 grid."""
    CM = ParameterizedDatedCacheManager(
        NpzStorageInterface(url, storage_options=options), verbose=False
    )
    metric = functools.partial(cell, log=log)
    CM.collect(metric, name="cell", params_list=[[i, j] for i in range(3) for j in range(3)])
    return CM


def fill_grid(url: str, options: dict[str, Any], log: str, start: str, out: str) -> None:
    """Fill the grid with ``get_all(n_jobs=2)`` once *start* appears; summary to *out*."""
    result: dict[str, Any] = {}
    try:
        CM = grid_manager(url, options, log)
        while not Path(start).exists():
            time.sleep(0.01)
        summary = CM.cell.get_all(n_jobs=2, return_values=False)
        result = {"computed": summary.computed, "loaded": summary.loaded, "failed": summary.failed}
    except Exception as err:  # noqa: BLE001 - reported to the test, which fails on it
        result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    Path(out).write_text(json.dumps(result))


# -- fault injection ------------------------------------------------------------------

_CONFLICT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ConditionalRequestConflict</Code>'
    b"<Message>A conflicting conditional operation is currently in progress against this "
    b"resource. Please try again.</Message><RequestId>proxy</RequestId></Error>"
)
#: A fault: what to do with a matching request ("conflict" or "drop").
Rule = tuple[Callable[[str, str, dict[str, str]], bool], str]


class FaultProxy:
    """An HTTP proxy in front of the S3 server that answers chosen requests itself.

    Each rule ``(matches(method, path, headers), action)`` fires once, on the first
    request it matches: ``"conflict"`` answers a real ``409 ConditionalRequestConflict``
    without forwarding; ``"drop"`` forwards the request (it takes effect on the
    server) and closes the connection without answering, as a lost response.
    Every request is recorded in :attr:`seen` as ``(method, path, headers)``.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.rules: list[Rule] = []
        self.fired: list[str] = []
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests look at .seen

            def do_GET(self) -> None:
                proxy._handle(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def storage_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """*options* of the S3 server, pointed at this proxy instead."""
        client = {**options.get("client_kwargs", {}), "endpoint_url": self.endpoint}
        return {**options, "client_kwargs": client}

    def add(self, matches: Callable[[str, str, dict[str, str]], bool], action: str) -> None:
        """Fire *action* once, on the next request *matches* accepts."""
        with self._lock:
            self.rules.append((matches, action))

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        body = _read_body(handler, headers)
        action = self._match(handler.command, handler.path, headers)
        if action == "conflict":
            _reply(handler, 409, _CONFLICT, {"Content-Type": "application/xml"})
            return
        status, reply_headers, reply = self._forward(handler.command, handler.path, headers, body)
        if action == "drop":
            handler.close_connection = True
            return
        _reply(handler, status, reply, reply_headers)

    def _match(self, method: str, path: str, headers: dict[str, str]) -> str | None:
        with self._lock:
            self.seen.append((method, path, headers))
            for rule in self.rules:
                if rule[0](method, path, headers):
                    self.rules.remove(rule)
                    self.fired.append(rule[1])
                    return rule[1]
        return None

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k not in _HOP_BY_HOP}
            sent["content-length"] = str(len(body))
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            data = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            return response.status, kept, data
        finally:
            connection.close()


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te"}


def _read_body(handler: http.server.BaseHTTPRequestHandler, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(headers.get("content-length", "0")))


def _reply(
    handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
) -> None:
    handler.send_response(status)
    for key, value in headers.items():
        if key.lower() not in ("date", "server"):
            handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def try_hold(locks: Any, name: str, timeout: float) -> str:
    """Try to hold *name* through *locks* (on a Dask worker): "held" or the error."""
    try:
        with locks.hold(name, timeout=timeout):
            return "held"
    except Exception as err:  # noqa: BLE001 - reported to the test, which asserts on it
        return f"{type(err).__name__}: {err}"
