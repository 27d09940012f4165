"""A TCP proxy between an S3 client and the test server: counts requests, injects faults.

Real network faults, not mocks: the client (s3fs, botocore, aiohttp) talks HTTP to
this proxy exactly as it would to S3, and the proxy forwards every byte to the moto
server, except where a rule says to lose a response (the server did the work, the
client never hears of it) or to cut a request midway (the server never gets it
whole). It also counts what passes: the request lines, and the bytes served.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FaultProxy"]


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    action: str  # "drop-response" or "cut-request"
    times: int
    after: int = 0  # cut-request: body bytes forwarded before the cut
    hits: list[str] = field(default_factory=list)


class FaultProxy:
    """Listens on a free port of 127.0.0.1 and forwards to *upstream* (``host, port``)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        #: Every request line seen (``"GET /bucket/key"``), in order.
        self.requests: list[str] = []
        #: Bytes the server sent back to clients (headers included).
        self.served = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def options(self, base: dict[str, Any]) -> dict[str, Any]:
        """*base* storage options, pointed at this proxy."""
        client = {**base.get("client_kwargs", {}), "endpoint_url": self.endpoint}
        return {**base, "client_kwargs": client}

    def drop_response(self, pattern: str, times: int = 1) -> _Rule:
        """Forward the next *times* requests matching *pattern*, then lose their responses."""
        return self._add(_Rule(re.compile(pattern), "drop-response", times))

    def cut_request(self, pattern: str, after: int, times: int = 1_000) -> _Rule:
        """Cut the connection of matching requests after *after* bytes of their body."""
        return self._add(_Rule(re.compile(pattern), "cut-request", times, after))

    def clear(self) -> None:
        """Forward everything again; forget the counts."""
        with self._lock:
            self._rules.clear()
            self.requests.clear()
            self.served = 0

    def _add(self, rule: _Rule) -> _Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def _match(self, line: str) -> _Rule | None:
        with self._lock:
            self.requests.append(line)
            for rule in self._rules:
                if rule.times > 0 and rule.pattern.search(line):
                    rule.times -= 1
                    rule.hits.append(line)
                    return rule
        return None

    def _accept(self) -> None:
        while True:
            client, _ = self._server.accept()
            upstream = socket.create_connection(self.upstream)
            _Connection(self, client, upstream).start()


class _Connection:
    """One client connection and its upstream twin, pumped by two threads."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.dropping = False  # lose the response to the request just forwarded
        self.request_done = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._requests, daemon=True).start()
        threading.Thread(target=self._responses, daemon=True).start()

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _requests(self) -> None:
        """Forward requests one by one, parsing each one's framing to apply the rules."""
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = self.client.recv(1 << 16)
                    if not chunk:
                        return self.close()
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                rule = self.proxy._match(line.rsplit(" ", 1)[0])
                length = _content_length(head)
                self.upstream.sendall(head + b"\r\n\r\n")
                if rule is not None and rule.action == "cut-request":
                    buffer = self._forward_body(buffer, min(rule.after, length))
                    return self.close()
                self.dropping = rule is not None
                buffer = self._forward_body(buffer, length)
        except OSError:
            self.close()

    def _forward_body(self, buffer: bytes, length: int) -> bytes:
        """Forward *length* body bytes (some already in *buffer*); return what follows."""
        while len(buffer) < length:
            chunk = self.client.recv(1 << 16)
            if not chunk:
                break
            buffer += chunk
        self.upstream.sendall(buffer[:length])
        return buffer[length:]

    def _responses(self) -> None:
        try:
            while chunk := self.upstream.recv(1 << 16):
                if self.dropping and not chunk.startswith(b"HTTP/1.1 100"):
                    return self.close()  # the server answered; the client never hears it
                with self.proxy._lock:
                    self.proxy.served += len(chunk)
                self.client.sendall(chunk)
        except OSError:
            pass
        self.close()


def _content_length(head: bytes) -> int:
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return int(match.group(1)) if match else 0
