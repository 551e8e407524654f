"""A recording target: an HTTP server on 127.0.0.1 that forwards every request to a real server
and records method, path, status and body, so a test can count what reached the target."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                        "upgrade", "proxy-authorization", "proxy-authenticate", "host",
                        "content-length"})
#: Large bodies (the oversized-body probe) are read and forwarded up to this size, then cut.
MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    status: int
    body: bytes


@dataclass
class Recorder:
    exchanges: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, exchange: Exchange) -> None:
        with self.lock:
            self.exchanges.append(exchange)

    def snapshot(self) -> list[Exchange]:
        with self.lock:
            return list(self.exchanges)


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True
    upstream: httpx.Client
    recorder: Recorder


class _Handler(BaseHTTPRequestHandler):
    server: _Proxy
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY)) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            answer = self.server.upstream.request(self.command, self.path, headers=headers,
                                                  content=body)
        except httpx.HTTPError:
            self.server.recorder.add(Exchange(self.command, self.path.split("?")[0], 502, body))
            self.send_response(502)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.recorder.add(Exchange(self.command, self.path.split("?")[0],
                                          answer.status_code, body))
        self.send_response(answer.status_code)
        for name, value in answer.headers.multi_items():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-encoding":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _forward

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def recording_proxy(upstream_url: str, verify: ssl.SSLContext) -> Iterator[tuple[str, Recorder]]:
    """(the proxy's base URL, its recorder), forwarding to upstream_url."""
    server = _Proxy(("127.0.0.1", 0), _Handler)
    server.recorder = Recorder()
    with httpx.Client(base_url=upstream_url, verify=verify, timeout=30.0,
                      follow_redirects=False) as upstream:
        server.upstream = upstream
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", server.recorder
        finally:
            server.shutdown()
            server.server_close()
