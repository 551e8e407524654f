"""A front that changes only what the contract lets vary, in front of a reference server.

200 instead of 201 on create, 403 PERM_001 instead of 404 for an object id the caller cannot
see, its own Server header, and the metrics refused on the public URL but served on a second,
plain-HTTP port (where Prometheus would scrape). A run through it must find nothing new.

    python variant_front.py UPSTREAM CA CERT KEY PORT METRICS_PORT
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Paths naming one object by id or name: another organisation's may answer 403 instead of 404.
OBJECT_PATH = re.compile(r"^/api/v1/(jobs|queues|api-keys|workers)/[^/]+(/[a-z]+)?$")
DROPPED = {"content-length", "content-encoding", "transfer-encoding", "connection", "server"}
#: The body limit a front keeps itself, as nginx's client_max_body_size: the reference server
#: answers 413 before reading an oversized body and closes, which httpx, still uploading it,
#: sees as a write error instead of the answer (it failed a fresh-clone CI run with a 500).
BODY_LIMIT = 1024 * 1024


def make_app(upstream: str, ca: str, metrics_port: int) -> Callable[..., Awaitable[None]]:
    client = httpx.AsyncClient(base_url=upstream, verify=ssl.create_default_context(cafile=ca),
                               timeout=30)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        on_metrics_port = scope["server"][1] == metrics_port
        if (path == "/metrics") != on_metrics_port:
            body = json.dumps({"success": False, "error": {"code": "RESOURCE_NOT_FOUND",
                                                           "message": "not here"}}).encode()
            await _answer(send, 404, [(b"content-type", b"application/json")], body)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > BODY_LIMIT:
            body = json.dumps({"success": False, "error": {"code": "PAYLOAD_TOO_LARGE",
                                                           "message": "body too large"}}).encode()
            await _answer(send, 413, [(b"content-type", b"application/json")], body)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"host",)]
        query = scope.get("query_string", b"").decode()
        url = path + (f"?{query}" if query else "")
        try:
            response = await client.request(scope["method"], url, headers=headers,
                                            content=b"".join(chunks))
        except httpx.TransportError:
            # A kept-alive upstream connection the server closed (after an early 413): once more.
            response = await client.request(scope["method"], url, headers=headers,
                                            content=b"".join(chunks))
        status, content = response.status_code, response.content
        if status == 201:
            status = 200
        elif status == 404 and OBJECT_PATH.match(path):
            status = 403
            content = json.dumps({"success": False, "error": {
                "code": "PERM_001", "message": "not yours"}}).encode()
        out = [(k.encode(), v.encode()) for k, v in response.headers.multi_items()
               if k.lower() not in DROPPED]
        await _answer(send, status, out, content)

    return app


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]],
                  body: bytes) -> None:
    headers = [*headers, (b"server", b"edge"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    upstream, ca, cert, key, port, metrics_port = sys.argv[1:7]
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.insecure_bind = [f"127.0.0.1:{metrics_port}"]
    config.certfile, config.keyfile = cert, key
    config.include_server_header = False
    config.accesslog = None
    asyncio.run(serve(make_app(upstream, ca, int(metrics_port)), config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
