"""A deliberately broken build of the reference server, for proving the fuzzer finds defects.

The real app (reference_server.app.create_app) wrapped in two ASGI middlewares, each injecting one
defect without touching the server's code:
- POST /api/v1/jobs with `priority` 9 (the upper bound: an edge case) answers 500;
- GET /api/v1/queues answers each queue's `priority` as a string, violating the response schema.

Run as a process: `python broken_app.py PORT`, with DATABASE_URL and REDIS_URL in the environment
(an already migrated database).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

from reference_server.app import create_app
from reference_server.config import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

EDGE_PRIORITY = 9


class ServerErrorOnEdgeCase:
    """POST /api/v1/jobs whose body has priority 9 gets a 500, as an unhandled bug would."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/api/v1/jobs"
        ):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        priority = parsed.get("priority") if isinstance(parsed, dict) else None
        if type(priority) is int and priority == EDGE_PRIORITY:
            payload = json.dumps(
                {
                    "success": False,
                    "error": {"code": "INTERNAL_ERROR", "message": "injected defect"},
                    "timestamp": "2026-01-01T00:00:00Z",
                    "request_id": "injected",
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(payload)).encode()),
                        (b"x-request-id", uuid.uuid4().hex.encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return

        replay = iter(messages)

        async def replayed() -> Message:
            # The buffered body first, then whatever the server would have received next.
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)


class QueuePriorityAsString:
    """GET /api/v1/queues answers `priority` as a string: a response that violates its schema."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] == "/api/v1/queues"
        ):
            await self.app(scope, receive, send)
            return
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = dict(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            if start.get("status") == 200:
                document = json.loads(body)
                for queue in document["data"]["queues"]:
                    queue["priority"] = str(queue["priority"])
                body = json.dumps(document).encode()
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)


def broken_app(settings: Settings) -> ASGIApp:
    """The reference app with both defects injected."""
    app: ASGIApp = create_app(settings)
    return QueuePriorityAsString(ServerErrorOnEdgeCase(app))


def main() -> None:
    port = int(sys.argv[1])
    settings = Settings(
        APP_ENVIRONMENT="test",
        RATE_LIMIT_PER_MINUTE=100_000_000,
        BUILTIN_WORKERS=0,
        LOG_LEVEL="warning",
    )
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    asyncio.run(serve(broken_app(settings), config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
